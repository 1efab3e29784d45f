//! Modules: everything that makes a per-request decision (bot scoring now; rate limits, rules
//! and challenges later). A module only computes; the runner (`ModuleSlot`) decides what its
//! failure means. No module error, timeout or panic reaches the request beyond that module's
//! own decision: the declared fail policy turns it into "no decision" (`open`), a denial
//! (`closed`) or the last good decision (`stale`).

mod module;

pub use module::{FailPolicy, Module, ModuleError, RequestView, Verdict};
