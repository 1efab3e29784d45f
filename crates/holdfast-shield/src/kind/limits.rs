//! `[[limits]]` as a module kind: the `limits` module (429 over a limit) planned from the
//! config, kept across a reload while its limits (by route name) and `[redis]` are unchanged,
//! its Redis sync thread started with it, and offered to the rules (`rate_limit` rules).

use crate::global::{GlobalLimit, GlobalSync, RedisHealth, RedisMetrics, RedisSettings};
use crate::limit::LimiterSettings;
use crate::limits::{Counters, LimitOutcome, Limited, RateLimits, RouteLimit};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::host::{Links, ModuleKind, Stage, Start, Step, Switch};
use holdfast_modules::{
    ModuleAction, ModuleCtx, ModuleMetrics, ModuleSettings, ModuleSlot, ModuleState, ModuleStatus,
    RequestModule, RequestView, TooMany, Verdict,
};
use std::sync::Arc;
use std::time::Duration;

/// The limits module in its runner.
pub type LimitsSlot = ModuleSlot<RateLimits>;

/// The limits as configured, with route names instead of indices (what decides whether a
/// reload keeps the running limiters and their counts). `[redis]` is part of it only when a
/// limit is global.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsPlan {
    limits: Vec<(holdfast_config::Limit, Vec<String>)>,
    redis: Option<holdfast_config::Redis>,
}

/// One generation's limits: the slot and, for global limits, Redis' state and the sync
/// thread (stopped when this is dropped).
pub struct LimitsRunning {
    plan: LimitsPlan,
    slot: Arc<LimitsSlot>,
    redis: Option<(Arc<RedisHealth>, GlobalSync)>,
}

/// What the limits offer the rules of the same generation (`rate_limit` rules).
#[derive(Clone)]
pub struct LimitsLink(pub Arc<LimitsSlot>);

impl LimitsLink {
    /// A `rate_limit` rule's limits, in order (unless the limits module is switched off).
    pub fn over(&self, names: &[Arc<str>], req: &RequestView<'_>) -> Option<ModuleAction> {
        if names.is_empty() || self.0.state() == ModuleState::Disabled {
            return None;
        }
        names
            .iter()
            .find_map(|name| match self.0.module().check_named(name, req) {
                LimitOutcome::Limited(l) => Some(l),
                LimitOutcome::Pass => None,
            })
            .map(|l| too_many(*l))
    }
}

fn too_many(l: Limited) -> ModuleAction {
    ModuleAction::TooMany(Box::new(TooMany {
        limit: l.limit,
        retry_after: l.retry_after,
        ratelimit: l.ratelimit,
        policy: Some(l.policy),
    }))
}

/// The limits module as the data path runs it: 429 over a limit.
struct LimitsStep(Arc<LimitsSlot>);

impl RequestModule for LimitsStep {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn apply(&self, req: &RequestView<'_>) -> ModuleAction {
        self.apply_in(req, &mut ModuleCtx::default())
    }

    fn apply_in(&self, req: &RequestView<'_>, ctx: &mut ModuleCtx) -> ModuleAction {
        match self.0.run_in(req, ctx) {
            Verdict::Decided(LimitOutcome::Limited(l))
            | Verdict::Stale(LimitOutcome::Limited(l)) => too_many(*l),
            Verdict::Decided(LimitOutcome::Pass)
            | Verdict::Stale(LimitOutcome::Pass)
            | Verdict::Unknown => ModuleAction::Pass,
            Verdict::Deny => ModuleAction::Deny,
        }
    }
}

/// `/status` of the limits module.
#[derive(Debug, serde::Serialize)]
pub struct LimitsStatus {
    #[serde(flatten)]
    pub module: ModuleStatus,
    pub limits: Vec<LimitStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
}

#[derive(Debug, serde::Serialize)]
pub struct LimitStatus {
    pub name: String,
    /// `local` or `global`.
    pub scope: &'static str,
    pub routes: Vec<String>,
    pub keys: usize,
    pub memory_bytes: usize,
    pub rotations: u64,
    pub limited: u64,
    pub shadow: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalStatus>,
}

