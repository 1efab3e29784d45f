//! The active health checks' thread ("holdfast-health", its own current-thread runtime, never
//! a data-path worker): one task per checked server of the current generation's pools,
//! restarted on every applied reload. It writes each server's `HealthState` and tells the pool
//! of a changed verdict. It knows a generation only as its `CheckTargets` (the pools).

use super::connect::{connect, set_target};
use super::conns::Conn;
use super::health::{CheckResult, Checked};
use super::pool::Pool;
use super::server::Server;
use crate::body::RequestBody;
use holdfast_config::{CheckKind, HealthCheck};
use http::{header, Request};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// What the checker needs of a generation: its pools (those with `[pools.health]` are
/// checked). `State` converts into it (`From<&Arc<State>>`).
pub struct CheckTargets {
    pools: Box<[Arc<Pool>]>,
}

impl CheckTargets {
    pub(crate) fn new(pools: &[Arc<Pool>]) -> Self {
        CheckTargets {
            pools: pools.into(),
        }
    }
}

/// Runs the active checks of the current generation's pools on a thread of its own.
pub struct HealthChecker {
    states: watch::Sender<Option<Arc<CheckTargets>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthChecker {
    /// Start checking the pools of `targets` (a `&Arc<State>`).
    pub fn start(targets: impl Into<CheckTargets>) -> std::io::Result<HealthChecker> {
        let (tx, rx) = watch::channel(Some(Arc::new(targets.into())));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("holdfast-health".into())
            .spawn(move || runtime.block_on(run(rx)))?;
        Ok(HealthChecker {
            states: tx,
            thread: Some(thread),
        })
    }

    /// Check the pools of this generation from now on (every applied reload).
    pub fn follow(&self, targets: impl Into<CheckTargets>) {
        self.states.send_replace(Some(Arc::new(targets.into())));
    }

    /// Stop checking; the thread ends at its next wake-up and is joined on drop.
    pub fn stop(&self) {
        self.states.send_replace(None);
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One task per checked server, all replaced whenever a new generation arrives.
async fn run(mut states: watch::Receiver<Option<Arc<CheckTargets>>>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let targets = states.borrow_and_update().clone();
        tasks.abort_all();
        let Some(targets) = targets else {
            return;
        };
        for pool in targets.pools.iter() {
            let Some(check) = &pool.health else {
                continue;
            };
            for index in 0..pool.servers.len() {
                tasks.spawn(check_loop(Arc::clone(pool), index, check.clone()));
            }
        }
        if states.changed().await.is_err() {
            return;
        }
    }
}

async fn check_loop(pool: Arc<Pool>, index: usize, check: HealthCheck) {
    let Some(server) = pool.servers.get(index).cloned() else {
        return;
    };
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = tokio::time::timeout(check.timeout, probe(&pool, &server, &check)).await;
        let (ok, detail) = match outcome {
            Ok(Ok(detail)) => (true, detail),
            Ok(Err(why)) => (false, why),
            Err(_) => (false, format!("no answer within {:?}", check.timeout)),
        };
        let result = CheckResult {
            at: SystemTime::now(),
            ok,
            detail,
        };
        let detail = result.detail.clone();
        if let Some(verdict) = server.health.record(result, &check) {
            pool.health_changed(&server, verdict);
            match verdict {
                Checked::Down => {
                    tracing::warn!(pool = %pool.name, server = %server.label, result = %detail, "health check: server down");
                }
                _ => {
                    tracing::info!(pool = %pool.name, server = %server.label, result = %detail, "health check: server up");
                }
            }
        }
    }
}

/// One check: `Ok(detail)` passes, `Err(why)` fails.
async fn probe(pool: &Pool, server: &Server, check: &HealthCheck) -> Result<String, String> {
    match &check.kind {
        CheckKind::Tcp => tokio::net::TcpStream::connect(server.addr)
            .await
            .map(|_| "connected".to_string())
            .map_err(|e| format!("connect: {e}")),
        CheckKind::Http { path, expect, host } => {
            let host = host
                .clone()
                .or_else(|| pool.host_header.clone())
                .or_else(|| http::HeaderValue::from_str(&server.label).ok());
            let mut req = Request::get(path.as_str());
            if let Some(host) = host {
                req = req.header(header::HOST, host);
            }
            let mut req = req
                .header(header::USER_AGENT, "holdfast-health-check")
                .body(RequestBody::Empty)
                .map_err(|e| format!("request: {e}"))?;
            let conn = connect(pool, server, check.timeout, false)
                .await
                .map_err(|e| crate::error::with_causes(&e))?;
            set_target(&mut req, &conn, server);
            let status = match conn {
                Conn::H1(mut sender) => {
                    req.headers_mut()
                        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                    sender.send_request(req).await
                }
                Conn::H2(mut sender) => sender.send_request(req).await,
            }
            .map_err(|e| format!("request: {e}"))?
            .status()
            .as_u16();
            // The status either way: `ok` says whether it was in `expect`.
            if (expect.0..=expect.1).contains(&status) {
                Ok(status.to_string())
            } else {
                Err(status.to_string())
            }
        }
    }
}
