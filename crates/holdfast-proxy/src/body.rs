//! Body types of the data path. `RequestBody` streams the client's body to the origin under
//! the edge's size limit; `ResponseBody` streams the origin's body (or an edge-made page) to
//! the client, returns the origin connection to the pool at end of stream, enforces the read
//! and total timeouts while it streams, and writes the access-log line when it is dropped.
//! It knows its listeners only as hooks (`OnComplete`, `OriginHook`): nothing here imports the
//! service or the upstream, which sit above it.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the edge's limit")]
    TooLarge,
    #[error("origin stopped sending the body in time")]
    Timeout,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// A client stream that is not hyper's (HTTP/3) failed: reset, or its connection lost.
    #[error("the client's stream failed: {0}")]
    Stream(String),
}

/// The client's request body, whatever protocol carried it: hyper's for HTTP/1.1 and
/// HTTP/2, or a stream adapter (the HTTP/3 listener's) that reports its failures as
/// `BodyError::Stream`. The phases see only this type.
pub enum ClientBody {
    Hyper(Incoming),
    Stream(Pin<Box<dyn Body<Data = Bytes, Error = BodyError> + Send + Sync>>),
}

impl From<Incoming> for ClientBody {
    fn from(inner: Incoming) -> Self {
        ClientBody::Hyper(inner)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ClientBody::Hyper(inner) => Pin::new(inner)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::Hyper))),
            ClientBody::Stream(inner) => inner.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(inner) => inner.is_end_stream(),
            ClientBody::Stream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(inner) => inner.size_hint(),
            ClientBody::Stream(inner) => inner.size_hint(),
        }
    }
}

/// The body sent to the origin.
pub enum RequestBody {
    Empty,
    /// A client body read whole before sending, so the request can be sent again.
    Buffered(Option<Bytes>),
    Client {
        /// What was read of the body before it was found too large to keep: sent first.
        prefix: Option<Bytes>,
        inner: ClientBody,
        remaining: u64,
        upload: Arc<Upload>,
    },
}

impl RequestBody {
    /// How the client's body is getting on; `None` for an empty body.
    pub(crate) fn upload(&self) -> Option<Arc<Upload>> {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => None,
            RequestBody::Client { upload, .. } => Some(Arc::clone(upload)),
        }
    }

    /// The client's body read until it ends (`Buffered`) or until more than `limit` bytes
    /// came (`Client`, the bytes read sent first): so a small body that fails to frame,
    /// stalls or is too large is refused before the origin sees any of it, and can be sent
    /// again. Trailers of a body read whole are dropped (nginx drops them too). A client that
    /// sends nothing for `idle` fails it with `Timeout` (nginx's `client_body_timeout`: a slow
    /// upload that keeps moving is not cut).
    pub(crate) async fn read_up_to(
        mut self,
        limit: u64,
        idle: Duration,
    ) -> Result<RequestBody, BodyError> {
        let mut read: Vec<Bytes> = Vec::new();
        let mut len = 0u64;
        while len <= limit {
            let next = http_body_util::BodyExt::frame(&mut self);
            let Some(frame) = tokio::time::timeout(idle, next)
                .await
                .map_err(|_| BodyError::Timeout)?
                .transpose()?
            else {
                return Ok(RequestBody::Buffered(join(read)));
            };
            if let Ok(data) = frame.into_data() {
                len = len.saturating_add(data.len() as u64);
                read.push(data);
            }
        }
        if let RequestBody::Client { prefix, .. } = &mut self {
            *prefix = join(read);
        }
        Ok(self)
    }

    /// A copy for sending again; `None` for a streamed client body.
    pub(crate) fn try_clone(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Buffered(b) => Some(RequestBody::Buffered(b.clone())),
            RequestBody::Client { .. } => None,
        }
    }
}

/// Progress of the client's body, written by `RequestBody` as it forwards frames and read by
/// the exchange waiting for the origin's response head: the read timeout counts from the
/// last progress, so a long upload that keeps moving is not taken for a silent origin, and a
/// stalled one is known to be the client's fault.
pub(crate) struct Upload {
    start: Instant,
    /// Nanoseconds after `start` of the last frame taken from the client.
    last: AtomicU64,
    /// The last poll of the client's body found nothing yet: the edge waits on the client.
    waiting_on_client: AtomicBool,
}

