//! Deterministic simulation for Holdfast's time-based decision logic (health verdicts,
//! passive ejection, failover, the module breaker, the artifact pipeline, DNS steering and
//! quorum). The logic under test is synchronous state machines that take the time as an
//! argument, so a simulation needs no networking: `Sim` is a virtual clock and an event
//! queue ordered by (time, insertion), `Rng` a seeded generator, and `run_seeds` runs a
//! scenario for every seed of `SIM_SEEDS` (default 256) or the one `SIM_SEED`, checking
//! invariants after every event. A failing seed panics with the one command that replays
//! it. Used only from tests (`[dev-dependencies]`); nothing here does I/O.

#![forbid(unsafe_code)]

mod queue;
mod rng;
mod runner;

pub use queue::Sim;
pub use rng::Rng;
pub use runner::{assert_seeds, run_seeds, seeds, Failure, DEFAULT_SEEDS};
