//! The rule engine as one module (`rules`): CEL expressions compiled once per config
//! generation, evaluated per request in file order. The first enforced `block`, `challenge`
//! or `allow` that matches decides; `log` rules and shadow (`mode = "log"`) hits only count.
//! A `challenge` outcome goes to the challenge module (`holdfast-challenge`), which passes a
//! client with a valid cookie (with the effects of the rules before it).
//!
//! Two engines, one meaning: the common shapes (string tests, `==`, `in [..]`, `matches` over
//! request fields, with `&&`, `||`, `!`) compile to native predicates ([`native`]) evaluated on
//! the request as it is; the rest runs in `cel-interpreter`, whose request map is built only
//! when such a rule applies to the request's route. The rules of each route are listed once.
//!
//! A rule whose evaluation fails (a missing map key, a wrong type) is that rule's miss plus
//! an error count: never a 5xx, never a block. `matches` uses the `regex` crate (linear
//! time) with compiled patterns cached, so a rule's pattern is compiled once, not per request.

use cel_interpreter::extractors::This;
use cel_interpreter::objects::{Key, Map};
use cel_interpreter::{Context, ExecutionError, FunctionContext, Program, Value};
use holdfast_modules::{Module, ModuleCtx, ModuleError, RequestView};
use prometheus::IntCounter;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Compiled patterns kept for `matches` (beyond this the cache starts again).
const REGEX_CACHE: usize = 256;
/// Compiled size limit of one `matches` pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The window `client.rate` counts over (fixed windows: the count starts again in each).
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

pub use holdfast_config::RuleAction;

/// What `bot.score` reads: the bot module's verdict for the request, which the bot module
/// writes in the request's `ModuleCtx` when it runs before the rules.
pub use holdfast_modules::BotScore;

/// The configured IP lists by name, as rules read them (`ip_in_list(client.ip, "name")`).
pub type IpLists = HashMap<String, Arc<holdfast_artifact::Artifact<crate::ip_list::IpListKind>>>;
/// Which request fields the expressions read; only these are built per request.
pub use holdfast_config::RuleFields as Fields;

/// One rule as configured.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub id: String,
    pub expr: String,
    pub action: RuleAction,
    /// Count hits, act on none.
    pub shadow: bool,
    /// Route names; empty: every route.
    pub routes: Vec<String>,
    pub fields: Fields,
    /// `set_header` / `remove_header`: the edit.
    pub header: Option<HeaderEdit>,
    /// `route`: the route that serves the request instead.
    pub route: Option<Arc<str>>,
    /// `rate_limit`: the `rules_only` limit to apply.
    pub limit: Option<Arc<str>>,
}

/// What the matching rules that decide nothing ask of the request: header edits in rule
/// order, and the first `route` override.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    pub headers: Vec<HeaderEdit>,
    pub route: Option<Arc<str>>,
    /// `rules_only` limits to check the request against, each once, in rule order.
    pub limits: Vec<Arc<str>>,
}

impl Effects {
    fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.route.is_none() && self.limits.is_empty()
    }
}

impl RuleDef {
    /// A checked config rule (`[[rules]]` or a rule list's entry) with its route names.
    pub fn from_config(r: &holdfast_config::Rule, routes: Vec<String>) -> Self {
        RuleDef {
            id: r.id.clone(),
            expr: r.expr.clone(),
            action: r.action,
            shadow: r.mode == holdfast_config::RuleMode::Log,
            routes,
            fields: r.fields,
            header: r.header.as_ref().and_then(|h| {
                Some(HeaderEdit {
                    name: http::HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                    value: match &h.value {
                        None => None,
                        Some(v) => Some(http::HeaderValue::from_str(v).ok()?),
                    },
                })
            }),
            route: r.route.as_deref().map(Arc::from),
            limit: r.limit.as_deref().map(Arc::from),
        }
    }
}

/// A header of the request to the origin set (`value`) or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEdit {
    pub name: http::HeaderName,
    pub value: Option<http::HeaderValue>,
}

/// `holdfast_rule_hits_total{rule,action,mode}` and `holdfast_rule_errors_total{rule}`.
#[derive(Clone)]
pub struct RuleMetrics {
    pub hits: prometheus::IntCounterVec,
    pub errors: prometheus::IntCounterVec,
}

impl RuleMetrics {
    pub fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let hits = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "holdfast_rule_hits_total",
                "Requests a rule's expression matched, by rule, action and mode (enforce, or \
                 log: shadow, counted but not acted on).",
            ),
            &["rule", "action", "mode"],
        )?;
        registry.register(Box::new(hits.clone()))?;
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "holdfast_rule_errors_total",
                "Rule evaluations that failed at run time (a missing key, a wrong type); \
                 each counts as that rule's miss.",
            ),
            &["rule"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        Ok(RuleMetrics { hits, errors })
    }
}

