//! The admin/status plane: `GET /` (the operator page, live through `GET /events`),
//! `GET /health`, `GET /metrics`, `GET /status`, `POST /reload`,
//! `GET /dns/peer` (DNS peers' health votes, bearer token), `POST /dns/targets/IP/ACTION`
//! (operator overrides of steered targets).
//! It runs on its own thread and runtime, bound to its own address, so it keeps answering
//! when the data path is saturated or broken. It knows nothing of the proxy: it asks a
//! `Backend` for answers.

mod access;
mod page;
pub mod public;
mod server;
mod tls;

pub use access::{Access, TokenError};
pub use server::{start, AdminHandle, Backend, ModuleSwitch, PurgeRequest, ReloadOutcome};
pub use tls::{server_config as tls_server_config, AdminTlsError};
