//! The module kinds this edge runs, registered with the host (`holdfast_modules::host`): one
//! line per kind. A kind sees what the kinds above it offer (the rules read the IP lists,
//! the limits and the challenge), so the order of the lines matters; the request chain's
//! order comes from each step's `Stage`.

use holdfast_artifact::ArtifactMetrics;
use holdfast_modules::host::ModuleHost;
use holdfast_modules::{ModuleMetrics, RequestModule};
use prometheus::Registry;
use std::sync::Arc;

/// Every module kind, over the metrics of `registry` (`artifact_metrics` is shared with the
/// DNS zones); `extra` are the embedding program's own modules, run last.
pub(crate) fn module_host(
    registry: &Registry,
    artifact_metrics: &Arc<ArtifactMetrics>,
    extra: Vec<Arc<dyn RequestModule>>,
) -> Result<ModuleHost, prometheus::Error> {
    let modules = ModuleMetrics::new(registry)?;
    let artifacts = || Arc::clone(artifact_metrics);
    Ok(ModuleHost::new(extra)
        .register(holdfast_shield::kind::IpListsKind::new(artifacts()))
        .register(holdfast_shield::kind::LimitsKind::new(registry, &modules)?)
        .register(holdfast_challenge::ChallengeKind::new(registry, &modules)?)
        .register(holdfast_shield::kind::RulesKind::new(
            registry,
            &modules,
            artifacts(),
        )?)
        .register(holdfast_bot::kind::BotKind::new(&modules, artifacts())))
}
