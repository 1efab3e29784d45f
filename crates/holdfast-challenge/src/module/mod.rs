//! The challenge as a module kind (`ChallengeKind`, the edge's wiring of this crate, with
//! its I/O): `ChallengeModule` (a `Module` whose decision is whether the request carries a
//! valid pass cookie) in its `ModuleSlot` (kill switch, fail policy, budget, breaker), the
//! pages it answers with, and its reserved paths `/.holdfast/challenge/{verify,nojs,return}`.
//! It has no request step: the rules call it through `ChallengeGate` when a `challenge` rule
//! matches. Keys come from `[challenge].keys`, else a key generated once and kept in
//! `edge.state_dir/challenge-key` (or in memory); the plan reads them, the start writes one.

mod gate;
mod kind;
mod metrics;
mod status;
#[cfg(test)]
mod tests;

use gate::{cookie, user_agent};
pub use kind::{ChallengeConfig, ChallengeKind, ChallengePlan, ChallengeRunning};
use metrics::ChallengeMetrics;
pub use status::{ByFormat, ByMethod, ChallengeDetail, ChallengeStatus};

use crate::{
    challenge_page, encode_component, form_value, json_body, loop_page, safe_target, wait_page,
    Keys, PageInput, Reject, Settings, Signer, MAX_KEY_FILE_BYTES, NOJS_PATH, VERIFY_PATH,
};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::host::{Links, ModuleKind, Start, Step, Switch};
use holdfast_modules::wants_json;
use holdfast_modules::{
    ChallengeAsk, ChallengeGate, EdgeRequest, EdgeResponse, Module, ModuleAction, ModuleError,
    ModuleSlot, ModuleStatus, RequestView, Verdict, REQUEST_ID_MARK,
};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use prometheus::{IntCounter, IntCounterVec};
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The reserved prefix, answered on every host before any route.
pub const PREFIX: &str = "/.holdfast/challenge";
const RETURN_PATH: &str = "/.holdfast/challenge/return";
/// The generated key's file in `edge.state_dir`.
const GENERATED_KEY_FILE: &str = "challenge-key";
/// Nothing from another origin, scripts and styles only inline, forms only to this host.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The cookie check: what the module decides per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCheck {
    Valid,
    Missing,
    Rejected(Reject),
}

pub struct ChallengeModule {
    pub(super) signer: Signer,
    pub(super) cookie_name: String,
    /// Test hook (`Running::fail_challenge`): every decision fails, so the fail policy applies.
    pub(super) fault: AtomicBool,
}

impl Module for ChallengeModule {
    type Output = CookieCheck;
    const NAME: &'static str = "challenge";

    fn decide(&self, req: &RequestView<'_>) -> Result<CookieCheck, ModuleError> {
        if self.fault.load(Ordering::Relaxed) {
            return Err(ModuleError::Failed {
                kind: "injected",
                detail: "failure injected by a test hook".to_string(),
            });
        }
        let Some(value) = cookie(req.headers, &self.cookie_name) else {
            return Ok(CookieCheck::Missing);
        };
        Ok(
            match self.signer.check_cookie(
                value,
                req.client_ip,
                user_agent(req.headers),
                SystemTime::now(),
            ) {
                Ok(()) => CookieCheck::Valid,
                Err(r) => CookieCheck::Rejected(r),
            },
        )
    }
}
