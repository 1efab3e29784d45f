//! Holdfast's data path. `server` binds the listeners and runs one single-threaded runtime
//! per worker thread; each connection is served by hyper with `service::handle`, whose body
//! reads as the request phases in order (`phases`; the upstream phase walks the route's
//! failover chain by a `RetryPlan`: admit, then exchange and judge each attempt). The policies
//! around origins live in `upstream` (pool, server, idle connections, outlier detection,
//! admission, retry budget, balancer, chain, health checks), which knows neither `State` nor
//! the phases; `body` (the request and response bodies) sits below everything and knows its
//! listeners only as hooks (`OnComplete`, `OriginHook`), so the modules form no cycle. All
//! per-generation runtime state (routes, pools, TLS) is one `State`, swapped atomically on
//! reload. Nothing here panics on any input: errors become small error pages that name the
//! request id and the failing side.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the data path.
//!
//! - `server.rs`: binds listeners (one socket per worker, `SO_REUSEPORT`) or takes them bound
//!   by the caller (`start_bound`: inherited at a binary upgrade), runs the workers,
//!   serves each connection with hyper (HTTP/1.1; HTTP/2 or HTTP/1.1 by ALPN on TLS
//!   listeners), applies client limits (header bytes and count, header read timeout), counts
//!   parse errors, drains connections on shutdown (`drain`: within a given grace period).
//! - `conn_limit.rs`: `edge.max_connections`, the open client connections of all workers
//!   together; at the cap the accept loops pause until one closes (the backlog holds the rest).
//! - `h3/`: HTTP/3 to clients (`edge.h3_listen`, `quinn` + `h3`): `listener.rs` binds one UDP
//!   socket (or takes the one a binary upgrade handed over) and runs one QUIC endpoint per
//!   address on a thread of its own (not per worker: a
//!   client's changed address would reach an endpoint that does not know its connection) and
//!   admits attempts (Retry under load and `max_connections_per_ip`, counted in
//!   `admission.rs`; QUIC settings and the TLS listeners' certificate resolver from the
//!   current `State`); `connection.rs` one connection
//!   (handshake, GOAWAY on shutdown); `request.rs` one request stream handed to
//!   `service::handle` like any other, its body adapted by `body.rs` into `ClientBody`;
//!   `alt_svc.rs` adds `Alt-Svc` to TLS responses; `metrics.rs` the `holdfast_quic_*` families;
//!   `memory.rs` an in-memory UDP network on which `fuzzing` runs the listener without sockets.
//! - `idle.rs`: an HTTP/1 connection idle for `edge.idle_release_after` (no request in
//!   flight, no bytes moved, nothing unsent) is taken apart (`into_parts`) and waits for its
//!   next byte holding only its socket; `server.rs` (`serve_h1`, `until_idle`) sets hyper up
//!   again when it comes, replaying the byte. `idle/park.rs`: the worker's park, which keeps
//!   the released connections' deadlines and wakers (one timer per worker, not one each) and
//!   ends their waits when the edge stops. **Invariant:** a release changes nothing on the
//!   wire: no request, byte or keep-alive is lost to it.
//! - `send_timeout.rs`: the client socket's write side with a stall limit (60 s): a client
//!   that stops reading is disconnected, releasing the response body, its origin connection
//!   and pool slot. **Invariant:** no client holds an origin connection by not reading.
//! - `h2c.rs`: with `edge.h2c`, reads just enough of a plain connection to tell the HTTP/2
//!   preface from HTTP/1.1 and replays those bytes to the same servers every other connection
//!   uses, so the same limits apply.
//! - `proxy_protocol.rs`: with `edge.proxy_protocol`, reads the PROXY v1/v2 header (`ppp`)
//!   before anything else; its source address is the connection's client only from a trusted
//!   peer. `rewind.rs` puts bytes read past a header or preface back in front of the stream.
//! - `client_ip.rs`: the client address modules see: the connection's, or from a trusted peer
//!   the rightmost untrusted entry of `X-Forwarded-For` or `Forwarded` (`client_ip_header`).
//! - `service.rs`: `handle` reads as the phases in order; `Completion` (the body's `OnComplete`
//!   hook) records metrics and the access-log line when the response body ends or is dropped.
//! - `phases/module_chain.rs` runs the generation's module chain (`RequestModule`s from
//!   `holdfast-modules`, built by the module host) in order with one `ModuleCtx`: an action is
//!   a header for the origin, an edit, deny, a block, a 429 or its own page (`EdgeResponse`). A module may also own a reserved path prefix (the challenge's
//!   `/.holdfast/challenge`): `phases/reserved.rs` answers those first, before route matching,
//!   on every host, reading a small POST body (≤ 8 KiB, 10 s); with `[[edge.acme]]` it also
//!   owns `/.well-known/acme-challenge/` (the `http-01` key authorizations, else 404).
//! - `phases/`: `strict` (the first phase, before reserved paths and routing: refuses what
//!   hyper's parser lets through but an origin could read differently — `Host` missing, repeated,
//!   malformed or unlike the target / `:authority`, target forms that do not fit the method,
//!   `CONNECT`, a `Transfer-Encoding` other than one `chunked`, `_` names imitating framing or
//!   routing headers — with a `Refusal` counted in `holdfast_http_bad_requests_total{reason}`
//!   and a 400/501 page with `Connection: close`; normalises the rest: other `_` names dropped,
//!   `Upgrade: h2c`/`HTTP2-Settings` removed, `Content-Length` digits, and the path through
//!   `path` (RFC 3986 §6.2.2, once, forwarded normalised; unsafe encodings refused). The table
//!   of decisions is `docs/security.md`), `route` (first route whose host and path prefix match), `limits` (declared body
//!   size), `module_chain`, `upstream` (`forward`: choose the pool of the chain or the fallback,
//!   prepare the request — headers, a body buffered for retry (`Outgoing`) — admit, then each
//!   attempt: exchange → the plan's judgement), `retry` (`RetryPlan`, below), `exchange` (one server: reuse or connect, send with timeouts,
//!   tunnel upgrades), `cache` (routes with `cache`: look-up, coalescing, conditional
//!   revalidation, stale serving, invalidation by unsafe methods, and a `Tap` on the response
//!   body that stores it at its end), `headers` (RFC 9110 §7.6: hop-by-hop removal, `Via`, `X-Forwarded-*`,
//!   `Forwarded`, route header ops), `respond` (error pages).
//!   Re-sending, in two layers. `exchange` (one server): a request hyper hands back unsent
//!   (stale pooled connection) goes once more on a fresh connection, whatever its method; an
//!   idempotent request without a body is also re-sent once when a pooled connection closes
//!   before answering. `RetryPlan` (`phases/retry.rs`; the first pool's `[pools.retry]` policy and
//!   budget govern the whole walk; `attempt` picks a server of the current pool, `judge` records
//!   the outcome for outlier detection and answers `Judgement::Done` or `Judgement::Retry { moved, backoff }`):
//!   a failed attempt —
//!   connect failure (nothing sent: any method, even with a body), reset, head timeout or a
//!   listed 5xx — is retried on *another* healthy server of the pool, else on the next pool of
//!   the route's chain that is not down, with jittered back-off, at most `attempts` times, and
//!   only while the pool's retry budget (tower's `TpsBudget`: retries ≤ `budget_percent` of
//!   requests plus `min_per_second`) allows. Request bodies up to `edge.request_buffer` (64 KiB;
//!   at least `retry.buffer_body` when the request may be re-sent; never for an upgrade, gRPC or
//!   a route with `request_buffering = false`) are read whole before the origin is contacted
//!   (`RequestBody::read_up_to` → `RequestBody::Buffered`), so a body that fails to frame or
//!   stalls never reaches the origin in part, and can be sent again; larger bodies stream (what
//!   was read sent first) and are never re-sent; non-idempotent methods only with
//!   `non_idempotent = true`. A retry that moves to another pool sends that pool's `Host`.
//!   Timeouts: `connect` bounds TCP + TLS + handshake; `read` bounds each wait for the origin
//!   (the head, then each body chunk), counted from the client body's last progress while an
//!   upload is still moving; a stalled upload is the client's fault (408), not the origin's;
//!   `total` bounds the whole exchange.
//! - `upstream/` (the policies around origin connections; it knows neither `State` nor the
//!   phases): `pool.rs` (`Pool`: `pick` — the balancer over the servers outlier detection and the
//!   checks leave in, each pick taking the server's in-flight count within `max_connections`;
//!   `record_outcome`; `is_down` for the chain), `server.rs` (`Server`: address, weight, counters,
//!   its idle connections, the in-flight count `InFlight` that a response body takes over as an
//!   `OriginLease`, and the `OriginHook` the body calls), `conns.rs` (`IdleConns`: per-worker idle
//!   lists of HTTP/1.1 senders and a shared HTTP/2 sender per worker; `Conn`), `outlier.rs`
//!   (`Outliers`, passive health: consecutive failures trip a server and eject it within
//!   `max_ejection_percent`; panic mode below `panic_threshold` percent healthy; works over a
//!   `Member` trait, unit-tested with fakes), `admission.rs` (`Admission`: the optional
//!   concurrency limit and queue, 503 + `Retry-After`), `budget.rs` (`RetryBudget`, tower's
//!   `TpsBudget` fed every 16 requests), `balance.rs` (`Balancer`: smooth weighted round robin
//!   precomputed per generation, least-request by power of two choices on in-flight counts,
//!   weighted rendezvous hashing on a request key; all skip servers already tried; sees servers
//!   as a `Candidate`), `chain.rs` (a route's pools in order and its fallback; `choose` picks the
//!   first pool not down and counts changes in `holdfast_pool_failover_total`), `health.rs`
//!   (`HealthState`, a server's check verdict), `checker.rs` (`HealthChecker`, the checks'
//!   thread, fed `CheckTargets` — a generation's pools — on start and every applied reload),
//!   `connect.rs` (TCP, TLS with SNI, handshake; bounded by the connect timeout).
//! - `body.rs`: `ClientBody` is the client's request body whatever the protocol (hyper's
//!   `Incoming`, or the HTTP/3 adapter's stream); `RequestBody` enforces `max_request_body` while streaming and records upload
//!   progress (`Upload`) for the read timeout; `ResponseBody`
//!   streams the origin body, enforces the read/total timeouts lazily (a timer only exists once
//!   the origin makes us wait), and knows its listeners only as hooks: `OnComplete` (told the
//!   bytes sent and whether the body failed) and, for an origin body, an `OriginLease` —
//!   `OriginHook::reuse` gets the HTTP/1.1 connection back after a whole body, `done` ends the
//!   in-flight count, and the pool's admission slot is released with it.
//! - `state.rs`: `State::build` — where a `Config` becomes the data path's runtime objects
//!   (the modules' instances are built by their kinds, through the module host). It is
//!   given the generation it replaces: servers with unchanged connection settings (and their
//!   idle connections and counters), unchanged retry budgets and concurrency slots carry over,
//!   so a reload opens no new origin connections and forgets no in-flight count.
//! - `purge.rs`: a purge URL in any form a client sends (scheme or not, host case, port,
//!   query order, dot segments) turned into the keys the cache stores it under, per route.
//! - `tls.rs`: the certificate files (and their expiry), origin TLS client config (with the
//!   pool's client certificate). `tls/sites.rs`: one `ServerConfig` per `[[edge.tls]]` and
//!   per `[[edge.acme]]` table (its policy, its client-certificate verifier), chosen by SNI
//!   before the handshake (`accept`, rustls's lazy acceptor); one `NameIndex` picks the site
//!   (exact — files' and ACME names —, `*.suffix`, the default, else the first ACME table)
//!   for the configuration and for the shared certificate resolver, which serves a file's key
//!   or what `holdfast_acme::CertStore` serves for the set now; a ClientHello offering ALPN
//!   `acme-tls/1` gets the `tls-alpn-01` challenge configuration, and `server.rs` closes
//!   such a connection after the handshake. The connection's `TlsPeer` (site, verified
//!   subject); `tls/policy.rs`: versions, suites and groups checked against *ring*'s
//!   lists; `tls/tickets.rs`: session-ticket keys rotated on a schedule, shared by every site
//!   and kept across reloads, and with `[fleet]` the fleet's key ring (`FleetTicketKeys`,
//!   installed by the fleet agent, preferred while it has a key issuing now). `phases/client_cert.rs` strips and sets the subject header and
//!   answers 421 for a host whose site requires a certificate on another site's connection.
//! - `access_log.rs`: JSON lines formatted into a thread-local buffer, batches handed to a
//!   writer thread through a bounded channel; overflow is dropped and counted.
//! - `metrics.rs`: Prometheus families; label sets resolved per generation. `cache_metrics.rs`:
//!   the `holdfast_cache_*` families, brought up to the caches' atomic counters at each scrape.
//!
//! **Invariant:** no `unwrap`, `expect`, `panic!` or slice indexing outside tests (workspace lints).
//!
//! **Invariant:** an origin receives exactly one `Host`, one framing and the normalised path,
//! or nothing: every request passes `phases::strict` before any other phase, and routes,
//! rules, limits, the challenge and the cache key all read the path it wrote.
//!
//! **Invariant:** no import cycle between the proxy's modules: `body` imports no other module of
//! the crate (its listeners are hooks), `upstream/` imports neither `State` nor the phases, and
//! inside `upstream/` each file depends only on files below it (`pool` → `server` → `conns`,
//! `outlier`, `health`, `balance`). The `module_cycles` test reads the sources and fails on any
//! cycle.
//!
//! **Invariant:** a request sees exactly one `State`; nothing on the request path takes a lock
//! held across `.await` (the idle-list mutex is per worker and held for a push or pop).
//!
//! **Invariant:** every response carries `x-request-id`; every edge-made page names the
//! request id and the failing side (client, edge, origin). A client's fault (bad head, body too
//! large or stalled) is never counted against an origin server.
//!
//! **Invariant (speed):** the common request costs no hash look-up for absent hop-by-hop
//! headers, no `fmt` in the access log, and no connection set-up future in the service future
//! (`service::tests::handle_future_stays_small` guards its size).
//!
//! **Invariant (speed):** a route without `cache` pays one `Option` check and no allocation
//! for the cache; a hit builds its response from the stored entry without contacting a pool.
//!
//! Health state lives in each `Server` (`upstream/server.rs`) and has two writers, each owning
//! its own part:
//!
//! - the data path owns the passive part — consecutive failures, `tripped_until` (failing: the
//!   pool counts it down for the chain), `ejected_until` (out of rotation, within
//!   `max_ejection_percent`) — its `Passive` record (`upstream/outlier.rs`), through
//!   `Pool::record_outcome` after each attempt, and the in-flight count through `InFlight` guards
//!   (handed to the response body as its `OriginLease`);
//! - the health-check thread (`upstream/checker.rs`, its own current-thread runtime, one task per
//!   checked server, restarted on every applied reload) owns `HealthState` (`upstream/health.rs`): the verdict
//!   (`unknown` → `up` on a pass; `down` after `unhealthy_after` failures in a row; `up` again
//!   after `healthy_after` passes), its streaks and last result. A verdict change recounts the
//!   pool's `down_servers`, and a turn to `up` ends a passive ejection (Envoy's default).
//!
//! `/status` and metrics only read (the `holdfast_upstream_healthy` gauges are recomputed at each
//! scrape, since ejections end by the clock). The data path reads two atomics per pool
//! (`ejections_end`, `down_servers`) and scans servers only while one is ejected or down.
//! Servers carry over reloads when their settings are unchanged, so health survives a reload.
//!
//! **Invariant:** `unknown` counts as healthy, panic mode keeps a pool usable when too few
//! servers are healthy, and a chain with every pool down serves its fallback or uses its first
//! pool anyway: no health state can by itself make the edge refuse a request it could try.

