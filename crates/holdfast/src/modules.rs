//! The modules and their artifacts across the life of the process: built from the config at
//! start, updated in place on reload (settings) or replaced (a new feature file path, key or
//! state folder), their operator overrides kept in `state_dir`, their artifacts watched.
//! The data path gets them as `RequestModule`s through `StateInputs`.

use crate::challenge::{ChallengeMetrics, ChallengeRuntime};
use holdfast_artifact::{Artifact, ArtifactMetrics, ArtifactOptions, Watcher};
use holdfast_bot::{unknown_header, BotFeatures, BotModule, Ja4h, SCORE_HEADER};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::{
    BreakerSettings, FailPolicy, ModuleMetrics, ModuleSettings, ModuleSlot, Override, RequestView,
    Verdict,
};
use holdfast_proxy::{Block, EdgeRequest, EdgeResponse, ModuleAction, RequestModule, TooMany};
use holdfast_shield::global::{GlobalLimit, GlobalSync, RedisHealth, RedisMetrics, RedisSettings};
use holdfast_shield::ip_list::IpListKind;
use holdfast_shield::limits::{Counters, LimitOutcome, RateLimits, RouteLimit};
use holdfast_shield::rule_list::{no_config_ids, RuleListKind};
use holdfast_shield::rules::{
    with_bot_score, BotScore, Effects, IpLists, ListRules, RuleMetrics, RuleOutcome, RuleSpec,
    Rules,
};
use prometheus::Registry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often watched artifact files are checked when change events are not available.
const ARTIFACT_POLL: Duration = Duration::from_secs(1);
/// The file in `state_dir` that keeps the operator's module overrides.
const OVERRIDES_FILE: &str = "module-overrides.json";

type BotSlot = ModuleSlot<BotModule<Arc<Artifact<BotFeatures>>>>;
type LimitsSlot = ModuleSlot<RateLimits>;
type RulesSlot = ModuleSlot<Rules>;

/// The rules as the data path runs them: a block answers with its status (403 by default);
/// a challenge goes to the challenge module, whose reserved paths this serves too. With them:
/// the limits module of the same `State` for `rate_limit` rules, and the bot module when a
/// rule reads `bot.score` (it then runs here, first, instead of after).
struct RulesRequest {
    rules: Arc<RulesSlot>,
    limits: Option<Arc<LimitsSlot>>,
    bot: Option<Arc<BotSlot>>,
    challenge: Option<Arc<ChallengeRuntime>>,
}

impl RulesRequest {
    /// A `rate_limit` rule's limits, in order (unless the limits module is switched off).
    fn over_limit(&self, names: &[Arc<str>], req: &RequestView<'_>) -> Option<ModuleAction> {
        let limits = self.limits.as_ref()?;
        if names.is_empty() || limits.state() == holdfast_modules::ModuleState::Disabled {
            return None;
        }
        names
            .iter()
            .find_map(|name| match limits.module().check_named(name, req) {
                LimitOutcome::Limited(l) => Some(l),
                LimitOutcome::Pass => None,
            })
            .map(|l| {
                let l = *l;
                ModuleAction::TooMany(Box::new(TooMany {
                    limit: l.limit,
                    retry_after: l.retry_after,
                    ratelimit: l.ratelimit,
                    policy: Some(l.policy),
                }))
            })
    }

    /// A passing request with the matched rules' effects: their limits checked, their header
    /// edits (after the bot module's header, if it ran here) and route.
    fn effects(
        &self,
        effects: &Effects,
        req: &RequestView<'_>,
        bot_header: Option<http::HeaderValue>,
    ) -> ModuleAction {
        if let Some(too_many) = self.over_limit(&effects.limits, req) {
            return too_many;
        }
        if effects.headers.is_empty() && effects.route.is_none() {
            return match bot_header {
                Some(v) => ModuleAction::Header(SCORE_HEADER, v),
                None => ModuleAction::Pass,
            };
        }
        ModuleAction::Edit(Box::new(holdfast_proxy::Edit {
            headers: bot_header
                .map(|v| (SCORE_HEADER, Some(v)))
                .into_iter()
                .chain(
                    effects
                        .headers
                        .iter()
                        .map(|e| (e.name.clone(), e.value.clone())),
                )
                .collect(),
            route: effects.route.clone(),
        }))
    }
}

impl RequestModule for RulesRequest {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn apply(&self, req: &RequestView<'_>) -> ModuleAction {
        // The bot module's verdict first when rules read it: its score for `bot.score`, its
        // header for the origin (as the bot module would have sent it), its denial.
        let (score, bot_header) = match &self.bot {
            None => (BotScore::Unknown, None),
            Some(bot) => match bot.run(req) {
                Verdict::Decided(s) | Verdict::Stale(s) => {
                    (BotScore::Score(s.get()), Some(s.header_value()))
                }
                Verdict::Unknown => (BotScore::Unknown, Some(unknown_header())),
                Verdict::Deny => return ModuleAction::Deny,
            },
        };
        match with_bot_score(score, || self.rules.run(req)) {
            Verdict::Decided(RuleOutcome::Block(b)) | Verdict::Stale(RuleOutcome::Block(b)) => {
                ModuleAction::Block(Box::new(Block {
                    status: http::StatusCode::from_u16(b.status)
                        .unwrap_or(http::StatusCode::FORBIDDEN),
                    rule: b.rule,
                }))
            }
            Verdict::Decided(RuleOutcome::Challenge(c))
            | Verdict::Stale(RuleOutcome::Challenge(c)) => {
                let action = match &self.challenge {
                    Some(challenge) => challenge.apply(req, &c),
                    None => ModuleAction::Pass,
                };
                match action {
                    ModuleAction::Pass => self.effects(&c.effects, req, bot_header),
                    answered => answered,
                }
            }
            Verdict::Decided(RuleOutcome::Edit(effects))
            | Verdict::Stale(RuleOutcome::Edit(effects)) => self.effects(&effects, req, bot_header),
            Verdict::Decided(RuleOutcome::Pass)
            | Verdict::Stale(RuleOutcome::Pass)
            | Verdict::Unknown => match bot_header {
                Some(v) => ModuleAction::Header(SCORE_HEADER, v),
                None => ModuleAction::Pass,
            },
            Verdict::Deny => ModuleAction::Deny,
        }
    }

