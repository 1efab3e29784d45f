//! The admin/status plane: `GET /` (the operator page, live through `GET /events`),
//! `GET /health`, `GET /metrics`, `GET /status`, `POST /reload`,
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
//! `GET /` (the operator page: `page.rs` renders the `/status`
//! document with `maud`, worst first; `GET /events` streams its `<main>` as Server-Sent Events,
//! and a `<noscript>` refresh serves browsers without JavaScript), `GET /health`, `/metrics`,
//! `/status`, `POST /reload`, `POST /upgrade` (a binary upgrade, see docs/operations.md),
//! `POST /modules/NAME/disable|enable` (the operator's kill switch), `POST /cache/purge`
//! (url, prefix, surrogate key or all; soft or hard), `POST /demo/origins/NAME/stop|start` and
//! `POST /demo/replay` (`holdfast demo` only: 404 elsewhere; a form from the page gets a 303
//! back to it, so its buttons work without JavaScript), on a
//! dedicated thread and current-thread runtime. It knows the edge only through the `Backend`
//! trait; blocking work (reload) runs on `spawn_blocking`.
//!
//! **Invariant:** never served on a data listener; the config rejects an admin address that
//! overlaps a data listener.
//!
//! `public/` is the public status page (`[status_page]`): its own listener, thread and
//! current-thread runtime; `components.rs` judges each component (operational, degraded,
//! outage) from the `/status` document, `incidents.rs` keeps the notes posted with
//! `POST /incidents` in `state_dir`, `export.rs` writes the same snapshot to `export_dir` and
//! `PUT`s it to `export_put` (http or https, `export_ca_file` or the system's CAs) after every change.
//!
//! **Invariant:** a failing export never affects serving (counted, shown, retried).
//!
//! **Invariant:** the operator page renders only from the `/status` document, so it cannot say
//! what `/status` does not. With `[admin] token_file`, `access.rs` guards every route but
//! `GET /health`, `GET /dns/peer` (its own token) and `/login`; the sign-in cookie is honoured
//! for `GET` only, so a `POST` always needs the `Authorization` header. With `tls_cert`/`tls_key`
//! (and `client_ca`), `tls.rs` serves the same router over rustls, and a client without a
//! certificate of that CA fails the handshake.

#![forbid(unsafe_code)]

mod access;
mod page;
pub mod public;
mod server;
mod tls;

pub use access::{Access, TokenError};
pub use server::{
    start, start_on, AdminHandle, Backend, DemoAction, ModuleSwitch, PurgeRequest, ReloadOutcome,
    UpgradeRequest,
};
pub use tls::{server_config as tls_server_config, AdminTlsError};
