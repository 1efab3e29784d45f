//! The challenge as the edge runs it: `ChallengeModule` (a `Module` whose decision is whether
//! the request carries a valid pass cookie) in its `ModuleSlot` (kill switch, fail policy,
//! budget, breaker), the pages it answers with, and its reserved paths
//! `/.holdfast/challenge/{verify,nojs,return}`. Keys come from `[challenge].keys`, else a
//! key generated once and kept in `edge.state_dir/challenge-key` (or in memory).

use holdfast_challenge::{
    challenge_page, encode_component, form_value, json_body, loop_page, safe_target, wait_page,
    Keys, PageInput, Reject, Settings, Signer, MAX_KEY_FILE_BYTES, NOJS_PATH, VERIFY_PATH,
};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::{Module, ModuleError, ModuleSlot, RequestView, Verdict};
use holdfast_proxy::{EdgeRequest, EdgeResponse, ModuleAction, REQUEST_ID_MARK};
use holdfast_shield::rules::Challenged;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use prometheus::{IntCounter, IntCounterVec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The reserved prefix, answered on every host before any route.
pub(crate) const PREFIX: &str = "/.holdfast/challenge";
const RETURN_PATH: &str = "/.holdfast/challenge/return";
/// The generated key's file in `edge.state_dir`.
const GENERATED_KEY_FILE: &str = "challenge-key";
/// Nothing from another origin, scripts and styles only inline, forms only to this host.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The cookie check: what the module decides per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieCheck {
    Valid,
    Missing,
    Rejected(Reject),
}