#[derive(Debug, serde::Serialize)]
pub struct GlobalStatus {
    pub keys: usize,
    pub unsynced: u64,
    pub limited: u64,
    pub shadow: u64,
    pub local_decisions: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct RedisStatus {
    /// `ok` or `down`.
    pub state: &'static str,
    /// RFC 3339.
    pub since: String,
    pub last_error: Option<String>,
    pub calls: u64,
}

/// The `limits` kind: its metrics, registered once per process.
pub struct LimitsKind {
    module_metrics: ModuleMetrics,
    decisions: prometheus::IntCounterVec,
    redis_metrics: RedisMetrics,
}

impl LimitsKind {
    pub fn new(
        registry: &prometheus::Registry,
        module_metrics: &ModuleMetrics,
    ) -> Result<Self, prometheus::Error> {
        let decisions = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "holdfast_ratelimit_decisions_total",
                "Rate-limit checks, by limit and result (allowed, limited, shadow: would be \
                 limited in shadow mode, no_key: the request has no key under the limit).",
            ),
            &["limit", "result"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        let calls = prometheus::IntCounter::new(
            "holdfast_ratelimit_redis_calls_total",
            "Commands sent to Redis for global rate limits (EVALSHA/EVAL per synced key, \
             SCRIPT LOAD, PING).",
        )?;
        registry.register(Box::new(calls.clone()))?;
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "holdfast_ratelimit_redis_errors_total",
                "Failed Redis round trips of global rate limits, by kind (timeout, connect, \
                 error); each makes them fall back to local limits until one succeeds.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        Ok(LimitsKind {
            module_metrics: module_metrics.clone(),
            decisions,
            redis_metrics: RedisMetrics { calls, errors },
        })
    }

    fn build(&self, plan: LimitsPlan) -> LimitsRunning {
        let health = Arc::new(RedisHealth::new());
        let mut globals = Vec::new();
        let limits = plan
            .limits
            .iter()
            .map(|(l, routes)| {
                let mut spec = LimiterSettings::new(&l.name, l.key.clone(), l.requests, l.per);
                spec.burst = l.burst;
                spec.shadow = l.shadow;
                spec.max_keys = l.max_keys;
                let counters = Counters::new(&self.decisions, &l.name);
                let mut limit =
                    if l.scope == holdfast_config::LimitScope::Global && plan.redis.is_some() {
                        let global = Arc::new(GlobalLimit::new(spec.clone(), Arc::clone(&health)));
                        globals.push(Arc::clone(&global));
                        RouteLimit::global(spec, global, routes.clone(), counters)
                    } else {
                        RouteLimit::new(spec, routes.clone(), counters)
                    };
                limit.rules_only = l.rules_only;
                limit
            })
            .collect();
        let redis = match (&plan.redis, globals.is_empty()) {
            (Some(r), false) => {
                let settings = RedisSettings {
                    url: r.url.clone(),
                    timeout: r.timeout,
                    sync_interval: r.sync_interval,
                };
                match GlobalSync::start(
                    settings,
                    globals,
                    Arc::clone(&health),
                    self.redis_metrics.clone(),
                ) {
                    Ok(sync) => Some((health, sync)),
                    Err(e) => {
                        // Without the thread nothing reaches Redis: the global limits would
                        // never learn other instances' counts. Say so; they still limit
                        // this instance's own traffic through the table.
                        tracing::error!(error = %e, "cannot start the redis sync thread");
                        None
                    }
                }
            }
            _ => None,
        };
        // A check's time is not a reason to drop its decision: a slow sweep of a full key
        // table would otherwise let the request it delayed through. The budget only stops
        // the module being counted as failing for ordinary scheduling pauses.
        let settings = ModuleSettings {
            time_budget: Duration::from_secs(1),
            ..ModuleSettings::default()
        };
        let slot = Arc::new(ModuleSlot::new(
            RateLimits { limits },
            settings,
            &self.module_metrics,
        ));
        LimitsRunning { plan, slot, redis }
    }
}

impl ModuleKind for LimitsKind {
    const NAME: &'static str = "limits";
    const UNCONFIGURED: &'static str = "no [[limits]] are configured";
    type Plan = LimitsPlan;
    type Running = LimitsRunning;
    type Status = LimitsStatus;

    fn plan(&self, config: &Config) -> Result<Option<LimitsPlan>, Vec<ConfigError>> {
        if config.limits.is_empty() {
            return Ok(None);
        }
        let global = config
            .limits
            .iter()
            .any(|l| l.scope == holdfast_config::LimitScope::Global);
        Ok(Some(LimitsPlan {
            limits: config
                .limits
                .iter()
                .map(|l| {
                    let entry = holdfast_config::Limit {
                        routes: Vec::new(),
                        ..l.clone()
                    };
                    (entry, config.route_names(&l.routes))
                })
                .collect(),
            redis: config.redis.clone().filter(|_| global),
        }))
    }

    /// Unchanged limits keep the running limiters and their counts; otherwise new ones
    /// (counts start again).
    fn start(
        &self,
        plan: LimitsPlan,
        previous: Option<&LimitsRunning>,
        _links: &Links,
    ) -> Start<LimitsPlan, LimitsRunning> {
        match previous {
            Some(p) if p.plan == plan => Start::Keep(plan),
            _ => Start::New(self.build(plan)),
        }
    }

    fn wire(&self, running: &Arc<LimitsRunning>, links: &mut Links) -> Vec<Step> {
        links.offer(LimitsLink(Arc::clone(&running.slot)));
        vec![Step {
            stage: Stage::Limit,
            module: Arc::new(LimitsStep(Arc::clone(&running.slot))),
        }]
    }

    fn switch<'r>(&self, running: &'r LimitsRunning) -> Option<&'r dyn Switch> {
        Some(running.slot.as_ref())
    }

    fn status(&self, running: &LimitsRunning) -> Option<LimitsStatus> {
        let limits = running
            .slot
            .module()
            .limits
            .iter()
            .map(|l| LimitStatus {
                name: l.limiter.name().to_string(),
                scope: if l.global.is_some() {
                    "global"
                } else {
                    "local"
                },
                routes: l.routes.clone(),
                keys: l.limiter.keys(),
                memory_bytes: l.limiter.memory_bytes(),
                rotations: l.limiter.rotations(),
                limited: l.limiter.denied(),
                shadow: l.limiter.shadowed(),
                global: l.global.as_ref().map(|g| GlobalStatus {
                    keys: g.keys(),
                    unsynced: g.unsynced(),
                    limited: g.denied(),
                    shadow: g.shadowed(),
                    local_decisions: g.local_decisions(),
                }),
            })
            .collect();
        let redis = running.redis.as_ref().map(|(health, _)| {
            let h = health.snapshot();
            RedisStatus {
                state: if h.down { "down" } else { "ok" },
                since: humantime::format_rfc3339_seconds(h.since).to_string(),
                last_error: h.last_error,
                calls: h.calls,
            }
        });
        Some(LimitsStatus {
            module: running.slot.status(),
            limits,
            redis,
        })
    }
}
