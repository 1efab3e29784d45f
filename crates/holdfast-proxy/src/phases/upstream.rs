//! Forwarding to the route's pool: pick a server, reuse or open a connection, send the
//! rewritten request with the route's timeouts, and hand back the origin's response with a
//! streaming body. A pooled connection that turns out stale is replaced once by a fresh one
//! (the request had not been sent, so this is safe for any method).

use crate::body::{RequestBody, ResponseBody};
use crate::ctx::RequestCtx;
use crate::error::ProxyError;
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
        }
    };
    let pool = &route.pool;
    let Some(server) = pool.pick() else {
        return Err(ProxyError::Connect(std::io::Error::other(
            "pool has no servers",
        )));
    };
    ctx.upstream.server = Some(server.addr);
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

fn count_failure(server: &Server, e: &ProxyError) {
    match e {
        ProxyError::Timeout => server.metrics.timeouts.inc(),
        ProxyError::Connect(_) | ProxyError::UpstreamTls(_) => server.metrics.connect_errors.inc(),
        _ => server.metrics.other_errors.inc(),
    }
    server.record_failure(e);
    tracing::debug!(server = %server.addr, error = %e, "origin exchange failed");
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
                let c = connect(pool, server, route.timeouts.connect, upgrade).await?;
                if let Conn::H2(s) = &c {
                    server.keep_h2(s);
                }
                c
            }
        };
        set_target(&mut req, &conn, server);
        let read_deadline = {
            let by_read = Instant::now() + route.timeouts.read;
            deadline.map_or(by_read, |d| d.min(by_read))
        };
        let sent = tokio::time::timeout_at(read_deadline.into(), send(&mut conn, req)).await;
        match sent {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Ok(resp)) => return Ok((resp, server.release_for(conn))),
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    reuse = false;
                }
                _ => return Err(ProxyError::Upstream(e.into_error())),
            },
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
