//! Forwarding to the route's pool: pick a server, reuse or open a connection, send the
//! rewritten request with the route's timeouts, and hand back the origin's response with a
//! streaming body. A pooled connection that turns out stale is replaced once by a fresh one:
//! for any method if the request had not been sent; for an idempotent request without a
//! body also if the origin closed the connection before answering (its keep-alive ended as
//! the request went out, a race no check before sending can rule out).

use crate::body::{BodyError, Hold, RequestBody, ResponseBody, Upload};
use crate::ctx::RequestCtx;
use crate::error::{ProxyError, Side};
use crate::phases::headers::{self, RequestRewrite};
use crate::state::{RouteRt, State};
use crate::upstream::{connect, stable_hash, Conn, InFlight, Pool, Release, Server};
use http::{header, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Instant;

pub(crate) async fn forward(
    state: &State,
    route: &RouteRt,
    mut req: Request<Incoming>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let rewrite = RequestRewrite {
        route,
        forwarded: state.config.edge.forwarded,
        upgrade,
    };
    headers::rewrite_request(&mut parts, ctx, &rewrite);
    let body = if http_body::Body::is_end_stream(&body) {
        RequestBody::Empty
    } else {
        RequestBody::Client {
            inner: body,
            remaining: state.config.edge.limits.max_request_body,
            upload: Upload::new(),
        }
    };
    let deadline = route.timeouts.total.map(|t| ctx.start + t);
    let slot = admit(route, deadline).await?;
    let (server, (mut resp, release), in_flight) = attempts(
        state,
        route,
        Request::from_parts(parts, body),
        deadline,
        upgrade,
        ctx,
    )
    .await?;
    server.metrics.observe(
        resp.status().as_u16(),
        ctx.upstream.duration.unwrap_or_default().as_secs_f64(),
    );
    if let Some(client_upgrade) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            tunnel(client_upgrade, hyper::upgrade::on(&mut resp));
        }
    }
    let (mut parts, body) = resp.into_parts();
    headers::rewrite_response(&mut parts, route);
    let hold = Hold {
        _slot: slot,
        _in_flight: Some(in_flight),
    };
    let body = ResponseBody::upstream(body, release, route.timeouts.read, deadline, hold);
    Ok(Response::from_parts(parts, body))
}

/// A slot in the pool's concurrency limit, if it has one: held until the response body
/// ends. Over the limit with a full queue, the edge answers 503 without contacting the origin.
async fn admit(
    route: &RouteRt,
    deadline: Option<Instant>,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ProxyError> {
    let Some(admission) = &route.pool.admission else {
        return Ok(None);
    };
    let by_read = Instant::now() + route.timeouts.read;
    let until = deadline.map_or(by_read, |d| d.min(by_read));
    match admission.admit(until).await {
        Some(slot) => Ok(Some(slot)),
        None => {
            route.pool.metrics.overload_rejected.inc();
            Err(ProxyError::Overloaded {
                retry_after: admission.retry_after.clone(),
            })
        }
    }
}

/// The request's key for a hashing balancer.
fn request_key(
    key: &holdfast_config::HashKey,
    req: &Request<RequestBody>,
    ctx: &RequestCtx,
) -> u64 {
    use holdfast_config::HashKey;
    match key {
        HashKey::ClientIp => stable_hash(&[ctx.conn.client_ip.as_bytes()]),
        HashKey::Path => stable_hash(&[ctx.path.path().as_bytes()]),
        HashKey::Host => stable_hash(&[ctx.host_name().to_ascii_lowercase().as_bytes()]),
        HashKey::Header(name) => {
            stable_hash(&[req.headers().get(name).map_or(&b""[..], |v| v.as_bytes())])
        }
    }
}

/// Whether an attempt counts as the server's failure for outlier detection: the origin side
/// failed, or answered 502, 503 or 504.
fn origin_failed(result: &Result<Exchanged, ProxyError>) -> bool {
    match result {
        Ok((resp, _)) => matches!(resp.status().as_u16(), 502..=504),
        Err(e) => e.side() == Side::Origin,
    }
}

type Exchanged = (Response<Incoming>, Option<Release>);

/// Why an attempt failed in a way a retry may fix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retryable {
    /// Nothing was sent: safe for any method.
    Connect,
    Reset,
    Timeout,
    Status,
}

