//! The rate limits as one module (`limits`): every `[[limits]]` entry that applies to the
//! request's route is checked in order; the first that denies decides (429). Behind the
//! module runner like every module: a kill switch, a fail policy (default `open`: a failing
//! limiter limits nothing) and a breaker. A `scope = "global"` limit decides with its
//! [`GlobalLimit`] (counts shared through Redis; its own local limiter while Redis is down).

use crate::global::GlobalLimit;
use crate::limit::{LimitDecision, Limiter, LimiterSettings};
use holdfast_modules::{Module, ModuleError, RequestView};
use prometheus::IntCounter;
use std::sync::Arc;

/// One limit and the routes it applies to.
pub struct RouteLimit {
    /// The local limiter (a global limit's fallback and header source).
    pub limiter: Limiter,
    /// Set for `scope = "global"`: decides instead of `limiter`.
    pub global: Option<Arc<GlobalLimit>>,
    /// Route names; empty: every route.
    pub routes: Vec<String>,
    /// Checked only when a `rate_limit` rule names it (`RateLimits::check_named`).
    pub rules_only: bool,
    counters: Counters,
}

/// `holdfast_ratelimit_decisions_total{limit,result}`, resolved once.
#[derive(Clone)]
pub struct Counters {
    pub allowed: IntCounter,
    pub limited: IntCounter,
    pub shadow: IntCounter,
    pub no_key: IntCounter,
}

impl Counters {
    pub fn new(family: &prometheus::IntCounterVec, limit: &str) -> Self {
        let c = |result: &str| family.with_label_values(&[limit, result]);
        Counters {
            allowed: c("allowed"),
            limited: c("limited"),
            shadow: c("shadow"),
            no_key: c("no_key"),
        }
    }
}

impl RouteLimit {
    pub fn new(spec: LimiterSettings, routes: Vec<String>, counters: Counters) -> Self {
        RouteLimit {
            limiter: Limiter::new(spec),
            global: None,
            routes,
            rules_only: false,
            counters,
        }
    }

    /// A global limit; `limiter` (from the same spec) is its fallback while Redis is down.
    pub fn global(
        spec: LimiterSettings,
        global: Arc<GlobalLimit>,
        routes: Vec<String>,
        counters: Counters,
    ) -> Self {
        RouteLimit {
            limiter: Limiter::new(spec),
            global: Some(global),
            routes,
            rules_only: false,
            counters,
        }
    }

    fn check(&self, req: &RequestView<'_>) -> LimitDecision {
        match &self.global {
            Some(g) => g.check(req, req.route, &self.limiter),
            None => self.limiter.check(req, req.route),
        }
    }

    fn applies(&self, route: &str) -> bool {
        !self.rules_only && (self.routes.is_empty() || self.routes.iter().any(|r| r == route))
    }

    /// Check and count one request; `Some` when it is over the limit.
    fn decide(&self, req: &RequestView<'_>) -> Option<Box<Limited>> {
        let decision = self.check(req);
        match decision {
            LimitDecision::Allow { .. } => self.counters.allowed.inc(),
            LimitDecision::NoKey => self.counters.no_key.inc(),
            LimitDecision::Shadow => self.counters.shadow.inc(),
            LimitDecision::Deny { .. } => {
                self.counters.limited.inc();
                let retry_after = decision
                    .retry_after_header()
                    .unwrap_or(http::HeaderValue::from_static("1"));
                return Some(Box::new(Limited {
                    limit: self.limiter.name().to_string(),
                    retry_after,
                    ratelimit: self.limiter.ratelimit_header(&decision),
                    policy: self.limiter.policy_header(),
                }));
            }
        }
        None
    }
}

/// A request over a limit: what the 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub limit: String,
    pub retry_after: http::HeaderValue,
    pub ratelimit: Option<http::HeaderValue>,
    pub policy: http::HeaderValue,
}

/// The module's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitOutcome {
    Pass,
    Limited(Box<Limited>),
}

/// Every configured limit, in config order.
pub struct RateLimits {
    pub limits: Vec<RouteLimit>,
}

impl RateLimits {
    /// A `rate_limit` rule's check: the `rules_only` limit `name` (checked and counted as
    /// any limit); `Pass` when there is no such limit.
    pub fn check_named(&self, name: &str, req: &RequestView<'_>) -> LimitOutcome {
        match self
            .limits
            .iter()
            .find(|l| l.rules_only && l.limiter.name() == name)
            .and_then(|l| l.decide(req))
        {
            Some(limited) => LimitOutcome::Limited(limited),
            None => LimitOutcome::Pass,
        }
    }
}

impl Module for RateLimits {
    type Output = LimitOutcome;
    const NAME: &'static str = "limits";

    fn decide(&self, req: &RequestView<'_>) -> Result<LimitOutcome, ModuleError> {
        for limit in self.limits.iter().filter(|l| l.applies(req.route)) {
            if let Some(limited) = limit.decide(req) {
                return Ok(LimitOutcome::Limited(limited));
            }
        }
        Ok(LimitOutcome::Pass)
    }
}
