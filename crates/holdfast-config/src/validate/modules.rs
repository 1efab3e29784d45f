//! `[modules.*]`: the per-request decision modules, their kill switches, fail policies,
//! time budgets and circuit breakers.

use super::pool::{duration_in, in_range};
use super::Errors;
use crate::config::*;
use crate::spec::*;
use std::path::Path;
use std::time::Duration;

/// Far above what scoring takes (about a microsecond), so a thread paused by the scheduler
/// mid-call (the budget is wall-clock time) is not taken for a slow module.
const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(10);
const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_MAX_SHRINK_PERCENT: u32 = 50;

pub(super) fn modules(spec: &ModulesSpec, base_dir: &Path, errs: &mut Errors) -> Modules {
    Modules {
        bot: spec
            .bot
            .as_ref()
            .map(|b| bot("modules.bot", b, base_dir, errs)),
    }
}

fn bot(at: &str, b: &BotSpec, base_dir: &Path, errs: &mut Errors) -> BotModule {
    if b.features.is_empty() {
        errs.add(
            format!("{at}.features"),
            "empty path",
            "name the feature file, e.g. features = \"bot-features.json\"",
        );
    }
    if b.public_key.as_deref().is_some_and(str::is_empty) {
        errs.add(
            format!("{at}.public_key"),
            "empty key",
            "give the generator's ed25519 public key in base64, or leave it out",
        );
    }
    BotModule {
        enabled: b.enabled.unwrap_or(true),
        ja4h: b.ja4h.unwrap_or(false),
        features: base_dir.join(&b.features),
        fail_policy: fail_policy(&format!("{at}.fail_policy"), b.fail_policy.as_deref(), errs),
        public_key: b.public_key.clone().filter(|k| !k.is_empty()),
        max_shrink_percent: in_range(
            &format!("{at}.max_shrink_percent"),
            b.max_shrink_percent,
            DEFAULT_MAX_SHRINK_PERCENT,
            100,
            errs,
        ),
        time_budget: duration_in(
            &format!("{at}.time_budget"),
            b.time_budget,
            DEFAULT_TIME_BUDGET,
            (
                Duration::from_micros(1),
                Duration::from_secs(1),
                "1us to 1s",
            ),
            errs,
        ),
        report_interval: duration_in(
            &format!("{at}.report_interval"),
            b.report_interval,
            DEFAULT_REPORT_INTERVAL,
            (
                Duration::from_secs(1),
                Duration::from_secs(3600),
                "1s to 1h",
            ),
            errs,
        ),
        breaker: breaker(&format!("{at}.breaker"), &b.breaker, errs),
    }
}

pub(super) fn fail_policy(path: &str, text: Option<&str>, errs: &mut Errors) -> FailPolicy {
    match text {
        None | Some("open") => FailPolicy::Open,
        Some("closed") => FailPolicy::Closed,
        Some("stale") => FailPolicy::Stale,
        Some(other) => {
            errs.add(
                path,
                format!("unknown fail policy {other:?}"),
                "use \"open\" (no decision), \"stale\" (the last good decision) or \"closed\" (deny)",
            );
            FailPolicy::Open
        }
    }
}

fn breaker(at: &str, b: &BreakerSpec, errs: &mut Errors) -> Breaker {
    let error_percent = match b.error_percent {
        None => 50,
        Some(p) => u32::try_from(p)
            .ok()
            .filter(|p| (1..=100).contains(p))
            .unwrap_or_else(|| {
                errs.add(
                    format!("{at}.error_percent"),
                    format!("{p} is out of range"),
                    "use 1 to 100 (percent of calls that fail before the module trips)",
                );
                50
            }),
    };
    Breaker {
        error_percent,
        min_requests: match b.min_requests {
            None => 20,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .unwrap_or_else(|| {
                    errs.add(
                        format!("{at}.min_requests"),
                        format!("{n} is out of range"),
                        "use 1 to 1000000: the calls in a window before the error share counts",
                    );
                    20
                }),
        },
        window: duration_in(
            &format!("{at}.window"),
            b.window,
            Duration::from_secs(10),
            (
                Duration::from_secs(1),
                Duration::from_secs(600),
                "1s to 10m",
            ),
            errs,
        ),
        cooldown: duration_in(
            &format!("{at}.cooldown"),
            b.cooldown,
            Duration::from_secs(5),
            (
                Duration::from_millis(100),
                Duration::from_secs(3600),
                "100ms to 1h",
            ),
            errs,
        ),
    }
}

/// JA4H is off unless `[modules.bot] ja4h = true` (it is under the FoxIO License 1.1): a rule
/// that reads `request.ja4h` needs it on.
pub(super) fn ja4h_readers(rules: &[Rule], modules: &Modules, errs: &mut Errors) {
    if modules.bot.as_ref().is_some_and(|b| b.ja4h) {
        return;
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule.fields.ja4h {
            errs.add(
                format!("rules[{i}].expr"),
                "reads request.ja4h, but JA4H is off",
                "set ja4h = true in [modules.bot] (JA4H is under the FoxIO License 1.1: read \
                 docs/artifacts.md#ja4h-style-fingerprint first), or leave request.ja4h out",
            );
        }
    }
}