fn retryable(
    result: &Result<Exchanged, ProxyError>,
    unsent: bool,
    on: &holdfast_config::RetryOn,
) -> Option<Retryable> {
    let why = match result {
        Ok((resp, _)) => on
            .statuses
            .contains(&resp.status().as_u16())
            .then_some(Retryable::Status)?,
        Err(_) if unsent => Retryable::Connect,
        Err(ProxyError::Timeout) => Retryable::Timeout,
        Err(ProxyError::Upstream(e)) if closed_without_answer(e) => Retryable::Reset,
        Err(_) => return None,
    };
    let enabled = match why {
        Retryable::Connect => on.connect,
        Retryable::Reset => on.reset,
        Retryable::Timeout => on.timeout,
        Retryable::Status => true,
    };
    enabled.then_some(why)
}

/// Jittered exponential back-off: `base × 2^(retry-1)`, scaled by a random 0.5–1.5.
fn backoff(base: std::time::Duration, retry: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let scaled = base.saturating_mul(1 << retry.saturating_sub(1).min(10));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.5 + (random % 1000) as f64 / 1000.0;
    scaled.mul_f64(factor)
}

/// Send the request to the pool, retrying on another server within the pool's policy and
/// budget. A request whose body has started streaming is never re-sent; a request that was
/// not sent at all (connect failure) comes back from `exchange` and can go anywhere.
async fn attempts<'p>(
    state: &State,
    route: &'p RouteRt,
    req: Request<RequestBody>,
    deadline: Option<Instant>,
    upgrade: bool,
    ctx: &mut RequestCtx,
) -> Result<(&'p Arc<Server>, Exchanged, InFlight), ProxyError> {
    let pool = &route.pool;
    let key = pool
        .balancer
        .hash_key()
        .map_or(0, |k| request_key(k, &req, ctx));
    let policy = &pool.retry;
    pool.budget.record_request();
    let may_resend = policy.non_idempotent || req.method().is_idempotent();
    // A copy to re-send after a failure that consumed the request: bodiless requests only
    // (a streamed body cannot be sent twice). Also used by `exchange` when a pooled
    // connection turns out closed after the request went out.
    let template = (may_resend && !upgrade && matches!(req.body(), RequestBody::Empty))
        .then(|| copy_request(&req));
    let mut next = Some(req);
    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    loop {
        let Some(req) = next.take().or_else(|| template.as_ref().map(copy_request)) else {
            return Err(ProxyError::Connect(std::io::Error::other(
                "no request left to send",
            )));
        };
        let Some((index, server)) = pool.pick(&tried, key) else {
            return Err(ProxyError::Connect(std::io::Error::other(
                "pool has no servers",
            )));
        };
        ctx.upstream.server = Some(Arc::clone(&server.addr_text));
        server.record_request();
        let in_flight = InFlight::new(server);
        let sent = Instant::now();
        let (result, unsent) = match exchange(
            pool,
            server,
            route,
            req,
            template.as_ref(),
            deadline,
            upgrade,
        )
        .await
        {
            Ok(ok) => (Ok(ok), None),
            Err((e, unsent)) => (Err(e), unsent),
        };
        // Upstream time is the wait for a response head: none if there was no response.
        ctx.upstream.duration = result.is_ok().then(|| sent.elapsed());
        pool.record_outcome(server, origin_failed(&result));
        let why = retryable(&result, unsent.is_some(), &policy.on);
        if retries > 0 {
            // Each retry counts once: did this attempt bring back a usable answer?
            match (&result, why) {
                (Ok(_), None) => pool.metrics.retry_succeeded.inc(),
                _ => pool.metrics.retry_failed.inc(),
            }
        }
        let resendable = unsent.is_some() || template.is_some();
        let allowed = why.is_some_and(|w| w == Retryable::Connect || may_resend);
        // Retries go to another server only: hammering the one that just failed helps no one.
        let another = tried.len() + 1 < pool.servers.len();
        if retries < policy.attempts && allowed && resendable && another {
            if pool.budget.try_retry() {
                if let Err(e) = &result {
                    count_failure(server, e);
                }
                drop(result);
                retries += 1;
                tried.push(index);
                next = unsent;
                tokio::time::sleep(backoff(policy.backoff, retries)).await;
                continue;
            }
            pool.metrics.budget_exhausted.inc();
        }
        return match result {
            Ok(ok) => Ok((server, ok, in_flight)),
            Err(e) if e.side() == Side::Client => {
                count_client_error(state, &e);
                Err(e)
            }
            Err(e) => {
                count_failure(server, &e);
                Err(e)
            }
        };
    }
}