    fn reserved_prefix(&self) -> Option<&'static str> {
        self.challenge.as_ref().map(|_| crate::challenge::PREFIX)
    }

    fn answer(&self, req: &EdgeRequest<'_>) -> EdgeResponse {
        match &self.challenge {
            Some(challenge) => challenge.answer(req),
            None => EdgeResponse {
                status: http::StatusCode::NOT_FOUND,
                headers: http::HeaderMap::new(),
                body: String::new(),
            },
        }
    }
}

/// The rules as configured, with route names instead of indices: an unchanged set keeps its
/// compiled programs and hit counts across a reload.
type RulesConfig = Vec<(holdfast_config::Rule, Vec<String>)>;

struct RulesRuntime {
    config: RulesConfig,
    /// `[[rule_lists]]` and the state folder their artifacts were built for.
    rule_lists: Vec<holdfast_config::RuleList>,
    state_dir: Option<PathBuf>,
    _watchers: Vec<Watcher>,
    /// The IP lists the rules were compiled against (a new artifact means new rules).
    lists: IpLists,
    slot: Arc<RulesSlot>,
}

enum RulesPlan {
    Keep,
    New(RulesRuntime),
}

/// The per-request evaluation budget of all rules together; past it the call counts as the
/// module's failure (fail policy `open`: the request passes).
const RULES_BUDGET: Duration = Duration::from_millis(100);

/// The rate limits as the data path runs them: 429 over a limit.
struct LimitsRequest(Arc<LimitsSlot>);

impl RequestModule for LimitsRequest {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn apply(&self, req: &RequestView<'_>) -> ModuleAction {
        match self.0.run(req) {
            Verdict::Decided(LimitOutcome::Limited(l))
            | Verdict::Stale(LimitOutcome::Limited(l)) => {
                let l = *l;
                ModuleAction::TooMany(Box::new(TooMany {
                    limit: l.limit,
                    retry_after: l.retry_after,
                    ratelimit: l.ratelimit,
                    policy: Some(l.policy),
                }))
            }
            Verdict::Decided(LimitOutcome::Pass)
            | Verdict::Stale(LimitOutcome::Pass)
            | Verdict::Unknown => ModuleAction::Pass,
            Verdict::Deny => ModuleAction::Deny,
        }
    }
}

/// The limits as configured, with route names instead of indices (what decides whether a
/// reload keeps the running limiters and their counts).
/// `[redis]` is part of it only when a limit is global.
#[derive(Clone, PartialEq)]
struct LimitsConfig(
    Vec<(holdfast_config::Limit, Vec<String>)>,
    Option<holdfast_config::Redis>,
);

struct LimitsRuntime {
    config: LimitsConfig,
    slot: Arc<LimitsSlot>,
    /// Global limits: Redis' state, and the sync thread (stopped when this is dropped).
    redis: Option<(Arc<RedisHealth>, GlobalSync)>,
}

/// The bot module as the data path runs it: the score, or `unknown`, as a header.
struct BotRequest(Arc<BotSlot>);

impl RequestModule for BotRequest {
    fn name(&self) -> &'static str {
        "bot"
    }

    fn apply(&self, req: &RequestView<'_>) -> ModuleAction {
        match self.0.run(req) {
            Verdict::Decided(score) | Verdict::Stale(score) => {
                ModuleAction::Header(SCORE_HEADER, score.header_value())
            }
            Verdict::Unknown => ModuleAction::Header(SCORE_HEADER, unknown_header()),
            Verdict::Deny => ModuleAction::Deny,
        }
    }
}

/// One `[[ip_lists]]` entry's artifact, kept across reloads while its file is the same.
struct IpListRuntime {
    file: PathBuf,
    state_dir: Option<PathBuf>,
    artifact: Arc<Artifact<IpListKind>>,
    /// In a mutex only to be `Sync` (the runtime is shared by `Arc`); never locked.
    _watcher: Mutex<Option<Watcher>>,
}

struct BotRuntime {
    config: holdfast_config::BotModule,
    state_dir: Option<PathBuf>,
    artifact: Arc<Artifact<BotFeatures>>,
    slot: Arc<BotSlot>,
    _watcher: Option<Watcher>,
}

