//! The circuit breaker: a module whose failures pass a share of its calls is not called for a
//! cool-down; its fail policy answers instead. Then one request (half-open probe) is let
//! through: success closes the breaker, failure trips it again for a longer cool-down.
//!
//! Lock-free: the hot path (closed breaker) is one atomic load in `admit` and two or three
//! relaxed read-modify-writes in `record`. The whole state is one `AtomicU64`: `CLOSED` (0),
//! `PROBING` (`u64::MAX`: the single probe is in flight) or the end of the cool-down. Time is
//! nanoseconds on the owning slot's time line, passed in (`now`) so tests inject it.
//!
//! Counting is per window: the first call after the window has run out starts a new one and
//! resets the counts. Calls that race with that reset may be lost from the count; the breaker
//! is a rate estimate, not a ledger.
//!
//! Cool-down after a failed probe: `cooldown × min(2^n, MAX_COOLDOWN_FACTOR)` for the n-th
//! failed probe in a row (5 s, 10 s, 20 s, 40 s, then 50 s with the defaults). A successful
//! probe resets it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::nanos;
use crate::BreakerSettings;

const CLOSED: u64 = 0;
const PROBING: u64 = u64::MAX;

/// The cool-down grows up to this many times `BreakerSettings::cooldown`.
pub const MAX_COOLDOWN_FACTOR: u32 = 10;

/// Whether a request may call the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: call, then `record`.
    Call,
    /// The one half-open probe: call, then `record` (it decides the breaker's state).
    Probe,
    /// Open (or a probe is in flight): apply the policy, do not call, do not `record`.
    Reject,
}

/// What a `record` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// The breaker opened; only the caller that opened it sees this.
    Tripped {
        cooldown: Duration,
        calls: u32,
        failures: u32,
        /// A failed half-open probe, not the threshold.
        reprobe: bool,
    },
    /// A probe succeeded.
    Closed,
}

#[derive(Debug, Default)]
pub(crate) struct Breaker {
    state: AtomicU64,
    window_start: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    /// Failed probes in a row.
    reprobes: AtomicU32,
    /// End of the latest cool-down, for `/status`.
    tripped_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn admit(&self, now: u64) -> Admit {
        let s = self.state.load(Ordering::Acquire);
        if s == CLOSED {
            return Admit::Call;
        }
        if s == PROBING || now < s {
            return Admit::Reject;
        }
        match self
            .state
            .compare_exchange(s, PROBING, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Admit::Probe,
            Err(_) => Admit::Reject,
        }
    }

    /// Records the outcome of an admitted call (`Admit::Call` or `Admit::Probe`).
    pub(crate) fn record(
        &self,
        now: u64,
        admit: Admit,
        ok: bool,
        settings: &BreakerSettings,
    ) -> Transition {
        match admit {
            Admit::Reject => Transition::None,
            Admit::Probe if ok => {
                self.calls.store(0, Ordering::Relaxed);
                self.failures.store(0, Ordering::Relaxed);
                self.window_start.store(now, Ordering::Relaxed);
                self.reprobes.store(0, Ordering::Relaxed);
                self.state.store(CLOSED, Ordering::Release);
                Transition::Closed
            }
            Admit::Probe => {
                let n = self
                    .reprobes
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let cooldown = cooldown_after(settings.cooldown, n);
                let until = until(now, cooldown);
                self.tripped_until.store(until, Ordering::Relaxed);
                self.state.store(until, Ordering::Release);
                Transition::Tripped {
                    cooldown,
                    calls: 1,
                    failures: 1,
                    reprobe: true,
                }
            }
            Admit::Call => self.count(now, ok, settings),
        }
    }

