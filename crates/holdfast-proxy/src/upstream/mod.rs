//! Origin connections and the policies around them. A route's `Chain` (`chain.rs`) names its
//! pools in order; a `Pool` (`pool.rs`) picks one of its `Server`s (`server.rs`) by its
//! `Balancer` (`balance.rs`), leaving out those `Outliers` (`outlier.rs`, passive health) or
//! the active checks (`health.rs` the verdicts, `checker.rs` the thread) hold out; a request
//! first takes a slot of the pool's `Admission` (`admission.rs`), and retries draw on its
//! `RetryBudget` (`budget.rs`). Each server keeps its idle connections per worker
//! (`conns.rs`); `connect.rs` opens new ones. Nothing here knows a request's phases: the
//! upstream phase (`phases/upstream.rs`) drives these types.

mod admission;
mod balance;
mod budget;
mod chain;
mod checker;
mod connect;
mod conns;
mod health;
mod outlier;
mod pool;
mod server;

pub(crate) use admission::Admission;
pub(crate) use balance::{stable_hash, Balancer};
pub(crate) use budget::RetryBudget;
pub(crate) use chain::{Chain, FallbackRt, Target};
pub use checker::{CheckTargets, HealthChecker};
pub(crate) use connect::{connect, set_target};
pub(crate) use conns::{set_worker_slot, Conn};
#[cfg(test)]
pub(crate) use pool::{test_pool, test_retry};
pub(crate) use pool::{Picked, Pool, PoolParts, UpstreamTls};
pub(crate) use server::{InFlight, Server};

#[cfg(test)]
mod sim;
