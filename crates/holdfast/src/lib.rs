//! The Holdfast edge as a library: wiring of config, data path and admin plane (`app`),
//! the reload controller that owns config generations (`controller`), the module kinds it
//! registers with the module host (`registry`), the DNS server's wiring (`dns`), offline
//! validation (`check`), the fleet member's agent and `holdfast rollout` (`fleet`), binary
//! upgrades and inherited sockets (`upgrade`) and the self-contained demo (`demo`). `main.rs` is only the CLI and signals.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the binary and its wiring. `app.rs` (`Running::start/reload/shutdown`),
//! `dns.rs` (starts `holdfast-dns` with `EdgeHealth`, the pool health of the current `State`),
//! `controller.rs` (the reload controller and admin `Backend`: load → check restart-only keys →
//! `build_generation` → swap and install, or reject and record; `build_generation` is the one
//! path `check`, the start and every reload run: the module kinds' plans and the access log's
//! file, then — not for `check` — the modules' start, and `State::build`, every error
//! together), `registry.rs` (the module kinds, one `register` line each), `check.rs` (`holdfast
//! check`: the same load, module plan and build, offline; `--kind bot-features` the artifact checks), `fleet/` (below: the fleet agent, controller and `holdfast rollout`), `demo/` (the tour: embedded config, two in-process origins stopped and started from the admin plane, the 18 Nov 2025 replay, files in a temporary folder; `Demo::start`), `upgrade/` (binary upgrades: `Sockets`, a listening socket per
//! configured address, inherited or bound; `handover.rs`, the descriptors passed to the new
//! process over `SCM_RIGHTS` and its ready/failed report; `systemd.rs`, `LISTEN_FDS` and
//! `sd_notify`; `cli.rs`, `holdfast upgrade`), `main.rs` (CLI, logging,
//! signals: SIGHUP reloads, SIGUSR2 upgrades the binary, SIGINT/SIGTERM stop gracefully).
//!
//! **Invariant:** a rejected config changes nothing: the active `State` stays, the rejection
//! is counted (`holdfast_config_reload_total{result="rejected"}`) and shown on `/status`.

#![forbid(unsafe_code)]

mod app;
mod check;
mod controller;
pub mod demo;
mod dns;
mod fleet;
mod registry;
pub mod upgrade;

pub use app::{Running, StartError};
pub use check::{check_artifact, check_file, config_notices, ARTIFACT_KINDS};
pub use controller::ConfigSource;
pub use fleet::cli::{run as rollout, RolloutAction, RolloutArgs, RolloutFlags};
pub use holdfast_admin::ReloadOutcome;
pub use holdfast_proxy::{set_allocator_trim, ModuleAction, RequestModule};