/// A rule ready to run.
pub struct CompiledRule {
    pub spec: RuleDef,
    program: Program,
    /// The expression as a native predicate, when it has a shape that compiles to one.
    native: Option<native::Pred>,
    hits_metric: IntCounter,
    errors_metric: IntCounter,
    hits: AtomicU64,
    errors: AtomicU64,
}

impl CompiledRule {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// `native` (a compiled predicate) or `cel` (the interpreter).
    pub fn engine(&self) -> &'static str {
        if self.native.is_some() {
            "native"
        } else {
            "cel"
        }
    }
    fn applies(&self, route: &str) -> bool {
        self.spec.routes.is_empty() || self.spec.routes.iter().any(|r| r == route)
    }
}

/// A request a rule blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub rule: String,
    pub status: u16,
}

/// A request a rule sends to the challenge (which passes it if it carries a valid cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenged {
    pub rule: String,
    /// Proof-of-work leading zero bits.
    pub difficulty: u8,
    /// Offer the no-JavaScript form.
    pub nojs: bool,
    /// What the matching rules before it asked for, applied if the client passes.
    pub effects: Effects,
}

/// The module's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    Pass,
    Block(Box<Blocked>),
    /// Pass, with these effects (header edits of the origin request, another route).
    Edit(Box<Effects>),
    /// Pass only with a valid challenge cookie (then with the effects of the rules before).
    Challenge(Box<Challenged>),
}

/// Every configured rule, in file order, and the functions they may call.
pub struct Rules {
    pub rules: Vec<CompiledRule>,
    root: Context<'static>,
    /// What the CEL rules read (the native ones read the request directly).
    fields: Fields,
    /// Some rule reads `bot.score` (the host then runs the bot module first).
    reads_bot: bool,
    /// Some rule reads `client.rate`: each request is then counted in `rate`.
    reads_rate: bool,
    /// Requests per client address over `rate_window`, for `client.rate`: allocated on the
    /// first request counted (never for a rule set, or a rule list, that does not read it).
    /// A rule list's rules read the count of the rule set that holds the list.
    rate: OnceLock<holdfast_bot::RateTable>,
    rate_window: Duration,
    /// The rules that apply to each route some rule names, in file order.
    by_route: HashMap<String, Box<[usize]>>,
    /// The rules that apply to any other route (those without `routes`).
    unrouted: Box<[usize]>,
    /// `[[rule_lists]]`, run in order after these rules.
    pub lists: Vec<Arc<ListRules>>,
}

/// One rule list: its artifact and its active version compiled.
pub struct ListRules {
    pub name: String,
    pub artifact: Arc<holdfast_artifact::Artifact<crate::rule_list::RuleListKind>>,
    compiled: arc_swap::ArcSwapOption<Compiled>,
    metrics: RuleMetrics,
    ip_lists: IpLists,
}

/// A list version's rules, compiled.
pub struct Compiled {
    pub sha256: String,
    pub version: u64,
    pub rules: Rules,
}

impl ListRules {
    pub fn new(
        name: String,
        artifact: Arc<holdfast_artifact::Artifact<crate::rule_list::RuleListKind>>,
        metrics: &RuleMetrics,
        ip_lists: &IpLists,
    ) -> Self {
        let list = ListRules {
            name,
            artifact,
            compiled: arc_swap::ArcSwapOption::empty(),
            metrics: metrics.clone(),
            ip_lists: ip_lists.clone(),
        };
        list.refresh();
        list
    }

    /// Compile the artifact's active version if it is not the compiled one (after a load;
    /// never on the request path). A version that does not compile keeps the previous one.
    pub fn refresh(&self) {
        let current = self.artifact.current();
        let Some(active) = current.as_ref() else {
            return;
        };
        if self
            .compiled
            .load()
            .as_ref()
            .is_some_and(|c| c.sha256 == active.sha256)
        {
            return;
        }
        let specs = active
            .value
            .rules
            .iter()
            .map(|r| RuleDef::from_config(r, Vec::new()))
            .collect();
        match Rules::new(specs, &self.metrics, &self.ip_lists) {
            Ok(rules) => self.compiled.store(Some(Arc::new(Compiled {
                sha256: active.sha256.clone(),
                version: active.version,
                rules,
            }))),
            Err(e) => tracing::error!(list = %self.name, error = %e,
                "a rule list that passed its checks did not compile; the previous version stays"),
        }
    }

