//! Wiring of the DNS server (`[dns]`): its health comes from the edge's current `State`
//! (the servers of the named pools as the health-check thread last judged them), its
//! metrics go to the admin registry, its zone LKGs under `edge.state_dir`.

use arc_swap::ArcSwap;
use holdfast_artifact::ArtifactMetrics;
use holdfast_config::Config;
use holdfast_dns::{DnsHandle, DnsMetrics, HealthSource};
use holdfast_proxy::State;
use prometheus::Registry;
use std::net::IpAddr;
use std::sync::Arc;

/// Pool health as the edge's checker sees it, read from whatever `State` is current.
struct EdgeHealth(Arc<ArcSwap<State>>);

impl HealthSource for EdgeHealth {
    fn servers(&self, pool: &str) -> Option<Vec<(IpAddr, bool)>> {
        let servers = self.0.load().pool_health(pool)?;
        Some(
            servers
                .into_iter()
                .map(|(a, down)| (a.ip(), down))
                .collect(),
        )
    }
}

/// Start the DNS server if `[dns]` is configured.
pub(crate) fn start(
    config: &Config,
    sockets: &crate::upgrade::Sockets,
    states: &Arc<ArcSwap<State>>,
    registry: &Registry,
    artifact_metrics: Arc<ArtifactMetrics>,
) -> Result<Option<DnsHandle>, crate::app::StartError> {
    let Some(dns) = &config.dns else {
        return Ok(None);
    };
    let metrics = DnsMetrics::new(registry).map_err(crate::app::StartError::metrics)?;
    let bound = sockets.dns(dns.listen).map_err(|e| {
        crate::app::StartError::Io(format!("dns.listen: cannot listen on {}", dns.listen), e)
    })?;
    DnsHandle::start_on(
        dns,
        bound,
        config.edge.state_dir.as_deref(),
        Arc::new(EdgeHealth(Arc::clone(states))),
        artifact_metrics,
        metrics,
    )
    .map(Some)
    .map_err(|e| crate::app::StartError::Io("dns".into(), std::io::Error::other(e.to_string())))
}
