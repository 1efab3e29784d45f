//! [`GlobalLimit`]: the per-instance table of a global limit (see the module docs).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use holdfast_common::lock;
use holdfast_modules::RequestView;
use sha2::{Digest, Sha256};

use super::sync::RedisHealth;
use crate::limit::{cookie_value, LimitDecision, LimitKey, Limiter, LimiterSettings};

/// A fixed window: its number since the epoch and where `now` is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub id: u64,
    /// Time left until the window ends (> 0).
    pub left: Duration,
}

/// The window of length `per_ms` (≥ 1) that `now_ms` (Unix milliseconds) falls in.
pub fn window_of(now_ms: u64, per_ms: u64) -> Window {
    let per_ms = per_ms.max(1);
    let id = now_ms / per_ms;
    let end = id.saturating_add(1).saturating_mul(per_ms);
    Window {
        id,
        left: Duration::from_millis(end.saturating_sub(now_ms).max(1)),
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window: u64,
    pending: u32,
    inflight: u32,
    known: u64,
}

impl Entry {
    fn new(window: u64) -> Self {
        Entry {
            window,
            pending: 0,
            inflight: 0,
            known: 0,
        }
    }

    fn used(&self) -> u64 {
        self.known
            .saturating_add(u64::from(self.inflight))
            .saturating_add(u64::from(self.pending))
    }
}

/// One key's pending count, taken for a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    pub key: u128,
    pub window: u64,
    pub count: u32,
}

/// One `scope = "global"` limit on this instance.
pub struct GlobalLimit {
    name: String,
    key: LimitKey,
    requests: u64,
    per_ms: u64,
    shadow: bool,
    cap: usize,
    table: DashMap<u128, Entry>,
    /// Keys whose `pending` went from 0 to 1 since the last sync (each at most once).
    dirty: Mutex<Vec<u128>>,
    /// The window whose stale entries were last dropped.
    swept: AtomicU64,
    redis_prefix: String,
    health: Arc<RedisHealth>,
    denied: AtomicU64,
    shadowed: AtomicU64,
    local_decisions: AtomicU64,
}