    /// The compiled active version, if any.
    pub fn compiled(&self) -> Option<Arc<Compiled>> {
        self.compiled.load_full()
    }
}

/// Why a rule set could not be built.
#[derive(Debug, thiserror::Error)]
#[error("rule {id:?}: {detail}")]
pub struct CompileError {
    pub id: String,
    pub detail: String,
}

impl Rules {
    /// Compile every rule (the config already compile-checked them).
    pub fn new(
        specs: Vec<RuleDef>,
        metrics: &RuleMetrics,
        lists: &IpLists,
    ) -> Result<Self, CompileError> {
        let mut fields = Fields::default();
        let mut rules = Vec::with_capacity(specs.len());
        for spec in specs {
            // The parser panics on some inputs (the config check refuses them first).
            let program = std::panic::catch_unwind(|| Program::compile(&spec.expr))
                .map_err(|_| CompileError {
                    id: spec.id.clone(),
                    detail: "the CEL parser could not read this expression".to_string(),
                })?
                .map_err(|e| CompileError {
                    id: spec.id.clone(),
                    detail: e.to_string(),
                })?;
            let native = native::compile(&spec.expr, REGEX_SIZE_LIMIT, lists);
            if native.is_none() {
                fields = fields.union(spec.fields);
            }
            let mode = if spec.shadow { "log" } else { "enforce" };
            rules.push(CompiledRule {
                hits_metric: metrics.hits.with_label_values(&[
                    spec.id.as_str(),
                    spec.action.label(),
                    mode,
                ]),
                errors_metric: metrics.errors.with_label_values(&[spec.id.as_str()]),
                spec,
                program,
                native,
                hits: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            });
        }
        let reads_bot = rules.iter().any(|r| r.spec.fields.bot);
        let reads_rate = rules.iter().any(|r| r.spec.fields.rate);
        let unrouted = applicable(&rules, None);
        let by_route = rules
            .iter()
            .flat_map(|r| r.spec.routes.iter())
            .map(|route| (route.clone(), applicable(&rules, Some(route))))
            .collect();
        Ok(Rules {
            rules,
            root: root_context(lists),
            fields,
            reads_bot,
            reads_rate,
            rate: OnceLock::new(),
            rate_window: RATE_WINDOW,
            by_route,
            unrouted,
            lists: Vec::new(),
        })
    }

    /// No rules (what runs if a set that compiled in the plan fails to compile at start).
    pub fn empty(lists: &IpLists) -> Self {
        Rules {
            rules: Vec::new(),
            root: root_context(lists),
            fields: Fields::default(),
            reads_bot: false,
            reads_rate: false,
            rate: OnceLock::new(),
            rate_window: RATE_WINDOW,
            by_route: HashMap::new(),
            unrouted: Box::new([]),
            lists: Vec::new(),
        }
    }

    /// Whether a rule reads `bot.score`.
    pub fn reads_bot(&self) -> bool {
        self.reads_bot
    }

    /// Whether a rule, or a rule of a list's active version, reads `client.rate`.
    pub fn reads_rate(&self) -> bool {
        self.reads_rate
            || self.lists.iter().any(|l| {
                l.compiled
                    .load()
                    .as_ref()
                    .is_some_and(|c| c.rules.reads_rate)
            })
    }

    /// Count `client.rate` over `window` instead of [`RATE_WINDOW`] (before the first request).
    pub fn with_rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// Count one request of `ip`: its `client.rate`.
    fn count(&self, ip: std::net::IpAddr) -> u32 {
        self.rate
            .get_or_init(|| holdfast_bot::RateTable::new(self.rate_window))
            .observe(ip, Instant::now())
    }

    /// Rules that apply to `route`, in file order.
    fn for_route(&self, route: &str) -> &[usize] {
        self.by_route.get(route).unwrap_or(&self.unrouted)
    }

