//! Outlier detection (passive health, Envoy's model). The data path counts each attempt's
//! outcome per server in its `Passive` record: `consecutive_failures` in a row trip the
//! server (it counts as failing for the pool's failover chain) and eject it from the
//! rotation for `base_ejection × times ejected` (at most `max_ejection`), unless
//! `max_ejection_percent` of the pool is ejected already. `Outliers` is the pool's side: which
//! servers a pick leaves out (ejected, or held down by the active checks, unless fewer than
//! `panic_threshold` percent would be left: panic mode) and whether the whole pool is down.
//! Only the data path writes `Passive`, except that a server passing its active checks again
//! ends its ejection. No I/O, no metrics, no logging here: the pool reports what happened.

use super::health::Checked;
use holdfast_config::Outlier;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nanoseconds since the first call in this process: a monotonic clock that fits an atomic.
/// In tests, a simulation may set a virtual time for its own thread (`sim_clock`).
pub(crate) fn now_nanos() -> u64 {
    #[cfg(test)]
    if let Some(now) = sim_clock::now() {
        return now;
    }
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The seam for seeded simulations (tests only, so the production clock read is unchanged):
/// while a thread has set a virtual time, `now_nanos` on that thread returns it.
#[cfg(test)]
pub(crate) mod sim_clock {
    use std::cell::Cell;

    thread_local! {
        static NOW: Cell<Option<u64>> = const { Cell::new(None) };
    }

    pub(crate) fn now() -> Option<u64> {
        NOW.with(Cell::get)
    }

    /// Set (or with `None` clear) this thread's virtual time.
    pub(crate) fn set(now: Option<u64>) {
        NOW.with(|n| n.set(now));
    }
}

/// A server's passive-health record (times on the `now_nanos` scale; 0 is never).
#[derive(Default)]
pub(crate) struct Passive {
    consecutive_failures: AtomicU32,
    /// End of the current ejection.
    ejected_until: AtomicU64,
    /// Start of the latest ejection.
    ejected_from: AtomicU64,
    /// End of the latest trip (failures reached the threshold, ejected or not): until then
    /// the server counts as failing for the pool's failover chain; a success clears it.
    tripped_until: AtomicU64,
    ejections: AtomicU32,
}

impl Passive {
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    pub fn is_tripped(&self, now: u64) -> bool {
        self.tripped_until.load(Ordering::Relaxed) > now
    }

    /// How many times the server was ejected.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// End of the latest ejection (0: never ejected).
    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Start of the latest ejection.
    pub fn ejected_from(&self) -> u64 {
        self.ejected_from.load(Ordering::Relaxed)
    }

    /// The server passed its active checks again: it comes back with a clean count.
    fn clear(&self) {
        self.ejected_until.store(0, Ordering::Relaxed);
        self.tripped_until.store(0, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

/// A pool's server as outlier detection sees it.
pub(crate) trait Member {
    fn passive(&self) -> &Passive;
    /// Whether the active checks hold the server down.
    fn held_down(&self) -> bool;
}

impl<M: Member + ?Sized> Member for Arc<M> {
    fn passive(&self) -> &Passive {
        (**self).passive()
    }
    fn held_down(&self) -> bool {
        (**self).held_down()
    }
}

/// May be picked outside panic mode: not held down by checks, not ejected.
pub(crate) fn usable(m: &impl Member, now: u64) -> bool {
    !m.held_down() && !m.passive().is_ejected(now)
}

/// What a counted failure did to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// Ejected for this long.
    Ejected(Duration),
    /// Failing for the chain, but kept in rotation: `max_ejection_percent` reached.
    AtCap,
}

/// A pool's outlier detection.
pub(crate) struct Outliers {
    config: Outlier,
    panic_threshold: u32,
    /// The latest end of any server's ejection or trip (`now_nanos` scale): while it is in
    /// the past, picking needs no look at ejections at all.
    ejections_end: AtomicU64,
    /// Servers the active checks hold down, recounted by the checker on every change.
    down_servers: AtomicUsize,
}

impl Outliers {
    pub fn new(config: Outlier, panic_threshold: u32, servers: &[impl Member]) -> Self {
        // Servers carried over a reload may still be ejected.
        let ejections_end = servers
            .iter()
            .map(|s| s.passive().tripped_until.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let outliers = Outliers {
            config,
            panic_threshold,
            ejections_end: AtomicU64::new(ejections_end),
            down_servers: AtomicUsize::new(0),
        };
        outliers.recount_down(servers);
        outliers
    }

    /// Whether nothing is ejected, tripped or down now; the usual case costs two atomic
    /// loads and, with no ejection ever, no clock read.
    fn all_clear(&self) -> Option<u64> {
        let end = self.ejections_end.load(Ordering::Relaxed);
        let down = self.down_servers.load(Ordering::Relaxed);
        if end == 0 && down == 0 {
            return None;
        }
        let now = now_nanos();
        (end > now || down != 0).then_some(now)
    }

    /// Which servers to leave out of a pick: those already `tried` for the request, and
    /// those ejected or down while enough others remain. When fewer than `panic_threshold`
    /// percent of the servers are healthy, only `tried` (panic mode: balance over all rather
    /// than overload the few).
    pub fn excluded<'t>(&self, servers: &[impl Member], tried: &'t [usize]) -> Cow<'t, [usize]> {
        let Some(now) = self.all_clear() else {
            return Cow::Borrowed(tried);
        };
        let unusable: Vec<usize> = (0..servers.len())
            .filter(|i| servers.get(*i).is_some_and(|s| !usable(s, now)))
            .collect();
        let n = servers.len();
        let healthy = n - unusable.len();
        if healthy == 0 || healthy * 100 < self.panic_threshold as usize * n {
            return Cow::Borrowed(tried);
        }
        let mut excluded = tried.to_vec();
        excluded.extend(unusable.into_iter().filter(|i| !tried.contains(i)));
        if excluded.len() >= n {
            // Every healthy server was tried: the rest may still answer.
            return Cow::Borrowed(tried);
        }
        Cow::Owned(excluded)
    }

    /// Whether an untried server that is healthy remains (a retry may stay in this pool).
    pub fn has_untried_usable(&self, servers: &[impl Member], tried: &[usize]) -> bool {
        let now = now_nanos();
        servers
            .iter()
            .enumerate()
            .any(|(i, s)| !tried.contains(&i) && usable(s, now))
    }

    /// Whether the whole pool is down for a failover chain: every server held down by its
    /// active checks or failing passively (ejected, or tripped past the ejection cap).
    pub fn is_down(&self, servers: &[impl Member]) -> bool {
        let Some(now) = self.all_clear() else {
            return false;
        };
        servers
            .iter()
            .all(|s| s.held_down() || s.passive().is_tripped(now))
    }

    /// The checker changed a server's verdict: recount, and end a passive ejection when the
    /// server passes its checks again (Envoy's default).
    pub fn health_changed(&self, servers: &[impl Member], server: &impl Member, verdict: Checked) {
        if verdict == Checked::Up {
            server.passive().clear();
        }
        self.recount_down(servers);
    }

    fn recount_down(&self, servers: &[impl Member]) {
        let down = servers.iter().filter(|s| s.held_down()).count();
        self.down_servers.store(down, Ordering::Relaxed);
    }

    /// Count an attempt's outcome on `server`; a failure may trip or eject it.
    pub fn record(
        &self,
        servers: &[impl Member],
        server: &impl Member,
        failed: bool,
    ) -> Option<Tripped> {
        let p = server.passive();
        if !failed {
            if p.consecutive_failures.load(Ordering::Relaxed) != 0 {
                p.consecutive_failures.store(0, Ordering::Relaxed);
            }
            if p.tripped_until.load(Ordering::Relaxed) != 0 && !p.is_ejected(now_nanos()) {
                p.tripped_until.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let now = now_nanos();
        if p.is_ejected(now) {
            // Answers while ejected (panic mode) do not count: the server comes back with a
            // clean count when its ejection ends.
            return None;
        }
        let threshold = self.config.consecutive_failures;
        let count = p.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold == 0 || count < threshold {
            return None;
        }
        p.consecutive_failures.store(0, Ordering::Relaxed);
        let times = p.ejections.load(Ordering::Relaxed).saturating_add(1);
        let length = self
            .config
            .base_ejection
            .saturating_mul(times)
            .min(self.config.max_ejection);
        let until = now.saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX));
        // Tripped: the pool counts it as failing for its failover chain, even where the
        // ejection cap keeps it in the pool's rotation.
        p.tripped_until.store(until, Ordering::Relaxed);
        self.ejections_end.fetch_max(until, Ordering::Relaxed);
        let cap = servers.len() * self.config.max_ejection_percent as usize / 100;
        let ejected = servers
            .iter()
            .filter(|s| s.passive().is_ejected(now))
            .count();
        if ejected >= cap {
            return Some(Tripped::AtCap);
        }
        p.ejections.fetch_add(1, Ordering::Relaxed);
        p.ejected_from.store(now, Ordering::Relaxed);
        p.ejected_until.store(until, Ordering::Relaxed);
        Some(Tripped::Ejected(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct Fake {
        passive: Passive,
        down: AtomicBool,
    }

    impl Member for Fake {
        fn passive(&self) -> &Passive {
            &self.passive
        }
        fn held_down(&self) -> bool {
            self.down.load(Ordering::Relaxed)
        }
    }

    fn servers(n: usize) -> Vec<Fake> {
        (0..n).map(|_| Fake::default()).collect()
    }

    fn outliers(failures: u32, max_percent: u32, panic_threshold: u32, s: &[Fake]) -> Outliers {
        let config = Outlier {
            consecutive_failures: failures,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: max_percent,
        };
        Outliers::new(config, panic_threshold, s)
    }

    /// Count `n` failures on server `i`; the last outcome.
    fn fail(o: &Outliers, s: &[Fake], i: usize, n: u32) -> Option<Tripped> {
        (0..n).map(|_| o.record(s, &s[i], true)).last().flatten()
    }

    #[test]
    fn ejected_after_consecutive_failures_and_left_out_of_picks() {
        let s = servers(4);
        let o = outliers(3, 50, 0, &s);
        assert_eq!(fail(&o, &s, 1, 2), None, "below the threshold");
        assert_eq!(&*o.excluded(&s, &[]), &[] as &[usize]);
        assert_eq!(
            fail(&o, &s, 1, 1),
            Some(Tripped::Ejected(Duration::from_secs(30)))
        );
        assert_eq!(&*o.excluded(&s, &[]), &[1]);
        assert_eq!(&*o.excluded(&s, &[0]), &[0, 1]);
        assert!(!o.has_untried_usable(&s, &[0, 2, 3]));
        assert_eq!(s[1].passive.ejections(), 1);
        assert!(!o.is_down(&s));
    }

    #[test]
    fn a_success_resets_the_count() {
        let s = servers(2);
        let o = outliers(3, 50, 0, &s);
        fail(&o, &s, 0, 2);
        assert_eq!(o.record(&s, &s[0], false), None);
        assert_eq!(fail(&o, &s, 0, 2), None, "the count started again");
        assert_eq!(&*o.excluded(&s, &[]), &[] as &[usize]);
    }

    #[test]
    fn the_ejection_cap_keeps_servers_in_rotation_but_they_count_as_failing() {
        let s = servers(2);
        let o = outliers(1, 50, 0, &s);
        assert!(matches!(fail(&o, &s, 0, 1), Some(Tripped::Ejected(_))));
        assert_eq!(fail(&o, &s, 1, 1), Some(Tripped::AtCap));
        assert!(!s[1].passive.is_ejected(now_nanos()));
        // Server 0 ejected, server 1 tripped: the pool is down for its chain.
        assert!(o.is_down(&s));
        // A success clears the trip of a server that is not ejected.
        o.record(&s, &s[1], false);
        assert!(!o.is_down(&s));
    }

    #[test]
    fn panic_mode_balances_over_all_when_too_few_are_healthy() {
        let s = servers(4);
        let o = outliers(1, 100, 50, &s);
        fail(&o, &s, 0, 1);
        assert_eq!(&*o.excluded(&s, &[]), &[0], "3 of 4 healthy: above 50%");
        fail(&o, &s, 1, 1);
        assert_eq!(&*o.excluded(&s, &[]), &[0, 1], "2 of 4: exactly 50%");
        fail(&o, &s, 2, 1);
        assert_eq!(&*o.excluded(&s, &[]), &[] as &[usize], "1 of 4: panic mode");
    }

    #[test]
    fn servers_held_down_by_checks_are_left_out_and_passing_ends_an_ejection() {
        let s = servers(3);
        let o = outliers(1, 100, 0, &s);
        s[2].down.store(true, Ordering::Relaxed);
        o.health_changed(&s, &s[2], Checked::Down);
        assert_eq!(&*o.excluded(&s, &[]), &[2]);
        fail(&o, &s, 0, 1);
        assert_eq!(&*o.excluded(&s, &[]), &[0, 2]);
        o.health_changed(&s, &s[0], Checked::Up);
        assert_eq!(
            &*o.excluded(&s, &[]),
            &[2],
            "checks passed: back in rotation"
        );
        s[1].down.store(true, Ordering::Relaxed);
        s[0].down.store(true, Ordering::Relaxed);
        o.health_changed(&s, &s[1], Checked::Down);
        assert!(o.is_down(&s), "every server held down");
    }

    #[test]
    fn zero_failures_disables_ejection() {
        let s = servers(2);
        let o = outliers(0, 100, 0, &s);
        assert_eq!(fail(&o, &s, 0, 50), None);
        assert!(!o.is_down(&s));
    }

    #[test]
    fn each_ejection_lasts_longer_up_to_the_maximum() {
        let s = servers(1);
        let o = outliers(1, 100, 0, &s);
        let lengths: Vec<_> = (0..12)
            .map(|_| {
                let t = fail(&o, &s, 0, 1);
                // End the ejection now, as a pass of the checks would.
                s[0].passive.clear();
                t
            })
            .collect();
        assert_eq!(lengths[0], Some(Tripped::Ejected(Duration::from_secs(30))));
        assert_eq!(lengths[1], Some(Tripped::Ejected(Duration::from_secs(60))));
        assert_eq!(
            lengths[11],
            Some(Tripped::Ejected(Duration::from_secs(300)))
        );
    }
}
