//! Counters of one route's cache, read by `/metrics` and `/status`. Plain atomics so the
//! cache crate needs no metrics registry; the proxy exports them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale_while_revalidate: AtomicU64,
    pub stale_if_error: AtomicU64,
    pub revalidations: AtomicU64,
    pub not_modified: AtomicU64,
    pub coalesced: AtomicU64,
    pub stored: AtomicU64,
    pub too_large: AtomicU64,
    pub evictions: AtomicU64,
    pub purged: AtomicU64,
    pub invalidations: AtomicU64,
    pub disk_hits: AtomicU64,
    pub disk_corrupt: AtomicU64,
    pub disk_errors: AtomicU64,
    pub disk_evictions: AtomicU64,
    /// Set by the disk writer.
    pub disk_objects: AtomicU64,
    pub disk_bytes: AtomicU64,
}

macro_rules! bump {
    ($($f:ident => $field:ident),* $(,)?) => {
        impl Stats {
            $(pub fn $f(&self) { self.$field.fetch_add(1, Relaxed); })*
        }
    };
}

bump!(
    count_hit => hits,
    count_miss => misses,
    count_swr => stale_while_revalidate,
    count_stale_if_error => stale_if_error,
    count_revalidation => revalidations,
    count_not_modified => not_modified,
    count_coalesced => coalesced,
    count_stored => stored,
    count_too_large => too_large,
    count_eviction => evictions,
    count_invalidation => invalidations,
);

impl Stats {
    pub fn count_purge(&self, n: u64) {
        self.purged.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale_while_revalidate: self.stale_while_revalidate.load(Relaxed),
            stale_if_error: self.stale_if_error.load(Relaxed),
            revalidations: self.revalidations.load(Relaxed),
            not_modified: self.not_modified.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            stored: self.stored.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            purged: self.purged.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            disk_hits: self.disk_hits.load(Relaxed),
            disk_corrupt: self.disk_corrupt.load(Relaxed),
            disk_errors: self.disk_errors.load(Relaxed),
            disk_evictions: self.disk_evictions.load(Relaxed),
            disk_objects: self.disk_objects.load(Relaxed),
            disk_bytes: self.disk_bytes.load(Relaxed),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
    pub revalidations: u64,
    pub not_modified: u64,
    pub coalesced: u64,
    pub stored: u64,
    pub too_large: u64,
    pub evictions: u64,
    pub purged: u64,
    pub invalidations: u64,
    pub disk_hits: u64,
    pub disk_corrupt: u64,
    pub disk_errors: u64,
    pub disk_evictions: u64,
    pub disk_objects: u64,
    pub disk_bytes: u64,
}
