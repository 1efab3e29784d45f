//! Active health checks. Each server carries a `HealthState`; only the checker writes it,
//! on its own thread and runtime ("holdfast-health"), never on a data-path worker. The
//! data path reads one atomic per server (is it down?) and the pool's count of down servers.
//!
//! A server starts `Unknown`, which counts as healthy: no check having run yet never empties
//! a pool. `unhealthy_after` failures in a row turn it `Down`, `healthy_after` passes in a row
//! turn a down server `Up`; alternating results inside the thresholds change nothing.

use super::connect::{connect, set_target};
use super::pool::lock;
use super::pool::{Conn, Pool, Server};
use crate::body::RequestBody;
use crate::state::State;
use holdfast_config::{CheckKind, HealthCheck};
use http::{header, Request};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

/// What the active checks say about a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// No verdict yet (no checks configured, or not enough results): treated as healthy.
    Unknown,
    Up,
    Down,
}

impl Checked {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Checked::Up,
            2 => Checked::Down,
            _ => Checked::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Checked::Unknown => "unknown",
            Checked::Up => "up",
            Checked::Down => "down",
        }
    }
}

/// The latest check of a server.
#[derive(Debug, Clone)]
pub(crate) struct CheckResult {
    pub at: SystemTime,
    pub ok: bool,
    /// The status code, or why the check failed.
    pub detail: String,
}

#[derive(Debug)]
struct Streaks {
    passes: u32,
    failures: u32,
    /// When the current verdict began (or the server was created).
    since: SystemTime,
    last: Option<CheckResult>,
}

/// A server's active-check state.
#[derive(Debug)]
pub(crate) struct HealthState {
    verdict: AtomicU8,
    streaks: Mutex<Streaks>,
}

impl HealthState {
    pub fn new() -> Self {
        HealthState {
            verdict: AtomicU8::new(0),
            streaks: Mutex::new(Streaks {
                passes: 0,
                failures: 0,
                since: SystemTime::now(),
                last: None,
            }),
        }
    }

    pub fn verdict(&self) -> Checked {
        Checked::from_u8(self.verdict.load(Ordering::Relaxed))
    }

    pub fn is_down(&self) -> bool {
        self.verdict.load(Ordering::Relaxed) == 2
    }

    pub fn since(&self) -> SystemTime {
        lock(&self.streaks).since
    }

    pub fn last_check(&self) -> Option<CheckResult> {
        lock(&self.streaks).last.clone()
    }

    /// Count one check; returns the new verdict if it changed.
    fn record(&self, result: CheckResult, check: &HealthCheck) -> Option<Checked> {
        let mut s = lock(&self.streaks);
        if result.ok {
            s.passes = s.passes.saturating_add(1);
            s.failures = 0;
        } else {
            s.failures = s.failures.saturating_add(1);
            s.passes = 0;
        }
        let now = result.at;
        s.last = Some(result);
        let current = self.verdict();
        let next = match current {
            // Unknown already counts as healthy: one pass confirms it.
            Checked::Unknown if s.passes >= 1 => Checked::Up,
            Checked::Unknown | Checked::Up if s.failures >= check.unhealthy_after => Checked::Down,
            Checked::Down if s.passes >= check.healthy_after => Checked::Up,
            other => other,
        };
        if next == current {
            return None;
        }
        s.since = now;
        self.verdict.store(
            match next {
                Checked::Unknown => 0,
                Checked::Up => 1,
                Checked::Down => 2,
            },
            Ordering::Relaxed,
        );
        Some(next)
    }
}

/// Runs the active checks of the current `State`'s pools on a thread of its own.
pub struct HealthChecker {
    states: watch::Sender<Option<Arc<State>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthChecker {
    /// Start checking the pools of `state`.
    pub fn start(state: &Arc<State>) -> std::io::Result<HealthChecker> {
        let (tx, rx) = watch::channel(Some(Arc::clone(state)));
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

    /// Check the pools of this state from now on (every applied reload).
    pub fn follow(&self, state: &Arc<State>) {
        self.states.send_replace(Some(Arc::clone(state)));
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

/// One task per checked server, all replaced whenever a new state arrives.
async fn run(mut states: watch::Receiver<Option<Arc<State>>>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let state = states.borrow_and_update().clone();
        tasks.abort_all();
        let Some(state) = state else {
            return;
        };
        for pool in state.pools.iter() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(healthy_after: u32, unhealthy_after: u32) -> HealthCheck {
        HealthCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_after,
            unhealthy_after,
        }
    }

    fn result(ok: bool) -> CheckResult {
        CheckResult {
            at: SystemTime::now(),
            ok,
            detail: String::new(),
        }
    }

    /// Feed results, return the verdict after each.
    fn run(state: &HealthState, check: &HealthCheck, results: &[bool]) -> Vec<Checked> {
        results
            .iter()
            .map(|ok| {
                state.record(result(*ok), check);
                state.verdict()
            })
            .collect()
    }

    #[test]
    fn unknown_until_a_verdict_and_one_pass_confirms() {
        let s = HealthState::new();
        assert_eq!(s.verdict(), Checked::Unknown);
        assert!(!s.is_down());
        assert_eq!(run(&s, &check(2, 3), &[true]), [Checked::Up]);
    }

    #[test]
    fn failing_from_the_start_is_down_only_after_unhealthy_after() {
        let s = HealthState::new();
        let got = run(&s, &check(2, 3), &[false, false, false]);
        assert_eq!(got, [Checked::Unknown, Checked::Unknown, Checked::Down]);
        assert!(s.is_down());
    }

    #[test]
    fn down_needs_healthy_after_passes_in_a_row() {
        let s = HealthState::new();
        run(&s, &check(2, 1), &[false]);
        let got = run(&s, &check(2, 1), &[true, false, true, true]);
        assert_eq!(
            got,
            [Checked::Down, Checked::Down, Checked::Down, Checked::Up]
        );
    }

    #[test]
    fn alternating_results_inside_the_thresholds_change_nothing() {
        let s = HealthState::new();
        run(&s, &check(2, 2), &[true]);
        let got = run(&s, &check(2, 2), &[false, true, false, true, false, true]);
        assert!(got.iter().all(|v| *v == Checked::Up), "{got:?}");
        let d = HealthState::new();
        run(&d, &check(2, 1), &[false]);
        let got = run(&d, &check(2, 1), &[true, false, true, false]);
        assert!(got.iter().all(|v| *v == Checked::Down), "{got:?}");
    }

    #[test]
    fn the_last_result_and_since_are_kept() {
        let s = HealthState::new();
        let before = s.since();
        s.record(
            CheckResult {
                at: before + Duration::from_secs(5),
                ok: false,
                detail: "status 500".into(),
            },
            &check(1, 1),
        );
        assert_eq!(s.since(), before + Duration::from_secs(5));
        let last = s.last_check().unwrap();
        assert!(!last.ok);
        assert_eq!(last.detail, "status 500");
    }
}
