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
    let loaded = load(&source)?;
    let internal = |e: prometheus::Error| vec![format!("internal: {e}")];
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::new(&registry).map_err(internal)?);
    let artifact_metrics =
        Arc::new(holdfast_artifact::ArtifactMetrics::new(&registry).map_err(internal)?);
    let modules =
        crate::registry::module_host(&registry, &artifact_metrics, Vec::new()).map_err(internal)?;
    build_generation(
        &source.label(),
        &loaded.config,
        &modules,
        Mode::Check,
        |chain| StateInputs {
            config: Arc::clone(&loaded.config),
            generation: 0,
            metrics,
            access_log: None,
            workers: 1,
            modules: chain,
            previous: None,
        },
    )
    .map(drop)
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
