//! The caches' counters on `/metrics`. The cache crate counts in plain atomics (no registry
//! on its hot path); before each scrape `State::refresh_cache_metrics` brings these
//! families up to date — counters by the increase since the last scrape, gauges by value.

use holdfast_cache::{Cache, StatsSnapshot};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

pub(crate) struct CacheMetrics {
    lookups: IntCounterVec,
    stale: IntCounterVec,
    revalidations: IntCounterVec,
    coalesced: IntCounterVec,
    stored: IntCounterVec,
    evictions: IntCounterVec,
    purged: IntCounterVec,
    disk_problems: IntCounterVec,
    objects: IntGaugeVec,
    bytes: IntGaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

impl CacheMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = CacheMetrics {
            lookups: counter(
                "holdfast_cache_lookups_total",
                "Cache look-ups by route and result (hit: answered from the cache; miss: \
                 forwarded, nothing usable stored; disk_hit: found on the disk tier after a \
                 memory miss).",
                &["route", "result"],
            )?,
            stale: counter(
                "holdfast_cache_stale_served_total",
                "Stale responses served, by reason (stale-while-revalidate, stale-if-error).",
                &["route", "reason"],
            )?,
            revalidations: counter(
                "holdfast_cache_revalidations_total",
                "Stored responses sent back to the origin, by result (not_modified: a 304 \
                 freshened it; replaced: a new response).",
                &["route", "result"],
            )?,
            coalesced: counter(
                "holdfast_cache_coalesced_waiters_total",
                "Requests that waited for another request's fetch of the same key.",
                &["route"],
            )?,
            stored: counter(
                "holdfast_cache_stored_total",
                "Responses stored, and responses not stored for being over max_object_size.",
                &["route", "result"],
            )?,
            evictions: counter(
                "holdfast_cache_evictions_total",
                "Objects evicted for space, by tier.",
                &["route", "tier"],
            )?,
            purged: counter(
                "holdfast_cache_purged_total",
                "URIs purged through the admin plane or invalidated by unsafe methods.",
                &["route", "kind"],
            )?,
            disk_problems: counter(
                "holdfast_cache_disk_problems_total",
                "Disk-tier files dropped for a bad checksum (corrupt), and writes or opens \
                 that failed (error: the object stays in memory only).",
                &["route", "kind"],
            )?,
            objects: IntGaugeVec::new(
                Opts::new("holdfast_cache_objects", "URIs stored, by tier."),
                &["route", "tier"],
            )?,
            bytes: IntGaugeVec::new(
                Opts::new("holdfast_cache_bytes", "Bytes stored, by tier."),
                &["route", "tier"],
            )?,
        };
        registry.register(Box::new(m.lookups.clone()))?;
        registry.register(Box::new(m.stale.clone()))?;
        registry.register(Box::new(m.revalidations.clone()))?;
        registry.register(Box::new(m.coalesced.clone()))?;
        registry.register(Box::new(m.stored.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.purged.clone()))?;
        registry.register(Box::new(m.disk_problems.clone()))?;
        registry.register(Box::new(m.objects.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        Ok(m)
    }

    /// Brings route `route`'s samples up to `cache`'s counters.
    pub(crate) fn refresh(&self, route: &str, cache: &Cache) {
        let s: StatsSnapshot = cache.stats().snapshot();
        let up = |vec: &IntCounterVec, labels: &[&str], value: u64| {
            let c = vec.with_label_values(labels);
            // A store replaced by a reload starts from zero: counters never go down.
            c.inc_by(value.saturating_sub(c.get()));
        };
        up(&self.lookups, &[route, "hit"], s.hits);
        up(&self.lookups, &[route, "miss"], s.misses);
        up(
            &self.stale,
            &[route, "stale-while-revalidate"],
            s.stale_while_revalidate,
        );
        up(&self.stale, &[route, "stale-if-error"], s.stale_if_error);
        up(
            &self.revalidations,
            &[route, "not_modified"],
            s.not_modified,
        );
        let replaced = s.revalidations.saturating_sub(s.not_modified);
        up(&self.revalidations, &[route, "replaced"], replaced);
        up(&self.coalesced, &[route], s.coalesced);
        up(&self.stored, &[route, "stored"], s.stored);
        up(&self.stored, &[route, "too_large"], s.too_large);
        up(&self.evictions, &[route, "memory"], s.evictions);
        // Only for routes with `cache.disk` (an unusable folder shows as errors).
        if cache.config.disk.is_some() {
            up(&self.evictions, &[route, "disk"], s.disk_evictions);
            up(&self.disk_problems, &[route, "corrupt"], s.disk_corrupt);
            up(&self.disk_problems, &[route, "error"], s.disk_errors);
            up(&self.lookups, &[route, "disk_hit"], s.disk_hits);
        }
        up(&self.purged, &[route, "purge"], s.purged);
        up(&self.purged, &[route, "invalidation"], s.invalidations);
        let gauge = |vec: &IntGaugeVec, tier: &str, value: u64| {
            vec.with_label_values(&[route, tier])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        gauge(&self.objects, "memory", cache.store.objects());
        gauge(&self.bytes, "memory", cache.store.bytes());
        if cache.store.disk.is_some() {
            gauge(&self.objects, "disk", s.disk_objects);
            gauge(&self.bytes, "disk", s.disk_bytes);
        }
    }
}
