//! The challenge as a module kind (`ChallengeKind`, the edge's wiring of this crate, with
//! its I/O): `ChallengeModule` (a `Module` whose decision is whether the request carries a
//! valid pass cookie) in its `ModuleSlot` (kill switch, fail policy, budget, breaker), the
//! pages it answers with, and its reserved paths `/.holdfast/challenge/{verify,nojs,return}`.
//! It has no request step: the rules call it through `ChallengeGate` when a `challenge` rule
//! matches. Keys come from `[challenge].keys`, else a key generated once and kept in
//! `edge.state_dir/challenge-key` (or in memory); the plan reads them, the start writes one.

use crate::{
    challenge_page, encode_component, form_value, json_body, loop_page, safe_target, wait_page,
    Keys, PageInput, Reject, Settings, Signer, MAX_KEY_FILE_BYTES, NOJS_PATH, VERIFY_PATH,
};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::host::{Links, ModuleKind, Start, Step, Switch};
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
    signer: Signer,
    cookie_name: String,
    /// Test hook (`Running::fail_challenge`): every decision fails, so the fail policy applies.
    fault: AtomicBool,
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

/// `holdfast_challenge_*`, registered once per process.
#[derive(Clone)]
struct ChallengeMetrics {
    issued: IntCounterVec,
    solved: IntCounterVec,
    passed: IntCounter,
    rejected: IntCounterVec,
    loops: IntCounter,
    fail_open: IntCounter,
}

impl ChallengeMetrics {
    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let vec =
            |name: &str, help: &str, label: &str| -> Result<IntCounterVec, prometheus::Error> {
                let v = IntCounterVec::new(prometheus::Opts::new(name, help), &[label])?;
                registry.register(Box::new(v.clone()))?;
                Ok(v)
            };
        let one = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let rejected = vec(
            "holdfast_challenge_rejected_total",
            "Cookies, tokens and solutions refused, by reason (forged, expired, wrong_ip, \
             wrong_ua, bad_solution, too_early).",
            "reason",
        )?;
        for r in Reject::ALL {
            rejected.with_label_values(&[r.as_str()]);
        }
        Ok(ChallengeMetrics {
            issued: vec(
                "holdfast_challenge_issued_total",
                "Challenges answered, by format (html: the page; json: a 403 for an API client).",
                "format",
            )?,
            solved: vec(
                "holdfast_challenge_solved_total",
                "Challenges passed (a pass cookie set), by method (pow, nojs).",
                "method",
            )?,
            passed: one(
                "holdfast_challenge_passed_total",
                "Requests a challenge rule matched that passed on a valid cookie.",
            )?,
            rejected,
            loops: one(
                "holdfast_challenge_loop_pages_total",
                "Clients that passed but came back without the cookie (cookies blocked?): \
                 shown an explanation instead of another challenge.",
            )?,
            fail_open: one(
                "holdfast_challenge_fail_open_total",
                "Requests let through a failing challenge because their route is critical.",
            )?,
        })
    }
}

/// What the challenge was built from; an equal one on reload keeps the running challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeConfig {
    challenge: holdfast_config::Challenge,
    critical: Vec<String>,
    state_dir: Option<PathBuf>,
}

/// Where the keys come from, found by the plan (files read, nothing written).
enum PlannedKeys {
    /// `[challenge].keys`, read and checked.
    File(Keys, String),
    /// The generated key in `state_dir` (`stored`: read from its file; `None`: not made
    /// yet), or in memory without a state folder. `fresh` is used when there is no other.
    Generated {
        stored: Option<Keys>,
        file: Option<PathBuf>,
        fresh: Keys,
    },
}

/// What a config asks of the challenge.
pub struct ChallengePlan {
    config: ChallengeConfig,
    keys: PlannedKeys,
}

/// The challenge of one generation: the cookie check in its runner, the metrics, the
/// critical routes (where a failing check lets requests through).
pub struct ChallengeRunning {
    config: ChallengeConfig,
    slot: Arc<ModuleSlot<ChallengeModule>>,
    metrics: ChallengeMetrics,
    critical: HashSet<String>,
    /// Where the keys came from, for /status.
    key_source: String,
}