    /// The variables for one request, without a bot score (tests).
    #[cfg(test)]
    fn context(&self, req: &RequestView<'_>, rate: Option<u32>) -> Context<'_> {
        self.context_with(req, rate, BotScore::Unknown)
    }

    /// The variables for one request: only the fields some rule reads.
    fn context_with(
        &self,
        req: &RequestView<'_>,
        rate: Option<u32>,
        bot_score: BotScore,
    ) -> Context<'_> {
        let f = self.fields;
        let mut ctx = self.root.new_inner_scope();
        let mut request: HashMap<Key, Value> = HashMap::new();
        let s = |text: &str| Value::String(Arc::new(text.to_string()));
        if f.method {
            request.insert("method".into(), s(req.method.as_str()));
        }
        if f.path {
            request.insert("path".into(), s(req.path));
        }
        if f.query {
            request.insert("query".into(), s(req.query.unwrap_or("")));
        }
        if f.host {
            request.insert("host".into(), s(&native::host(req)));
        }
        if f.headers {
            let mut headers: HashMap<Key, Value> = HashMap::with_capacity(req.headers.keys_len());
            for name in req.headers.keys() {
                if let Some(v) = req.headers.get(name) {
                    headers.insert(
                        name.as_str().into(),
                        s(&String::from_utf8_lossy(v.as_bytes())),
                    );
                }
            }
            request.insert("headers".into(), map(headers));
        }
        if f.cookies {
            let mut cookies: HashMap<Key, Value> = HashMap::new();
            for v in req.headers.get_all(http::header::COOKIE) {
                let Ok(text) = v.to_str() else { continue };
                for pair in text.split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=') {
                        cookies
                            .entry(k.trim().into())
                            .or_insert_with(|| s(v.trim()));
                    }
                }
            }
            request.insert("cookies".into(), map(cookies));
        }
        if f.ja4h {
            request.insert("ja4h".into(), s(&holdfast_bot::ja4h(req)));
        }
        ctx.add_variable_from_value("request", map(request));
        if f.bot {
            let score = match bot_score {
                BotScore::Unknown => s("unknown"),
                BotScore::Score(n) => Value::Int(i64::from(n)),
            };
            let mut bot: HashMap<Key, Value> = HashMap::with_capacity(1);
            bot.insert("score".into(), score);
            ctx.add_variable_from_value("bot", map(bot));
        }
        if f.client_ip || f.rate {
            let mut client: HashMap<Key, Value> = HashMap::with_capacity(2);
            if f.client_ip {
                client.insert("ip".into(), s(&req.client_ip.to_string()));
            }
            // Not counted (a list swapped in a reader mid-request): a missing key, the rule's
            // error, as natively.
            if let (true, Some(n)) = (f.rate, rate) {
                client.insert("rate".into(), Value::Int(i64::from(n)));
            }
            ctx.add_variable_from_value("client", map(client));
        }
        ctx
    }
}

/// The indices of the rules that apply to `route` (`None`: a route no rule names).
fn applicable(rules: &[CompiledRule], route: Option<&str>) -> Box<[usize]> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.spec.routes.is_empty() || route.is_some_and(|x| r.applies(x)))
        .map(|(i, _)| i)
        .collect()
}

fn map(m: HashMap<Key, Value>) -> Value {
    Value::Map(Map { map: Arc::new(m) })
}

/// The interpreter's functions, with `matches` caching its compiled patterns, and
/// `ip_in_list` over the configured IP lists.
fn root_context(lists: &IpLists) -> Context<'static> {
    let mut ctx = Context::default();
    let lists = lists.clone();
    ctx.add_function(
        "ip_in_list",
        move |ftx: &FunctionContext,
              ip: Arc<String>,
              name: Arc<String>|
              -> Result<bool, ExecutionError> {
            let list = lists
                .get(name.as_str())
                .ok_or_else(|| ftx.error(format!("no IP list {name:?}")))?;
            native::in_list(list, ip.parse().ok())
                .map_err(|_| ftx.error(format!("IP list {name:?} has no value loaded")))
        },
    );
    let cache: Arc<Mutex<HashMap<String, Arc<regex::Regex>>>> = Arc::default();
    ctx.add_function(
        "matches",
        move |ftx: &FunctionContext,
              This(this): This<Arc<String>>,
              pattern: Arc<String>|
              -> Result<bool, ExecutionError> {
            let re = cached_regex(&cache, &pattern).map_err(|e| ftx.error(e))?;
            Ok(re.is_match(&this))
        },
    );
    ctx
}

fn cached_regex(
    cache: &Mutex<HashMap<String, Arc<regex::Regex>>>,
    pattern: &str,
) -> Result<Arc<regex::Regex>, String> {
    let mut c = holdfast_common::lock(cache);
    if let Some(re) = c.get(pattern) {
        return Ok(Arc::clone(re));
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("{pattern:?} is not a valid regex: {e}"))?;
    let re = Arc::new(re);
    if c.len() >= REGEX_CACHE {
        c.clear();
    }
    c.insert(pattern.to_string(), Arc::clone(&re));
    Ok(re)
}

impl Module for Rules {
    type Output = RuleOutcome;
    const NAME: &'static str = "rules";

    fn decide(&self, req: &RequestView<'_>) -> Result<RuleOutcome, ModuleError> {
        self.decide_in(req, &ModuleCtx::default())
    }

