//! [`Limiter`]: one `[[limits]]` entry at run time.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use holdfast_modules::RequestView;

use super::header::{item, quota_window, sf_string};
use super::spec::{LimitKey, LimiterSettings, MAX_REFILL};
use super::store::{GenStore, Generations};
use super::{ceil_secs, key, LimitDecision};

/// One limit: its key, its GCRA quota and its bounded key table. Cheap to share (`Sync`):
/// every method takes `&self`.
pub struct Limiter<C: Clock = DefaultClock> {
    name: String,
    key: LimitKey,
    shadow: bool,
    /// After clamping: the emission interval, the burst and the refill time of one burst
    /// minus one interval (governor's tau).
    interval: Duration,
    burst: u32,
    tau: Duration,
    limiter: RateLimiter<u64, GenStore, C, StateInformationMiddleware>,
    store: Arc<Generations>,
    sweeping: Mutex<()>,
    rotations: AtomicU64,
    denied: AtomicU64,
    shadowed: AtomicU64,
    sf_name: Box<str>,
    policy: http::HeaderValue,
}

impl Limiter {
    /// A limiter on the monotonic clock. Out-of-range values are clamped (see
    /// [`LimiterSettings::errors`] for validation): `requests`, `burst` ≥ 1, `per` ≥ 1 ns,
    /// `max_keys` ≥ 2, refill ≤ [`MAX_REFILL`].
    pub fn new(spec: LimiterSettings) -> Self {
        Limiter::with_clock(spec, DefaultClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter on `clock` (tests: governor's `FakeRelativeClock`).
    pub fn with_clock(spec: LimiterSettings, clock: C) -> Self {
        let requests = spec.requests.max(1);
        let per = spec.per.max(Duration::from_nanos(1));
        let interval = (per / requests).clamp(Duration::from_nanos(1), MAX_REFILL);
        let max_burst = MAX_REFILL.as_nanos() / interval.as_nanos();
        let burst = spec
            .burst
            .clamp(1, u32::try_from(max_burst).unwrap_or(u32::MAX).max(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let store = Arc::new(Generations::new(spec.max_keys.max(2) / 2));
        let limiter = RateLimiter::<u64, GenStore, C, StateInformationMiddleware>::new(
            quota,
            GenStore(Arc::clone(&store)),
            clock,
        );
        let sf_name = sf_string(&spec.name);
        let (q, w) = quota_window(requests, per);
        let policy = item(&sf_name, "q", q, "w", w);
        Limiter {
            name: spec.name,
            key: spec.key,
            shadow: spec.shadow,
            interval,
            burst,
            tau: interval.saturating_mul(burst - 1),
            limiter,
            store,
            sweeping: Mutex::new(()),
            rotations: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            shadowed: AtomicU64::new(0),
            sf_name,
            policy,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of this request under this limit (`route`: the route's name), hashed; `None`
    /// when the request has none (header or cookie absent or empty).
    pub fn key(&self, req: &RequestView<'_>, route: &str) -> Option<u64> {
        match &self.key {
            LimitKey::ClientIp => Some(key::client_ip(req.client_ip)),
            LimitKey::ClientPrefix => Some(key::client_prefix(req.client_ip)),
            LimitKey::Header(name) => req
                .headers
                .get(name)
                .map(http::HeaderValue::as_bytes)
                .filter(|v| !v.is_empty())
                .map(key::header),
            LimitKey::Cookie(name) => key::cookie_value(req.headers, name)
                .filter(|v| !v.is_empty())
                .map(key::cookie),
            LimitKey::Route => Some(key::route(route)),
        }
    }

    /// Count one request of `key` (GCRA). In shadow mode a denial is [`LimitDecision::Shadow`].
    pub fn check_key(&self, key: u64) -> LimitDecision {
        let decision = match self.limiter.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity().min(self.burst);
                LimitDecision::Allow {
                    remaining,
                    reset: self.interval.saturating_mul(self.burst - remaining),
                }
            }
            Err(_) if self.shadow => {
                self.shadowed.fetch_add(1, Ordering::Relaxed);
                LimitDecision::Shadow
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.limiter.clock().now());
                self.denied.fetch_add(1, Ordering::Relaxed);
                LimitDecision::Deny {
                    retry_after,
                    reset: retry_after.saturating_add(self.tau),
                }
            }
        };
        if self.store.sweep_due() {
            self.sweep();
        }
        decision
    }

    /// [`Limiter::key`] then [`Limiter::check_key`]; no key: [`LimitDecision::NoKey`].
    pub fn check(&self, req: &RequestView<'_>, route: &str) -> LimitDecision {
        match self.key(req, route) {
            Some(k) => self.check_key(k),
            None => LimitDecision::NoKey,
        }
    }

    /// `RateLimit-Policy`, e.g. `"per-ip";q=5;w=1`.
    pub fn policy_header(&self) -> http::HeaderValue {
        self.policy.clone()
    }

    /// `RateLimit` for a decision, e.g. `"per-ip";r=0;t=1`; `None` for `Shadow` (a shadow
    /// limit is invisible to clients) and `NoKey`.
    pub fn ratelimit_header(&self, d: &LimitDecision) -> Option<http::HeaderValue> {
        let (remaining, reset) = match d {
            LimitDecision::Allow { remaining, reset } => (u64::from(*remaining), *reset),
            LimitDecision::Deny { reset, .. } => (0, *reset),
            LimitDecision::Shadow | LimitDecision::NoKey => return None,
        };
        Some(item(&self.sf_name, "r", remaining, "t", ceil_secs(reset)))
    }

    /// Keys tracked now (both generations).
    pub fn keys(&self) -> usize {
        self.store.len()
    }

    /// Approximate bytes of the key table (see the module docs: it stays bounded).
    pub fn memory_bytes(&self) -> usize {
        self.store.memory_bytes()
    }

    /// Generations rotated so far (each forgets the keys idle for a whole generation).
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }

    /// Requests denied so far (enforced).
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// Requests that would have been denied in shadow mode so far.
    pub fn shadowed(&self) -> u64 {
        self.shadowed.load(Ordering::Relaxed)
    }

    /// Drop stale keys; if the current generation is still too full, rotate. One sweeper at
    /// a time; the others go on without waiting.
    fn sweep(&self) {
        let _guard = match self.sweeping.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if !self.store.sweep_due() {
            return; // another thread just swept
        }
        self.limiter.retain_recent();
        if self.store.too_full() {
            self.store.rotate();
            self.rotations.fetch_add(1, Ordering::Relaxed);
        }
        self.store.reset_budget();
    }
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .field("shadow", &self.shadow)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    const MS: Duration = Duration::from_millis(1);

    fn limiter(
        requests: u32,
        per: Duration,
        burst: u32,
    ) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let mut spec = LimiterSettings::new("t", LimitKey::ClientIp, requests, per);
        spec.burst = burst;
        (Limiter::with_clock(spec, clock.clone()), clock)
    }

    fn allow(remaining: u32, reset: Duration) -> LimitDecision {
        LimitDecision::Allow { remaining, reset }
    }

    #[test]
    fn five_per_second_is_five_at_once_then_one_every_200ms() {
        let (l, clock) = limiter(5, Duration::from_secs(1), 5);
        for r in (0..5).rev() {
            assert_eq!(l.check_key(1), allow(r, 200 * MS * (5 - r)));
        }
        let denied = LimitDecision::Deny {
            retry_after: 200 * MS,
            reset: 1000 * MS,
        };
        assert_eq!(l.check_key(1), denied);
        assert_eq!(l.check_key(1), denied, "a denial costs nothing");
        assert_eq!(l.denied(), 2);
        // Another key is not affected.
        assert_eq!(l.check_key(2), allow(4, 200 * MS));
        clock.advance(150 * MS);
        assert_eq!(
            l.check_key(1),
            LimitDecision::Deny {
                retry_after: 50 * MS,
                reset: 850 * MS
            }
        );
        clock.advance(50 * MS);
        assert_eq!(l.check_key(1), allow(0, 1000 * MS));
        assert!(l.check_key(1).is_deny());
        // Quiet for a second: the whole burst is back.
        clock.advance(1000 * MS);
        for r in (0..5).rev() {
            assert!(
                matches!(l.check_key(1), LimitDecision::Allow { remaining, .. } if remaining == r)
            );
        }
        assert!(l.check_key(1).is_deny());
    }

    #[test]
    fn burst_is_separate_from_the_rate() {
        // 10 per second on average, 2 at once.
        let (l, clock) = limiter(10, Duration::from_secs(1), 2);
        assert_eq!(l.check_key(9), allow(1, 100 * MS));
        assert_eq!(l.check_key(9), allow(0, 200 * MS));
        assert_eq!(
            l.check_key(9),
            LimitDecision::Deny {
                retry_after: 100 * MS,
                reset: 200 * MS
            }
        );
        // Sustained: one every 100 ms passes, for as long as it keeps that pace.
        for _ in 0..50 {
            clock.advance(100 * MS);
            assert!(matches!(l.check_key(9), LimitDecision::Allow { .. }));
        }
        // A burst larger than the rate: 1 per minute, 3 at once.
        let (l, clock) = limiter(1, Duration::from_secs(60), 3);
        for _ in 0..3 {
            assert!(!l.check_key(1).is_deny());
        }
        let d = l.check_key(1);
        assert_eq!(d.retry_after_secs(), Some(60));
        clock.advance(Duration::from_secs(60));
        assert!(!l.check_key(1).is_deny());
        assert!(l.check_key(1).is_deny());
    }

    #[test]
    fn shadow_counts_and_never_denies() {
        let clock = FakeRelativeClock::default();
        let mut spec = LimiterSettings::new("s", LimitKey::ClientIp, 2, Duration::from_secs(1));
        spec.shadow = true;
        let l = Limiter::with_clock(spec, clock.clone());
        assert!(matches!(l.check_key(1), LimitDecision::Allow { .. }));
        assert!(matches!(l.check_key(1), LimitDecision::Allow { .. }));
        assert_eq!(l.check_key(1), LimitDecision::Shadow);
        assert_eq!(l.check_key(1), LimitDecision::Shadow);
        assert_eq!((l.shadowed(), l.denied()), (2, 0));
        assert_eq!(l.ratelimit_header(&LimitDecision::Shadow), None);
        // Shadow denials do not consume: the key is back after one interval.
        clock.advance(500 * MS);
        assert!(matches!(l.check_key(1), LimitDecision::Allow { .. }));
    }

    #[test]
    fn out_of_range_specs_are_clamped_not_panicking() {
        let clock = FakeRelativeClock::default();
        let spec = LimiterSettings {
            name: "bad".into(),
            key: LimitKey::Route,
            requests: 0,
            per: Duration::ZERO,
            burst: 0,
            shadow: false,
            max_keys: 0,
        };
        let l = Limiter::with_clock(spec, clock.clone());
        assert_eq!((l.interval, l.burst), (Duration::from_nanos(1), 1));
        assert!(!l.check_key(1).is_deny());
        // Centuries per request and a huge burst: clamped to MAX_REFILL for the whole burst.
        let mut spec = LimiterSettings::new("slow", LimitKey::Route, 1, Duration::MAX);
        spec.burst = u32::MAX;
        let l = Limiter::with_clock(spec, clock.clone());
        assert_eq!((l.interval, l.burst), (MAX_REFILL, 1));
        assert!(!l.check_key(1).is_deny());
        let d = l.check_key(1);
        assert_eq!(d.retry_after_secs(), Some(MAX_REFILL.as_secs()));
        let mut spec =
            LimiterSettings::new("fast", LimitKey::Route, u32::MAX, Duration::from_secs(1));
        spec.burst = u32::MAX;
        let l = Limiter::with_clock(spec, clock);
        for _ in 0..1000 {
            assert!(!l.check_key(1).is_deny());
        }
    }

    #[test]
    fn a_heavy_hitter_stays_limited_through_a_unique_key_flood() {
        let clock = FakeRelativeClock::default();
        let mut spec = LimiterSettings::new("f", LimitKey::ClientIp, 5, Duration::from_secs(1));
        spec.max_keys = 1000;
        let l = Limiter::with_clock(spec, clock.clone());
        let hitter = u64::MAX;
        for _ in 0..5 {
            l.check_key(hitter);
        }
        // 20 000 unique keys in the same instant (no key goes stale): rotations, but the
        // hitter is seen in every generation, so its count survives each of them.
        for k in 0..20_000u64 {
            assert!(!l.check_key(k).is_deny());
            if k % 100 == 0 {
                assert!(l.check_key(hitter).is_deny(), "after {k} unique keys");
            }
            assert!(l.keys() <= 1000);
        }
        assert!(l.rotations() >= 20_000 / 500 - 1, "{}", l.rotations());
        // Stale keys are dropped by retain_recent before anything rotates: with time moving,
        // keys that have gone quiet leave and nothing active is forgotten.
        let rotations = l.rotations();
        for k in 100_000..120_000u64 {
            clock.advance(2 * MS);
            assert!(!l.check_key(k).is_deny());
            assert!(l.keys() <= 1000);
        }
        assert_eq!(
            l.rotations(),
            rotations,
            "retain_recent alone kept the table in bounds"
        );
    }

    /// Issue 7's flood: one million distinct client addresses, all in one instant (nothing
    /// goes stale, so only rotation can bound the table). Keys and memory stay bounded the
    /// whole time, and every new address gets its burst (the flood costs no one a 429).
    #[test]
    fn a_million_distinct_client_ips_keep_the_key_table_bounded() {
        let clock = FakeRelativeClock::default();
        let mut spec = LimiterSettings::new("flood", LimitKey::ClientIp, 5, Duration::from_secs(1));
        spec.max_keys = 10_000;
        let l = Limiter::with_clock(spec, clock);
        let (mut peak_keys, mut peak_bytes) = (0, 0);
        for i in 0..1_000_000u32 {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(!l.check_key(super::super::key::client_ip(ip)).is_deny());
            if i % 997 == 0 {
                peak_keys = peak_keys.max(l.keys());
                peak_bytes = peak_bytes.max(l.memory_bytes());
            }
        }
        peak_keys = peak_keys.max(l.keys());
        peak_bytes = peak_bytes.max(l.memory_bytes());
        // Two generations of at most max_keys (+ the sweep slack) each.
        let bound = 2 * (10_000 + crate::limit::store::SWEEP_SLACK);
        assert!(peak_keys <= bound, "{peak_keys} keys");
        // A few hundred KiB for 10 000 keys, not the ~40 MB a million would take.
        assert!(peak_bytes < 4 << 20, "{peak_bytes} bytes");
        assert!(l.rotations() >= 1_000_000 / 20_000, "{}", l.rotations());
    }

    #[test]
    fn limiter_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Limiter>();
        check::<Limiter<FakeRelativeClock>>();
    }
}