    fn count(&self, now: u64, ok: bool, settings: &BreakerSettings) -> Transition {
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) >= nanos(settings.window)
            && self
                .window_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.calls.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
        let calls = self.calls.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if ok {
            return Transition::None;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let percent = u64::from(settings.error_percent.clamp(1, 100));
        if calls < settings.min_requests.max(1)
            || u64::from(failures) * 100 < percent * u64::from(calls)
        {
            return Transition::None;
        }
        // A call admitted before the breaker opened and ending after it does not trip it
        // again: its end would replace the real one on `/status` (found by `breaker_sim`).
        if self.state.load(Ordering::Acquire) != CLOSED {
            return Transition::None;
        }
        let until = until(now, settings.cooldown);
        // Store the end first so that no one reads it before it is set; a racing trip would
        // write nearly the same value.
        self.tripped_until.store(until, Ordering::Relaxed);
        match self
            .state
            .compare_exchange(CLOSED, until, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => {
                self.reprobes.store(0, Ordering::Relaxed);
                Transition::Tripped {
                    cooldown: settings.cooldown,
                    calls,
                    failures,
                    reprobe: false,
                }
            }
            Err(_) => Transition::None,
        }
    }

    /// Open or probing (the probe has not yet succeeded).
    pub(crate) fn is_tripped(&self) -> bool {
        self.state.load(Ordering::Acquire) != CLOSED
    }

    /// The end of the current (or, while probing, the latest) cool-down.
    pub(crate) fn tripped_until(&self) -> Option<u64> {
        self.is_tripped()
            .then(|| self.tripped_until.load(Ordering::Relaxed))
    }
}

fn cooldown_after(base: Duration, failed_probes: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failed_probes)
        .unwrap_or(MAX_COOLDOWN_FACTOR)
        .min(MAX_COOLDOWN_FACTOR);
    base.saturating_mul(factor)
}

