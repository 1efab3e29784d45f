//! `holdfast check`: the same loading, validation, module plans and runtime build as a start
//! or reload (`controller::build_generation`: TLS files read, names resolved, the access
//! log's folder checked), offline, with nothing started.

use crate::controller::{build_generation, load, ConfigSource, Mode};
use holdfast_proxy::{Metrics, StateInputs};
use std::path::Path;
use std::sync::Arc;

/// Validate one file; every problem is returned as `FILE: key.path: message (hint)`.
/// The same path as a start or reload (`build_generation`), stopping before anything starts.
pub fn check_file(path: &Path) -> Result<(), Vec<String>> {
    let source = ConfigSource::File(path.to_path_buf());
    if let Some(result) = check_fleet_member(path) {
        return result;
    }
    let loaded = load(&source)?;
    check_loaded(&source.label(), loaded)
}

/// A local file with `[fleet]` holds only instance-owned keys: checked as what it starts on
/// before its first version (`None` if it is not a fleet member's file).
fn check_fleet_member(path: &Path) -> Option<Result<(), Vec<String>>> {
    let read =
        holdfast_artifact::read_bounded_text(path, holdfast_config::MAX_CONFIG_BYTES).ok()?;
    if !holdfast_config::is_fleet_member(&read.content) {
        return None;
    }
    let label = path.display().to_string();
    let in_file = |errs: Vec<holdfast_config::ConfigError>| {
        errs.iter()
            .map(|e| format!("{label}: {e}"))
            .collect::<Vec<_>>()
    };
    let violations = holdfast_config::local_violations(&read.content);
    if !violations.is_empty() {
        return Some(Err(in_file(violations)));
    }
    let base = crate::controller::base_dir(path);
    // A TLS listener serves a placeholder before the first version: made in a folder of
    // its own that goes away after the check.
    let scratch = tempfile::tempdir().map_err(|e| vec![format!("{label}: {e}")]);
    Some(scratch.and_then(|dir| {
        crate::fleet::waiting_text(&read.content, &base, dir.path())
            .map_err(|errs| errs.iter().map(|e| format!("{label}: {e}")).collect())
            .and_then(|text| check_text(&label, text, &base))
    }))
}

/// `check_file` for text that is not (yet) a file: a fleet version merged with an instance
/// part, whose relative paths resolve against `base`.
pub(crate) fn check_text(label: &str, text: String, base: &Path) -> Result<(), Vec<String>> {
    let sha256 = holdfast_artifact::sha256_hex(text.as_bytes());
    let loaded = crate::controller::load_text(label, text, sha256, base)?;
    check_loaded(label, loaded)
}

fn check_loaded(label: &str, loaded: crate::controller::Loaded) -> Result<(), Vec<String>> {
    let internal = |e: prometheus::Error| vec![format!("internal: {e}")];
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::new(&registry).map_err(internal)?);
    let artifact_metrics =
        Arc::new(holdfast_artifact::ArtifactMetrics::new(&registry).map_err(internal)?);
    let modules =
        crate::registry::module_host(&registry, &artifact_metrics, Vec::new()).map_err(internal)?;
    build_generation(label, &loaded.config, &modules, Mode::Check, |chain| {
        StateInputs {
            config: Arc::clone(&loaded.config),
            generation: 0,
            metrics,
            access_log: None,
            workers: 1,
            modules: chain,
            previous: None,
            acme: None,
            ticket_keys: None,
        }
    })
    .map(drop)
}

/// What `holdfast check` says about a valid file besides `ok`: settings an operator should
/// know the consequences of, each as `FILE: notice: ...`. Today: JA4H turned on.
pub fn config_notices(path: &Path) -> Vec<String> {
    let source = ConfigSource::File(path.to_path_buf());
    let Ok(loaded) = load(&source) else {
        return Vec::new();
    };
    let mut notices = Vec::new();
    if loaded.config.modules.bot.as_ref().is_some_and(|b| b.ja4h) {
        notices.push(format!(
            "{}: notice: modules.bot.ja4h = true computes JA4H, which FoxIO licenses under the \
             FoxIO License 1.1 (free for internal and academic use; monetisation needs an OEM \
             licence; the method is described as patent pending). See \
             docs/artifacts.md#ja4h-style-fingerprint before running it in a paid service.",
            source.label()
        ));
    }
    notices
}

/// The artifact kinds `holdfast check --kind` knows.
pub const ARTIFACT_KINDS: &[&str] = &[
    <holdfast_bot::BotFeatures as holdfast_artifact::ArtifactKind>::NAME,
    <holdfast_shield::ip_list::IpListKind as holdfast_artifact::ArtifactKind>::NAME,
    <holdfast_shield::rule_list::RuleListKind as holdfast_artifact::ArtifactKind>::NAME,
];

/// `holdfast check --kind KIND FILE`: exactly the checks a running edge applies to the file
/// (size, signature when a key is given, parse, schema, the consumer's semantic checks).
/// `Ok` carries a one-line summary; `Err` the error as `FILE: reason: detail`.
pub fn check_artifact(
    kind: &str,
    path: &Path,
    public_key: Option<&str>,
) -> Result<String, Vec<String>> {
    let at = path.display();
    let key = match public_key {
        None => None,
        Some(text) => Some(
            holdfast_artifact::decode_public_key(text)
                .map_err(|e| vec![format!("--public-key: {e}")])?,
        ),
    };
    match kind {
        "bot-features" => {
            let model =
                holdfast_artifact::check_file::<holdfast_bot::BotFeatures>(path, key.as_ref())
                    .map_err(|r| vec![format!("{at}: {}: {r}", r.reason.label())])?;
            Ok(format!(
                "bot-features version {}, {} features",
                model.version(),
                model.entries()
            ))
        }
        "ip-list" => {
            use holdfast_artifact::ArtifactKind;
            use holdfast_shield::ip_list::IpListKind;
            let set = holdfast_artifact::check_file::<IpListKind>(path, key.as_ref())
                .map_err(|r| vec![format!("{at}: {}: {r}", r.reason.label())])?;
            Ok(format!(
                "ip-list version {}, {} entries",
                IpListKind::version(&set),
                set.entries()
            ))
        }
        "rule-list" => {
            use holdfast_artifact::ArtifactKind;
            use holdfast_shield::rule_list::RuleListKind;
            let list = holdfast_artifact::check_file::<RuleListKind>(path, key.as_ref())
                .map_err(|r| vec![format!("{at}: {}: {r}", r.reason.label())])?;
            Ok(format!(
                "rule-list version {}, {} rules",
                RuleListKind::version(&list),
                RuleListKind::entries(&list)
            ))
        }
        other => Err(vec![format!(
            "--kind: unknown kind {other:?} (use \"config\" or one of {ARTIFACT_KINDS:?})"
        )]),
    }
}