/// Whether `config` needs the challenge: some rule's action is `challenge`.
fn wanted(config: &Config) -> bool {
    config
        .rules
        .iter()
        .any(|r| matches!(r.action, holdfast_config::RuleAction::Challenge { .. }))
}

fn config_of(config: &Config) -> ChallengeConfig {
    ChallengeConfig {
        challenge: config.challenge.clone(),
        critical: config
            .routes
            .iter()
            .filter(|r| r.critical)
            .map(|r| r.name.clone())
            .collect(),
        state_dir: config.edge.state_dir.clone(),
    }
}

fn key_error(path: &Path, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        "challenge.keys",
        format!("{}: {detail}", path.display()),
        "give a file with one or two hex keys of at least 32 bytes each, one per line \
         (e.g. `openssl rand -hex 32 > challenge.keys`); the first signs, both verify",
    )
}

/// The configured key file, read (bounded) and checked.
fn read_key_file(path: &Path) -> Result<Keys, ConfigError> {
    let text = holdfast_artifact::read_bounded_text(path, MAX_KEY_FILE_BYTES)
        .map_err(|e| key_error(path, e))?;
    Keys::parse(&text.content).map_err(|e| key_error(path, e))
}

/// The keys for `c`, read but not written: the key file; else the generated key in
/// `state_dir` if it was made; else (`stored: None`) one to make at start.
fn plan_keys(c: &ChallengeConfig) -> Result<PlannedKeys, ConfigError> {
    if let Some(path) = &c.challenge.keys {
        return Ok(PlannedKeys::File(
            read_key_file(path)?,
            path.display().to_string(),
        ));
    }
    let fresh = Keys::generate().map_err(|e| {
        ConfigError::new("challenge.keys", e.to_string(), "give a key file instead")
    })?;
    let Some(dir) = &c.state_dir else {
        return Ok(PlannedKeys::Generated {
            stored: None,
            file: None,
            fresh,
        });
    };
    let path = dir.join(GENERATED_KEY_FILE);
    match holdfast_artifact::read_bounded_text(&path, MAX_KEY_FILE_BYTES) {
        Ok(text) => {
            let keys = Keys::parse(&text.content).map_err(|e| {
                ConfigError::new(
                    "edge.state_dir",
                    format!("{}: {e}", path.display()),
                    "the generated challenge key file is damaged: delete it (a new key is \
                     made; existing pass cookies end) or restore it",
                )
            })?;
            Ok(PlannedKeys::Generated {
                stored: Some(keys),
                file: Some(path),
                fresh,
            })
        }
        Err(holdfast_artifact::ReadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(PlannedKeys::Generated {
                stored: None,
                file: Some(path),
                fresh,
            })
        }
        Err(e) => Err(ConfigError::new(
            "edge.state_dir",
            format!("{}: {e}", path.display()),
            "make the generated challenge key file readable, or delete it",
        )),
    }
}

/// The keys to run with and where they came from: the planned ones; for a generated key
/// not made yet, the running generated key (so a reload keeps cookies valid) or the fresh
/// one, written to `state_dir` (owner-only) when there is one.
fn start_keys(planned: PlannedKeys, current: Option<&Keys>) -> (Keys, String) {
    let (stored, file, fresh) = match planned {
        PlannedKeys::File(keys, source) => return (keys, source),
        PlannedKeys::Generated {
            stored,
            file,
            fresh,
        } => (stored, file, fresh),
    };
    let in_memory = "generated (in memory)".to_string();
    match (stored, file) {
        (Some(keys), Some(path)) => (keys, path.display().to_string()),
        (_, None) => (current.cloned().unwrap_or(fresh), in_memory),
        (None, Some(path)) => {
            let keys = current.cloned().unwrap_or(fresh);
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            match write_key(&dir, &path, &keys) {
                Ok(()) => (keys, path.display().to_string()),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e,
                        "challenge key not saved; it lasts until the edge stops");
                    (keys, in_memory)
                }
            }
        }
    }
}