fn until(now: u64, cooldown: Duration) -> u64 {
    now.saturating_add(nanos(cooldown)).clamp(1, PROBING - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;

    fn settings() -> BreakerSettings {
        BreakerSettings::default()
    }

    fn fail(b: &Breaker, now: u64) -> Transition {
        let a = b.admit(now);
        assert_eq!(a, Admit::Call);
        b.record(now, a, false, &settings())
    }

    fn succeed(b: &Breaker, now: u64) -> Transition {
        let a = b.admit(now);
        assert_eq!(a, Admit::Call);
        b.record(now, a, true, &settings())
    }

    #[test]
    fn a_call_ending_after_the_trip_keeps_the_cool_down_end() {
        let b = Breaker::new();
        let late = b.admit(1);
        assert_eq!(late, Admit::Call);
        for _ in 0..20 {
            fail(&b, 1);
        }
        assert_eq!(b.tripped_until(), Some(1 + 5 * S));
        // Admitted while closed, failing 3 s into the cool-down.
        assert_eq!(b.record(3 * S, late, false, &settings()), Transition::None);
        assert_eq!(
            b.tripped_until(),
            Some(1 + 5 * S),
            "the real end, not 3 s + 5 s"
        );
        assert_eq!(b.admit(1 + 5 * S), Admit::Probe);
    }

    #[test]
    fn trips_at_threshold_and_min_requests() {
        let b = Breaker::new();
        for _ in 0..19 {
            assert_eq!(fail(&b, 1), Transition::None);
        }
        assert!(!b.is_tripped());
        let t = fail(&b, 1);
        assert_eq!(
            t,
            Transition::Tripped {
                cooldown: Duration::from_secs(5),
                calls: 20,
                failures: 20,
                reprobe: false
            }
        );
        assert!(b.is_tripped());
        assert_eq!(b.tripped_until(), Some(1 + 5 * S));
        assert_eq!(b.admit(2), Admit::Reject);
        assert_eq!(b.admit(5 * S), Admit::Reject);
    }

    #[test]
    fn half_the_calls_failing_trips_less_does_not() {
        let b = Breaker::new();
        for _ in 0..10 {
            succeed(&b, 0);
        }
        for _ in 0..9 {
            assert_eq!(fail(&b, 0), Transition::None);
        }
        // 9 of 19: under min_requests and under 50 %.
        assert_eq!(succeed(&b, 0), Transition::None);
        // 9 of 20, then 10 of 21: still under 50 %.
        assert_eq!(fail(&b, 0), Transition::None);
        // 11 of 22: exactly 50 %.
        assert!(matches!(fail(&b, 0), Transition::Tripped { .. }));
    }

    #[test]
    fn counts_start_again_each_window() {
        let b = Breaker::new();
        for i in 0..100 {
            // 19 failures per 10 s window: never min_requests in one window.
            let now = (i / 19) * 10 * S;
            assert_eq!(fail(&b, now), Transition::None);
        }
        assert!(!b.is_tripped());
    }

    #[test]
    fn one_probe_after_cooldown_success_closes() {
        let b = Breaker::new();
        for _ in 0..20 {
            fail(&b, 0);
        }
        assert_eq!(b.admit(5 * S - 1), Admit::Reject);
        assert_eq!(b.admit(5 * S), Admit::Probe);
        // Exactly one probe.
        assert_eq!(b.admit(5 * S), Admit::Reject);
        assert_eq!(b.admit(100 * S), Admit::Reject);
        assert!(b.is_tripped());
        assert_eq!(
            b.record(5 * S, Admit::Probe, true, &settings()),
            Transition::Closed
        );
        assert!(!b.is_tripped());
        assert_eq!(b.tripped_until(), None);
        // Counts were reset: 19 new failures do not trip.
        for _ in 0..19 {
            assert_eq!(fail(&b, 6 * S), Transition::None);
        }
    }

    #[test]
    fn failed_probes_double_the_cooldown_up_to_ten_times() {
        let b = Breaker::new();
        for _ in 0..20 {
            fail(&b, 0);
        }
        let mut now = 5 * S;
        let mut seen = Vec::new();
        for _ in 0..6 {
            assert_eq!(b.admit(now), Admit::Probe);
            match b.record(now, Admit::Probe, false, &settings()) {
                Transition::Tripped {
                    cooldown, reprobe, ..
                } => {
                    assert!(reprobe);
                    seen.push(cooldown.as_secs());
                    assert_eq!(b.admit(now + cooldown.as_secs() * S - 1), Admit::Reject);
                    now += cooldown.as_secs() * S;
                }
                t => panic!("{t:?}"),
            }
        }
        assert_eq!(seen, [10, 20, 40, 50, 50, 50]);
        // A success resets the factor.
        assert_eq!(b.admit(now), Admit::Probe);
        b.record(now, Admit::Probe, true, &settings());
        for _ in 0..20 {
            fail(&b, now);
        }
        assert_eq!(b.tripped_until(), Some(now + 5 * S));
    }

    #[test]
    fn concurrent_failures_trip_once_and_probe_once() {
        let b = Arc::new(Breaker::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut trips = 0;
                    for _ in 0..1000 {
                        let a = b.admit(0);
                        if a == Admit::Call {
                            if let Transition::Tripped { .. } = b.record(0, a, false, &settings()) {
                                trips += 1;
                            }
                        }
                    }
                    trips
                })
            })
            .collect();
        let trips: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(trips, 1);
        let probes: Vec<_> = (0..8)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    (0..100).filter(|_| b.admit(6 * S) == Admit::Probe).count()
                })
            })
            .collect();
        let probes: usize = probes.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(probes, 1);
    }

    #[test]
    fn odd_settings_are_clamped() {
        let s = BreakerSettings {
            error_percent: 0,
            min_requests: 0,
            window: Duration::ZERO,
            cooldown: Duration::ZERO,
        };
        let b = Breaker::new();
        // A success never trips, even at 0 % (clamped to 1 %).
        assert_eq!(b.record(0, Admit::Call, true, &s), Transition::None);
        assert!(matches!(
            b.record(0, Admit::Call, false, &s),
            Transition::Tripped { .. }
        ));
        // A zero cool-down: the probe comes with the next request.
        assert_eq!(b.admit(1), Admit::Probe);
    }
}
