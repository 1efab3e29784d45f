//! `ChallengeRunning`, the `ChallengeGate` the rules call: the page or JSON for a
//! challenged request, the `closed` 403, the reserved paths, and the responses they send.

use super::*;

impl ChallengeRunning {
    pub(super) fn keys(&self) -> &Keys {
        self.signer().keys()
    }

    /// Test hook: make every decision fail (so the fail policy and the critical routes'
    /// fail-open apply), or stop doing so.
    pub fn set_fault(&self, on: bool) {
        self.slot.module().fault.store(on, Ordering::Relaxed);
    }

    pub(super) fn signer(&self) -> &Signer {
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
                let now = SystemTime::now();
                let result = self.signer().check_nojs(&token, req.client_ip, now);
                if result == Err(Reject::TooEarly) {
                    self.metrics
                        .rejected
                        .with_label_values(&[Reject::TooEarly.as_str()])
                        .inc();
                    // What is left of the wait, in whole seconds rounded up: a client that
                    // comes back after `Retry-After` is never too early again.
                    let left = self
                        .signer()
                        .nojs_wait_left(&token, now)
                        .unwrap_or(self.signer().settings().nojs_wait);
                    let wait = left.as_millis().div_ceil(1000).max(1);
                    let wait = u64::try_from(wait).unwrap_or(u64::MAX);
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
                let to_attr = holdfast_common::html_escape(&to);
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

    pub(super) fn status(&self) -> ChallengeStatus {
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

/// The return path in a form body or query (`to`), if safe; else `/`.
pub(super) fn target(input: &[u8]) -> String {
    form_value(input, "to")
        .filter(|t| safe_target(t).is_some())
        .unwrap_or_else(|| "/".to_string())
}

pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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

pub(super) fn user_agent(headers: &HeaderMap) -> &[u8] {
    headers
        .get(header::USER_AGENT)
        .map_or(&b""[..], HeaderValue::as_bytes)
}

pub(super) fn html(status: StatusCode, body: String) -> EdgeResponse {
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

pub(super) fn json(status: StatusCode, reason: &str) -> EdgeResponse {
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

pub(super) fn redirect(location: &str, set_cookie: Option<HeaderValue>) -> EdgeResponse {
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