/// Write the generated key atomically, readable by the owner only.
fn write_key(dir: &Path, path: &Path, keys: &Keys) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{GENERATED_KEY_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(keys.to_file_text().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The `challenge` kind: its metrics, registered once per process.
pub struct ChallengeKind {
    metrics: ChallengeMetrics,
    module_metrics: holdfast_modules::ModuleMetrics,
}

impl ChallengeKind {
    pub fn new(
        registry: &prometheus::Registry,
        module_metrics: &holdfast_modules::ModuleMetrics,
    ) -> Result<Self, prometheus::Error> {
        Ok(ChallengeKind {
            metrics: ChallengeMetrics::new(registry)?,
            module_metrics: module_metrics.clone(),
        })
    }

    fn build(&self, plan: ChallengePlan, current: Option<&ChallengeRunning>) -> ChallengeRunning {
        let c = plan.config;
        let (keys, key_source) = start_keys(plan.keys, current.map(|r| r.keys()));
        let ch = &c.challenge;
        let signer = Signer::new(
            keys,
            Settings {
                cookie_ttl: ch.ttl,
                token_ttl: ch.page_ttl,
                ipv4_prefix: ch.ipv4_prefix,
                ipv6_prefix: ch.ipv6_prefix,
                nojs_wait: ch.nojs_wait,
            },
        );
        let settings = holdfast_modules::ModuleSettings {
            enabled: ch.enabled,
            fail_policy: ch.fail_policy,
            time_budget: ch.time_budget,
            ..holdfast_modules::ModuleSettings::default()
        };
        let module = ChallengeModule {
            signer,
            cookie_name: ch.cookie_name.clone(),
            fault: AtomicBool::new(false),
        };
        ChallengeRunning {
            critical: c.critical.iter().cloned().collect(),
            config: c,
            slot: Arc::new(ModuleSlot::new(module, settings, &self.module_metrics)),
            metrics: self.metrics.clone(),
            key_source,
        }
    }
}

impl ModuleKind for ChallengeKind {
    const NAME: &'static str = "challenge";
    const UNCONFIGURED: &'static str = "no rule has action = \"challenge\"";
    type Plan = ChallengePlan;
    type Running = ChallengeRunning;
    type Status = ChallengeStatus;

    /// When a rule asks for it: its settings and its keys (the key file read and checked,
    /// or the generated key read from `state_dir`).
    fn plan(&self, config: &Config) -> Result<Option<ChallengePlan>, Vec<ConfigError>> {
        if !wanted(config) {
            return Ok(None);
        }
        let c = config_of(config);
        let keys = plan_keys(&c).map_err(|e| vec![e])?;
        Ok(Some(ChallengePlan { config: c, keys }))
    }

    /// The running challenge if its settings and keys are unchanged (the key file is re-read
    /// by each plan: a rotation applies on reload), else a new one.
    fn start(
        &self,
        plan: ChallengePlan,
        previous: Option<&ChallengeRunning>,
        _links: &Links,
    ) -> Start<ChallengePlan, ChallengeRunning> {
        if let Some(rt) = previous.filter(|rt| rt.config == plan.config) {
            let same_keys = match &plan.keys {
                PlannedKeys::File(keys, _) => keys == rt.keys(),
                PlannedKeys::Generated { .. } => true,
            };
            if same_keys {
                return Start::Keep(plan);
            }
        }
        Start::New(self.build(plan, previous))
    }

    /// No step of its own: the rules call it (`ChallengeGate`), and serve its paths.
    fn wire(&self, running: &Arc<ChallengeRunning>, links: &mut Links) -> Vec<Step> {
        let gate: Arc<dyn ChallengeGate> = Arc::clone(running) as Arc<dyn ChallengeGate>;
        links.offer(gate);
        Vec::new()
    }

    fn switch<'r>(&self, running: &'r ChallengeRunning) -> Option<&'r dyn Switch> {
        Some(running.slot.as_ref())
    }

    fn status(&self, running: &ChallengeRunning) -> Option<ChallengeStatus> {
        Some(running.status())
    }
}

impl ChallengeRunning {
    fn keys(&self) -> &Keys {
        self.signer().keys()
    }

