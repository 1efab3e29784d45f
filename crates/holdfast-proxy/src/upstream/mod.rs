//! Origin connections: pools of servers, per-worker idle lists of keep-alive connections,
//! and connection set-up (TCP, optional TLS, HTTP/1.1 or HTTP/2 handshake).

mod balance;
mod connect;
mod pool;

pub(crate) use balance::{stable_hash, Balancer};
pub(crate) use connect::connect;
pub(crate) use pool::{
    set_worker_slot, Admission, Conn, InFlight, Pool, PoolParts, Release, RetryBudget, Server,
    UpstreamTls,
};