/// The exchange failed while streaming the client's body: the client's fault, not the
/// origin's, so it is not held against the server.
fn count_client_error(state: &State, e: &ProxyError) {
    match e {
        ProxyError::BodyTooLarge => state.metrics.bad_request("body_too_large"),
        ProxyError::ClientTimeout => state.metrics.bad_request("body_timeout"),
        // A client that went away mid-body sent nothing malformed.
        ProxyError::ClientBody(h) if !h.is_incomplete_message() => {
            state.metrics.bad_request("malformed");
        }
        _ => {}
    }
    tracing::debug!(error = %with_causes(e), "client request body failed");
}

/// A failed send is the origin's failure unless reading the client's body is what failed
/// (hyper reports both the same way; the body's own error tells them apart).
fn send_error(e: hyper::Error) -> ProxyError {
    let body = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<BodyError>());
    match body {
        Some(BodyError::TooLarge) => ProxyError::BodyTooLarge,
        Some(BodyError::Hyper(_)) => ProxyError::ClientBody(e),
        _ => ProxyError::Upstream(e),
    }
}

fn count_failure(server: &Server, e: &ProxyError) {
    match e {
        ProxyError::Timeout => server.metrics.timeouts.inc(),
        ProxyError::Connect(_) | ProxyError::UpstreamTls(_) => server.metrics.connect_errors.inc(),
        _ => server.metrics.other_errors.inc(),
    }
    let why = with_causes(e);
    server.record_failure(&why);
    tracing::debug!(server = %server.addr, error = %why, "origin exchange failed");
}

/// The error and its sources, `a: b: c`: "the origin could not be reached" alone does not
/// tell an operator whether the port was closed, the host unreachable or a name unknown.
fn with_causes(e: &ProxyError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Send one request, on a pooled connection if there is one (replacing it once if it was
/// stale), bounded by the read timeout and the route's total deadline.
async fn exchange(
    pool: &Pool,
    server: &Arc<Server>,
    route: &RouteRt,
    mut req: Request<RequestBody>,
    template: Option<&Request<RequestBody>>,
    deadline: Option<Instant>,
    upgrade: bool,
) -> Result<Exchanged, (ProxyError, Option<Request<RequestBody>>)> {
    let mut reuse = !upgrade;
    loop {
        let pooled = if reuse { server.checkout() } else { None };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                // Boxed: connection set-up (TLS, handshakes) is a large future that only new
                // connections need; inline it would be copied with every request's future.
                let connected = Box::pin(connect(pool, server, route.timeouts.connect, upgrade));
                let c = match connected.await {
                    Ok(c) => c,
                    // Nothing was sent: hand the request back so it can go elsewhere.
                    Err(e) => return Err((e, Some(req))),
                };
                if let Conn::H2(s) = &c {
                    server.keep_h2(s);
                }
                c
            }
        };
        set_target(&mut req, &conn, server);
        let upload = req.body().upload();
        let waits = Waits {
            read: route.timeouts.read,
            deadline,
            upload: upload.as_deref(),
        };
        let outcome = {
            let sending = std::pin::pin!(send(&mut conn, req));
            waits.head(sending).await.map_err(|e| (e, None))?
        };
        match outcome {
            Ok(resp) => return Ok((resp, server.release_for(conn))),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    reuse = false;
                }
                _ => {
                    let e = e.into_error();
                    // Copied only now, from the template kept by the caller: no copy per request.
                    let again = template.filter(|_| reused && closed_without_answer(&e));
                    match again.map(copy_request) {
                        Some(again) => {
                            req = again;
                            reuse = false;
                        }
                        None => return Err((send_error(e), None)),
                    }
                }
            },
        }
    }
}

