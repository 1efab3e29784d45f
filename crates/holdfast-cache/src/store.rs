//! The memory tier: a `moka` cache of primary key → the stored variants of that URI,
//! bounded by weight (bytes) with TinyLFU admission, each key kept as long as its longest
//! lived variant may still be served or revalidated. Also the purge operations and the
//! per-key fill locks that coalesce concurrent misses.

use crate::entry::Entry;
use crate::stats::Stats;
use holdfast_common::lock;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many variants (Vary) per URI: a new one replaces the oldest.
const MAX_VARIANTS: usize = 8;

pub type Variants = Arc<[Arc<Entry>]>;

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One primary key (a URL as the route's key shapes it).
    Exact(String),
    Prefix(String),
    /// Entries whose `Surrogate-Key` or `Cache-Tag` lists the tag.
    Tag(String),
    All,
}

struct Keep;

impl moka::Expiry<Arc<str>, Stored> for Keep {
    fn expire_after_create(&self, _: &Arc<str>, v: &Stored, _: Instant) -> Option<Duration> {
        Some(v.keep)
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        v: &Stored,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.keep)
    }
}

#[derive(Clone)]
pub struct Stored {
    pub variants: Variants,
    keep: Duration,
}

pub struct Store {
    tier: Cache<Arc<str>, Stored>,
    /// The disk tier, when configured and usable.
    pub disk: Option<crate::disk::DiskTier>,
    locks: Mutex<HashMap<Arc<str>, tokio::sync::watch::Receiver<()>>>,
    pub stats: Arc<Stats>,
}

/// Held by the one request fetching a key; dropping it wakes the waiters.
pub struct FillLock {
    store: Arc<Store>,
    key: Arc<str>,
    _done: tokio::sync::watch::Sender<()>,
}

impl Drop for FillLock {
    fn drop(&mut self) {
        lock(&self.store.locks).remove(&self.key);
    }
}

/// The outcome of asking for a key's fill lock.
pub enum Lock {
    /// This request fetches; others wait for it.
    Leader(FillLock),
    /// Another request is fetching: wait on this until it is done (or the lock timeout).
    Wait(tokio::sync::watch::Receiver<()>),
}

impl Store {
    pub fn new(capacity: u64, stats: Arc<Stats>, disk: Option<crate::disk::DiskTier>) -> Self {
        let evictions = Arc::clone(&stats);
        let tier = Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, v: &Stored| {
                let w: u64 = v.variants.iter().map(|e| e.weight()).sum();
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .expire_after(Keep)
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    evictions.count_eviction();
                }
            })
            .build();
        Store {
            tier,
            disk,
            locks: Mutex::new(HashMap::new()),
            stats,
        }
    }

    pub fn get(&self, key: &str) -> Option<Variants> {
        self.tier.get(key).map(|s| s.variants)
    }

    /// Stores `entry` under `key` (and queues it for the disk tier), replacing the variant
    /// with the same selecting values.
    pub fn insert(&self, key: &str, entry: Arc<Entry>, keep: Duration) {
        if let Some(disk) = &self.disk {
            disk.save(key, Arc::clone(&entry));
        }
        self.insert_memory(key, entry, keep);
    }

    /// The disk tier's copy of `key` (blocking: call off the data path's runtime), put
    /// back in memory.
    pub fn load_from_disk(&self, key: &str, opts: &crate::Options) -> Option<Arc<Entry>> {
        let entry = Arc::new(self.disk.as_ref()?.load(key, opts)?);
        self.insert_memory(key, Arc::clone(&entry), entry.keep_for(opts));
        Some(entry)
    }

    fn insert_memory(&self, key: &str, entry: Arc<Entry>, keep: Duration) {
        let key: Arc<str> = Arc::from(key);
        let old = self.tier.get(&key);
        let mut variants: Vec<Arc<Entry>> = old
            .as_ref()
            .map(|s| {
                s.variants
                    .iter()
                    .filter(|e| e.selected != entry.selected)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let keep = old.map_or(keep, |s| s.keep.max(keep));
        if variants.len() >= MAX_VARIANTS {
            variants.remove(0);
        }
        variants.push(entry);
        self.tier.insert(
            key,
            Stored {
                variants: variants.into(),
                keep,
            },
        );
    }

    /// Drops every variant of `key` (invalidation by an unsafe method).
    pub fn invalidate(&self, key: &str) {
        self.tier.invalidate(key);
        if let Some(disk) = &self.disk {
            disk.remove(key);
        }
    }

    /// Purges matching entries: `soft` marks them stale (still usable on origin error),
    /// otherwise they are removed. Returns how many URIs matched.
    pub fn purge(&self, what: &Purge, soft: bool) -> u64 {
        let mut matched = Vec::new();
        for (key, stored) in self.tier.iter() {
            let key: Arc<str> = Arc::clone(&key);
            let hit = match what {
                Purge::Exact(k) => *key == **k,
                Purge::Prefix(p) => key.starts_with(p.as_str()),
                Purge::Tag(t) => stored
                    .variants
                    .iter()
                    .any(|e| e.tags.iter().any(|x| **x == **t)),
                Purge::All => true,
            };
            if hit {
                matched.push((key, stored));
            }
        }
        for (key, stored) in &matched {
            if soft {
                stored.variants.iter().for_each(|e| e.mark_purged());
            } else {
                self.tier.invalidate(key);
            }
        }
        // The disk tier has no soft purge: its copies go (memory keeps the stale ones).
        if let Some(disk) = &self.disk {
            disk.purge(what);
        }
        let n = matched.len() as u64;
        self.stats.count_purge(n);
        n
    }

    /// The fill lock for `key` (request coalescing).
    pub fn lock(self: &Arc<Self>, key: &str) -> Lock {
        let mut locks = lock(&self.locks);
        if let Some(rx) = locks.get(key) {
            return Lock::Wait(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(());
        let key: Arc<str> = Arc::from(key);
        locks.insert(Arc::clone(&key), rx);
        Lock::Leader(FillLock {
            store: Arc::clone(self),
            key,
            _done: tx,
        })
    }

    pub fn objects(&self) -> u64 {
        self.tier.run_pending_tasks();
        self.tier.entry_count()
    }

    pub fn bytes(&self) -> u64 {
        self.tier.run_pending_tasks();
        self.tier.weighted_size()
    }
}

/// Waits until the leader's fetch is done, at most `timeout`. True when it finished.
pub async fn wait(mut rx: tokio::sync::watch::Receiver<()>, timeout: Duration) -> bool {
    // The sender never sends: `changed` returns (an error) when the leader drops it.
    tokio::time::timeout(timeout, rx.changed()).await.is_ok()
}
