//! What the active checks concluded about a server: `HealthState`, carried by each server.
//! Only the checker (`checker.rs`) writes it, on its own thread; the data path reads one
//! atomic per server (is it down?). No I/O here.
//!
//! A server starts `Unknown`, which counts as healthy: no check having run yet never empties
//! a pool. `unhealthy_after` failures in a row turn it `Down`, `healthy_after` passes in a row
//! turn a down server `Up`; alternating results inside the thresholds change nothing.

use holdfast_common::lock;
use holdfast_config::HealthCheck;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

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
    pub(super) fn record(&self, result: CheckResult, check: &HealthCheck) -> Option<Checked> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_config::CheckKind;
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
