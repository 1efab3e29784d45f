//! Wiring: load the configuration, build the first `State`, start the data path and the
//! admin plane, and stop them in order.

use crate::controller::{listeners_json, load_at_start, ConfigSource, Controller};
use holdfast_admin::{AdminHandle, ReloadOutcome};
use holdfast_proxy::{EdgeHandle, Listeners};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Every problem found, each formatted `FILE: key.path: message (hint)`.
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Config(Vec<String>),
    /// What failed, and the error (said once: it is not also the `source`).
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(String),
}

impl StartError {
    pub(crate) fn metrics(e: prometheus::Error) -> Self {
        StartError::Metrics(e.to_string())
    }
}

/// A running edge: data listeners, admin plane and the reload controller.
pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// The DNS server's address (UDP and TCP), when `[dns]` is configured.
    pub dns_addr: Option<SocketAddr>,
    controller: Arc<Controller>,
    edge: EdgeHandle,
    admin: AdminHandle,
    /// The fleet agent, when the configuration file has `[fleet]`.
    fleet: Option<crate::fleet::Agent>,
}

impl Running {
    pub fn start(source: ConfigSource) -> Result<Running, StartError> {
        Running::start_with_modules(source, Vec::new())
    }

    /// `start`, with modules of the embedding program's own run after the configured ones
    /// (tests use it for modules that misbehave on purpose).
    pub fn start_with_modules(
        source: ConfigSource,
        extra_modules: Vec<Arc<dyn holdfast_proxy::RequestModule>>,
    ) -> Result<Running, StartError> {
        // A fleet member starts on its last fleet version (or a 503-only configuration).
        let (source, fleet_plan) = crate::fleet::prepare(source)?;
        let loaded = load_at_start(&source).map_err(StartError::Config)?;
        let config = Arc::clone(&loaded.config);
        let workers = config.edge.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let controller = Arc::new(Controller::new(source, loaded, workers, extra_modules)?);
        let listeners = Listeners {
            plain: config.edge.listen.clone(),
            tls: config.edge.tls_listen.clone(),
            threads: workers,
        };
        let edge = holdfast_proxy::start(&listeners, Arc::clone(&controller.states))
            .map_err(|e| StartError::Io("edge.listen: cannot listen".into(), e))?;
        let admin = match holdfast_admin::start(config.admin.listen, controller.clone()) {
            Ok(a) => a,
            Err(e) => {
                edge.shutdown();
                edge.join();
                return Err(StartError::Io(
                    format!("admin.listen: cannot listen on {}", config.admin.listen),
                    e,
                ));
            }
        };
        if let Err(e) = controller.start_dns() {
            edge.shutdown();
            edge.join();
            admin.shutdown();
            controller.stop_checks();
            return Err(e);
        }
        *controller
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            listeners_json(&edge.plain, &edge.tls, admin.addr);
        let fleet = match fleet_plan.map(|p| crate::fleet::Agent::start(p, Arc::clone(&controller)))
        {
            None => None,
            Some(Ok(agent)) => Some(agent),
            Some(Err(e)) => {
                edge.shutdown();
                edge.join();
                admin.shutdown();
                controller.stop_checks();
                return Err(e);
            }
        };
        tracing::info!(http = ?edge.plain, https = ?edge.tls, admin = %admin.addr, workers, "holdfast is serving");
        let dns_addr = controller.dns_handle().as_ref().map(|d| d.addr);
        Ok(Running {
            dns_addr,
            http_addrs: edge.plain.clone(),
            https_addrs: edge.tls.clone(),
            admin_addr: admin.addr,
            controller,
            edge,
            admin,
            fleet,
        })
    }

    /// Test hook: make every decision of the challenge module fail (so its fail policy and
    /// the `critical` routes' fail-open apply), or stop doing so. `false` if no challenge runs.
    #[doc(hidden)]
    pub fn fail_challenge(&self, on: bool) -> bool {
        self.controller
            .modules
            .running::<holdfast_challenge::ChallengeKind>()
            .map(|challenge| challenge.set_fault(on))
            .is_some()
    }

    /// Re-read the configuration now (what `SIGHUP` and `POST /reload` do).
    pub fn reload(&self) -> ReloadOutcome {
        self.controller.do_reload()
    }

    /// Stop accepting, let open requests finish within `edge.shutdown_grace`, then stop the
    /// admin plane and flush the access log.
    pub fn shutdown(mut self) {
        // Leave the fleet first: the lease is revoked, the controller's election passes on.
        if let Some(agent) = self.fleet.take() {
            agent.stop();
        }
        self.controller.set_serving(false);
        self.edge.shutdown();
        self.edge.join();
        self.admin.shutdown();
        if let Some(dns) = self.controller.dns_handle().take() {
            dns.shutdown();
        }
        self.controller.stop_checks();
        self.controller.access_log.sync();
        tracing::info!("holdfast stopped");
    }
}