impl Upload {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Upload {
            start: Instant::now(),
            last: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
        })
    }

    pub(crate) fn last_progress(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    pub(crate) fn waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }

    fn progressed(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
        self.waiting_on_client.store(false, Ordering::Relaxed);
    }
}

/// Frames read as one buffer (no copy for one frame); `None` for none or empty ones.
fn join(mut frames: Vec<Bytes>) -> Option<Bytes> {
    let whole = match frames.len() {
        0 => return None,
        1 => frames.pop().unwrap_or_default(),
        _ => Bytes::from(frames.concat()),
    };
    (!whole.is_empty()).then_some(whole)
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Client { prefix, .. } if prefix.is_some() => {
                Poll::Ready(prefix.take().map(|read| Ok(Frame::data(read))))
            }
            RequestBody::Client {
                inner,
                remaining,
                upload,
                ..
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    upload.progressed();
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    match remaining.checked_sub(len) {
                        Some(left) => {
                            *remaining = left;
                            Poll::Ready(Some(Ok(frame)))
                        }
                        None => Poll::Ready(Some(Err(BodyError::TooLarge))),
                    }
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    upload.progressed();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    upload.waiting_on_client.store(true, Ordering::Relaxed);
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Buffered(b) => b.is_none(),
            RequestBody::Client { prefix, inner, .. } => prefix.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Buffered(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Client { prefix, inner, .. } => {
                let read = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(read));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(read));
                }
                hint
            }
        }
    }
}

/// Told once, when the response body is finished or dropped, how many bytes went to the
/// client and whether the body failed (the service records metrics and the access-log line).
pub(crate) trait OnComplete: Send {
    fn complete(self: Box<Self>, bytes: u64, failed: bool);
}

/// The origin server a streamed body comes from, as the body sees it.
pub(crate) trait OriginHook: Send + Sync {
    /// The whole body arrived over this HTTP/1.1 connection: it may carry another request.
    /// Never called after an error or a timeout (the connection may be mid-message).
    fn reuse(&self, conn: http1::SendRequest<RequestBody>);
    /// The body is done or dropped; called once, last.
    fn done(&self);
}

/// What a streamed body holds of its origin until it ends: the server's hook (told `done`
/// on drop), the HTTP/1.1 connection to hand back after a whole body, and the pool's
/// concurrency slot (released with the body).
pub(crate) struct OriginLease {
    pub hook: Arc<dyn OriginHook>,
    pub conn: Option<http1::SendRequest<RequestBody>>,
    /// Held only to be released (dropped) with the body.
    pub _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl OriginLease {
    /// The whole body arrived: hand the connection back for another request.
    fn reuse(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.hook.reuse(conn);
        }
    }
}

impl Drop for OriginLease {
    fn drop(&mut self) {
        self.hook.done();
    }
}

/// The body sent to the client.
pub struct ResponseBody {
    kind: Kind,
    bytes: u64,
    failed: bool,
    completion: Option<Box<dyn OnComplete>>,
    /// Sees every chunk on the way to the client (the cache filling an entry); `None`
    /// everywhere else, so an uncached route pays nothing for it.
    tap: Option<Box<dyn Tap>>,
    /// The HTTP/1 request this body answers, in flight until the body is dropped (`idle`).
    in_flight: Option<Hold>,
}

/// What a [`Hold`] lets go of when it is dropped.
pub(crate) trait Release: Send + Sync {
    fn release(&self);
}

/// Keeps something (a connection's request in flight) until dropped; no allocation of its own.
pub(crate) struct Hold(std::sync::Arc<dyn Release>);

