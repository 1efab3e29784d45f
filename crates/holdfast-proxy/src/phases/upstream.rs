//! The upstream phase: forwarding along the route's failover chain. It reads as the walk:
//! choose the pool (or serve the fallback), buffer a small body so the request can be sent
//! again, admit (a slot in the pool's concurrency limit, or 503), then each attempt — one
//! exchange with the server the `RetryPlan` (`retry.rs`) picks, whose outcome the plan judges
//! (stop, or retry on another server or pool after a back-off) — and hand back the origin's
//! response with a streaming body. One exchange with one server is `exchange`'s.

use super::exchange::{copy_request, exchange, is_upgrade, tunnel, Exchanged};
use super::retry::{no_servers, Attempt, Judgement, RetryPlan};
use crate::body::{BodyError, ClientBody, RequestBody, ResponseBody, Upload};
use crate::ctx::RequestCtx;
use crate::error::{with_causes, ProxyError, Side};
use crate::phases::headers::{self, RequestRewrite};
use crate::state::{RouteRt, State};
use crate::upstream::{stable_hash, InFlight, Pool, Server, Target};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use std::sync::Arc;
use std::time::Instant;

pub(crate) async fn forward(
    state: &State,
    route: &RouteRt,
    req: Request<Option<ClientBody>>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    // Choose: the chain's first pool that is not down, or its fallback.
    let first = match route.chain.choose() {
        Target::Pool(i) => i,
        Target::Fallback => return fallback(route),
    };
    let Some(mut plan) = RetryPlan::new(&route.chain, first, req.method()) else {
        return Err(no_servers());
    };
    let (outgoing, client_upgrade) = Outgoing::prepare(state, route, &plan, req, ctx).await?;
    // Admit: a slot in the pool's concurrency limit, held until the response body ends.
    let deadline = outgoing.deadline;
    let slot = admit(plan.pool(), route, deadline).await?;
    // Attempt after attempt along the plan, until it keeps an outcome.
    let sent = match attempts(state, route, &mut plan, outgoing, ctx).await {
        Ok(sent) => sent,
        // The chain failed on the origin side: the operator's page rather than the edge's.
        Err(e) if e.side() == Side::Origin && route.chain.fallback.is_some() => {
            return fallback(route);
        }
        Err(e) => return Err(e),
    };
    let (server, (mut resp, conn), in_flight) = sent;
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
    let Some(lease) = in_flight.into_lease(conn, slot) else {
        return Err(no_servers());
    };
    let body = ResponseBody::upstream(body, lease, route.timeouts.read, deadline);
    Ok(Response::from_parts(parts, body))
}

