//! Forwarding to the route's pool: pick a server, reuse or open a connection, send the
//! rewritten request with the route's timeouts, and hand back the origin's response with a
//! streaming body. A pooled connection that turns out stale is replaced once by a fresh one:
//! for any method if the request had not been sent; for an idempotent request without a
//! body also if the origin closed the connection before answering (its keep-alive ended as
//! the request went out, a race no check before sending can rule out).

use crate::body::{BodyError, RequestBody, ResponseBody, Upload};
use crate::ctx::RequestCtx;
use crate::error::{ProxyError, Side};
use crate::phases::headers::{self, RequestRewrite};
use crate::state::{RouteRt, State};
use crate::upstream::{connect, Conn, Pool, Release, Server};
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
    let pool = &route.pool;
    let Some(server) = pool.pick() else {
        return Err(ProxyError::Connect(std::io::Error::other(
            "pool has no servers",
        )));
    };
    ctx.upstream.server = Some(Arc::clone(&server.addr_text));
    server.record_request();
    let deadline = route.timeouts.total.map(|t| ctx.start + t);
    let sent = Instant::now();
    let result = exchange(
        pool,
        server,
        route,
        Request::from_parts(parts, body),
        deadline,
        upgrade,
    )
    .await;
    let (mut resp, release) = match result {
        Ok(ok) => ok,
        Err(e) if e.side() == Side::Client => {
            count_client_error(state, &e);
            return Err(e);
        }
        Err(e) => {
            count_failure(server, &e);
            return Err(e);
        }
    };
    let took = sent.elapsed();
    ctx.upstream.duration = Some(took);
    server
        .metrics
        .observe(resp.status().as_u16(), took.as_secs_f64());
    if let Some(client_upgrade) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            tunnel(client_upgrade, hyper::upgrade::on(&mut resp));
        }
    }
    let (mut parts, body) = resp.into_parts();
    headers::rewrite_response(&mut parts, route);
    let body = ResponseBody::upstream(body, release, route.timeouts.read, deadline);
    Ok(Response::from_parts(parts, body))
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
    deadline: Option<Instant>,
    upgrade: bool,
) -> Result<(Response<Incoming>, Option<Release>), ProxyError> {
    let mut reuse = !upgrade;
    loop {
        let pooled = if reuse { server.checkout() } else { None };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                // Boxed: connection set-up (TLS, handshakes) is a large future that only new
                // connections need; inline it would be copied with every request's future.
                let c = Box::pin(connect(pool, server, route.timeouts.connect, upgrade)).await?;
                if let Conn::H2(s) = &c {
                    server.keep_h2(s);
                }
                c
            }
        };
        set_target(&mut req, &conn, server);
        let replay = if reused { replayable(&req) } else { None };
        let upload = req.body().upload();
        let waits = Waits {
            read: route.timeouts.read,
            deadline,
            upload: upload.as_deref(),
        };
        let outcome = {
            let sending = std::pin::pin!(send(&mut conn, req));
            waits.head(sending).await?
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
                    match replay.filter(|_| closed_without_answer(&e)) {
                        Some(again) => {
                            req = *again;
                            reuse = false;
                        }
                        None => return Err(send_error(e)),
                    }
                }
            },
        }
    }
}

/// A copy of `req` to send again if a pooled connection turns out closed after it was sent:
/// only for idempotent methods without a body (a streamed body cannot be sent twice).
/// Boxed so the exchange's future stays small.
fn replayable(req: &Request<RequestBody>) -> Option<Box<Request<RequestBody>>> {
    if !req.method().is_idempotent() || !matches!(req.body(), RequestBody::Empty) {
        return None;
    }
    let mut copy = Request::new(RequestBody::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(Box::new(copy))
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
