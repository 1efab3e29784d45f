//! Fleet versions on disk: `STATE_DIR/fleet/vN/` holds the version's text (`version.toml`),
//! its artifacts at the relative paths the version names them by, and the configuration the
//! instance loads (`holdfast.toml`: the version merged with the local file's instance-owned
//! keys). `STATE_DIR/fleet/applied` names the last version applied: the last-known-good a
//! restart starts from when etcd is down.

use super::start::MemberPlan;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The merged configuration's file name in a version's folder.
pub(super) const MERGED: &str = "holdfast.toml";
const VERSION_TEXT: &str = "version.toml";
const APPLIED: &str = "applied";

fn version_dir(plan: &MemberPlan, n: u64) -> PathBuf {
    plan.dir.join(format!("v{n}"))
}

/// The last version applied, re-merged with the current local file: `(N, its holdfast.toml)`.
pub(super) fn last_applied(plan: &MemberPlan) -> Option<(u64, PathBuf)> {
    let n: u64 = std::fs::read_to_string(plan.dir.join(APPLIED))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let dir = version_dir(plan, n);
    let text = std::fs::read_to_string(dir.join(VERSION_TEXT)).ok()?;
    let merged =
        holdfast_config::merge_fleet_version(&plan.local_text, &plan.local_base, &text).ok()?;
    let file = dir.join(MERGED);
    holdfast_artifact::write_atomic(&file, merged.as_bytes()).ok()?;
    Some((n, file))
}

pub(super) fn mark_applied(plan: &MemberPlan, n: u64) {
    if let Err(e) =
        holdfast_artifact::write_atomic(&plan.dir.join(APPLIED), n.to_string().as_bytes())
    {
        tracing::error!(error = %e, "fleet: cannot record the applied version in state_dir");
    }
}

pub(super) fn forget_applied(plan: &MemberPlan) {
    let _ = std::fs::remove_file(plan.dir.join(APPLIED));
}

/// A relative path inside the version's folder, or why not.
fn safe_relative(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || path.is_empty() {
        return Err(format!(
            "artifact {path:?}: must be a relative path inside the version's folder (no .., no leading /)"
        ));
    }
    if path == MERGED || path == VERSION_TEXT {
        return Err(format!(
            "artifact {path:?}: this name is reserved in the version's folder"
        ));
    }
    Ok(p)
}

/// Write version `n` (text and artifacts) and its merged configuration; the file to load.
pub(super) fn write(
    plan: &MemberPlan,
    n: u64,
    text: &str,
    artifacts: &BTreeMap<String, Vec<u8>>,
) -> Result<PathBuf, Vec<String>> {
    let label = format!("fleet version {n}");
    let merged = holdfast_config::merge_fleet_version(&plan.local_text, &plan.local_base, text)
        .map_err(|errs| {
            errs.iter()
                .map(|e| format!("{label}: {e}"))
                .collect::<Vec<_>>()
        })?;
    let dir = version_dir(plan, n);
    let io = |what: &Path, e: std::io::Error| {
        vec![format!("{label}: {}: cannot write: {e}", what.display())]
    };
    for (path, bytes) in artifacts {
        let rel = safe_relative(path).map_err(|e| vec![format!("{label}: {e}")])?;
        let file = dir.join(rel);
        holdfast_artifact::write_atomic(&file, bytes).map_err(|e| io(&file, e))?;
    }
    let text_file = dir.join(VERSION_TEXT);
    holdfast_artifact::write_atomic(&text_file, text.as_bytes()).map_err(|e| io(&text_file, e))?;
    let file = dir.join(MERGED);
    holdfast_artifact::write_atomic(&file, merged.as_bytes()).map_err(|e| io(&file, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> MemberPlan {
        let local = "[fleet]\netcd = [\"http://127.0.0.1:2379\"]\ninstance = \"a\"\n[edge]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n";
        let text = holdfast_config::no_version_yet(local, dir).unwrap_or_default();
        let config = holdfast_config::parse(&text, dir).map_err(|e| format!("{e:?}"));
        let fleet = config.ok().and_then(|c| c.fleet);
        MemberPlan {
            fleet: fleet.unwrap_or_else(|| unreachable!("no [fleet]")),
            id: "a".into(),
            local_text: local.into(),
            local_base: dir.to_path_buf(),
            dir: dir.join("state/fleet"),
            started_on: None,
        }
    }

    #[test]
    fn a_written_version_is_loadable_and_is_the_last_known_good_once_applied() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let plan = plan(tmp.path());
        let version = "[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\npool = \"p\"\n[[ip_lists]]\nname = \"l\"\nfile = \"lists/l.txt\"\n";
        let artifacts = BTreeMap::from([("lists/l.txt".to_string(), b"10.0.0.0/8\n".to_vec())]);
        assert!(last_applied(&plan).is_none());
        let file = write(&plan, 3, version, &artifacts).unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(file, tmp.path().join("state/fleet/v3/holdfast.toml"));
        assert!(tmp.path().join("state/fleet/v3/lists/l.txt").exists());
        let merged = std::fs::read_to_string(&file).unwrap_or_default();
        let config = holdfast_config::parse(&merged, file.parent().unwrap_or(tmp.path()));
        assert!(config.is_ok(), "{config:?}");
        mark_applied(&plan, 3);
        assert_eq!(last_applied(&plan).map(|(n, _)| n), Some(3));
        forget_applied(&plan);
        assert!(last_applied(&plan).is_none());
        // An artifact path that leaves the folder is refused, with nothing loaded.
        let bad = BTreeMap::from([("../x".to_string(), b"1".to_vec())]);
        let errors = write(&plan, 4, version, &bad).err().unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.contains("must be a relative path")),
            "{errors:?}"
        );
    }

    #[test]
    fn artifact_paths_stay_inside_the_version_folder() {
        assert!(safe_relative("lists/partners.txt").is_ok());
        assert!(safe_relative("../etc/passwd").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("./a").is_err());
        assert!(safe_relative("holdfast.toml").is_err());
    }
}
