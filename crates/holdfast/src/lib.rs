//! The Holdfast edge as a library: wiring of config, data path and admin plane (`app`),
//! the reload controller that owns config generations (`controller`), offline validation
//! (`check`) and the self-contained demo (`demo`). `main.rs` is only the CLI and signals.

mod app;
mod check;
mod controller;
pub mod demo;

pub use app::{Running, StartError};
pub use check::check_file;
pub use controller::ConfigSource;
pub use holdfast_admin::ReloadOutcome;
