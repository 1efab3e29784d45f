//! Where a fleet member starts: the last fleet version it applied (kept in `state_dir`,
//! re-merged with the local file), or, before its first, a configuration that answers every
//! request 503. Either way it serves before etcd has said anything.

use super::versions;
use crate::app::StartError;
use crate::controller::ConfigSource;
use holdfast_config::Fleet;
use std::path::PathBuf;

/// What the agent needs: the instance's `[fleet]`, its id, its local file and its folders.
pub(crate) struct MemberPlan {
    pub fleet: Fleet,
    pub id: String,
    pub local_text: String,
    pub local_base: PathBuf,
    /// `STATE_DIR/fleet`.
    pub dir: PathBuf,
    /// The version it started on (from `state_dir`), if any.
    pub started_on: Option<u64>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "holdfast".to_string())
}

/// For a local file with `[fleet]`: the source to start on, and the agent's plan. Any
/// other source is returned as it is.
pub(crate) fn prepare(
    source: ConfigSource,
) -> Result<(ConfigSource, Option<MemberPlan>), StartError> {
    let ConfigSource::File(path) = &source else {
        return Ok((source, None));
    };
    let Ok(read) = holdfast_artifact::read_bounded_text(path, holdfast_config::MAX_CONFIG_BYTES)
    else {
        // The usual start reports it.
        return Ok((source, None));
    };
    if !holdfast_config::is_fleet_member(&read.content) {
        return Ok((source, None));
    }
    let label = path.display().to_string();
    let errors = |errs: Vec<holdfast_config::ConfigError>| {
        StartError::Config(errs.iter().map(|e| format!("{label}: {e}")).collect())
    };
    let local_violations = holdfast_config::local_violations(&read.content);
    if !local_violations.is_empty() {
        return Err(errors(local_violations));
    }
    // Absolute: the merged versions live in state_dir/fleet/vN/, so the instance's own
    // relative paths (state_dir above all) must not be read against that folder.
    let base =
        crate::controller::base_dir(&std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    let waiting = holdfast_config::no_version_yet(&read.content, &base).map_err(errors)?;
    let config = holdfast_config::parse(&waiting, &base).map_err(errors)?;
    let (Some(fleet), Some(state_dir)) = (config.fleet, config.edge.state_dir) else {
        return Err(StartError::Config(vec![format!(
            "{label}: edge.state_dir: required with [fleet]"
        )]));
    };
    let dir = state_dir.join("fleet");
    let id = fleet.instance.clone().unwrap_or_else(host_name);
    let mut plan = MemberPlan {
        fleet,
        id,
        local_text: read.content,
        local_base: base,
        dir,
        started_on: None,
    };
    if let Some((n, file)) = versions::last_applied(&plan) {
        tracing::error!(
            version = n,
            file = %file.display(),
            "FLEET: STARTING ON THE LAST-KNOWN-GOOD FLEET VERSION {n} kept in state_dir; etcd is asked for the version to run once it answers"
        );
        plan.started_on = Some(n);
        return Ok((ConfigSource::File(file), Some(plan)));
    }
    let file = plan.dir.join("none").join(versions::MERGED);
    holdfast_artifact::write_atomic(&file, waiting.as_bytes())
        .map_err(|e| StartError::Io(format!("{}: cannot write", file.display()), e))?;
    tracing::warn!(
        instance = %plan.id,
        "FLEET: no fleet version yet: every request is answered 503 until the first arrives"
    );
    Ok((ConfigSource::File(file), Some(plan)))
}
