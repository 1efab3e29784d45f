//! Wiring: load the configuration, build the first `State`, start the data path and the
//! admin plane, and stop them in order.

use crate::controller::{listeners_json, load_at_start, ConfigSource, Controller};
use holdfast_admin::{AdminHandle, ReloadOutcome};
use holdfast_common::lock;
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

/// The admin plane's authentication: the token file's content, read once at start.
fn admin_access(auth: &holdfast_config::AdminAuth) -> Result<holdfast_admin::Access, StartError> {
    let access = match &auth.token_file {
        None => holdfast_admin::Access::open(),
        Some(file) => {
            let read = holdfast_artifact::read_bounded_text(file, 4096).map_err(|e| {
                StartError::Config(vec![format!(
                    "admin.token_file: {}: {e} (check the path and permissions)",
                    file.display()
                )])
            })?;
            holdfast_admin::Access::token(&read.content).map_err(|e| {
                StartError::Config(vec![format!("admin.token_file: {}: {e}", file.display())])
            })?
        }
    };
    let Some(tls) = &auth.tls else {
        return Ok(access);
    };
    const PEM_MAX: u64 = 1 << 20;
    let cert = read_admin_file("admin.tls_cert", &tls.cert, PEM_MAX)?;
    let key = read_admin_file("admin.tls_key", &tls.key, PEM_MAX)?;
    let ca = match &tls.client_ca {
        Some(ca) => Some(read_admin_file("admin.client_ca", ca, PEM_MAX)?),
        None => None,
    };
    let config = holdfast_admin::tls_server_config(&cert, &key, ca.as_deref())
        .map_err(|e| StartError::Config(vec![format!("{e} (check the PEM files)")]))?;
    Ok(access.with_tls(config))
}

fn read_admin_file(key: &str, file: &std::path::Path, max: u64) -> Result<Vec<u8>, StartError> {
    holdfast_artifact::read_bounded(file, max)
        .map(|r| r.content)
        .map_err(|e| {
            StartError::Config(vec![format!(
                "{key}: {}: {e} (check the path and permissions)",
                file.display()
            )])
        })
}

/// A running edge: data listeners, admin plane and the reload controller.
pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// The DNS server's address (UDP and TCP), when `[dns]` is configured.
    pub dns_addr: Option<SocketAddr>,
    /// The public status page's address, when `[status_page]` is configured.
    pub status_page_addr: Option<SocketAddr>,
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
        let access = match admin_access(&config.admin_auth) {
            Ok(a) => a,
            Err(e) => {
                edge.shutdown();
                edge.join();
                controller.stop_checks();
                return Err(e);
            }
        };
        let admin = match holdfast_admin::start(config.admin.listen, controller.clone(), access) {
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
        if let Some(page) = &config.status_page {
            let backend: Arc<dyn holdfast_admin::Backend> = controller.clone();
            match holdfast_admin::public::start(page, config.edge.state_dir.as_deref(), backend) {
                Ok(h) => *controller.status_page_handle() = Some(h),
                Err(e) => {
                    edge.shutdown();
                    edge.join();
                    admin.shutdown();
                    if let Some(dns) = controller.dns_handle().take() {
                        dns.shutdown();
                    }
                    controller.stop_checks();
                    return Err(StartError::Io(
                        format!("status_page.listen: cannot listen on {}", page.listen),
                        e,
                    ));
                }
            }
        }
        *lock(&controller.listeners) = listeners_json(&edge.plain, &edge.tls, admin.addr);
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
        let status_page_addr = controller.status_page_handle().as_ref().map(|p| p.addr);
        Ok(Running {
            dns_addr,
            status_page_addr,
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

    /// Test hook: order every `[[edge.acme]]` certificate now, whatever its schedule.
    /// `false` if no ACME side runs.
    #[doc(hidden)]
    pub fn acme_renew_now(&self) -> bool {
        holdfast_common::lock(&self.controller.acme)
            .as_ref()
            .map(holdfast_acme::AcmeManager::renew_now)
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
        if let Some(page) = self.controller.status_page_handle().take() {
            page.shutdown();
        }
        if let Some(dns) = self.controller.dns_handle().take() {
            dns.shutdown();
        }
        self.controller.stop_checks();
        self.controller.stop_acme();
        self.controller.access_log.sync();
        tracing::info!("holdfast stopped");
    }
}
