//! The admin/status plane: `GET /health`, `GET /metrics`, `GET /status`, `POST /reload`,
//! `GET /dns/peer` (DNS peers' health votes, bearer token), `POST /dns/targets/IP/ACTION`
//! (operator overrides of steered targets).
//! It runs on its own thread and runtime, bound to its own address, so it keeps answering
//! when the data path is saturated or broken. It knows nothing of the proxy: it asks a
//! `Backend` for answers.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! `GET /health`, `/metrics`, `/status`, `POST /reload`,
//! `POST /modules/NAME/disable|enable` (the operator's kill switch), `POST /cache/purge`
//! (url, prefix, surrogate key or all; soft or hard), on a
//! dedicated thread and current-thread runtime. It knows the edge only through the `Backend`
//! trait; blocking work (reload) runs on `spawn_blocking`.
//!
//! **Invariant:** never served on a data listener; the config rejects an admin address that
//! overlaps a data listener.

#![forbid(unsafe_code)]

mod server;

pub use server::{start, AdminHandle, Backend, ModuleSwitch, PurgeRequest, ReloadOutcome};
