//! One exchange with one origin server: reuse or open a connection, send the request under
//! the read timeout and the route's deadline, and hand back the response head. A pooled
//! connection that turns out stale is replaced once by a fresh one: for any method if the
//! request had not been sent; for a request that can be copied (no body, or a buffered one)
//! also if the origin closed the connection before answering (its keep-alive ended as the
//! request went out, a race no check before sending can rule out).

use crate::body::{BodyError, RequestBody, Upload};
use crate::error::ProxyError;
use crate::state::RouteRt;
use crate::upstream::{connect, set_target, Conn, Pool, Server};
use http::{header, Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Instant;

/// The origin's response head, and the HTTP/1.1 connection to hand back once its body is whole.
pub(crate) type Exchanged = (
    Response<Incoming>,
    Option<hyper::client::conn::http1::SendRequest<RequestBody>>,
);

pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
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

/// A failed send is the origin's failure unless reading the client's body is what failed
/// (hyper reports both the same way; the body's own error tells them apart).
pub(crate) fn send_error(e: hyper::Error) -> ProxyError {
    let body = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<BodyError>());
    match body {
        Some(BodyError::TooLarge) => ProxyError::BodyTooLarge,
        Some(BodyError::Hyper(_) | BodyError::Stream(_)) => ProxyError::ClientBody(e),
        _ => ProxyError::Upstream(e),
    }
}

/// Send one request, on a pooled connection if there is one (replacing it once if it was
/// stale), bounded by the read timeout and the route's total deadline.
pub(crate) async fn exchange(
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
            Ok(resp) => return Ok((resp, conn.reusable())),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    reuse = false;
                }
                _ => {
                    let e = e.into_error();
                    // Copied only now, from the template kept by the caller: no copy per request.
                    let again = template.filter(|_| reused && closed_without_answer(&e));
                    match again.and_then(copy_request) {
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

/// Another copy of a request kept for re-sending; `None` if its body streams (a streamed
/// body cannot be sent twice).
pub(crate) fn copy_request(template: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let mut copy = Request::new(template.body().try_clone()?);
    *copy.method_mut() = template.method().clone();
    *copy.uri_mut() = template.uri().clone();
    *copy.version_mut() = template.version();
    *copy.headers_mut() = template.headers().clone();
    Some(copy)
}

/// The origin closed (or reset) the connection before its answer was complete.
pub(crate) fn closed_without_answer(e: &hyper::Error) -> bool {
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

thread_local! {
    /// Tunnels open on this worker thread, and their last one closing: a stop (or a binary
    /// upgrade's drain) lets them run within its grace period, like requests.
    static TUNNELS: (std::cell::Cell<usize>, std::rc::Rc<tokio::sync::Notify>) =
        (std::cell::Cell::new(0), std::rc::Rc::new(tokio::sync::Notify::new()));
}

/// Counts a tunnel of this worker thread while it lives (it is spawned on the worker's
/// single-threaded runtime, so it is dropped on the same thread).
struct TunnelGuard;

impl TunnelGuard {
    fn open() -> TunnelGuard {
        TUNNELS.with(|(n, _)| n.set(n.get().saturating_add(1)));
        TunnelGuard
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        TUNNELS.with(|(n, closed)| {
            n.set(n.get().saturating_sub(1));
            if n.get() == 0 {
                closed.notify_waiters();
            }
        });
    }
}

/// Resolves once no tunnel is open on this worker thread.
pub(crate) async fn tunnels_closed() {
    let closed = TUNNELS.with(|(_, closed)| std::rc::Rc::clone(closed));
    loop {
        let notified = closed.notified();
        if TUNNELS.with(|(n, _)| n.get()) == 0 {
            return;
        }
        notified.await;
    }
}

/// After `101 Switching Protocols`, copy bytes both ways until either side closes.
pub(crate) fn tunnel(client: hyper::upgrade::OnUpgrade, origin: hyper::upgrade::OnUpgrade) {
    let guard = TunnelGuard::open();
    tokio::spawn(async move {
        let _guard = guard;
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
