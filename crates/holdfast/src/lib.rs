//! The Holdfast edge as a library: wiring of config, data path and admin plane (`app`),
//! the reload controller that owns config generations (`controller`), the module kinds it
//! registers with the module host (`registry`), the DNS server's wiring (`dns`), offline
//! validation (`check`), the fleet member's agent and `holdfast rollout` (`fleet`) and the
//! self-contained demo (`demo`). `main.rs` is only the CLI and signals.

#![forbid(unsafe_code)]

mod app;
mod check;
mod controller;
pub mod demo;
mod dns;
mod fleet;
mod registry;

pub use app::{Running, StartError};
pub use check::{check_artifact, check_file, ARTIFACT_KINDS};
pub use controller::ConfigSource;
pub use fleet::cli::{run as rollout, RolloutAction, RolloutArgs, RolloutFlags};
pub use holdfast_admin::ReloadOutcome;
pub use holdfast_proxy::{ModuleAction, RequestModule};