impl GlobalLimit {
    /// A global limit for `spec` (its `burst` applies to the local fallback only), sharing
    /// `health` with the sync task.
    pub fn new(spec: LimiterSettings, health: Arc<RedisHealth>) -> Self {
        let per_ms = u64::try_from(spec.per.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        GlobalLimit {
            name: spec.name.clone(),
            key: spec.key.clone(),
            requests: u64::from(spec.requests.max(1)),
            per_ms,
            shadow: spec.shadow,
            cap: spec.max_keys.max(2),
            table: DashMap::new(),
            dirty: Mutex::new(Vec::new()),
            swept: AtomicU64::new(u64::MAX),
            redis_prefix: format!("holdfast:rl:{}:", spec.name),
            health,
            denied: AtomicU64::new(0),
            shadowed: AtomicU64::new(0),
            local_decisions: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The window length in milliseconds.
    pub fn per_ms(&self) -> u64 {
        self.per_ms
    }

    /// The Redis key of `key` in `window`.
    pub fn redis_key(&self, key: u128, window: u64) -> String {
        format!("{}{window}:{key:032x}", self.redis_prefix)
    }

    /// Check one request (counted when allowed). Never waits for Redis. `fallback`: the
    /// local limiter with the same spec, which decides while Redis is down.
    pub fn check(&self, req: &RequestView<'_>, route: &str, fallback: &Limiter) -> LimitDecision {
        let Some(key) = digest(&self.key, req, route) else {
            return LimitDecision::NoKey;
        };
        let now = now_ms();
        if self.health.is_down() {
            return self.local(req, route, fallback, key, now);
        }
        match self.check_key_at(key, now) {
            Some(d) => d,
            None => self.local(req, route, fallback, key, now),
        }
    }

    /// The local limiter decides (Redis down, or the table full of this window's keys);
    /// what it allows is still counted for Redis when there is room.
    fn local(
        &self,
        req: &RequestView<'_>,
        route: &str,
        fallback: &Limiter,
        key: u128,
        now: u64,
    ) -> LimitDecision {
        self.local_decisions.fetch_add(1, Ordering::Relaxed);
        let d = fallback.check(req, route);
        if matches!(d, LimitDecision::Allow { .. }) {
            let window = window_of(now, self.per_ms);
            if let Some(mut e) = self.entry(key, window.id) {
                self.add_pending(key, &mut e);
            }
        }
        d
    }

    /// The table's decision for `key` at `now_ms`; `None` when the key has no entry and
    /// the table is full (the caller asks the local limiter).
    pub fn check_key_at(&self, key: u128, now_ms: u64) -> Option<LimitDecision> {
        let window = window_of(now_ms, self.per_ms);
        let mut e = self.entry(key, window.id)?;
        let used = e.used();
        if used < self.requests {
            self.add_pending(key, &mut e);
            let remaining = self.requests.saturating_sub(used).saturating_sub(1);
            return Some(LimitDecision::Allow {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset: window.left,
            });
        }
        drop(e);
        if self.shadow {
            self.shadowed.fetch_add(1, Ordering::Relaxed);
            return Some(LimitDecision::Shadow);
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        Some(LimitDecision::Deny {
            retry_after: window.left,
            reset: window.left,
        })
    }

    fn add_pending(&self, key: u128, e: &mut Entry) {
        if e.pending == 0 {
            lock(&self.dirty).push(key);
        }
        e.pending = e.pending.saturating_add(1);
    }

    /// The entry of `key` for `window` (reset if it was of another window), inserted if
    /// there is room.
    fn entry(
        &self,
        key: u128,
        window: u64,
    ) -> Option<dashmap::mapref::one::RefMut<'_, u128, Entry>> {
        let mut e = match self.table.get_mut(&key) {
            Some(e) => e,
            None => {
                if self.table.len() >= self.cap {
                    self.evict_old(window);
                    if self.table.len() >= self.cap {
                        return None;
                    }
                }
                self.table.entry(key).or_insert(Entry::new(window))
            }
        };
        if e.window != window {
            // A new window starts from zero (counts of the old one not yet sent are for a
            // window that is over).
            *e = Entry::new(window);
        }
        Some(e)
    }

    /// Drop the entries of windows before `window`, once per window.
    fn evict_old(&self, window: u64) {
        if self.swept.swap(window, Ordering::Relaxed) == window {
            return;
        }
        self.table.retain(|_, e| e.window >= window);
    }

    /// Take every pending count for a sync (they become in flight).
    pub(crate) fn take_pending(&self) -> Vec<Taken> {
        let keys = std::mem::take(&mut *lock(&self.dirty));
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(mut e) = self.table.get_mut(&key) {
                if e.pending > 0 {
                    out.push(Taken {
                        key,
                        window: e.window,
                        count: e.pending,
                    });
                    e.inflight = e.inflight.saturating_add(e.pending);
                    e.pending = 0;
                }
            }
        }
        out
    }

    /// A sync succeeded: `total` is the window's count in Redis after adding `t`.
    pub(crate) fn synced(&self, t: &Taken, total: u64) {
        if let Some(mut e) = self.table.get_mut(&t.key) {
            if e.window == t.window {
                e.inflight = e.inflight.saturating_sub(t.count);
                e.known = e.known.max(total);
            }
        }
    }

    /// A sync failed: the counts are pending again (sent with the next one).
    pub(crate) fn unsent(&self, t: &Taken) {
        if let Some(mut e) = self.table.get_mut(&t.key) {
            if e.window == t.window {
                e.inflight = e.inflight.saturating_sub(t.count);
                if e.pending == 0 {
                    lock(&self.dirty).push(t.key);
                }
                e.pending = e.pending.saturating_add(t.count);
            }
        }
    }

    /// Keys in the table now.
    pub fn keys(&self) -> usize {
        self.table.len()
    }

    /// Requests counted but not yet confirmed by Redis (pending and in flight), all keys.
    pub fn unsynced(&self) -> u64 {
        self.table
            .iter()
            .map(|e| u64::from(e.pending).saturating_add(u64::from(e.inflight)))
            .sum()
    }

    /// Requests denied by the global count so far (the fallback counts its own).
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    pub fn shadowed(&self) -> u64 {
        self.shadowed.load(Ordering::Relaxed)
    }

    /// Requests the local fallback decided.
    pub fn local_decisions(&self) -> u64 {
        self.local_decisions.load(Ordering::Relaxed)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key of a request under a global limit: the first 128 bits of SHA-256 over a kind tag
/// and the key's bytes — the same on every instance (unlike the local limiter's keyed
/// SipHash), and not reversible to header or cookie values.
pub(crate) fn digest(key: &LimitKey, req: &RequestView<'_>, route: &str) -> Option<u128> {
    let mut h = Sha256::new();
    match key {
        LimitKey::ClientIp => match req.client_ip.to_canonical() {
            IpAddr::V4(v4) => {
                h.update(b"4");
                h.update(v4.octets());
            }
            IpAddr::V6(v6) => {
                h.update(b"6");
                h.update(v6.octets());
            }
        },
        LimitKey::ClientPrefix => match req.client_ip.to_canonical() {
            IpAddr::V4(v4) => {
                h.update(b"4");
                h.update(v4.octets());
            }
            IpAddr::V6(v6) => {
                h.update(b"p");
                h.update(((u128::from(v6) >> 64) as u64).to_be_bytes());
            }
        },
        LimitKey::Header(name) => {
            let v = req.headers.get(name)?.as_bytes();
            if v.is_empty() {
                return None;
            }
            h.update(b"h");
            h.update(v);
        }
        LimitKey::Cookie(name) => {
            let v = cookie_value(req.headers, name).filter(|v| !v.is_empty())?;
            h.update(b"c");
            h.update(v);
        }
        LimitKey::Route => {
            h.update(b"r");
            h.update(route.as_bytes());
        }
    }
    let out = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(out.get(..16)?);
    Some(u128::from_be_bytes(first))
}

impl std::fmt::Debug for GlobalLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalLimit")
            .field("name", &self.name)
            .field("requests", &self.requests)
            .field("per_ms", &self.per_ms)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn limit(requests: u32, per_ms: u64, max_keys: usize) -> GlobalLimit {
        let mut spec = LimiterSettings::new(
            "g",
            LimitKey::ClientIp,
            requests,
            Duration::from_millis(per_ms),
        );
        spec.max_keys = max_keys;
        GlobalLimit::new(spec, Arc::new(RedisHealth::new()))
    }

    #[test]
    fn window_math() {
        assert_eq!(
            window_of(0, 1000),
            Window {
                id: 0,
                left: Duration::from_millis(1000)
            }
        );
        assert_eq!(
            window_of(999, 1000),
            Window {
                id: 0,
                left: Duration::from_millis(1)
            }
        );
        assert_eq!(
            window_of(1000, 1000),
            Window {
                id: 1,
                left: Duration::from_millis(1000)
            }
        );
        assert_eq!(window_of(7_250, 1000).id, 7);
        assert_eq!(window_of(7_250, 1000).left, Duration::from_millis(750));
        // Degenerate inputs do not panic.
        assert_eq!(window_of(5, 0).id, 5);
        assert_eq!(window_of(u64::MAX, 1).left, Duration::from_millis(1));
        assert_eq!(window_of(u64::MAX, u64::MAX).id, 1);
    }

    #[test]
    fn known_plus_pending_decides_and_a_new_window_starts_from_zero() {
        let l = limit(3, HOUR, 100);
        let t0 = 10 * HOUR + 5;
        for r in (0..3).rev() {
            assert_eq!(
                l.check_key_at(1, t0),
                Some(LimitDecision::Allow {
                    remaining: r,
                    reset: Duration::from_millis(HOUR - 5)
                })
            );
        }
        assert!(l.check_key_at(1, t0).is_some_and(|d| d.is_deny()));
        assert_eq!(l.denied(), 1);
        // Another key is apart.
        assert!(matches!(
            l.check_key_at(2, t0),
            Some(LimitDecision::Allow { .. })
        ));
        // A sync: key 1 had 3 pending, Redis says 3; key 2: 1, Redis says 5 (others' too).
        let taken = l.take_pending();
        assert_eq!(taken.len(), 2);
        assert_eq!(l.unsynced(), 4);
        for t in &taken {
            l.synced(t, if t.key == 1 { 3 } else { 5 });
        }
        assert_eq!(l.unsynced(), 0);
        assert!(l.check_key_at(1, t0).is_some_and(|d| d.is_deny()));
        assert!(l.check_key_at(2, t0).is_some_and(|d| d.is_deny()));
        // The next window: a fresh count.
        assert!(matches!(
            l.check_key_at(1, 11 * HOUR),
            Some(LimitDecision::Allow { remaining: 2, .. })
        ));
        // Nothing to sync twice: only key 1 has pending.
        assert_eq!(l.take_pending().len(), 1);
        assert!(l.take_pending().is_empty());
    }

    #[test]
    fn a_failed_sync_keeps_the_counts_pending() {
        let l = limit(5, HOUR, 100);
        for _ in 0..2 {
            l.check_key_at(7, 0);
        }
        let taken = l.take_pending();
        // Counted while the sync is in flight.
        l.check_key_at(7, 0);
        assert_eq!(l.unsynced(), 3);
        for t in &taken {
            l.unsent(t);
        }
        let again = l.take_pending();
        assert_eq!(
            again,
            [Taken {
                key: 7,
                window: 0,
                count: 3
            }]
        );
        l.synced(&again[0], 3);
        assert!(matches!(
            l.check_key_at(7, 0),
            Some(LimitDecision::Allow { remaining: 1, .. })
        ));
    }

    #[test]
    fn the_table_is_bounded_and_old_windows_go_first() {
        let l = limit(10, 1000, 100);
        for k in 0..100u128 {
            assert!(l.check_key_at(k, 500).is_some());
        }
        assert_eq!(l.keys(), 100);
        // Full of this window's keys: a new key is not stored (the local limiter decides).
        for k in 100..10_000u128 {
            assert_eq!(l.check_key_at(k, 600), None);
            assert!(l.keys() <= 100);
        }
        // Known keys still decide.
        assert!(l.check_key_at(5, 700).is_some());
        // The next window: the old entries make room.
        for k in 20_000..20_100u128 {
            assert!(l.check_key_at(k, 1500).is_some(), "{k}");
            assert!(l.keys() <= 100);
        }
        assert_eq!(l.check_key_at(1, 1600), None, "full again, all of window 1");
        // A million distinct keys over many windows never grow it past the cap.
        for k in 0..1_000_000u128 {
            let now = 2000 + (k as u64 / 1000) * 1000;
            let _ = l.check_key_at(k + 100_000, now);
        }
        assert!(l.keys() <= 100);
    }

    #[test]
    fn digests_are_stable_and_kinds_differ() {
        let headers = http::HeaderMap::new();
        let view = |ip: &str| RequestView {
            method: &http::Method::GET,
            version: http::Version::HTTP_11,
            headers: &headers,
            path: "/",
            query: None,
            client_ip: ip.parse().unwrap(),
            tls: false,
            route: "all",
        };
        let a = digest(&LimitKey::ClientIp, &view("192.0.2.1"), "all");
        assert_eq!(
            a,
            digest(&LimitKey::ClientIp, &view("::ffff:192.0.2.1"), "all")
        );
        assert_ne!(a, digest(&LimitKey::ClientIp, &view("192.0.2.2"), "all"));
        assert_eq!(
            digest(&LimitKey::ClientPrefix, &view("2001:db8::1"), "all"),
            digest(&LimitKey::ClientPrefix, &view("2001:db8::2"), "all")
        );
        assert_ne!(
            digest(&LimitKey::Route, &view("192.0.2.1"), "all"),
            digest(
                &LimitKey::Header(http::header::HOST),
                &view("192.0.2.1"),
                "all"
            )
        );
        // The first 128 bits of SHA-256("4" || 192.0.2.1): the same on every instance.
        assert_eq!(a.map(|d| format!("{d:032x}")).map(|s| s.len()), Some(32));
    }
}
