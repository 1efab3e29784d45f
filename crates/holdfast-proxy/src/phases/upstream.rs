//! Forwarding along the route's failover chain: pick the pool (or serve the fallback),
//! buffer a small body so the request can be sent again, take a slot in the pool's
//! concurrency limit, then try servers — retrying on another server, or the next pool of the
//! chain, within the retry policy and budget — and hand back the origin's response with a
//! streaming body. One exchange with one server is `exchange`'s.

use super::exchange::{
    closed_without_answer, copy_request, exchange, is_upgrade, tunnel, Exchanged,
};
use crate::body::{BodyError, RequestBody, ResponseBody, Upload};
use crate::ctx::RequestCtx;
use crate::error::{with_causes, ProxyError, Side};
use crate::phases::headers::{self, RequestRewrite};
use crate::state::{RouteRt, State};
use crate::upstream::{stable_hash, InFlight, Picked, Pool, Server, Target};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

pub(crate) async fn forward(
    state: &State,
    route: &RouteRt,
    mut req: Request<Option<Incoming>>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let first = match route.chain.choose() {
        Target::Pool(i) => i,
        Target::Fallback => return fallback(route),
    };
    let Some(pool) = route.chain.pools.get(first) else {
        return Err(no_servers());
    };
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
    let slot = admit(pool, route, deadline).await?;
    let request = Request::from_parts(parts, body);
    let sent = attempts(
        state,
        route,
        first,
        client_host,
        request,
        deadline,
        upgrade,
        ctx,
    )
    .await;
    let (server, (mut resp, conn), in_flight) = match sent {
        Ok(sent) => sent,
        // The chain failed on the origin side: the operator's page rather than the edge's.
        Err(e) if e.side() == Side::Origin && route.chain.fallback.is_some() => {
            return fallback(route);
        }
        Err(e) => return Err(e),
    };
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

fn no_servers() -> ProxyError {
    ProxyError::Connect(std::io::Error::other("pool has no servers"))
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
    body: Option<Incoming>,
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
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let small = length.is_some_and(|n| n <= retry.buffer_body);
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

/// Whether an attempt counts as the server's failure for outlier detection: the origin side
/// failed, or answered 502, 503 or 504.
fn origin_failed(result: &Result<Exchanged, ProxyError>) -> bool {
    match result {
        Ok((resp, _)) => matches!(resp.status().as_u16(), 502..=504),
        Err(e) => e.side() == Side::Origin,
    }
}

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

/// Where a retry goes.
enum Next {
    /// Another server of the same pool.
    Same,
    /// The pool at this index of the chain.
    Pool(usize),
}

/// Where the retry after a failure on server `index` of chain pool `at` goes: another
/// healthy server of the pool; else the next pool of the chain that is not down; else any
/// server of the pool not yet tried.
fn next_target(
    route: &RouteRt,
    at: usize,
    pool: &Pool,
    tried: &[usize],
    index: usize,
) -> Option<Next> {
    let mut tried_now = tried.to_vec();
    tried_now.push(index);
    if pool.has_untried_usable(&tried_now) {
        return Some(Next::Same);
    }
    if let Some(j) = route.chain.next_up(at) {
        return Some(Next::Pool(j));
    }
    (tried_now.len() < pool.servers.len()).then_some(Next::Same)
}

/// Send the request, retrying on another server or pool within the first pool's policy and
/// budget. A request whose body is streaming is never re-sent; a request that was not sent
/// at all (connect failure) comes back from `exchange` and can go anywhere.
#[allow(clippy::too_many_arguments)]
async fn attempts<'r>(
    state: &State,
    route: &'r RouteRt,
    first: usize,
    client_host: Option<HeaderValue>,
    req: Request<RequestBody>,
    deadline: Option<Instant>,
    upgrade: bool,
    ctx: &mut RequestCtx,
) -> Result<(&'r Arc<Server>, Exchanged, InFlight), ProxyError> {
    let mut at = first;
    let Some(mut pool) = route.chain.pools.get(at) else {
        return Err(no_servers());
    };
    let policy = &pool.retry;
    let budget = &pool.budget;
    budget.record_request();
    let mut key = pool
        .balancer
        .hash_key()
        .map_or(0, |k| request_key(k, &req, ctx));
    let may_resend = policy.non_idempotent || req.method().is_idempotent();
    // A copy to re-send after a failure that consumed the request (bodiless or buffered
    // requests only). Also used by `exchange` when a pooled connection turns out closed
    // after the request went out.
    let mut template = (may_resend && !upgrade)
        .then(|| copy_request(&req))
        .flatten();
    let mut next = Some(req);
    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    loop {
        let Some(req) = next
            .take()
            .or_else(|| template.as_ref().and_then(copy_request))
        else {
            return Err(ProxyError::Connect(std::io::Error::other(
                "no request left to send",
            )));
        };
        let (index, server, in_flight) = match pool.pick(&tried, key) {
            Picked::Server(i, s, in_flight) => (i, s, in_flight),
            Picked::Full => {
                pool.metrics.overload_rejected.inc();
                return Err(ProxyError::Overloaded {
                    retry_after: pool.retry_after.clone(),
                });
            }
            Picked::Empty => return Err(no_servers()),
        };
        ctx.upstream.server = Some(Arc::clone(&server.addr_text));
        server.record_request();
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
        let target = (retries < policy.attempts && allowed && resendable)
            .then(|| next_target(route, at, pool, &tried, index))
            .flatten();
        if let Some(target) = target {
            if budget.try_retry() {
                if let Err(e) = &result {
                    count_failure(server, e);
                }
                drop(result);
                drop(in_flight);
                retries += 1;
                next = unsent;
                match target {
                    Next::Same => tried.push(index),
                    Next::Pool(j) => {
                        let Some(p) = route.chain.pools.get(j) else {
                            return Err(no_servers());
                        };
                        at = j;
                        pool = p;
                        tried.clear();
                        let host = pool.host_header.as_ref().or(client_host.as_ref());
                        for r in next.iter_mut().chain(template.iter_mut()) {
                            headers::set_pool_host(r.headers_mut(), host, route);
                        }
                        if let Some(k) = pool.balancer.hash_key() {
                            if let Some(r) = next.as_ref().or(template.as_ref()) {
                                key = request_key(k, r, ctx);
                            }
                        }
                    }
                }
                // Nothing was sent on a connect failure: another server is tried at once
                // (as nginx does); after a reset, timeout or status, back off first.
                if why != Some(Retryable::Connect) {
                    tokio::time::sleep(backoff(policy.backoff, retries)).await;
                }
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
