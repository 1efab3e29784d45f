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

/// The configuration before the first fleet version (every request 503), written to
/// `dir/none/`. With `tls_listen`, its TLS listener serves a self-signed placeholder made
/// there too (a version brings the real certificates).
pub(crate) fn write_waiting(
    local_text: &str,
    local_base: &std::path::Path,
    dir: &std::path::Path,
) -> Result<PathBuf, Vec<String>> {
    let none = dir.join("none");
    let text = waiting_text(local_text, local_base, &none)?;
    let file = none.join(versions::MERGED);
    holdfast_artifact::write_atomic(&file, text.as_bytes())
        .map_err(|e| vec![format!("{}: cannot write: {e}", file.display())])?;
    Ok(file)
}

/// `no_version_yet`, and with `tls_listen` a placeholder certificate written in `dir` for
/// its TLS listener.
pub(crate) fn waiting_text(
    local_text: &str,
    local_base: &std::path::Path,
    dir: &std::path::Path,
) -> Result<String, Vec<String>> {
    let text = holdfast_config::no_version_yet(local_text, local_base)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    if !holdfast_config::has_tls_listener(local_text) {
        return Ok(text);
    }
    let (cert, key) =
        holdfast_acme::placeholder_pem(&["holdfast.invalid".to_string()]).map_err(|e| {
            vec![format!(
                "fleet: cannot make the placeholder certificate: {e}"
            )]
        })?;
    let (cert_path, key_path) = (dir.join("placeholder.pem"), dir.join("placeholder.key"));
    for (path, bytes) in [(&cert_path, cert), (&key_path, key)] {
        holdfast_artifact::write_atomic(path, bytes.as_bytes())
            .map_err(|e| vec![format!("{}: cannot write: {e}", path.display())])?;
    }
    Ok(with_placeholder_tls(text, &cert_path, &key_path))
}

/// `text` with an `[[edge.tls]]` table for the placeholder at `cert` and `key`.
fn with_placeholder_tls(mut text: String, cert: &std::path::Path, key: &std::path::Path) -> String {
    text.push_str(&format!(
        "\n[[edge.tls]]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    text
}

/// The instance's id: `[fleet] instance`, else the host name.
pub(crate) fn instance_id(fleet: &Fleet) -> String {
    fleet.instance.clone().unwrap_or_else(host_name)
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
    let mut waiting = holdfast_config::no_version_yet(&read.content, &base).map_err(errors)?;
    if holdfast_config::has_tls_listener(&read.content) {
        // Parsed only (no file is read): the placeholder is made below, when needed.
        waiting = with_placeholder_tls(waiting, &base.join("p.pem"), &base.join("p.key"));
    }
    let config = holdfast_config::parse(&waiting, &base).map_err(errors)?;
    let (Some(fleet), Some(state_dir)) = (config.fleet, config.edge.state_dir) else {
        return Err(StartError::Config(vec![format!(
            "{label}: edge.state_dir: required with [fleet]"
        )]));
    };
    let dir = state_dir.join("fleet");
    let id = instance_id(&fleet);
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
    drop(waiting);
    let file = write_waiting(&plan.local_text, &plan.local_base, &plan.dir).map_err(|errs| {
        StartError::Config(errs.into_iter().map(|e| format!("{label}: {e}")).collect())
    })?;
    tracing::warn!(
        instance = %plan.id,
        "FLEET: no fleet version yet: every request is answered 503 until the first arrives"
    );
    Ok((ConfigSource::File(file), Some(plan)))
}
