//! The DNS server over real UDP and TCP sockets on 127.0.0.1:0, queried with hickory-proto
//! messages (no resolver cache in the way): records, negative answers, truncation, zone
//! reloads, steering, bad input, bursts through the batched UDP loop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod authoritative;
mod bad_input;
mod batch;
mod steering;
mod support;
mod zones;
