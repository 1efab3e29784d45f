//! Holdfast's shared HTTP cache, independent of the proxy's plumbing: the RFC 9111 policy
//! with RFC 5861 stale serving and RFC 9213 targeted fields (`policy`, `directives`), keys
//! (`key`, `vary`), stored responses (`entry`), the memory tier with purge and fill locks
//! (`store`), answering from a stored response (`serve`), RFC 9211 `Cache-Status`
//! (`status`) and counters (`stats`). `Cache` is one route's cache.

#![forbid(unsafe_code)]

pub mod directives;
pub mod disk;
pub mod entry;
pub mod key;
pub mod policy;
pub mod serve;
pub mod stats;
pub mod status;
pub mod store;
pub mod vary;

pub use directives::{RequestDirectives, ResponseDirectives};
pub use entry::Entry;
pub use policy::{Freshness, NotStorable, Options, Use};
pub use serve::{respond, Served};
pub use stats::{Stats, StatsSnapshot};
pub use status::{CacheStatus, Fwd, CACHE_STATUS};
pub use store::{Lock, Purge, Store};

use holdfast_config::CacheConfig;
use std::sync::Arc;

/// One route's cache: its settings and its store (which outlives config reloads that keep
/// the memory size).
pub struct Cache {
    pub config: CacheConfig,
    pub options: Options,
    pub store: Arc<Store>,
}

impl Cache {
    /// A cache for `config`, reusing `previous`'s store when its memory size is unchanged.
    pub fn new(config: CacheConfig, previous: Option<&Cache>) -> Self {
        let store = previous
            .filter(|p| p.config.memory == config.memory && p.config.disk == config.disk)
            .map(|p| Arc::clone(&p.store))
            .unwrap_or_else(|| {
                let stats = Arc::new(Stats::default());
                let disk = config.disk.as_ref().and_then(|d| {
                    disk::DiskTier::open(
                        &d.path,
                        d.size,
                        config.max_object_size,
                        Arc::clone(&stats),
                    )
                });
                Arc::new(Store::new(config.memory, stats, disk))
            });
        let options = Options {
            heuristic: config.heuristic,
            stale_on_error: config.serve_stale_on_error.as_secs(),
            targeted_field: config.targeted_field.clone(),
        };
        Cache {
            config,
            options,
            store,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.store.stats
    }
}
