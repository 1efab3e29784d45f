//! End-to-end tests of the edge: real listeners on 127.0.0.1:0, in-process origins, real
//! clients. One module per behaviour; `support` holds the origins, clients and edge set-up.

// A failing test is the point: helpers may unwrap, panic and index too (clippy.toml's
// allow-*-in-tests covers only `#[test]` functions, not the helpers beside them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

mod access_log;
mod acme;
mod admin;
mod bad_input;
mod balancing;
mod body_retry;
mod bot;
mod browser;
mod cache;
mod challenge;
mod check;
mod client_ip;
mod config_lkg;
mod conn_caps;
mod demo;
mod deploy;
mod dns;
mod docs_examples;
mod failover;
mod fallback;
mod faults;
mod fleet;
mod fleet_tls;
mod global_limits;
mod h3;
mod h3_bad_input;
mod headers;
mod health;
mod idle_release;
mod keepalive;
mod limits;
mod operator_page;
mod origin_down;
mod outage_replay;
mod outlier;
mod overload;
mod reload;
mod retries;
mod routing;
mod rules;
mod slow_clients;
mod status_page;
mod streaming;
mod strict;
mod timeouts;
mod tls;
mod tls_security;
mod upgrade;