/// Each attempt: one exchange with the server the plan picks, its outcome judged by the
/// plan; a retry waits out its back-off first. A request whose body is streaming is never
/// re-sent; one that was not sent at all (connect failure) comes back from `exchange` and
/// can go anywhere.
async fn attempts<'r>(
    state: &State,
    route: &'r RouteRt,
    plan: &mut RetryPlan<'r>,
    mut out: Outgoing,
    ctx: &mut RequestCtx,
) -> Result<(&'r Arc<Server>, Exchanged, InFlight), ProxyError> {
    loop {
        let req = out.take()?;
        let attempt = plan.attempt(out.key)?;
        ctx.upstream.server = Some(Arc::clone(&attempt.server.addr_text));
        attempt.server.record_request();
        let sent = Instant::now();
        let template = out.template.as_ref();
        let (result, unsent) = match exchange(
            attempt.pool,
            attempt.server,
            route,
            req,
            template,
            out.deadline,
            out.upgrade,
        )
        .await
        {
            Ok(ok) => (Ok(ok), None),
            Err((e, unsent)) => (Err(e), unsent),
        };
        // Upstream time is the wait for a response head: none if there was no response.
        ctx.upstream.duration = result.is_ok().then(|| sent.elapsed());
        let resendable = unsent.is_some() || out.template.is_some();
        match plan.judge(&attempt, &result, unsent.is_some(), resendable) {
            Judgement::Done => return settle(state, attempt, result),
            Judgement::Retry { moved, backoff } => {
                if let Err(e) = &result {
                    count_failure(attempt.server, e);
                }
                drop(result);
                drop(attempt);
                out.again(unsent, moved.then(|| &**plan.pool()), route, ctx);
                if let Some(pause) = backoff {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// The attempt the plan kept: its response, or its error counted on the side that failed.
fn settle<'r>(
    state: &State,
    attempt: Attempt<'r>,
    result: Result<Exchanged, ProxyError>,
) -> Result<(&'r Arc<Server>, Exchanged, InFlight), ProxyError> {
    match result {
        Ok(ok) => Ok((attempt.server, ok, attempt.in_flight)),
        Err(e) if e.side() == Side::Client => {
            count_client_error(state, &e);
            Err(e)
        }
        Err(e) => {
            count_failure(attempt.server, &e);
            Err(e)
        }
    }
}

/// The request on its way: the one to send next, a copy to send it again, and what a move
/// to another pool changes (`Host`, the hashing key).
struct Outgoing {
    next: Option<Request<RequestBody>>,
    /// A copy to re-send after a failure that consumed the request (bodiless or buffered
    /// requests whose method may be re-sent). Also used by `exchange` when a pooled
    /// connection turns out closed after the request went out.
    template: Option<Request<RequestBody>>,
    /// The client's `Host`, kept only where a retry may move to another pool.
    client_host: Option<HeaderValue>,
    /// The request's key for the current pool's hashing balancer (0 for other balancers).
    key: u64,
    upgrade: bool,
    deadline: Option<Instant>,
}

impl Outgoing {
    /// The request as the origin gets it: proxy headers rewritten for the plan's first pool,
    /// the body streamed or (when it may be re-sent) buffered; and the client's side of an
    /// upgrade, if the request asks for one.
    async fn prepare(
        state: &State,
        route: &RouteRt,
        plan: &RetryPlan<'_>,
        mut req: Request<Option<ClientBody>>,
        ctx: &mut RequestCtx,
    ) -> Result<(Outgoing, Option<OnUpgrade>), ProxyError> {
        let pool = plan.pool();
        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // Kept only where a retry may move to another pool, which sets its own `Host`.
        let client_host = (route.chain.pools.len() > 1)
            .then(|| parts.headers.get(header::HOST).cloned())
            .flatten();
        let rewrite = RequestRewrite {
            route,
            pool_host: pool.host_header.as_ref(),
            forwarded: state.config.edge.forwarded,
            upgrade,
        };
        headers::rewrite_request(&mut parts, ctx, &rewrite);
        let deadline = route.timeouts.total.map(|t| ctx.start + t);
        let body = request_body(state, route, pool, &parts, body, upgrade).await?;
        let req = Request::from_parts(parts, body);
        let key = pool
            .balancer
            .hash_key()
            .map_or(0, |k| request_key(k, &req, ctx));
        let template = (plan.may_resend() && !upgrade)
            .then(|| copy_request(&req))
            .flatten();
        let outgoing = Outgoing {
            next: Some(req),
            template,
            client_host,
            key,
            upgrade,
            deadline,
        };
        Ok((outgoing, client_upgrade))
    }

    /// The request for the next attempt: the one handed back unsent, or a fresh copy.
    fn take(&mut self) -> Result<Request<RequestBody>, ProxyError> {
        self.next
            .take()
            .or_else(|| self.template.as_ref().and_then(copy_request))
            .ok_or_else(|| ProxyError::Connect(std::io::Error::other("no request left to send")))
    }

    /// A retry: send `unsent` again if the request came back, and after a move to another
    /// pool with that pool's `Host` and hashing key.
    fn again(
        &mut self,
        unsent: Option<Request<RequestBody>>,
        moved_to: Option<&Pool>,
        route: &RouteRt,
        ctx: &RequestCtx,
    ) {
        self.next = unsent;
        let Some(pool) = moved_to else {
            return;
        };
        let host = pool.host_header.as_ref().or(self.client_host.as_ref());
        for r in self.next.iter_mut().chain(self.template.iter_mut()) {
            headers::set_pool_host(r.headers_mut(), host, route);
        }
        if let Some(k) = pool.balancer.hash_key() {
            if let Some(r) = self.next.as_ref().or(self.template.as_ref()) {
                self.key = request_key(k, r, ctx);
            }
        }
    }
}

/// The route's fallback response (every pool of its chain is down).
fn fallback(route: &RouteRt) -> Result<Response<ResponseBody>, ProxyError> {
    let Some(f) = &route.chain.fallback else {
        return Err(no_servers());
    };
    let mut resp = Response::new(ResponseBody::full(f.body.clone()));
    *resp.status_mut() = f.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, f.content_type.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(retry_after) = &f.retry_after {
        h.insert(header::RETRY_AFTER, retry_after.clone());
    }
    let (mut parts, body) = resp.into_parts();
    headers::rewrite_response(&mut parts, route);
    Ok(Response::from_parts(parts, body))
}

/// The body to send: streamed as it arrives, or — when the request may be retried and its
/// `Content-Length` is within the pool's `retry.buffer_body` — read whole first, so that it
/// can be sent again (bounded by the route's read timeout).
async fn request_body(
    state: &State,
    route: &RouteRt,
    pool: &Pool,
    parts: &http::request::Parts,
    body: Option<ClientBody>,
    upgrade: bool,
) -> Result<RequestBody, ProxyError> {
    let Some(body) = body.filter(|b| !http_body::Body::is_end_stream(b)) else {
        return Ok(RequestBody::Empty);
    };
    let client = RequestBody::Client {
        inner: body,
        remaining: state.config.edge.limits.max_request_body,
        upload: Upload::new(),
    };
    let retry = &pool.retry;
    let may_resend = retry.non_idempotent || parts.method.is_idempotent();
    let small = headers::content_length(&parts.headers).is_some_and(|n| n <= retry.buffer_body);
    if retry.attempts == 0 || retry.buffer_body == 0 || !may_resend || upgrade || !small {
        return Ok(client);
    }
    let read = http_body_util::BodyExt::collect(client);
    let error = match tokio::time::timeout(route.timeouts.read, read).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            return Ok(RequestBody::Buffered((!bytes.is_empty()).then_some(bytes)));
        }
        Err(_) | Ok(Err(BodyError::Timeout)) => ProxyError::ClientTimeout,
        Ok(Err(BodyError::TooLarge)) => ProxyError::BodyTooLarge,
        Ok(Err(BodyError::Hyper(e))) => ProxyError::ClientBody(e),
        Ok(Err(e @ BodyError::Stream(_))) => ProxyError::ClientStream(e),
    };
    count_client_error(state, &error);
    Err(error)
}

/// A slot in the pool's concurrency limit, if it has one: held until the response body
/// ends. Over the limit with a full queue, the edge answers 503 without contacting the origin.
async fn admit(
    pool: &Pool,
    route: &RouteRt,
    deadline: Option<Instant>,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ProxyError> {
    let Some(admission) = &pool.admission else {
        return Ok(None);
    };
    let by_read = Instant::now() + route.timeouts.read;
    let until = deadline.map_or(by_read, |d| d.min(by_read));
    match admission.admit(until).await {
        Some(slot) => Ok(Some(slot)),
        None => {
            pool.metrics.overload_rejected.inc();
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