    /// `bot.score` is what the bot module wrote in `ctx` (it runs first when a rule reads it).
    fn decide_in(
        &self,
        req: &RequestView<'_>,
        ctx: &ModuleCtx,
    ) -> Result<RuleOutcome, ModuleError> {
        // `client.rate`: counted once per request, before any rule runs.
        let rate = self.reads_rate().then(|| self.count(req.client_ip));
        let view = native::Req::new(req)
            .with_rate(rate)
            .with_bot(ctx.bot_score);
        // Effects of the rules that matched so far (no allocation until one has one).
        let mut edits = Effects::default();
        let mut flow = self.run(req, &view, &mut edits);
        for list in &self.lists {
            if flow.is_break() {
                break;
            }
            if let Some(c) = list.compiled.load().as_ref() {
                flow = c.rules.run(req, &view, &mut edits);
            }
        }
        Ok(match flow {
            ControlFlow::Break(RuleOutcome::Block(b)) => RuleOutcome::Block(b),
            ControlFlow::Break(RuleOutcome::Challenge(mut c)) => {
                c.effects = edits;
                RuleOutcome::Challenge(c)
            }
            _ if edits.is_empty() => RuleOutcome::Pass,
            _ => RuleOutcome::Edit(Box::new(edits)),
        })
    }
}

impl Rules {
    /// The rules of the request's route in order, until one decides (`Break`: a block, or
    /// `Pass` for an allow).
    fn run(
        &self,
        req: &RequestView<'_>,
        view: &native::Req<'_, '_>,
        edits: &mut Effects,
    ) -> ControlFlow<RuleOutcome> {
        // Built on the first CEL rule that runs, then shared by the rest.
        let mut ctx: Option<Context<'_>> = None;
        for &i in self.for_route(req.route) {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            let matched = match &rule.native {
                Some(p) => p.eval(view).ok(),
                None => {
                    let ctx =
                        ctx.get_or_insert_with(|| self.context_with(req, view.rate(), view.bot()));
                    match rule.program.execute(ctx) {
                        Ok(Value::Bool(b)) => Some(b),
                        // Not a boolean, or failed.
                        Ok(_) | Err(_) => None,
                    }
                }
            };
            self.hit(rule, matched, edits)?;
        }
        ControlFlow::Continue(())
    }
}

impl Rules {
    /// Count one evaluation (`None`: it failed, a miss counted as an error); collect a header
    /// edit; break with the outcome when an enforced rule decides (`Pass`: an allow, which
    /// keeps the edits made so far; a block drops them).
    fn hit(
        &self,
        rule: &CompiledRule,
        matched: Option<bool>,
        edits: &mut Effects,
    ) -> ControlFlow<RuleOutcome> {
        match matched {
            Some(true) => {}
            Some(false) => return ControlFlow::Continue(()),
            None => {
                rule.errors.fetch_add(1, Ordering::Relaxed);
                rule.errors_metric.inc();
                return ControlFlow::Continue(());
            }
        }
        rule.hits.fetch_add(1, Ordering::Relaxed);
        rule.hits_metric.inc();
        if rule.spec.shadow {
            return ControlFlow::Continue(());
        }
        match rule.spec.action {
            RuleAction::Log => ControlFlow::Continue(()),
            RuleAction::SetHeader | RuleAction::RemoveHeader => {
                edits.headers.extend(rule.spec.header.clone());
                ControlFlow::Continue(())
            }
            RuleAction::Route => {
                if edits.route.is_none() {
                    edits.route.clone_from(&rule.spec.route);
                }
                ControlFlow::Continue(())
            }
            RuleAction::RateLimit => {
                if let Some(l) = &rule.spec.limit {
                    if !edits.limits.contains(l) {
                        edits.limits.push(Arc::clone(l));
                    }
                }
                ControlFlow::Continue(())
            }
            RuleAction::Allow => ControlFlow::Break(RuleOutcome::Pass),
            RuleAction::Block { status } => {
                ControlFlow::Break(RuleOutcome::Block(Box::new(Blocked {
                    rule: rule.spec.id.clone(),
                    status,
                })))
            }
            RuleAction::Challenge { difficulty, nojs } => {
                ControlFlow::Break(RuleOutcome::Challenge(Box::new(Challenged {
                    rule: rule.spec.id.clone(),
                    difficulty,
                    nojs,
                    effects: Effects::default(),
                })))
            }
        }
    }
}

#[doc(hidden)]
pub mod fuzzing;
pub mod native;
#[cfg(test)]
mod tests;
