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

#![forbid(unsafe_code)]

mod access_log;
mod body;
mod cache_metrics;
mod client_ip;
mod ctx;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod h2c;
mod metrics;
#[cfg(test)]
mod module_cycles;
mod phases;
mod proxy_protocol;
mod purge;
mod request_id;
mod rewind;
mod server;
mod service;
mod state;
mod tls;
mod upstream;

pub use access_log::{AccessLogTarget, AccessLogWriter};
pub use ctx::wants_json;
pub use holdfast_cache::Purge;
/// What the data path runs of a module; defined beside the runner in `holdfast-modules`.
pub use holdfast_modules::{
    Block, EdgeRequest, EdgeResponse, Edit, ModuleAction, RequestModule, TooMany, REQUEST_ID_MARK,
};
pub use metrics::Metrics;
pub use server::{start, EdgeHandle, Listeners};
pub use state::{PoolStatus, RouteCacheStatus, RouteStatus, ServerStatus, State, StateInputs};
pub use upstream::{CheckTargets, HealthChecker};
