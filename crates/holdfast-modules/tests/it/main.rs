//! Integration tests for `holdfast-modules`: the runner (`ModuleSlot`) driven through its
//! public API with a test module that can be told to succeed, fail, panic or overrun its
//! budget, on a `ManualClock` (no sleeps, no timing asserts). `policies`: every fail policy for
//! every failure kind; `kill_switch`: config and override; `breaker`: trip, cool-down,
//! half-open probe; `stale`; `reports`: rate-limited reports and their counters; `status`:
//! `/status` and metrics; `panic_storm`: a module panicking on every request, and the panic
//! hook in a child process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod breaker;
mod kill_switch;
mod panic_storm;
mod policies;
mod reports;
mod stale;
mod status;
mod support;
