//! Optional authentication of the admin plane: a bearer token (`[admin] token_file`). With a
//! token, every route but `GET /health` (for load balancers and container health checks) and
//! `GET /dns/peer` (which has its own peer token) needs `Authorization: Bearer TOKEN`; a
//! browser may instead sign in once at `/login`, which sets an `HttpOnly`, `SameSite=Strict`
//! cookie that is honoured for reading (`GET`) only, so no other site can make a signed-in
//! browser `POST` here.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// The cookie `/login` sets.
pub const COOKIE: &str = "holdfast_admin";

/// Who may use the admin plane.
#[derive(Clone, Default)]
pub struct Access {
    token: Option<Arc<str>>,
    /// TLS on the listener (and client certificates, when it asks for them).
    pub(crate) tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Why a token was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is {0} characters long; use at least 16 (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error(
        "the token holds {0:?}; use only letters, digits and - . _ ~ (e.g. `openssl rand -hex 32`)"
    )]
    BadChar(char),
}

impl Access {
    /// No authentication: anyone who reaches the address may use it.
    pub fn open() -> Self {
        Access {
            token: None,
            tls: None,
        }
    }

    /// Serve over TLS with `config` (from `tls::server_config`).
    pub fn with_tls(mut self, config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Require `token` (the token file's content, trimmed).
    pub fn token(token: &str) -> Result<Self, TokenError> {
        let token = token.trim();
        if let Some(c) = token
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
        {
            return Err(TokenError::BadChar(c));
        }
        if token.len() < 16 {
            return Err(TokenError::TooShort(token.len()));
        }
        Ok(Access {
            token: Some(Arc::from(token)),
            tls: None,
        })
    }

    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `offered` is the token, in time independent of where they differ.
    fn matches(&self, offered: &str) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let (a, b) = (token.as_bytes(), offered.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }

    fn allows(&self, method: &Method, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(offered) = bearer {
            return self.matches(offered.trim());
        }
        *method == Method::GET && cookie(headers).is_some_and(|c| self.matches(c))
    }
}

/// The value of our cookie, if the request carries it.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Paths that stay open whatever the token.
fn open_path(path: &str) -> bool {
    matches!(path, "/health" | "/dns/peer" | "/login")
}

/// The middleware: pass, or answer 401 (a sign-in link for browsers).
pub(crate) async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    if open_path(req.uri().path()) || access.allows(req.method(), req.headers()) {
        return next.run(req).await;
    }
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let body = if wants_html {
        Html(
            "<!doctype html><html lang=\"en\"><title>Holdfast admin: sign in</title>\
             <main><h1>Sign in</h1><p>This admin plane needs its token: \
             <a href=\"/login\">sign in</a>, or send <code>Authorization: Bearer TOKEN</code>.</p></main></html>",
        )
        .into_response()
    } else {
        "the admin plane needs its token: send `Authorization: Bearer TOKEN` (the content of [admin] token_file)\n"
            .into_response()
    };
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"holdfast-admin\""),
    );
    resp
}

/// `GET /login`: the sign-in form.
pub(crate) async fn login_form() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Holdfast admin: sign in</title></head><body><main><h1>Sign in</h1>\
         <form method=\"post\" action=\"/login\"><label for=\"token\">Admin token</label> \
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required> \
         <button type=\"submit\">Sign in</button></form></main></body></html>",
    )
}

/// `POST /login` with `token=…` (form-encoded): set the cookie and go to the page.
pub(crate) async fn login(State(access): State<Access>, body: String) -> Response {
    // Tokens hold only URL-unreserved characters, so the form encodes them as themselves.
    let offered = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    if !access.required() || !access.matches(offered) {
        return (StatusCode::UNAUTHORIZED, "wrong token\n").into_response();
    }
    let cookie = format!("{COOKIE}={offered}; HttpOnly; SameSite=Strict; Path=/");
    match header::HeaderValue::from_str(&cookie) {
        Ok(v) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, v),
                (header::LOCATION, header::HeaderValue::from_static("/")),
            ],
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad token\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_token_is_checked_by_header_and_by_cookie_for_reads_only() {
        let access = Access::token("0123456789abcdef\n").unwrap();
        let ok = headers(&[("authorization", "Bearer 0123456789abcdef")]);
        let wrong = headers(&[("authorization", "Bearer 0123456789abcdeX")]);
        let short = headers(&[("authorization", "Bearer 0123")]);
        let cookie = headers(&[("cookie", "a=b; holdfast_admin=0123456789abcdef")]);
        assert!(access.allows(&Method::GET, &ok));
        assert!(access.allows(&Method::POST, &ok));
        assert!(!access.allows(&Method::GET, &wrong));
        assert!(!access.allows(&Method::GET, &short));
        assert!(!access.allows(&Method::GET, &HeaderMap::new()));
        assert!(access.allows(&Method::GET, &cookie));
        assert!(!access.allows(&Method::POST, &cookie), "no POST by cookie");
        assert!(Access::open().allows(&Method::POST, &HeaderMap::new()));
    }

    #[test]
    fn weak_or_odd_tokens_are_refused() {
        assert!(matches!(
            Access::token("short"),
            Err(TokenError::TooShort(5))
        ));
        assert!(matches!(
            Access::token("0123456789abcdef;x"),
            Err(TokenError::BadChar(';'))
        ));
    }
}
