//! Rate-limited failure reports (R8): per (module, failure kind) at most one log line per
//! interval; the ones left out are counted, and the next line says how many there were.
//! Lock-free: a report slot is claimed with one compare-and-swap.

use holdfast_common::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::IntCounter;

use crate::clock::nanos;
use crate::metrics::ModuleMetrics;

const NEVER: u64 = u64::MAX;

/// Kinds a slot tracks at most; further kinds are counted as `OTHER_KIND`. Module error kinds
/// are `&'static str`, so the set is finite anyway; this bounds it for certain.
pub const MAX_KINDS: usize = 32;
/// The kind label for failures past `MAX_KINDS`.
pub const OTHER_KIND: &str = "other";
/// The kinds the runner itself produces, whose series exist from the start.
pub const PANIC_KIND: &str = "panic";
pub const TIMEOUT_KIND: &str = "timeout";

/// One report per interval; counts the rest.
#[derive(Debug)]
pub(crate) struct ReportLimiter {
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for ReportLimiter {
    fn default() -> Self {
        ReportLimiter {
            last: AtomicU64::new(NEVER),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl ReportLimiter {
    /// `Some(n)`: report now; `n` reports were suppressed since the last one. `None`: this one
    /// is suppressed (and counted).
    pub(crate) fn check(&self, now: u64, interval: Duration) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == NEVER || now.saturating_sub(last) >= nanos(interval);
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Failure counts and report limiter of one kind.
#[derive(Debug)]
pub(crate) struct KindStats {
    pub(crate) kind: &'static str,
    /// `holdfast_module_errors_total{module,kind}`; also what `/status` shows.
    pub(crate) counter: IntCounter,
    pub(crate) limiter: ReportLimiter,
}

/// The kinds one slot has seen, looked up without a lock (a short list, compared by content);
/// a new kind is added under a mutex (copy-on-write).
pub(crate) struct Kinds {
    module: &'static str,
    metrics: ModuleMetrics,
    list: ArcSwap<Vec<Arc<KindStats>>>,
    adding: Mutex<()>,
}

impl Kinds {
    pub(crate) fn new(module: &'static str, metrics: &ModuleMetrics) -> Self {
        let kinds = Kinds {
            module,
            metrics: metrics.clone(),
            list: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
        };
        for k in [PANIC_KIND, TIMEOUT_KIND] {
            kinds.get(k);
        }
        kinds
    }

    pub(crate) fn get(&self, kind: &'static str) -> Arc<KindStats> {
        if let Some(s) = find(&self.list.load(), kind) {
            return s;
        }
        let _adding = lock(&self.adding);
        let list = self.list.load_full();
        if let Some(s) = find(&list, kind) {
            return s;
        }
        let kind = if list.len() >= MAX_KINDS {
            if let Some(s) = find(&list, OTHER_KIND) {
                return s;
            }
            OTHER_KIND
        } else {
            kind
        };
        let stats = Arc::new(KindStats {
            kind,
            counter: self.metrics.errors(self.module, kind),
            limiter: ReportLimiter::default(),
        });
        let mut next = Vec::with_capacity(list.len().saturating_add(1));
        next.extend(list.iter().cloned());
        next.push(Arc::clone(&stats));
        self.list.store(Arc::new(next));
        stats
    }

    /// (kind, failures) for every kind seen.
    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        self.list
            .load()
            .iter()
            .map(|s| (s.kind, s.counter.get()))
            .collect()
    }
}

fn find(list: &[Arc<KindStats>], kind: &str) -> Option<Arc<KindStats>> {
    list.iter().find(|s| s.kind == kind).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn one_report_per_interval_with_the_count_of_the_rest() {
        let l = ReportLimiter::default();
        let i = Duration::from_secs(10);
        assert_eq!(l.check(0, i), Some(0));
        for t in 0..99 {
            assert_eq!(l.check(t, i), None);
        }
        assert_eq!(l.check(10 * S - 1, i), None);
        assert_eq!(l.check(10 * S, i), Some(100));
        assert_eq!(l.check(10 * S, i), None);
        assert_eq!(l.check(25 * S, i), Some(1));
        assert_eq!(l.check(35 * S, i), Some(0));
    }

    #[test]
    fn kinds_are_bounded() {
        let reg = prometheus::Registry::new();
        let m = ModuleMetrics::new(&reg).unwrap();
        let kinds = Kinds::new("t", &m);
        // Leak a few hundred distinct kinds (test only).
        for i in 0..200 {
            let k: &'static str = Box::leak(format!("k{i}").into_boxed_str());
            kinds.get(k).counter.inc();
        }
        let counts = kinds.counts();
        assert_eq!(counts.len(), MAX_KINDS + 1);
        let other = counts.iter().find(|(k, _)| *k == OTHER_KIND).unwrap();
        assert_eq!(other.1, 200 - (MAX_KINDS as u64 - 2));
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 200);
        assert_eq!(kinds.get("k0").counter.get(), 1);
    }
}
