//! Global rate limits: one count per key shared by every Holdfast instance through Redis.
//!
//! # Algorithm: a fixed window with local pre-aggregation
//!
//! A global limit allows `requests` per *window* of length `per`, counted over all
//! instances. Windows are aligned on the wall clock (`window = unix_ms / per_ms`), so every
//! instance agrees on the current window without talking (clock skew between instances
//! shifts the window edges by the skew, nothing more). In Redis, one key per (limit, key,
//! window): `holdfast:rl:{limit}:{window}:{digest}`, where the digest is the first 128 bits
//! of SHA-256 over the request's key (tagged by kind) — the same on every instance, and no
//! key bytes (header or cookie values) are stored in Redis.
//!
//! Each instance keeps, per key of a limit, an entry `{window, pending, inflight, known}`:
//!
//! - `known`: the last total Redis returned for this window (every instance's requests);
//! - `pending`: requests this instance allowed and has not sent yet;
//! - `inflight`: requests being sent right now (a sync under way).
//!
//! A request is allowed when `known + inflight + pending < requests`, and is then counted in
//! `pending`; otherwise it gets 429 until the window ends (`Retry-After`: the rest of the
//! window). A denied request costs nothing. The data path never waits for Redis: it reads
//! and writes only this table.
//!
//! A sync task ([`GlobalSync`], its own thread with a current-thread tokio runtime, never on
//! the data-path workers) runs every `sync_interval`: it takes the pending count of every key
//! that has one, and sends them in **one pipelined round trip** — for each key an `EVALSHA` of
//! [`SCRIPT`] (`INCRBY` the window key by the count, `PEXPIRE` it to 2 × `per`, return the
//! total). The script is loaded with `SCRIPT LOAD` when a connection opens; a `NOSCRIPT`
//! answer (Redis restarted or flushed its scripts) resends the round with `EVAL`. The totals
//! become the entries' `known`. So Redis sees about *active keys × syncs per second* calls,
//! whatever the request rate: a key that sends 10 000 requests a second costs 10 calls a
//! second at the default 100 ms.
//!
//! # Accuracy
//!
//! Every allowed request is counted in Redis (once its sync succeeds), and an instance only
//! denies when the window's total it knows of has reached `requests`, so no instance denies
//! early. An instance's `known` lags the others' requests by up to one sync of theirs plus
//! one of its own, so in a window at most `requests + instances × (what one instance allows
//! for a key within one sync lag)` pass: the overshoot is bounded by the traffic within
//! `2 × sync_interval`, not by the window. `burst` does not apply to a global limit (it
//! applies to its local fallback).
//!
//! # Bounded memory
//!
//! The table holds at most `max_keys` entries (plus a few under concurrent inserts). When it
//! is full, entries of past windows are dropped first (once per window: O(cap) per window,
//! not per request). If it is still full — more than `max_keys` keys active in this one
//! window — a new key is not stored: it is judged by the local fallback limiter (below),
//! which has its own bounded table.
//!
//! # Redis slow or down
//!
//! A round trip has a timeout (`[redis] timeout`, also on connecting). When one fails —
//! timeout, connection refused, any error — every global limit falls back to its **local**
//! limiter (a [`Limiter`] with the same spec on this instance, GCRA) until a round trip
//! succeeds again: fail-open as Envoy's rate-limit service is, never a 5xx, limits keep
//! holding per instance. Requests allowed meanwhile are still counted as pending, and are
//! sent once Redis is back (a round that failed is resent: a timeout whose `INCRBY` did
//! land counts twice — the error is towards limiting). While down, the sync task retries
//! every `sync_interval` (a `PING` when there is nothing to send), so recovery is automatic.
//! State changes are logged once each; errors are counted by kind in
//! `holdfast_ratelimit_redis_errors_total{kind}` (`timeout`, `connect`, `error`), calls in
//! `holdfast_ratelimit_redis_calls_total`, and the state is on `/status` ([`RedisHealth`]).

mod sync;
mod table;

pub use sync::{GlobalSync, RedisHealth, RedisMetrics, RedisSettings, RedisSnapshot, SCRIPT};
pub use table::{window_of, GlobalLimit, Window};
