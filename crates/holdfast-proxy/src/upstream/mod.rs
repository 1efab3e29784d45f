//! Origin connections: pools of servers, per-worker idle lists of keep-alive connections,
//! connection set-up (TCP, optional TLS, HTTP/1.1 or HTTP/2 handshake), active health checks
//! and the failover chains of routes.

mod balance;
mod chain;
mod checker;
mod connect;
mod health;
mod pool;

pub(crate) use balance::{stable_hash, Balancer};
pub(crate) use chain::{Chain, FallbackRt, Target};
pub use checker::{CheckTargets, HealthChecker};
pub(crate) use connect::{connect, set_target};
pub(crate) use pool::{
    set_worker_slot, Admission, Conn, InFlight, Picked, Pool, PoolParts, RetryBudget, Server,
    UpstreamTls,
};