/// What a config asks of the modules, ready to be installed once the rest of the config
/// has been accepted.
pub(crate) struct Prepared {
    bot: Option<BotPlan>,
    limits: Option<LimitsPlan>,
    rules: Option<RulesPlan>,
    challenge: Option<Arc<ChallengeRuntime>>,
    ip_lists: HashMap<String, Arc<IpListRuntime>>,
    state_dir: Option<PathBuf>,
}

enum LimitsPlan {
    Keep,
    New(LimitsRuntime),
}

enum BotPlan {
    /// Same artifact: new settings for the running slot.
    Keep(holdfast_config::BotModule),
    New(BotRuntime),
}

pub(crate) struct ModuleHost {
    artifact_metrics: Arc<ArtifactMetrics>,
    module_metrics: ModuleMetrics,
    limit_decisions: prometheus::IntCounterVec,
    redis_metrics: RedisMetrics,
    rule_metrics: RuleMetrics,
    challenge_metrics: ChallengeMetrics,
    challenge: Mutex<Option<Arc<ChallengeRuntime>>>,
    rules: Mutex<Option<RulesRuntime>>,
    ip_lists: Mutex<HashMap<String, Arc<IpListRuntime>>>,
    bot: Mutex<Option<BotRuntime>>,
    limits: Mutex<Option<LimitsRuntime>>,
    state_dir: Mutex<Option<PathBuf>>,
    /// Modules added by the embedding program (tests), run after the configured ones.
    extra: Vec<Arc<dyn RequestModule>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn settings(c: &holdfast_config::BotModule) -> ModuleSettings {
    ModuleSettings {
        enabled: c.enabled,
        fail_policy: match c.fail_policy {
            holdfast_config::FailPolicy::Open => FailPolicy::Open,
            holdfast_config::FailPolicy::Closed => FailPolicy::Closed,
            holdfast_config::FailPolicy::Stale => FailPolicy::Stale,
        },
        time_budget: c.time_budget,
        breaker: BreakerSettings {
            error_percent: c.breaker.error_percent,
            min_requests: c.breaker.min_requests,
            window: c.breaker.window,
            cooldown: c.breaker.cooldown,
        },
        report_interval: c.report_interval,
    }
}

impl ModuleHost {
    pub(crate) fn new(
        registry: &Registry,
        extra: Vec<Arc<dyn RequestModule>>,
    ) -> Result<Self, prometheus::Error> {
        let limit_decisions = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "holdfast_ratelimit_decisions_total",
                "Rate-limit checks, by limit and result (allowed, limited, shadow: would be \
                 limited in shadow mode, no_key: the request has no key under the limit).",
            ),
            &["limit", "result"],
        )?;
        registry.register(Box::new(limit_decisions.clone()))?;
        let redis_calls = prometheus::IntCounter::new(
            "holdfast_ratelimit_redis_calls_total",
            "Commands sent to Redis for global rate limits (EVALSHA/EVAL per synced key, \
             SCRIPT LOAD, PING).",
        )?;
        registry.register(Box::new(redis_calls.clone()))?;
        let redis_errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "holdfast_ratelimit_redis_errors_total",
                "Failed Redis round trips of global rate limits, by kind (timeout, connect, \
                 error); each makes them fall back to local limits until one succeeds.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(redis_errors.clone()))?;
        Ok(ModuleHost {
            artifact_metrics: Arc::new(ArtifactMetrics::new(registry)?),
            module_metrics: ModuleMetrics::new(registry)?,
            limit_decisions,
            redis_metrics: RedisMetrics {
                calls: redis_calls,
                errors: redis_errors,
            },
            rule_metrics: RuleMetrics::new(registry)?,
            challenge_metrics: ChallengeMetrics::new(registry)?,
            challenge: Mutex::new(None),
            rules: Mutex::new(None),
            ip_lists: Mutex::new(HashMap::new()),
            bot: Mutex::new(None),
            limits: Mutex::new(None),
            state_dir: Mutex::new(None),
            extra,
        })
    }

    /// Work out what `config` needs: a new bot runtime (artifact loaded through the
    /// pipeline, falling back to its last-known-good) or new settings for the running one.
    /// Nothing changes for requests until `install`.
    pub(crate) fn prepare(&self, config: &Config) -> Result<Prepared, Vec<ConfigError>> {
        let state_dir = config.edge.state_dir.clone();
        // Read once: every module built below applies its own entry.
        let overrides = read_overrides(state_dir.as_deref());
        let bot = match &config.modules.bot {
            None => None,
            Some(c) => {
                let current = lock(&self.bot);
                let same_artifact = current.as_ref().is_some_and(|r| {
                    r.config.features == c.features
                        && r.config.ja4h == c.ja4h
                        && r.config.public_key == c.public_key
                        && r.config.max_shrink_percent == c.max_shrink_percent
                        && r.state_dir == state_dir
                });
                drop(current);
                Some(if same_artifact {
                    BotPlan::Keep(c.clone())
                } else {
                    BotPlan::New(self.new_bot(c, state_dir.as_deref(), &overrides)?)
                })
            }
        };
        let limits = self.prepare_limits(config, &overrides);
        let ip_lists = self.prepare_ip_lists(config, state_dir.as_deref());
        let lists: IpLists = ip_lists
            .iter()
            .map(|(name, rt)| (name.clone(), Arc::clone(&rt.artifact)))
            .collect();
        let rules = self.prepare_rules(config, &overrides, &lists)?;
        let challenge = self.prepare_challenge(config, &overrides)?;
        Ok(Prepared {
            bot,
            limits,
            rules,
            challenge,
            ip_lists,
            state_dir,
        })
    }

    /// The challenge, when a rule asks for it: the running one if its settings and keys are
    /// unchanged (the key file is re-read: a rotation applies on reload), else a new one.
    fn prepare_challenge(
        &self,
        config: &Config,
        overrides: &Overrides,
    ) -> Result<Option<Arc<ChallengeRuntime>>, Vec<ConfigError>> {
        if !crate::challenge::wanted(config) {
            return Ok(None);
        }
        let wanted = crate::challenge::config_of(config);
        let current = lock(&self.challenge).clone();
        if let Some(rt) = current.as_ref().filter(|rt| rt.config == wanted) {
            let same_keys = match &wanted.challenge.keys {
                None => true,
                Some(path) => crate::challenge::read_key_file(path)? == *rt.keys(),
            };
            if same_keys {
                return Ok(current);
            }
        }
        let rt = ChallengeRuntime::build(
            wanted,
            current.as_deref(),
            &self.challenge_metrics,
            &self.module_metrics,
        )?;
        if let Some(o) = overrides.get("challenge") {
            rt.slot.set_override(*o);
        }
        Ok(Some(Arc::new(rt)))
    }

    /// Test hook: make every challenge decision fail (the fail policy applies) or not.
    pub(crate) fn fail_challenge(&self, on: bool) -> bool {
        match lock(&self.challenge).as_ref() {
            Some(rt) => {
                rt.set_fault(on);
                true
            }
            None => false,
        }
    }

    /// The IP lists `config` names: the running artifact of a list whose file (and state
    /// folder) did not change, a new one (loaded now, falling back to its last-known-good)
    /// otherwise. A bad or missing file is not a config error: rules reading a list without
    /// a value count an error and miss.
    fn prepare_ip_lists(
        &self,
        config: &Config,
        state_dir: Option<&Path>,
    ) -> HashMap<String, Arc<IpListRuntime>> {
        let current = lock(&self.ip_lists);
        config
            .ip_lists
            .iter()
            .map(|l| {
                let kept = current
                    .get(&l.name)
                    .filter(|r| r.file == l.file && r.state_dir.as_deref() == state_dir);
                let rt = match kept {
                    Some(rt) => Arc::clone(rt),
                    None => Arc::new(self.new_ip_list(l, state_dir)),
                };
                (l.name.clone(), rt)
            })
            .collect()
    }

    fn new_ip_list(&self, l: &holdfast_config::IpList, state_dir: Option<&Path>) -> IpListRuntime {
        let mut options = ArtifactOptions::new(&l.file);
        options.state_dir = state_dir.map(Path::to_path_buf);
        options.name = Some(l.name.clone());
        let artifact = Arc::new(Artifact::<IpListKind>::new(
            options,
            Arc::clone(&self.artifact_metrics),
        ));
        artifact.start();
        let watched = Arc::clone(&artifact);
        let name = l.name.clone();
        let watcher = Watcher::start(artifact.watch_paths(), ARTIFACT_POLL, move |_| {
            watched.reload();
        })
        .map_err(|e| tracing::error!(list = %name, error = %e, "cannot watch the IP list; POST /reload re-reads it"))
        .ok();
        IpListRuntime {
            file: l.file.clone(),
            state_dir: state_dir.map(Path::to_path_buf),
            artifact,
            _watcher: Mutex::new(watcher),
        }
    }

    /// Rules unchanged (same entries, same route names): keep the compiled set and its
    /// counts; otherwise compile a new one (the config already compile-checked each).
    fn prepare_rules(
        &self,
        config: &Config,
        overrides: &Overrides,
        lists: &IpLists,
    ) -> Result<Option<RulesPlan>, Vec<ConfigError>> {
        if config.rules.is_empty() && config.rule_lists.is_empty() {
            return Ok(None);
        }
        let state_dir = config.edge.state_dir.clone();
        let wanted: RulesConfig = config
            .rules
            .iter()
            .map(|r| {
                let entry = holdfast_config::Rule {
                    routes: Vec::new(),
                    ..r.clone()
                };
                (entry, route_names(config, &r.routes))
            })
            .collect();
        let same_lists = |old: &IpLists| {
            old.len() == lists.len()
                && old
                    .iter()
                    .all(|(name, a)| lists.get(name).is_some_and(|b| Arc::ptr_eq(a, b)))
        };
        if lock(&self.rules).as_ref().is_some_and(|r| {
            r.config == wanted
                && same_lists(&r.lists)
                && r.rule_lists == config.rule_lists
                && r.state_dir == state_dir
        }) {
            return Ok(Some(RulesPlan::Keep));
        }
        let specs = wanted
            .iter()
            .map(|(r, routes)| RuleSpec::from_config(r, routes.clone()))
            .collect();
        let mut rules = Rules::new(specs, &self.rule_metrics, lists).map_err(|e| {
            let at = config
                .rules
                .iter()
                .position(|r| r.id == e.id)
                .map_or("rules".to_string(), |i| format!("rules[{i}].expr"));
            vec![ConfigError::new(
                at,
                e.detail,
                "fix the expression (it passed the config check but did not compile)",
            )]
        })?;
        let ids: Vec<String> = config.rules.iter().map(|r| r.id.clone()).collect();
        let mut watchers = Vec::new();
        for l in &config.rule_lists {
            let (list, watcher) = self.new_rule_list(l, state_dir.as_deref(), &ids, lists);
            rules.lists.push(list);
            watchers.extend(watcher);
        }
        let settings = ModuleSettings {
            time_budget: RULES_BUDGET,
            ..ModuleSettings::default()
        };
        let slot = Arc::new(ModuleSlot::new(rules, settings, &self.module_metrics));
        if let Some(o) = overrides.get("rules") {
            slot.set_override(*o);
        }
        Ok(Some(RulesPlan::New(RulesRuntime {
            config: wanted,
            lists: lists.clone(),
            rule_lists: config.rule_lists.clone(),
            state_dir,
            slot,
            _watchers: watchers,
        })))
    }

    /// A `[[rule_lists]]` entry: its artifact (loaded now, or its last-known-good; ids of
    /// `[[rules]]` rejected before a swap), compiled after each load, watched.
    fn new_rule_list(
        &self,
        l: &holdfast_config::RuleList,
        state_dir: Option<&Path>,
        config_ids: &[String],
        ip_lists: &IpLists,
    ) -> (Arc<ListRules>, Option<Watcher>) {
        let mut options = ArtifactOptions::new(&l.file);
        options.state_dir = state_dir.map(Path::to_path_buf);
        options.name = Some(l.name.clone());
        let ids = config_ids.to_vec();
        let artifact = Arc::new(
            Artifact::<RuleListKind>::new(options, Arc::clone(&self.artifact_metrics))
                .with_check(move |list| no_config_ids(list, &ids)),
        );
        artifact.start();
        let list = Arc::new(ListRules::new(
            l.name.clone(),
            artifact,
            &self.rule_metrics,
            ip_lists,
        ));
        let watched = Arc::clone(&list);
        let name = l.name.clone();
        let watcher = Watcher::start(list.artifact.watch_paths(), ARTIFACT_POLL, move |_| {
            watched.artifact.reload();
            watched.refresh();
        })
        .map_err(|e| tracing::error!(list = %name, error = %e, "cannot watch the rule list; POST /reload re-reads it"))
        .ok();
        (list, watcher)
    }

    /// Limits unchanged (same entries, same route names): keep the running limiters and
    /// their counts; otherwise new ones (counts start again).
    fn prepare_limits(&self, config: &Config, overrides: &Overrides) -> Option<LimitsPlan> {
        if config.limits.is_empty() {
            return None;
        }
        let wanted = LimitsConfig(
            config
                .limits
                .iter()
                .map(|l| {
                    let entry = holdfast_config::Limit {
                        routes: Vec::new(),
                        ..l.clone()
                    };
                    (entry, route_names(config, &l.routes))
                })
                .collect(),
            config.redis.clone().filter(|_| {
                config
                    .limits
                    .iter()
                    .any(|l| l.scope == holdfast_config::LimitScope::Global)
            }),
        );
        if lock(&self.limits)
            .as_ref()
            .is_some_and(|r| r.config == wanted)
        {
            return Some(LimitsPlan::Keep);
        }
        let health = Arc::new(RedisHealth::new());
        let mut globals = Vec::new();
        let limits = wanted
            .0
            .iter()
            .map(|(l, routes)| {
                let mut spec = holdfast_shield::limit::LimitSpec::new(
                    &l.name,
                    l.key.clone(),
                    l.requests,
                    l.per,
                );
                spec.burst = l.burst;
                spec.shadow = l.shadow;
                spec.max_keys = l.max_keys;
                let counters = Counters::new(&self.limit_decisions, &l.name);
                let mut limit =
                    if l.scope == holdfast_config::LimitScope::Global && wanted.1.is_some() {
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
        let redis = match (&wanted.1, globals.is_empty()) {
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
        if let Some(o) = overrides.get("limits") {
            slot.set_override(*o);
        }
        Some(LimitsPlan::New(LimitsRuntime {
            config: wanted,
            slot,
            redis,
        }))
    }

    fn new_bot(
        &self,
        c: &holdfast_config::BotModule,
        state_dir: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<BotRuntime, Vec<ConfigError>> {
        let public_key = bot_public_key(c)?;
        let mut options = ArtifactOptions::new(&c.features);
        options.state_dir = state_dir.map(Path::to_path_buf);
        options.public_key = public_key;
        options.max_shrink_percent = c.max_shrink_percent;
        let artifact = Arc::new(Artifact::<BotFeatures>::new(
            options,
            Arc::clone(&self.artifact_metrics),
        ));
        // A bad or missing file is not a config error: the module runs on the LKG, or
        // answers `unknown` until a good file arrives (its fail policy).
        artifact.start();
        let slot = Arc::new(ModuleSlot::new(
            BotModule::new(Arc::clone(&artifact)).with_ja4h(if c.ja4h {
                Ja4h::On
            } else {
                Ja4h::Off
            }),
            settings(c),
            &self.module_metrics,
        ));
        if let Some(o) = overrides.get("bot") {
            slot.set_override(*o);
        }
        let watched = Arc::clone(&artifact);
        let watcher = Watcher::start(artifact.watch_paths(), ARTIFACT_POLL, move |_| {
            watched.reload();
        })
        .map_err(|e| tracing::error!(error = %e, "cannot watch the bot feature file; POST /reload re-reads it"))
        .ok();
        Ok(BotRuntime {
            config: c.clone(),
            state_dir: state_dir.map(Path::to_path_buf),
            artifact,
            slot,
            _watcher: watcher,
        })
    }

    /// The modules a `State` built for `prepared` runs (nothing is installed yet).
    pub(crate) fn modules_for(&self, prepared: &Prepared) -> Vec<Arc<dyn RequestModule>> {
        let mut modules: Vec<Arc<dyn RequestModule>> = Vec::new();
        // Limits first: a request over a limit costs no scoring.
        let limits = match &prepared.limits {
            None => None,
            Some(LimitsPlan::New(runtime)) => Some(Arc::clone(&runtime.slot)),
            Some(LimitsPlan::Keep) => lock(&self.limits).as_ref().map(|r| Arc::clone(&r.slot)),
        };
        if let Some(slot) = &limits {
            modules.push(Arc::new(LimitsRequest(Arc::clone(slot))));
        }
        // Rules next: a blocked request costs no scoring.
        let rules = match &prepared.rules {
            None => None,
            Some(RulesPlan::New(runtime)) => Some(Arc::clone(&runtime.slot)),
            Some(RulesPlan::Keep) => lock(&self.rules).as_ref().map(|r| Arc::clone(&r.slot)),
        };
        let bot = match &prepared.bot {
            None => None,
            Some(BotPlan::New(runtime)) => Some(Arc::clone(&runtime.slot)),
            Some(BotPlan::Keep(_)) => lock(&self.bot).as_ref().map(|r| Arc::clone(&r.slot)),
        };
        // A rule that reads bot.score: the bot module runs inside the rules' step, first.
        let bot_in_rules = rules.as_ref().is_some_and(|r| r.module().reads_bot());
        if let Some(slot) = rules {
            let bot = bot.clone().filter(|_| bot_in_rules);
            modules.push(Arc::new(RulesRequest {
                rules: slot,
                limits,
                bot,
                challenge: prepared.challenge.clone(),
            }));
        }
        if let Some(slot) = bot.filter(|_| !bot_in_rules) {
            modules.push(Arc::new(BotRequest(slot)));
        }
        modules.extend(self.extra.iter().cloned());
        modules
    }

    /// Make a prepared plan current (its `State` was accepted).
    pub(crate) fn install(&self, prepared: Prepared) {
        let mut bot = lock(&self.bot);
        match prepared.bot {
            None => *bot = None,
            Some(BotPlan::New(runtime)) => *bot = Some(runtime),
            Some(BotPlan::Keep(config)) => {
                if let Some(runtime) = bot.as_mut() {
                    runtime.slot.set_settings(settings(&config));
                    runtime.config = config;
                }
            }
        }
        let mut limits = lock(&self.limits);
        match prepared.limits {
            None => *limits = None,
            Some(LimitsPlan::New(runtime)) => *limits = Some(runtime),
            Some(LimitsPlan::Keep) => {}
        }
        drop(limits);
        let mut rules = lock(&self.rules);
        match prepared.rules {
            None => *rules = None,
            Some(RulesPlan::New(runtime)) => *rules = Some(runtime),
            Some(RulesPlan::Keep) => {}
        }
        drop(rules);
        *lock(&self.challenge) = prepared.challenge;
        *lock(&self.ip_lists) = prepared.ip_lists;
        *lock(&self.state_dir) = prepared.state_dir;
    }

    /// Re-read every artifact now (`POST /reload`, `SIGHUP`).
    /// The artifact metrics every artifact of this process shares (DNS zones too).
    pub(crate) fn artifact_metrics(&self) -> Arc<ArtifactMetrics> {
        Arc::clone(&self.artifact_metrics)
    }

    pub(crate) fn reload_artifacts(&self) {
        if let Some(runtime) = lock(&self.bot).as_ref() {
            runtime.artifact.reload();
        }
        for list in lock(&self.ip_lists).values() {
            list.artifact.reload();
        }
        if let Some(rules) = lock(&self.rules).as_ref() {
            for list in &rules.slot.module().lists {
                list.artifact.reload();
                list.refresh();
            }
        }
    }

    /// The operator's kill switch for module `name`, kept in `state_dir`.
    pub(crate) fn set_override(
        &self,
        name: &str,
        o: Override,
    ) -> Result<serde_json::Value, (u16, String)> {
        let bot = lock(&self.bot);
        if let Some(extra) = self.extra.iter().find(|m| m.name() == name) {
            tracing::warn!(module = name, state = o.as_str(), "operator override");
            return extra
                .set_override(o)
                .ok_or_else(|| (404, format!("module {name:?} has no kill switch")));
        }
        match name {
            "limits" => {
                let slot = lock(&self.limits).as_ref().map(|r| Arc::clone(&r.slot));
                self.switch(name, slot.as_deref(), "no [[limits]] are configured", o)
            }
            "challenge" => {
                let slot = lock(&self.challenge).as_ref().map(|r| Arc::clone(&r.slot));
                self.switch(
                    name,
                    slot.as_deref(),
                    "no rule has action = \"challenge\"",
                    o,
                )
            }
            "rules" => {
                let slot = lock(&self.rules).as_ref().map(|r| Arc::clone(&r.slot));
                self.switch(name, slot.as_deref(), "no [[rules]] are configured", o)
            }
            "bot" if bot.is_some() => {
                let slot = bot.as_ref().map(|r| Arc::clone(&r.slot));
                self.switch(name, slot.as_deref(), "", o)
            }
            _ => Err((
                404,
                format!(
                    "no module {name:?} is configured (configured: {:?})",
                    self.names(bot.as_ref())
                ),
            )),
        }
    }

    /// Apply an operator override to a configured module's slot, log it and keep it.
    fn switch<M: holdfast_modules::Module>(
        &self,
        name: &str,
        slot: Option<&ModuleSlot<M>>,
        missing: &str,
        o: Override,
    ) -> Result<serde_json::Value, (u16, String)> {
        let Some(slot) = slot else {
            return Err((404, missing.to_string()));
        };
        slot.set_override(o);
        tracing::warn!(module = name, state = o.as_str(), "operator override");
        let status = serde_json::to_value(slot.status()).unwrap_or_default();
        self.persist_override(name, o, status)
    }

    /// Keep an override in `state_dir`; the answer is the module's status.
    fn persist_override(
        &self,
        name: &str,
        o: Override,
        mut status: serde_json::Value,
    ) -> Result<serde_json::Value, (u16, String)> {
        let state_dir = lock(&self.state_dir).clone();
        let persisted = match &state_dir {
            Some(dir) => {
                let mut all = read_overrides(Some(dir));
                match o {
                    Override::None => all.remove(name),
                    o => all.insert(name.to_string(), o),
                };
                write_overrides(dir, &all).map_err(|e| {
                    (
                        500,
                        format!("override applied but not saved in {}: {e}", dir.display()),
                    )
                })?;
                true
            }
            None => false,
        };
        if let Some(map) = status.as_object_mut() {
            map.insert("override_persisted".into(), persisted.into());
        }
        Ok(status)
    }

    /// `POST /artifacts/NAME/force`: apply the file now even if it shrinks sharply.
    pub(crate) fn force_artifact(&self, name: &str) -> Result<serde_json::Value, (u16, String)> {
        if let Some(list) = name
            .strip_prefix("ip-list:")
            .and_then(|n| lock(&self.ip_lists).get(n).cloned())
        {
            list.artifact.force_next();
            let outcome = list.artifact.reload();
            tracing::warn!(artifact = name, outcome = ?outcome, "operator forced a reload");
            return Ok(serde_json::to_value(list.artifact.status()).unwrap_or_default());
        }
        if let Some(list) = name.strip_prefix("rule-list:").and_then(|n| {
            lock(&self.rules)
                .as_ref()
                .and_then(|r| r.slot.module().lists.iter().find(|l| l.name == n).cloned())
        }) {
            list.artifact.force_next();
            let outcome = list.artifact.reload();
            list.refresh();
            tracing::warn!(artifact = name, outcome = ?outcome, "operator forced a reload");
            return Ok(serde_json::to_value(list.artifact.status()).unwrap_or_default());
        }
        let bot = lock(&self.bot);
        let Some(runtime) = bot.as_ref().filter(|_| name == "bot-features") else {
            return Err((
                404,
                format!(
                    "no artifact {name:?} is loaded (loaded: {:?})",
                    if bot.is_some() {
                        vec!["bot-features"]
                    } else {
                        vec![]
                    }
                ),
            ));
        };
        runtime.artifact.force_next();
        let outcome = runtime.artifact.reload();
        tracing::warn!(artifact = name, outcome = ?outcome, "operator forced a reload");
        Ok(serde_json::to_value(runtime.artifact.status()).unwrap_or_default())
    }

    fn names(&self, bot: Option<&BotRuntime>) -> Vec<&'static str> {
        let mut names = Vec::new();
        if lock(&self.limits).is_some() {
            names.push("limits");
        }
        if lock(&self.rules).is_some() {
            names.push("rules");
        }
        if lock(&self.challenge).is_some() {
            names.push("challenge");
        }
        if bot.is_some() {
            names.push("bot");
        }
        names.extend(self.extra.iter().map(|m| m.name()));
        names
    }

    /// `/status`: every artifact and every module.
    pub(crate) fn status(&self) -> (serde_json::Value, serde_json::Value) {
        let bot = lock(&self.bot);
        let mut artifacts: Vec<serde_json::Value> = bot
            .iter()
            .map(|r| serde_json::to_value(r.artifact.status()).unwrap_or_default())
            .collect();
        let lists = lock(&self.ip_lists);
        let mut names: Vec<&String> = lists.keys().collect();
        names.sort();
        artifacts.extend(
            names
                .into_iter()
                .filter_map(|n| lists.get(n))
                .map(|l| serde_json::to_value(l.artifact.status()).unwrap_or_default()),
        );
        drop(lists);
        if let Some(rules) = lock(&self.rules).as_ref() {
            artifacts.extend(
                rules
                    .slot
                    .module()
                    .lists
                    .iter()
                    .map(|l| serde_json::to_value(l.artifact.status()).unwrap_or_default()),
            );
        }
        let limits = lock(&self.limits);
        let limit_status = limits.as_ref().map(|r| {
            let mut status = serde_json::to_value(r.slot.status()).unwrap_or_default();
            let each: Vec<serde_json::Value> = r
                .slot
                .module()
                .limits
                .iter()
                .map(|l| {
                    let mut one = serde_json::json!({
                        "name": l.limiter.name(),
                        "scope": if l.global.is_some() { "global" } else { "local" },
                        "routes": l.routes,
                        "keys": l.limiter.keys(),
                        "memory_bytes": l.limiter.memory_bytes(),
                        "rotations": l.limiter.rotations(),
                        "limited": l.limiter.denied(),
                        "shadow": l.limiter.shadowed(),
                    });
                    if let (Some(g), Some(map)) = (&l.global, one.as_object_mut()) {
                        map.insert(
                            "global".into(),
                            serde_json::json!({
                                "keys": g.keys(),
                                "unsynced": g.unsynced(),
                                "limited": g.denied(),
                                "shadow": g.shadowed(),
                                "local_decisions": g.local_decisions(),
                            }),
                        );
                    }
                    one
                })
                .collect();
            if let Some(map) = status.as_object_mut() {
                map.insert("limits".into(), each.into());
                if let Some((health, _)) = &r.redis {
                    let h = health.snapshot();
                    map.insert(
                        "redis".into(),
                        serde_json::json!({
                            "state": if h.down { "down" } else { "ok" },
                            "since": humantime::format_rfc3339_seconds(h.since).to_string(),
                            "last_error": h.last_error,
                            "calls": h.calls,
                        }),
                    );
                }
            }
            status
        });
        drop(limits);
        let rule_status = lock(&self.rules).as_ref().map(|r| {
            let mut status = serde_json::to_value(r.slot.status()).unwrap_or_default();
            let one = |rule: &holdfast_shield::rules::Rule, list: Option<&str>| {
                let mut v = serde_json::json!({
                    "id": rule.spec.id,
                    "action": rule.spec.action.label(),
                    "mode": if rule.spec.shadow { "log" } else { "enforce" },
                    "routes": rule.spec.routes,
                    "hits": rule.hits(),
                    "errors": rule.errors(),
                    "engine": rule.engine(),
                });
                if let (Some(list), Some(map)) = (list, v.as_object_mut()) {
                    map.insert("list".into(), list.into());
                }
                v
            };
            let module = r.slot.module();
            let mut each: Vec<serde_json::Value> =
                module.rules.iter().map(|rule| one(rule, None)).collect();
            for list in &module.lists {
                if let Some(c) = list.compiled() {
                    each.extend(c.rules.rules.iter().map(|rule| one(rule, Some(&list.name))));
                }
            }
            if let Some(map) = status.as_object_mut() {
                map.insert("rules".into(), each.into());
            }
            status
        });
        let challenge_status = lock(&self.challenge).as_ref().map(|c| c.status());
        let modules: Vec<serde_json::Value> = limit_status
            .into_iter()
            .chain(rule_status)
            .chain(challenge_status)
            .chain(
                bot.iter()
                    .map(|r| serde_json::to_value(r.slot.status()).unwrap_or_default()),
            )
            .chain(self.extra.iter().filter_map(|m| m.status()))
            .collect();
        (artifacts.into(), modules.into())
    }
}

/// The bot feature file's public key, decoded (also checked by `holdfast check`).
pub(crate) fn bot_public_key(
    c: &holdfast_config::BotModule,
) -> Result<Option<holdfast_artifact::VerifyingKey>, Vec<ConfigError>> {
    let Some(text) = &c.public_key else {
        return Ok(None);
    };
    holdfast_artifact::decode_public_key(text)
        .map(Some)
        .map_err(|e| {
            vec![ConfigError::new(
                "modules.bot.public_key",
                e,
                "give the generator's ed25519 public key as base64 (32 bytes)",
            )]
        })
}

/// The names of the routes at `indices`: a module set compares by names, not positions, so
/// a reload that only moves routes keeps its state (counts, compiled rules).
fn route_names(config: &Config, indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .filter_map(|i| config.routes.get(*i).map(|r| r.name.clone()))
        .collect()
}

/// The operator's overrides, by module name.
type Overrides = BTreeMap<String, Override>;

/// Overrides by module name; a missing or unreadable file means none (and says so).
fn read_overrides(state_dir: Option<&Path>) -> Overrides {
    let Some(dir) = state_dir else {
        return BTreeMap::new();
    };
    let path = dir.join(OVERRIDES_FILE);
    let text = match holdfast_artifact::read_bounded_text(&path, 64 << 10) {
        Ok(source) => source.content,
        Err(holdfast_artifact::ReadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return BTreeMap::new()
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "module overrides not read");
            return BTreeMap::new();
        }
    };
    let parsed: Result<BTreeMap<String, String>, _> = serde_json::from_str(&text);
    match parsed {
        Ok(map) => map
            .into_iter()
            .filter_map(|(name, state)| {
                let o = match state.as_str() {
                    "disabled" => Override::Disabled,
                    "enabled" => Override::Enabled,
                    _ => return None,
                };
                Some((name, o))
            })
            .collect(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "module overrides not read");
            BTreeMap::new()
        }
    }
}

/// Write atomically: a temporary file, then rename over the old one.
fn write_overrides(dir: &Path, all: &BTreeMap<String, Override>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let map: BTreeMap<&str, &str> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let text = serde_json::to_string_pretty(&map).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{OVERRIDES_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(OVERRIDES_FILE))
}
