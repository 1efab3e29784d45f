//! Modules: everything that makes a per-request decision (rate limits, rules, the challenge,
//! bot scoring). Three layers, each in its own file:
//! - the contract (`host::ModuleKind`): what every kind of module implements in its own crate
//!   — plan from config without side effects (`holdfast check` runs it), start or keep the
//!   previous generation's instance, wire its steps into the request chain, status as typed
//!   data, the kill switch — and `host::ModuleHost`, the registry over it that the binary
//!   fills with one `register` line per kind (start reading here for a module);
//! - what the data path sees (`request`): `RequestModule`, `ModuleAction`, and `ModuleCtx`,
//!   what one request's modules hand each other (the bot score the rules read);
//! - the runner (`ModuleSlot`), below.
//!
//! A module only computes; the runner (`ModuleSlot`) decides what its
//! failure means. No module error, timeout or panic reaches the request beyond that module's
//! own decision: the declared fail policy turns it into "no decision" (`open`), a denial
//! (`closed`) or the last good decision (`stale`).
//!
//! `ModuleSlot::run`, in order:
//! 1. disabled (config `enabled = false`, or the operator `Override`, which wins) →
//!    `Verdict::Unknown`, the module is not called;
//! 2. breaker open (tripped, in cool-down, or its half-open probe in flight) → the fail
//!    policy, the module is not called;
//! 3. otherwise the module is called inside `catch_unwind` and timed: a panic is a failure of
//!    kind `panic`, an `Err(e)` of kind `e.kind()`, a success that took longer than
//!    `time_budget` of kind `timeout` (its result is discarded; the budget is enforced by
//!    accounting, the call itself is not interrupted, so a slow module trips its breaker);
//! 4. a failure is counted (`holdfast_module_errors_total{module,kind}`), reported at most
//!    once per `report_interval` per kind, fed to the breaker, and answered by the policy:
//!    `open` → `Unknown`, `closed` → `Deny`, `stale` → `Stale(last decision for the
//!    module's stale key)` or `Unknown`.
//!
//! Panics are caught only with `panic = "unwind"` (the workspace's release profile).
//! `install_rate_limited_panic_hook` keeps a panic storm from writing a report per request.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the module framework. **Where to start reading for a module:**
//! `host/kind.rs`, the contract every kind of module implements in its own crate
//! (`ModuleKind`: `plan` from the config without side effects — `holdfast check` runs it —,
//! `start` a new instance or `Keep` the previous generation's, `update` a kept one, `wire` its
//! `Step`s into the request chain at a `Stage` and `offer` what later kinds read through
//! `Links`, `switch` for the kill switch, `artifacts`, `status` as a typed `Serialize` value),
//! then `host/mod.rs`, `ModuleHost`, the registry over it (one lock; plan errors of every kind
//! together; a kind whose start panics keeps its previous instance; overrides in
//! `state_dir/module-overrides.json`; forced artifact reloads; `/status`). The kinds:
//! `holdfast_shield::kind::{IpListsKind, LimitsKind, RulesKind}`,
//! `holdfast_challenge::ChallengeKind`, `holdfast_bot::kind::BotKind`; the binary registers
//! them in `registry.rs`, one line each. `request.rs`: what the data path sees of a module —
//! `RequestModule` (`apply_in` with the request's `ModuleCtx`), `ModuleAction`, `EdgeResponse`,
//! `EdgeRequest` — and `ModuleCtx`, what one request's modules hand each other (the bot score
//! the rules read), on the stack of the modules phase. `Module` (a per-request decision:
//! `decide` returns a value or a `ModuleError`) and `ModuleSlot<M>`, the runner every module
//! runs in:
//! kill switch (config `enabled`, operator `Override`), time budget, `catch_unwind` at the
//! boundary, circuit breaker (one atomic word; trips into the policy, half-open probe),
//! fail policy (`open` → `Verdict::Unknown`, `closed` → `Deny`, `stale` → the last decision for
//! the same key from a fixed 4096-slot table), rate-limited error reports and the process-wide
//! rate-limited panic hook.
//!
//! **Invariant:** no module error is a 5xx: every failure, timeout or panic of a module becomes
//! its policy's verdict, and a denial is a 403.
//!
//! **Invariant:** a kind's `plan` starts and writes nothing, and every error a `start` could
//! meet is found by the `plan`: `holdfast check` runs the plans, so a reload cannot reject a
//! module `check` passed. The host knows no kind: adding one touches its own crate and one
//! `register` line in `crates/holdfast/src/registry.rs`.

#![forbid(unsafe_code)]

mod breaker;
#[cfg(test)]
mod breaker_sim;
mod clock;
pub mod host;
mod metrics;
mod module;
mod panic_hook;
mod report;
mod request;
mod settings;
mod slot;
mod stale;

pub use breaker::MAX_COOLDOWN_FACTOR;
pub use clock::{Clock, ManualClock, SystemClock};
pub use metrics::ModuleMetrics;
pub use module::{FailPolicy, Module, ModuleError, RequestView, Verdict};
pub use panic_hook::{
    install_rate_limited_panic_hook, panic_hook_stats, PanicHookStats, PanicLimiter, PanicReport,
    PANIC_REPORT_INTERVAL,
};
pub use report::{MAX_KINDS, OTHER_KIND, PANIC_KIND, TIMEOUT_KIND};
pub use request::{
    wants_json, Block, BotScore, ChallengeAsk, ChallengeGate, EdgeRequest, EdgeResponse, Edit,
    ModuleAction, ModuleCtx, ReadsBotScore, RequestModule, TooMany, REQUEST_ID_MARK,
};
pub use settings::{BreakerSettings, ModuleSettings, ModuleState, Override};
pub use slot::{LastErrorStatus, ModuleSlot, ModuleStatus};
pub use stale::STALE_SLOTS;
