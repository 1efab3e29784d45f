//! The rule engine as one module (`rules`): CEL expressions (`cel-interpreter`) compiled once
//! per config generation, evaluated per request in file order. The first enforced `block`,
//! `challenge` or `allow` that matches decides; `log` rules and shadow (`mode = "log"`) hits
//! only count. A `challenge` outcome goes to the challenge module (`holdfast-challenge`),
//! which passes a client with a valid cookie.
//!
//! A rule whose evaluation fails (a missing map key, a wrong type) is that rule's miss plus
//! an error count: never a 5xx, never a block. `matches` uses the `regex` crate (linear
//! time) with compiled patterns cached, so a rule's pattern is compiled once, not per request.

use cel_interpreter::extractors::This;
use cel_interpreter::objects::{Key, Map};
use cel_interpreter::{Context, ExecutionError, FunctionContext, Program, Value};
use holdfast_modules::{Module, ModuleError, RequestView};
use prometheus::IntCounter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Compiled patterns kept for `matches` (beyond this the cache starts again).
const REGEX_CACHE: usize = 256;
/// Compiled size limit of one `matches` pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub use holdfast_config::RuleAction;
/// Which request fields the expressions read; only these are built per request.
pub use holdfast_config::RuleFields as Fields;

/// One rule as configured.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub id: String,
    pub expr: String,
    pub action: RuleAction,
    /// Count hits, act on none.
    pub shadow: bool,
    /// Route names; empty: every route.
    pub routes: Vec<String>,
    pub fields: Fields,
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
pub struct Rule {
    pub spec: RuleSpec,
    program: Program,
    hits_metric: IntCounter,
    errors_metric: IntCounter,
    hits: AtomicU64,
    errors: AtomicU64,
}

impl Rule {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
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
}

/// The module's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    Pass,
    Block(Box<Blocked>),
    Challenge(Box<Challenged>),
}

/// Every configured rule, in file order, and the functions they may call.
pub struct Rules {
    pub rules: Vec<Rule>,
    root: Context<'static>,
    fields: Fields,
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
    pub fn new(specs: Vec<RuleSpec>, metrics: &RuleMetrics) -> Result<Self, CompileError> {
        let mut fields = Fields::default();
        let mut rules = Vec::with_capacity(specs.len());
        for spec in specs {
            let program = Program::compile(&spec.expr).map_err(|e| CompileError {
                id: spec.id.clone(),
                detail: e.to_string(),
            })?;
            fields = fields.union(spec.fields);
            let mode = if spec.shadow { "log" } else { "enforce" };
            rules.push(Rule {
                hits_metric: metrics.hits.with_label_values(&[
                    spec.id.as_str(),
                    spec.action.label(),
                    mode,
                ]),
                errors_metric: metrics.errors.with_label_values(&[spec.id.as_str()]),
                spec,
                program,
                hits: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            });
        }
        Ok(Rules {
            rules,
            root: root_context(),
            fields,
        })
    }

    /// The variables for one request: only the fields some rule reads.
    fn context(&self, req: &RequestView<'_>) -> Context<'_> {
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
            request.insert("host".into(), s(&host(req)));
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
        ctx.add_variable_from_value("request", map(request));
        if f.client_ip {
            let mut client: HashMap<Key, Value> = HashMap::with_capacity(1);
            client.insert("ip".into(), s(&req.client_ip.to_string()));
            ctx.add_variable_from_value("client", map(client));
        }
        ctx
    }
}

fn map(m: HashMap<Key, Value>) -> Value {
    Value::Map(Map { map: Arc::new(m) })
}

/// The `Host` header without its port, lower-cased.
fn host(req: &RequestView<'_>) -> String {
    let Some(h) = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return String::new();
    };
    let h = if h.starts_with('[') {
        h.split_once(']')
            .map_or(h, |(a, _)| a.trim_start_matches('['))
    } else {
        h.rsplit_once(':').map_or(h, |(a, _)| a)
    };
    h.to_ascii_lowercase()
}

/// The interpreter's functions, with `matches` caching its compiled patterns.
fn root_context() -> Context<'static> {
    let mut ctx = Context::default();
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
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut applicable = self
            .rules
            .iter()
            .filter(|r| r.applies(req.route))
            .peekable();
        if applicable.peek().is_none() {
            return Ok(RuleOutcome::Pass);
        }
        let ctx = self.context(req);
        for rule in applicable {
            match rule.program.execute(&ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => continue,
                Ok(_) | Err(_) => {
                    // Not a boolean, or failed: a miss, counted.
                    rule.errors.fetch_add(1, Ordering::Relaxed);
                    rule.errors_metric.inc();
                    continue;
                }
            }
            rule.hits.fetch_add(1, Ordering::Relaxed);
            rule.hits_metric.inc();
            if rule.spec.shadow {
                continue;
            }
            match rule.spec.action {
                RuleAction::Log => {}
                RuleAction::Allow => return Ok(RuleOutcome::Pass),
                RuleAction::Block { status } => {
                    return Ok(RuleOutcome::Block(Box::new(Blocked {
                        rule: rule.spec.id.clone(),
                        status,
                    })))
                }
                RuleAction::Challenge { difficulty, nojs } => {
                    return Ok(RuleOutcome::Challenge(Box::new(Challenged {
                        rule: rule.spec.id.clone(),
                        difficulty,
                        nojs,
                    })))
                }
            }
        }
        Ok(RuleOutcome::Pass)
    }
}

#[cfg(test)]
mod tests;