/// Another copy of a bodiless request kept for re-sending.
fn copy_request(template: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody::Empty);
    *copy.method_mut() = template.method().clone();
    *copy.uri_mut() = template.uri().clone();
    *copy.version_mut() = template.version();
    *copy.headers_mut() = template.headers().clone();
    copy
}

/// The origin closed (or reset) the connection before its answer was complete.
fn closed_without_answer(e: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    e.is_incomplete_message()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted))
}

/// The bounds on waiting for the origin's response head.
struct Waits<'a> {
    read: std::time::Duration,
    deadline: Option<Instant>,
    upload: Option<&'a Upload>,
}

impl Waits<'_> {
    /// Await `sending` (which streams the client's body, then waits for the head). The read
    /// timeout counts from the client body's last progress, as nginx's counts from the last
    /// write: a long upload that keeps moving is not the origin's silence. Expiring while
    /// the edge waits on the client's body is the client's timeout (408), not the origin's.
    async fn head<F: std::future::Future>(
        &self,
        mut sending: std::pin::Pin<&mut F>,
    ) -> Result<F::Output, ProxyError> {
        let started = Instant::now();
        loop {
            let from = self
                .upload
                .map_or(started, |u| u.last_progress().max(started));
            let by_read = from + self.read;
            let until = self.deadline.map_or(by_read, |d| d.min(by_read));
            if let Ok(done) = tokio::time::timeout_at(until.into(), sending.as_mut()).await {
                return Ok(done);
            }
            let past_deadline = self.deadline.is_some_and(|d| Instant::now() >= d);
            if !past_deadline && self.upload.is_some_and(|u| u.last_progress() > from) {
                continue;
            }
            if self.upload.is_some_and(Upload::waiting_on_client) {
                return Err(ProxyError::ClientTimeout);
            }
            return Err(ProxyError::Timeout);
        }
    }
}

async fn send(
    conn: &mut Conn,
    req: Request<RequestBody>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>> {
    match conn {
        Conn::H1(s) => {
            // A pooled connection may still be finishing its previous exchange; a dead one
            // fails here and `try_send_request` hands the request back for a fresh connection.
            let _ = std::future::poll_fn(|cx| s.poll_ready(cx)).await;
            s.try_send_request(req).await
        }
        Conn::H2(s) => s.try_send_request(req).await,
    }
}

/// HTTP/1.1 origins get origin-form targets; HTTP/2 needs scheme and authority.
fn set_target(req: &mut Request<RequestBody>, conn: &Conn, server: &Server) {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    match conn {
        Conn::H1(_) => {
            *req.version_mut() = Version::HTTP_11;
            if req.uri().scheme().is_some() {
                *req.uri_mut() = Uri::from(path);
            }
        }
        Conn::H2(_) => {
            *req.version_mut() = Version::HTTP_2;
            let authority = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| server.addr.to_string());
            let scheme = if server.sni.is_some() {
                "https"
            } else {
                "http"
            };
            if let Ok(uri) = Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query(path)
                .build()
            {
                *req.uri_mut() = uri;
            }
            req.headers_mut().remove(header::HOST);
        }
    }
}

/// After `101 Switching Protocols`, copy bytes both ways until either side closes.
fn tunnel(client: hyper::upgrade::OnUpgrade, origin: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (client, origin) = match tokio::try_join!(client, origin) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut origin = TokioIo::new(origin);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
}