    /// Test hook: make every decision fail (so the fail policy and the critical routes'
    /// fail-open apply), or stop doing so.
    pub fn set_fault(&self, on: bool) {
        self.slot.module().fault.store(on, Ordering::Relaxed);
    }

    fn signer(&self) -> &Signer {
        &self.slot.module().signer
    }

    /// A rule asked for the challenge: pass on a valid cookie, else answer with the page
    /// (or JSON); a failing module follows its policy, except on critical routes (open).
    fn check(&self, req: &RequestView<'_>, c: ChallengeAsk) -> ModuleAction {
        let check = match self.slot.run(req) {
            Verdict::Decided(check) | Verdict::Stale(check) => check,
            Verdict::Unknown => return ModuleAction::Pass,
            Verdict::Deny if self.critical.contains(req.route) => {
                self.metrics.fail_open.inc();
                return ModuleAction::Pass;
            }
            Verdict::Deny => return ModuleAction::Respond(Box::new(self.unavailable(req))),
        };
        let reason = match check {
            CookieCheck::Valid => {
                self.metrics.passed.inc();
                return ModuleAction::Pass;
            }
            CookieCheck::Missing => "no_cookie",
            CookieCheck::Rejected(r) => {
                self.metrics.rejected.with_label_values(&[r.as_str()]).inc();
                r.as_str()
            }
        };
        if wants_json(req.headers) {
            self.metrics.issued.with_label_values(&["json"]).inc();
            return ModuleAction::Respond(Box::new(json(StatusCode::FORBIDDEN, reason)));
        }
        self.metrics.issued.with_label_values(&["html"]).inc();
        let now = SystemTime::now();
        let signer = self.signer();
        let to = match req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_string(),
        };
        let to = safe_target(&to).unwrap_or("/");
        let pow = signer.pow_token(req.client_ip, c.difficulty, now);
        let nojs = c.nojs.then(|| signer.nojs_token(req.client_ip, now));
        let body = challenge_page(&PageInput {
            pow_token: &pow,
            difficulty: c.difficulty,
            to,
            nojs: nojs
                .as_deref()
                .map(|t| (t, signer.settings().nojs_wait.as_secs())),
            request_id: REQUEST_ID_MARK,
        });
        ModuleAction::Respond(Box::new(html(StatusCode::FORBIDDEN, body)))
    }

    /// The module failed under the `closed` policy on a route that is not critical: a 403
    /// that says so (never a 5xx, never a challenge the edge could not check).
    fn unavailable(&self, req: &RequestView<'_>) -> EdgeResponse {
        if wants_json(req.headers) {
            return json(StatusCode::FORBIDDEN, "challenge_unavailable");
        }
        html(
            StatusCode::FORBIDDEN,
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>403 Forbidden</title></head><body><h1>403 Forbidden</h1>\
                 <p>This page is protected by a check that could not run just now; please \
                 try again in a little while.</p><p>Failed: <b>edge</b> (served by the \
                 Holdfast edge)</p><p>Request ID: <code>{REQUEST_ID_MARK}</code></p>\
                 </body></html>\n"
            ),
        )
    }

    /// `/.holdfast/challenge/…`.
    fn answer(&self, req: &EdgeRequest<'_>) -> EdgeResponse {
        let post = req.method == http::Method::POST;
        match req.path {
            VERIFY_PATH if post => {
                let token = form_value(req.body, "c").unwrap_or_default();
                let nonce = form_value(req.body, "n").unwrap_or_default();
                let result =
                    self.signer()
                        .check_pow(&token, &nonce, req.client_ip, SystemTime::now());
                self.solved_or_refused(req, result, "pow")
            }
            NOJS_PATH if post => {
                let token = form_value(req.body, "t").unwrap_or_default();
                let result = self
                    .signer()
                    .check_nojs(&token, req.client_ip, SystemTime::now());
                if result == Err(Reject::TooEarly) {
                    self.metrics
                        .rejected
                        .with_label_values(&[Reject::TooEarly.as_str()])
                        .inc();
                    let wait = self.signer().settings().nojs_wait.as_secs().max(1);
                    let to = target(req.body);
                    let mut page = html(
                        StatusCode::TOO_MANY_REQUESTS,
                        wait_page(&token, &to, wait, REQUEST_ID_MARK),
                    );
                    page.headers
                        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
                    return page;
                }
                self.solved_or_refused(req, result, "nojs")
            }
            RETURN_PATH => {
                let to = target(req.query.unwrap_or("").as_bytes());
                let back = cookie(req.headers, &self.slot.module().cookie_name).map(|v| {
                    self.signer().check_cookie(
                        v,
                        req.client_ip,
                        user_agent(req.headers),
                        SystemTime::now(),
                    )
                });
                if back == Some(Ok(())) {
                    return redirect(&to, None);
                }
                self.metrics.loops.inc();
                if wants_json(req.headers) {
                    return json(StatusCode::FORBIDDEN, "cookie_not_returned");
                }
                html(StatusCode::FORBIDDEN, loop_page(&to, REQUEST_ID_MARK))
            }
            _ => {
                let mut page = html(
                    StatusCode::NOT_FOUND,
                    "<!doctype html><title>Not found</title><p>No such challenge endpoint.</p>\n"
                        .to_string(),
                );
                // The form endpoints take only POST (the arms above); other paths are 404.
                if req.path != VERIFY_PATH && req.path != NOJS_PATH {
                    return page;
                }
                page.status = StatusCode::METHOD_NOT_ALLOWED;
                page.headers
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                page
            }
        }
    }

    /// Set the pass cookie and go through the return check, or say why not.
    fn solved_or_refused(
        &self,
        req: &EdgeRequest<'_>,
        result: Result<(), Reject>,
        method: &str,
    ) -> EdgeResponse {
        let to = target(req.body);
        match result {
            Ok(()) => {
                self.metrics.solved.with_label_values(&[method]).inc();
                let value =
                    self.signer()
                        .cookie(req.client_ip, user_agent(req.headers), SystemTime::now());
                let m = self.slot.module();
                let secure = if req.tls { "; Secure" } else { "" };
                let set = format!(
                    "{}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                    m.cookie_name,
                    self.signer().settings().cookie_ttl.as_secs()
                );
                let back = format!("{RETURN_PATH}?to={}", encode_component(&to));
                redirect(&back, HeaderValue::from_str(&set).ok())
            }
            Err(r) => {
                self.metrics.rejected.with_label_values(&[r.as_str()]).inc();
                if wants_json(req.headers) {
                    return json(StatusCode::FORBIDDEN, r.as_str());
                }
                let to_attr = html_attr(&to);
                html(
                    StatusCode::FORBIDDEN,
                    format!(
                        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                         <title>Check not passed</title></head><body><h1>Check not passed</h1>\
                         <p>The answer was not accepted ({}). <a href=\"{to_attr}\">Try again</a>.\
                         </p><p><small>Request ID: <code>{REQUEST_ID_MARK}</code></small></p>\
                         </body></html>\n",
                        r.as_str()
                    ),
                )
            }
        }
    }

    fn status(&self) -> ChallengeStatus {
        let m = &self.metrics;
        let c = &self.config.challenge;
        let issued = |f: &str| m.issued.with_label_values(&[f]).get();
        let solved = |f: &str| m.solved.with_label_values(&[f]).get();
        ChallengeStatus {
            module: self.slot.status(),
            challenge: ChallengeDetail {
                keys: self.key_source.clone(),
                key_count: self.signer().keys().count(),
                cookie_name: c.cookie_name.clone(),
                difficulty: c.difficulty,
                nojs_wait_ms: u64::try_from(c.nojs_wait.as_millis()).unwrap_or(u64::MAX),
                critical_routes: self.config.critical.clone(),
                issued: ByFormat {
                    html: issued("html"),
                    json: issued("json"),
                },
                solved: ByMethod {
                    pow: solved("pow"),
                    nojs: solved("nojs"),
                },
                passed_by_cookie: m.passed.get(),
                rejected: Reject::ALL
                    .iter()
                    .map(|r| {
                        (
                            r.as_str(),
                            m.rejected.with_label_values(&[r.as_str()]).get(),
                        )
                    })
                    .collect(),
                loop_pages: m.loops.get(),
                fail_open: m.fail_open.get(),
            },
        }
    }
}

