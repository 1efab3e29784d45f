//! Wiring: load the configuration, build the first `State`, start the data path and the
//! admin plane, and stop them in order.

use crate::controller::{listeners_json, load_at_start, ConfigSource, Controller};
use crate::upgrade::{Role, Sockets, UpgradeError};
use holdfast_admin::{AdminHandle, ReloadOutcome};
use holdfast_common::lock;
use holdfast_proxy::{BoundListeners, EdgeHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The HTTP/3 (UDP) listeners' addresses.
    pub h3_addrs: Vec<SocketAddr>,
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
    /// The listening sockets in use (duplicates), for a binary upgrade.
    sockets: Sockets,
    /// Set by the first upgrade that starts: one at a time, and none once handed over.
    upgrading: AtomicBool,
}

/// The data path's sockets: every `edge.listen` and `edge.tls_listen` address, inherited or
/// bound (one per worker), and one UDP socket per `edge.h3_listen` address.
fn edge_sockets(
    sockets: &Sockets,
    config: &holdfast_config::Config,
    workers: usize,
) -> Result<BoundListeners, StartError> {
    let group = |addrs: &[SocketAddr], role, key: &str| {
        addrs
            .iter()
            .map(|a| {
                sockets
                    .tcp_group(role, *a, workers)
                    .map_err(|e| StartError::Io(format!("{key}: cannot listen on {a}"), e))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(BoundListeners {
        plain: group(&config.edge.listen, Role::Http, "edge.listen")?,
        tls: group(&config.edge.tls_listen, Role::Https, "edge.tls_listen")?,
        h3: config
            .edge
            .h3_listen
            .iter()
            .map(|a| {
                sockets
                    .udp(Role::H3, *a)
                    .map_err(|e| StartError::Io(format!("edge.h3_listen: cannot listen on {a}"), e))
            })
            .collect::<Result<Vec<_>, _>>()?,
    })
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
        Running::start_full(source, extra_modules, Sockets::none())
    }

    /// `start` on the sockets this process inherited (a binary upgrade, systemd): an address
    /// with an inherited socket uses it, any other is bound.
    pub fn start_inherited(source: ConfigSource, sockets: Sockets) -> Result<Running, StartError> {
        Running::start_full(source, Vec::new(), sockets)
    }

    fn start_full(
        source: ConfigSource,
        extra_modules: Vec<Arc<dyn holdfast_proxy::RequestModule>>,
        sockets: Sockets,
    ) -> Result<Running, StartError> {
        // A fleet member starts on its last fleet version (or a 503-only configuration).
        let (source, fleet_plan) = crate::fleet::prepare(source)?;
        let loaded = load_at_start(&source).map_err(StartError::Config)?;
        let config = Arc::clone(&loaded.config);
        let workers = config.edge.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let controller = Arc::new(Controller::new(source, loaded, workers, extra_modules)?);
        let bound = edge_sockets(&sockets, &config, workers)?;
        let edge = holdfast_proxy::start_bound(bound, workers, Arc::clone(&controller.states))
            .map_err(|e| StartError::Io("edge.listen: cannot start the workers".into(), e))?;
        let access = match admin_access(&config.admin_auth) {
            Ok(a) => a,
            Err(e) => {
                edge.shutdown();
                edge.join();
                controller.stop_checks();
                return Err(e);
            }
        };
        let admin_socket = sockets.tcp(Role::Admin, config.admin.listen);
        let admin = match admin_socket
            .and_then(|l| holdfast_admin::start_on(l, controller.clone(), access))
        {
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
        if let Err(e) = controller.start_dns(&sockets) {
            edge.shutdown();
            edge.join();
            admin.shutdown();
            controller.stop_checks();
            return Err(e);
        }
        if let Some(page) = &config.status_page {
            let backend: Arc<dyn holdfast_admin::Backend> = controller.clone();
            let started = sockets.tcp(Role::StatusPage, page.listen).and_then(|l| {
                holdfast_admin::public::start_on(page, l, config.edge.state_dir.as_deref(), backend)
            });
            match started {
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
        crate::controller::add_h3_listeners(&mut lock(&controller.listeners), &edge.h3);
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
        sockets.close_unclaimed();
        tracing::info!(http = ?edge.plain, https = ?edge.tls, h3 = ?edge.h3, admin = %admin.addr, workers, pid = std::process::id(), "holdfast is serving");
        let dns_addr = controller.dns_handle().as_ref().map(|d| d.addr);
        let status_page_addr = controller.status_page_handle().as_ref().map(|p| p.addr);
        Ok(Running {
            dns_addr,
            status_page_addr,
            http_addrs: edge.plain.clone(),
            https_addrs: edge.tls.clone(),
            h3_addrs: edge.h3.clone(),
            admin_addr: admin.addr,
            controller,
            edge,
            admin,
            fleet,
            sockets,
            upgrading: AtomicBool::new(false),
        })
    }

    /// Start `binary` (default: the path this process was started from) with this process's
    /// arguments, hand it every listening socket, and wait until it is ready (then call
    /// `drain_after_upgrade`) or has failed (this process keeps serving; call again to retry).
    pub fn upgrade(&self, binary: Option<PathBuf>) -> Result<u32, UpgradeError> {
        if self.upgrading.swap(true, Ordering::SeqCst) {
            return Err(UpgradeError::Busy);
        }
        let result = self.try_upgrade(binary);
        if result.is_err() {
            self.upgrading.store(false, Ordering::SeqCst);
        }
        result
    }

    fn try_upgrade(&self, binary: Option<PathBuf>) -> Result<u32, UpgradeError> {
        let binary = match binary {
            Some(b) => b,
            None => crate::upgrade::own_binary()?,
        };
        crate::upgrade::check_binary(&binary)?;
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let sockets = self
            .sockets
            .for_handover()
            .map_err(|e| UpgradeError::Io("duplicating the listening sockets", e))?;
        let successor =
            crate::upgrade::hand_over(&binary, &args, sockets, crate::upgrade::READY_TIMEOUT)?;
        crate::upgrade::notify_main_pid(successor.pid);
        let pid = successor.pid;
        // Reaped at exit; kept so it is not a zombie should it exit while this one drains.
        std::mem::forget(successor);
        Ok(pid)
    }

    /// The `POST /upgrade` requests, for the loop that owns this `Running` (which then calls
    /// `upgrade` and `drain_after_upgrade`). Without a taker, `POST /upgrade` answers 404.
    pub fn upgrade_requests(
        &self,
    ) -> tokio::sync::mpsc::UnboundedReceiver<crate::upgrade::UpgradeJob> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.controller.upgrades) = Some(crate::upgrade::UpgradeRequests(tx));
        rx
    }

    /// After a successful `upgrade`: stop accepting everywhere (the new process accepts on
    /// the same sockets), let open connections finish within `edge.drain_timeout`, stop.
    pub fn drain_after_upgrade(self) {
        let drain = self.controller.states.load().config.edge.drain_timeout;
        tracing::info!(?drain, "upgrade: the new process serves; draining this one");
        self.stop(Some(drain));
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

    /// Give the admin plane the demo's controls (`holdfast demo` only): `/status` gains
    /// `demo`, the operator page its buttons, and `POST /demo/…` answers.
    pub(crate) fn set_demo(&self, tour: Arc<crate::demo::Tour>) {
        *lock(&self.controller.demo) = Some(tour);
    }

    /// Re-read the configuration now (what `SIGHUP` and `POST /reload` do).
    pub fn reload(&self) -> ReloadOutcome {
        self.controller.do_reload()
    }

    /// Stop accepting, let open requests finish within `edge.shutdown_grace`, then stop the
    /// admin plane and flush the access log.
    pub fn shutdown(self) {
        self.stop(None);
    }

    /// Stop: within `drain` (an upgrade's) or `edge.shutdown_grace`.
    fn stop(mut self, drain: Option<std::time::Duration>) {
        // Leave the fleet first: the lease is revoked, the controller's election passes on.
        if let Some(agent) = self.fleet.take() {
            agent.stop();
        }
        self.controller.set_serving(false);
        // The duplicates go first, so the listening sockets close with their listeners (after
        // an upgrade the new process holds them open).
        self.sockets.release();
        let Running {
            controller,
            edge,
            admin,
            ..
        } = self;
        let side_planes = move || {
            admin.shutdown();
            if let Some(page) = controller.status_page_handle().take() {
                page.shutdown();
            }
            if let Some(dns) = controller.dns_handle().take() {
                dns.shutdown();
            }
            controller
        };
        let controller = match drain {
            // After an upgrade every listener stops accepting at once: new connections,
            // admin and DNS included, go to the new process; open ones finish here.
            Some(grace) => {
                edge.drain(grace);
                let controller = side_planes();
                edge.join();
                controller
            }
            // A stop keeps the admin plane answering while the data path drains.
            None => {
                edge.shutdown();
                edge.join();
                side_planes()
            }
        };
        controller.stop_checks();
        controller.stop_acme();
        controller.access_log.sync();
        tracing::info!("holdfast stopped");
    }
}