pub(crate) struct ChallengeModule {
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
pub(crate) struct ChallengeMetrics {
    issued: IntCounterVec,
    solved: IntCounterVec,
    passed: IntCounter,
    rejected: IntCounterVec,
    loops: IntCounter,
    fail_open: IntCounter,
}

impl ChallengeMetrics {
    pub(crate) fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
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
pub(crate) struct ChallengeConfig {
    pub(crate) challenge: holdfast_config::Challenge,
    critical: Vec<String>,
    state_dir: Option<PathBuf>,
}

pub(crate) struct ChallengeRuntime {
    pub(crate) config: ChallengeConfig,
    pub(crate) slot: Arc<ModuleSlot<ChallengeModule>>,
    metrics: ChallengeMetrics,
    critical: HashSet<String>,
    /// Where the keys came from, for /status.
    key_source: String,
}

/// Whether `config` needs the challenge: some rule's action is `challenge`.
pub(crate) fn wanted(config: &Config) -> bool {
    config
        .rules
        .iter()
        .any(|r| matches!(r.action, holdfast_config::RuleAction::Challenge { .. }))
}

pub(crate) fn config_of(config: &Config) -> ChallengeConfig {
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

fn key_error(path: &Path, detail: impl std::fmt::Display) -> Vec<ConfigError> {
    vec![ConfigError::new(
        "challenge.keys",
        format!("{}: {detail}", path.display()),
        "give a file with one or two hex keys of at least 32 bytes each, one per line \
         (e.g. `openssl rand -hex 32 > challenge.keys`); the first signs, both verify",
    )]
}

/// The configured key file, read (bounded) and checked; also what `holdfast check` runs.
pub(crate) fn read_key_file(path: &Path) -> Result<Keys, Vec<ConfigError>> {
    let text = holdfast_artifact::read_bounded_text(path, MAX_KEY_FILE_BYTES)
        .map_err(|e| key_error(path, e))?;
    Keys::parse(&text.content).map_err(|e| key_error(path, e))
}

/// `holdfast check`: the key file, when a challenge rule needs it.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    match (&config.challenge.keys, wanted(config)) {
        (Some(path), true) => read_key_file(path).err().unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The keys for `c`: the key file; else the generated key in `state_dir` (made on first
/// use); else `current` (the running generated key, so a reload keeps cookies valid); else
/// a new random key.
fn keys_for(
    c: &ChallengeConfig,
    current: Option<&Keys>,
) -> Result<(Keys, String), Vec<ConfigError>> {
    if let Some(path) = &c.challenge.keys {
        return Ok((read_key_file(path)?, path.display().to_string()));
    }
    let generate = || {
        Keys::generate().map_err(|e| {
            vec![ConfigError::new(
                "challenge.keys",
                e.to_string(),
                "give a key file instead",
            )]
        })
    };
    let Some(dir) = &c.state_dir else {
        if let Some(k) = current {
            return Ok((k.clone(), "generated (in memory)".to_string()));
        }
        return Ok((generate()?, "generated (in memory)".to_string()));
    };
    let path = dir.join(GENERATED_KEY_FILE);
    match holdfast_artifact::read_bounded_text(&path, MAX_KEY_FILE_BYTES) {
        Ok(text) => {
            let keys = Keys::parse(&text.content).map_err(|e| {
                vec![ConfigError::new(
                    "edge.state_dir",
                    format!("{}: {e}", path.display()),
                    "the generated challenge key file is damaged: delete it (a new key is \
                     made; existing pass cookies end) or restore it",
                )]
            })?;
            Ok((keys, path.display().to_string()))
        }
        Err(holdfast_artifact::ReadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let keys = match current {
                Some(k) => k.clone(),
                None => generate()?,
            };
            match write_key(dir, &path, &keys) {
                Ok(()) => Ok((keys, path.display().to_string())),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e,
                        "challenge key not saved; it lasts until the edge stops");
                    Ok((keys, "generated (in memory)".to_string()))
                }
            }
        }
        Err(e) => Err(vec![ConfigError::new(
            "edge.state_dir",
            format!("{}: {e}", path.display()),
            "make the generated challenge key file readable, or delete it",
        )]),
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

impl ChallengeRuntime {
    pub(crate) fn build(
        c: ChallengeConfig,
        current: Option<&ChallengeRuntime>,
        metrics: &ChallengeMetrics,
        module_metrics: &holdfast_modules::ModuleMetrics,
    ) -> Result<ChallengeRuntime, Vec<ConfigError>> {
        let (keys, key_source) = keys_for(&c, current.map(|r| r.slot.module().signer.keys()))?;
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
            fail_policy: match ch.fail_policy {
                holdfast_config::FailPolicy::Open => holdfast_modules::FailPolicy::Open,
                _ => holdfast_modules::FailPolicy::Closed,
            },
            time_budget: ch.time_budget,
            ..holdfast_modules::ModuleSettings::default()
        };
        let module = ChallengeModule {
            signer,
            cookie_name: ch.cookie_name.clone(),
            fault: AtomicBool::new(false),
        };
        Ok(ChallengeRuntime {
            critical: c.critical.iter().cloned().collect(),
            config: c,
            slot: Arc::new(ModuleSlot::new(module, settings, module_metrics)),
            metrics: metrics.clone(),
            key_source,
        })
    }

    pub(crate) fn keys(&self) -> &Keys {
        self.signer().keys()
    }

    pub(crate) fn set_fault(&self, on: bool) {
        self.slot.module().fault.store(on, Ordering::Relaxed);
    }

    fn signer(&self) -> &Signer {
        &self.slot.module().signer
    }

    /// A rule asked for the challenge: pass on a valid cookie, else answer with the page
    /// (or JSON); a failing module follows its policy, except on critical routes (open).
    pub(crate) fn apply(&self, req: &RequestView<'_>, c: &Challenged) -> ModuleAction {
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
    pub(crate) fn answer(&self, req: &EdgeRequest<'_>) -> EdgeResponse {
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

    pub(crate) fn status(&self) -> serde_json::Value {
        let mut status = serde_json::to_value(self.slot.status()).unwrap_or_default();
        let m = &self.metrics;
        let rejected: serde_json::Map<String, serde_json::Value> = Reject::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str().to_string(),
                    m.rejected.with_label_values(&[r.as_str()]).get().into(),
                )
            })
            .collect();
        let c = &self.config.challenge;
        if let Some(map) = status.as_object_mut() {
            map.insert(
                "challenge".into(),
                serde_json::json!({
                    "keys": self.key_source,
                    "key_count": self.signer().keys().count(),
                    "cookie_name": c.cookie_name,
                    "difficulty": c.difficulty,
                    "nojs_wait_ms": u64::try_from(c.nojs_wait.as_millis()).unwrap_or(u64::MAX),
                    "critical_routes": self.config.critical,
                    "issued": {
                        "html": m.issued.with_label_values(&["html"]).get(),
                        "json": m.issued.with_label_values(&["json"]).get(),
                    },
                    "solved": {
                        "pow": m.solved.with_label_values(&["pow"]).get(),
                        "nojs": m.solved.with_label_values(&["nojs"]).get(),
                    },
                    "passed_by_cookie": m.passed.get(),
                    "rejected": rejected,
                    "loop_pages": m.loops.get(),
                    "fail_open": m.fail_open.get(),
                }),
            );
        }
        status
    }
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