impl ChallengeGate for ChallengeRunning {
    fn check(&self, req: &RequestView<'_>, ask: ChallengeAsk) -> ModuleAction {
        ChallengeRunning::check(self, req, ask)
    }

    fn reserved_prefix(&self) -> &'static str {
        PREFIX
    }

    fn answer(&self, req: &EdgeRequest<'_>) -> EdgeResponse {
        ChallengeRunning::answer(self, req)
    }
}

/// `/status` of the challenge module.
#[derive(Debug, serde::Serialize)]
pub struct ChallengeStatus {
    #[serde(flatten)]
    pub module: ModuleStatus,
    pub challenge: ChallengeDetail,
}

#[derive(Debug, serde::Serialize)]
pub struct ChallengeDetail {
    /// Where the keys came from: the key file, the generated key's file, or in memory.
    pub keys: String,
    pub key_count: usize,
    pub cookie_name: String,
    pub difficulty: u8,
    pub nojs_wait_ms: u64,
    pub critical_routes: Vec<String>,
    pub issued: ByFormat,
    pub solved: ByMethod,
    pub passed_by_cookie: u64,
    /// By reason.
    pub rejected: BTreeMap<&'static str, u64>,
    pub loop_pages: u64,
    pub fail_open: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ByFormat {
    pub html: u64,
    pub json: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ByMethod {
    pub pow: u64,
    pub nojs: u64,
}

/// The return path in a form body or query (`to`), if safe; else `/`.
fn target(input: &[u8]) -> String {
    form_value(input, "to")
        .filter(|t| safe_target(t).is_some())
        .unwrap_or_else(|| "/".to_string())
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then_some(v.trim())
        })
}

