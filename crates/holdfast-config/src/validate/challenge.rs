//! `[challenge]`: keys, cookie, lifetimes, address binding, proof-of-work difficulty, the
//! no-JavaScript wait and the fail policy. Every key has a default, so a config with
//! `action = "challenge"` rules and no `[challenge]` table works (with a generated key).

use super::pool::duration_in;
use super::Errors;
use crate::config::*;
use crate::spec::*;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_COOKIE_NAME: &str = "holdfast_challenge";
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PAGE_TTL: Duration = Duration::from_secs(10 * 60);
const DEFAULT_DIFFICULTY: u8 = 16;
const MAX_DIFFICULTY: u8 = 32;
const DEFAULT_NOJS_WAIT: Duration = Duration::from_secs(5);
/// A cookie check is one or two HMACs (microseconds); the rest is headroom for a thread
/// paused by the scheduler mid-call.
const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(10);

pub(super) fn challenge(
    spec: Option<&ChallengeSpec>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Challenge {
    let at = "challenge";
    let empty = ChallengeSpec {
        enabled: None,
        keys: None,
        cookie_name: None,
        ttl: None,
        page_ttl: None,
        ipv4_prefix: None,
        ipv6_prefix: None,
        difficulty: None,
        nojs_wait: None,
        fail_policy: None,
        time_budget: None,
    };
    let c = spec.unwrap_or(&empty);
    let keys = match c.keys.as_deref() {
        Some("") => {
            errs.add(
                format!("{at}.keys"),
                "empty path",
                "name the key file (one hex key of at least 32 bytes per line, e.g. from \
                 `openssl rand -hex 32`), or leave keys out to use a generated key",
            );
            None
        }
        Some(p) => Some(base_dir.join(p)),
        None => None,
    };
    let cookie_name = c
        .cookie_name
        .clone()
        .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_string());
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if cookie_name.is_empty() || cookie_name.len() > 64 || !cookie_name.bytes().all(token_char) {
        errs.add(
            format!("{at}.cookie_name"),
            format!("{cookie_name:?} is not a cookie name"),
            "use 1 to 64 letters, digits, '-' or '_' (default \"holdfast_challenge\")",
        );
    }
    let prefix = |key: &str, v: Option<i64>, default: u8, max: u8, errs: &mut Errors| match v {
        None => default,
        Some(v) => match u8::try_from(v).ok().filter(|v| *v <= max) {
            Some(v) => v,
            None => {
                errs.add(
                    format!("{at}.{key}"),
                    format!("{v} is out of range"),
                    &format!(
                        "use 0 to {max}: the leading address bits a pass cookie is bound to \
                         (0: any address)"
                    ),
                );
                default
            }
        },
    };
    let fail_policy = match c.fail_policy.as_deref() {
        None | Some("closed") => FailPolicy::Closed,
        Some("open") => FailPolicy::Open,
        Some(other) => {
            errs.add(
                format!("{at}.fail_policy"),
                format!("unknown fail policy {other:?}"),
                "use \"closed\" (a failing challenge answers 403 on routes not marked \
                 critical) or \"open\" (it lets requests through)",
            );
            FailPolicy::Closed
        }
    };
    Challenge {
        enabled: c.enabled.unwrap_or(true),
        keys,
        cookie_name,
        ttl: duration_in(
            &format!("{at}.ttl"),
            c.ttl,
            DEFAULT_TTL,
            (
                Duration::from_secs(60),
                Duration::from_secs(30 * 24 * 3600),
                "1m to 30days",
            ),
            errs,
        ),
        page_ttl: duration_in(
            &format!("{at}.page_ttl"),
            c.page_ttl,
            DEFAULT_PAGE_TTL,
            (
                Duration::from_secs(10),
                Duration::from_secs(24 * 3600),
                "10s to 1day",
            ),
            errs,
        ),
        ipv4_prefix: prefix("ipv4_prefix", c.ipv4_prefix, 24, 32, errs),
        ipv6_prefix: prefix("ipv6_prefix", c.ipv6_prefix, 64, 128, errs),
        difficulty: c.difficulty.map_or(DEFAULT_DIFFICULTY, |d| {
            difficulty(&format!("{at}.difficulty"), d, errs)
        }),
        nojs_wait: duration_in(
            &format!("{at}.nojs_wait"),
            c.nojs_wait,
            DEFAULT_NOJS_WAIT,
            (Duration::ZERO, Duration::from_secs(300), "0s to 5m"),
            errs,
        ),
        fail_policy,
        time_budget: duration_in(
            &format!("{at}.time_budget"),
            c.time_budget,
            DEFAULT_TIME_BUDGET,
            (
                Duration::from_micros(1),
                Duration::from_secs(1),
                "1us to 1s",
            ),
            errs,
        ),
    }
}

/// A proof-of-work difficulty: leading zero bits, 1 to 32.
pub(super) fn difficulty(path: &str, d: i64, errs: &mut Errors) -> u8 {
    match u8::try_from(d)
        .ok()
        .filter(|d| (1..=MAX_DIFFICULTY).contains(d))
    {
        Some(d) => d,
        None => {
            errs.add(
                path,
                format!("{d} is out of range"),
                &format!(
                    "use 1 to {MAX_DIFFICULTY} leading zero bits (each bit doubles the \
                     browser's work; 16 takes well under a second, the default)"
                ),
            );
            DEFAULT_DIFFICULTY
        }
    }
}

/// Challenge rules without their own difficulty take `[challenge].difficulty`.
pub(super) fn resolve_difficulty(mut rules: Vec<Rule>, default: u8) -> Vec<Rule> {
    for r in &mut rules {
        if let RuleAction::Challenge { difficulty, .. } = &mut r.action {
            if *difficulty == 0 {
                *difficulty = default;
            }
        }
    }
    rules
}
