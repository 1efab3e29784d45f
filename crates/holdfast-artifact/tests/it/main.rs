//! Integration tests for `holdfast-artifact`: one binary, one module per concern, all on a
//! tiny test kind (`support::List`: `{"version": N, "items": [{"name": ...}]}`, at most
//! `CAPACITY` items, `MAX_BYTES` 4096). `load` covers each outcome and rejection reason of
//! a load, `lkg` the last-known-good copy and starting on it, `signature` detached
//! signatures, `check` the offline check, `metrics` the exported families, `watch` the file
//! watcher.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod check;
mod lkg;
mod load;
mod metrics;
mod signature;
mod support;
mod watch;