fn user_agent(headers: &HeaderMap) -> &[u8] {
    headers
        .get(header::USER_AGENT)
        .map_or(&b""[..], HeaderValue::as_bytes)
}

/// JSON for API clients: `Accept` names JSON and not HTML (as the edge's error pages).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json") && !a.contains("html"))
}

fn html(status: StatusCode, body: String) -> EdgeResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    EdgeResponse {
        status,
        headers,
        body,
    }
}

fn json(status: StatusCode, reason: &str) -> EdgeResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    EdgeResponse {
        status,
        headers,
        body: json_body(reason, REQUEST_ID_MARK),
    }
}

fn redirect(location: &str, set_cookie: Option<HeaderValue>) -> EdgeResponse {
    let mut headers = HeaderMap::new();
    // `location` is a checked same-host path (printable ASCII), so this cannot fail; "/"
    // otherwise.
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    if let Some(c) = set_cookie {
        headers.insert(header::SET_COOKIE, c);
    }
    EdgeResponse {
        status: StatusCode::SEE_OTHER,
        headers,
        body: String::new(),
    }
}

fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    //! The challenge wiring without a server: plan (keys read, nothing written), start (a
    //! generated key kept in `state_dir`, owner-only), keep vs new across reloads, the gate's
    //! answers (page, JSON, pass, fail-open on critical routes, the `closed` 403), the
    //! reserved paths, and the typed status.
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use holdfast_modules::ModuleMetrics;
    use std::net::{IpAddr, Ipv4Addr};

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    const OTHER_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n";

    /// A config with one challenge rule on every route; `edge` and `challenge` add lines.
    fn config(dir: &Path, edge: &str, challenge: &str) -> Config {
        let text = format!(
            "[edge]\nlisten = [\"127.0.0.1:8080\"]\n{edge}\n\
             [[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nname = \"shop\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n\
             [[routes]]\nname = \"status\"\nmatch = {{ path_prefix = \"/status\" }}\npool = \"p\"\ncritical = true\n\
             [challenge]\n{challenge}\n\
             [[rules]]\nid = \"guard\"\nexpr = 'request.path.startsWith(\"/\")'\naction = \"challenge\"\n"
        );
        holdfast_config::parse(&text, dir).unwrap()
    }

    fn kind() -> ChallengeKind {
        let registry = prometheus::Registry::new();
        let modules = ModuleMetrics::new(&registry).unwrap();
        ChallengeKind::new(&registry, &modules).unwrap()
    }

    fn start(
        kind: &ChallengeKind,
        config: &Config,
        previous: Option<&ChallengeRunning>,
    ) -> Start<ChallengePlan, ChallengeRunning> {
        let plan = kind.plan(config).unwrap().unwrap();
        kind.start(plan, previous, &Links::default())
    }

    fn new(kind: &ChallengeKind, config: &Config) -> ChallengeRunning {
        match start(kind, config, None) {
            Start::New(r) => r,
            Start::Keep(_) => panic!("kept without a previous instance"),
        }
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn view<'a>(headers: &'a HeaderMap, route: &'a str) -> RequestView<'a> {
        RequestView {
            method: &http::Method::GET,
            version: http::Version::HTTP_11,
            headers,
            path: "/cart",
            query: Some("x=1"),
            client_ip: IP,
            tls: false,
            route,
        }
    }

    const ASK: ChallengeAsk = ChallengeAsk {
        difficulty: 4,
        nojs: true,
    };

    fn edge_request<'a>(
        method: &'a http::Method,
        path: &'a str,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> EdgeRequest<'a> {
        EdgeRequest {
            method,
            path,
            query: None,
            headers,
            client_ip: IP,
            tls: true,
            body,
        }
    }

    #[test]
    fn the_plan_reads_keys_and_reports_them_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let kind = kind();
        // No challenge rule: nothing to plan.
        let plain = holdfast_config::parse(
            "[edge]\nlisten = [\"127.0.0.1:8080\"]\n[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nname = \"r\"\nmatch = {}\npool = \"p\"\n",
            dir.path(),
        )
        .unwrap();
        assert!(kind.plan(&plain).unwrap().is_none());

        let missing = config(dir.path(), "", "keys = \"none.keys\"");
        let errors = kind.plan(&missing).err().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "challenge.keys");
        assert!(errors[0].message.contains("none.keys"), "{}", errors[0]);

        // A damaged generated key in state_dir: the plan says so (a start would fail on it).
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/challenge-key"), "not hex\n").unwrap();
        let damaged = config(dir.path(), "state_dir = \"state\"", "");
        let errors = kind.plan(&damaged).err().unwrap();
        assert_eq!(errors[0].path, "edge.state_dir");
        assert!(errors[0].message.contains("challenge-key"), "{}", errors[0]);
        assert!(errors[0].hint.contains("delete it"), "{}", errors[0]);
    }

    #[test]
    fn a_generated_key_is_written_by_the_start_only_and_read_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "state_dir = \"state\"", "");
        let key_file = dir.path().join("state/challenge-key");
        let kind = kind();
        let plan = kind.plan(&c).unwrap().unwrap();
        assert!(!key_file.exists(), "a plan writes nothing");
        let Start::New(first) = kind.start(plan, None, &Links::default()) else {
            panic!("not new");
        };
        assert!(key_file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(first.key_source, key_file.display().to_string());
        // Another process (a new kind, no previous instance) signs with the same key.
        let second = new(&self::kind(), &c);
        assert!(first.keys() == second.keys());
    }

    #[test]
    fn a_reload_keeps_an_unchanged_challenge_and_a_rotated_key_file_makes_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.keys"), KEY).unwrap();
        let c = config(dir.path(), "", "keys = \"c.keys\"");
        let kind = kind();
        let first = new(&kind, &c);
        assert!(matches!(start(&kind, &c, Some(&first)), Start::Keep(_)));
        std::fs::write(dir.path().join("c.keys"), format!("{OTHER_KEY}{KEY}")).unwrap();
        let Start::New(rotated) = start(&kind, &c, Some(&first)) else {
            panic!("a rotated key file was kept");
        };
        assert_eq!(rotated.keys().count(), 2);

        // Without state_dir, a changed setting keeps the in-memory generated key, so pass
        // cookies stay valid across the reload.
        let generated = config(dir.path(), "", "");
        let a = new(&kind, &generated);
        let harder = config(dir.path(), "", "difficulty = 20");
        let Start::New(b) = start(&kind, &harder, Some(&a)) else {
            panic!("a changed setting was kept");
        };
        assert!(a.keys() == b.keys());
        assert_eq!(b.key_source, "generated (in memory)");
    }

    #[test]
    fn the_gate_passes_a_valid_cookie_and_answers_everyone_else() {
        let dir = tempfile::tempdir().unwrap();
        let running = new(&kind(), &config(dir.path(), "", ""));
        // No cookie: the page, with its own CSP.
        let headers = HeaderMap::new();
        let ModuleAction::Respond(page) = running.check(&view(&headers, "shop"), ASK) else {
            panic!("no page");
        };
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(page.body.contains(REQUEST_ID_MARK));
        // An API client: JSON.
        let mut api = HeaderMap::new();
        api.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let ModuleAction::Respond(json) = running.check(&view(&api, "shop"), ASK) else {
            panic!("no JSON");
        };
        assert_eq!(json.headers[header::CONTENT_TYPE], "application/json");
        // A valid cookie passes.
        let cookie = running.signer().cookie(IP, b"", SystemTime::now());
        let mut with = HeaderMap::new();
        with.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("holdfast_challenge={cookie}")).unwrap(),
        );
        assert_eq!(running.check(&view(&with, "shop"), ASK), ModuleAction::Pass);
        // A forged one is refused and counted.
        let mut forged = HeaderMap::new();
        forged.insert(
            header::COOKIE,
            HeaderValue::from_static("holdfast_challenge=c1.x.y"),
        );
        assert!(matches!(
            running.check(&view(&forged, "shop"), ASK),
            ModuleAction::Respond(_)
        ));

        let status = serde_json::to_value(running.status()).unwrap();
        assert_eq!(status["name"], "challenge");
        assert_eq!(status["challenge"]["issued"]["html"], 2, "{status}");
        assert_eq!(status["challenge"]["issued"]["json"], 1, "{status}");
        assert_eq!(status["challenge"]["passed_by_cookie"], 1, "{status}");
        assert_eq!(
            status["challenge"]["critical_routes"][0], "status",
            "{status}"
        );
    }

    #[test]
    fn a_failing_check_fails_open_on_critical_routes_and_closed_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let running = new(&kind(), &config(dir.path(), "", ""));
        running.set_fault(true);
        let headers = HeaderMap::new();
        assert_eq!(
            running.check(&view(&headers, "status"), ASK),
            ModuleAction::Pass
        );
        let ModuleAction::Respond(page) = running.check(&view(&headers, "shop"), ASK) else {
            panic!("a failing check let a request through on a route that is not critical");
        };
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.body.contains("could not run"), "{}", page.body);
        let status = running.status();
        assert_eq!(status.challenge.fail_open, 1);

        // `fail_policy = "open"`: everyone passes while it fails.
        let open = new(&kind(), &config(dir.path(), "", "fail_policy = \"open\""));
        open.set_fault(true);
        assert_eq!(open.check(&view(&headers, "shop"), ASK), ModuleAction::Pass);
    }

    #[test]
    fn the_reserved_paths_answer_only_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let running = new(&kind(), &config(dir.path(), "", ""));
        assert_eq!(ChallengeGate::reserved_prefix(&running), PREFIX);
        let headers = HeaderMap::new();
        let get = http::Method::GET;
        let post = http::Method::POST;
        let r = running.answer(&edge_request(&get, VERIFY_PATH, &headers, b""));
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers[header::ALLOW], "POST");
        let r = running.answer(&edge_request(
            &get,
            "/.holdfast/challenge/other",
            &headers,
            b"",
        ));
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        // A wrong solution: refused, counted, with a same-host way back.
        let r = running.answer(&edge_request(
            &post,
            VERIFY_PATH,
            &headers,
            b"c=p1.bad&n=1&to=https%3A%2F%2Fevil.example%2F",
        ));
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.body.contains("href=\"/\""), "{}", r.body);
        // Back without the cookie: the loop page, counted.
        let r = running.answer(&edge_request(&get, RETURN_PATH, &headers, b""));
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let status = running.status();
        assert_eq!(status.challenge.loop_pages, 1);
        assert_eq!(status.challenge.rejected["forged"], 1);
    }
}