impl Hold {
    pub(crate) fn new(held: std::sync::Arc<dyn Release>) -> Self {
        Hold(held)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}

/// A copy of the body as it streams: `data` for each chunk (false drops the tap), `end`
/// once the whole body went through. Dropped without `end` when the body fails or is
/// dropped early.
pub(crate) trait Tap: Send {
    fn data(&mut self, data: &Bytes) -> bool;
    fn end(self: Box<Self>);
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

struct UpstreamBody {
    inner: Incoming,
    read_timeout: Duration,
    deadline: Option<Instant>,
    /// Created only when the origin makes us wait, so bodies already buffered cost no timer.
    /// Not moved by each chunk (a timer reset per chunk costs more than the chunk's own
    /// work): when it fires after progress, it is set again from `last_progress`.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the last chunk came, once the timer runs.
    last_progress: Option<Instant>,
    /// The connection to hand back, the server's in-flight count and the pool's slot,
    /// released when the body is done or dropped.
    lease: OriginLease,
}

/// When waiting for the origin's next chunk ends: `read_timeout` after `from`, or the
/// route's total deadline if that comes first.
fn wait_limit(read_timeout: Duration, deadline: Option<Instant>, from: Instant) -> Instant {
    let idle = from + read_timeout;
    deadline.map_or(idle, |d| d.min(idle))
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody::from_kind(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    pub(crate) fn upstream(
        inner: Incoming,
        lease: OriginLease,
        read_timeout: Duration,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseBody::from_kind(Kind::Upstream(UpstreamBody {
            inner,
            read_timeout,
            deadline,
            timer: None,
            last_progress: None,
            lease,
        }))
    }

    fn from_kind(kind: Kind) -> Self {
        ResponseBody {
            kind,
            bytes: 0,
            failed: false,
            completion: None,
            tap: None,
            in_flight: None,
        }
    }

    /// Keep the connection's request in flight until this body is dropped.
    pub(crate) fn hold(&mut self, in_flight: Hold) {
        self.in_flight = Some(in_flight);
    }

    pub(crate) fn set_tap(&mut self, tap: Box<dyn Tap>) {
        self.tap = Some(tap);
    }

    pub(crate) fn set_completion(&mut self, completion: Box<dyn OnComplete>) {
        self.completion = Some(completion);
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            if !self.failed && self.is_end_stream() {
                tap.end();
            }
        }
        if let Kind::Upstream(up) = &mut self.kind {
            if up.inner.is_end_stream() {
                up.lease.reuse();
            }
        }
        if let Some(c) = self.completion.take() {
            c.complete(self.bytes, self.failed);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(up) => poll_upstream(up, cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let data = frame.data_ref();
                this.bytes += data.map_or(0, |d| d.len() as u64);
                if let (Some(tap), Some(d)) = (this.tap.as_mut(), data) {
                    if !tap.data(d) {
                        this.tap = None;
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.failed = true;
                this.tap = None;
            }
            Poll::Ready(None) => {
                if let Some(tap) = this.tap.take() {
                    tap.end();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(up) => up.inner.size_hint(),
        }
    }
}

fn poll_upstream(
    up: &mut UpstreamBody,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    match Pin::new(&mut up.inner).poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => {
            if up.timer.is_some() {
                up.last_progress = Some(Instant::now());
            }
            Poll::Ready(Some(Ok(frame)))
        }
        Poll::Ready(Some(Err(e))) => {
            up.lease.conn = None;
            Poll::Ready(Some(Err(e.into())))
        }
        Poll::Ready(None) => {
            up.lease.reuse();
            Poll::Ready(None)
        }
        Poll::Pending => {
            let timer = match &mut up.timer {
                Some(timer) => timer,
                None => {
                    let at = wait_limit(up.read_timeout, up.deadline, Instant::now());
                    up.timer
                        .insert(Box::pin(tokio::time::sleep_until(at.into())))
                }
            };
            // Twice at most: a timer that fired after progress is set again from the last
            // chunk, and a timer set in the future is pending.
            for _ in 0..2 {
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let again = up
                    .last_progress
                    .take()
                    .map(|last| wait_limit(up.read_timeout, up.deadline, last))
                    .filter(|at| *at > Instant::now());
                match again {
                    Some(at) => timer.as_mut().reset(at.into()),
                    None => break,
                }
            }
            up.lease.conn = None;
            Poll::Ready(Some(Err(BodyError::Timeout)))
        }
    }
}
