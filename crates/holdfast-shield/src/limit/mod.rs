//! Local rate limits: one [`Limiter`] per `[[limits]]` entry.
//!
//! # Semantics (GCRA)
//!
//! A limit allows `requests` per `per` on average for each key, and `burst` at once
//! (default: `requests`). The algorithm is governor's GCRA: one request costs the emission
//! interval `T = per / requests`; a key that has been quiet can send `burst` requests back to
//! back, then one every `T`. A denied request costs nothing. `requests = 5, per = "1s"`:
//! five at once, then one every 200 ms.
//!
//! # Keys
//!
//! A request's key under a limit ([`LimitKey`]) is hashed to a `u64` with SipHash (std's
//! `RandomState`) under one random key per process, so clients cannot choose values that
//! collide with someone else's. The hash is what the table stores: no key bytes are kept and
//! nothing is allocated to compute it (header and cookie values are borrowed). IPv4-mapped
//! IPv6 addresses count as their IPv4 address. A key that is absent — header or cookie
//! missing, or present but empty — is [`LimitDecision::NoKey`]: that limit does not apply.
//!
//! # Bounded memory: two generations
//!
//! The key table holds at most `max_keys` keys (plus a small slack under concurrency, at
//! most [`SWEEP_SLACK`] per generation), whatever the traffic. It is two generations, each a
//! `DashMap` of at most `max_keys / 2` keys (hash → theoretical arrival time, 16 bytes plus
//! the map's overhead): new keys go into the *current* generation; a key missing from it but
//! present in the *previous* one starts from its previous state (carried over, so an active
//! client's count survives a rotation).
//!
//! When the current generation passes its cap, the request that noticed sweeps (one at a
//! time; the others go on): governor's `retain_recent` drops every key whose state is
//! indistinguishable from a fresh one, in both generations. If the current generation is
//! still above three quarters of its cap, it *rotates*: it becomes the previous generation,
//! the old previous one is dropped, and an empty current one starts. Each sweep costs
//! O(cap), and after it at least a quarter of the cap must be filled with new keys before
//! the next one, so the cost is O(1) amortised per new key; a request for a known key pays
//! one map look-up and one compare-and-swap.
//!
//! What a rotation forgets: keys not seen during a whole generation. A key that is active
//! (sends at least once per generation) keeps its count, so a flood of unique keys — e.g.
//! random addresses from one IPv6 /48 — cannot reset the counts of the clients it floods
//! alongside; it only shortens how long an idle key is remembered, and a forgotten key is
//! one whose next request starts with a fresh burst. If sweeps lag behind a flood by more
//! than [`SWEEP_SLACK`] new keys, further new keys are judged against a fresh state without
//! being stored (they fail open, as any first request of a key does) until the sweep is done.
//!
//! (Why not governor's own keyed `DashMap` store: it can neither evict one key nor be read
//! without counting, so the only way to bound it would be to replace it with an empty one —
//! forgetting every count, which a unique-key flood could trigger at will. The store here is
//! governor's `StateStore` trait over two `DashMap`s; the GCRA, quota and clocks are
//! governor's.)
//!
//! # Headers
//!
//! [`Limiter::policy_header`] and [`Limiter::ratelimit_header`] follow
//! draft-ietf-httpapi-ratelimit-headers (structured fields): `RateLimit-Policy:
//! "per-ip";q=5;w=1` and `RateLimit: "per-ip";r=0;t=1` (`r` remaining, `t` seconds until
//! the key's full burst is available again, rounded up). [`LimitDecision::retry_after_header`]
//! gives `Retry-After` in whole seconds, rounded up, at least 1.

mod decision;
mod header;
mod key;
mod limiter;
mod spec;
mod store;

pub use decision::LimitDecision;
pub use key::cookie_value;
pub use limiter::Limiter;
pub use spec::{LimitKey, LimitSpecError, LimiterSettings, DEFAULT_MAX_KEYS, MAX_REFILL};
pub use store::SWEEP_SLACK;

/// Whole seconds in `d`, rounded up.
pub(crate) fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}