#![forbid(unsafe_code)]

mod access_log;
mod body;
mod cache_metrics;
mod client_ip;
mod conn_limit;
mod ctx;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod h2c;
mod h3;
mod idle;
mod metrics;
#[cfg(test)]
mod module_cycles;
mod phases;
mod proxy_protocol;
mod purge;
mod refusal;
mod request_id;
mod rewind;
mod send_timeout;
mod server;
mod service;
mod state;
mod tls;
pub use tls::{fresh_ticket_key, FleetTicketKeys, OcspStatus, RingError, SharedTicketKey};
mod upstream;

pub use access_log::{AccessLogTarget, AccessLogWriter};
pub use ctx::wants_json;
pub use holdfast_cache::Purge;
/// What the data path runs of a module; defined beside the runner in `holdfast-modules`.
pub use holdfast_modules::{
    Block, EdgeRequest, EdgeResponse, Edit, ModuleAction, RequestModule, TooMany, REQUEST_ID_MARK,
};
pub use metrics::Metrics;
pub use server::{
    bind_all, bind_h3, set_allocator_trim, start, start_bound, BoundListeners, EdgeHandle,
    Listeners,
};
pub use state::{PoolStatus, RouteCacheStatus, RouteStatus, ServerStatus, State, StateInputs};
pub use upstream::{CheckTargets, HealthChecker};
