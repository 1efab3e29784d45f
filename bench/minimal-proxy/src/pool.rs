//! A small keep-alive pool of `hyper::client::conn::http1` senders to one upstream.
//! A sender is leased for one exchange and comes back to the pool when the response
//! body has been read to the end; a response abandoned half-way takes its connection
//! with it (the rest of that body is still on the wire). No timeouts, no health, no
//! retries: that is Holdfast's job, not the baseline's.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Sender = SendRequest<Incoming>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Pool {
    upstream: SocketAddr,
    max_idle: usize,
    max_buf_size: usize,
    // One runtime thread, so this lock is never contended; it is never held across `.await`.
    idle: Mutex<Vec<Sender>>,
}

impl Pool {
    pub fn new(upstream: SocketAddr, max_idle: usize, max_buf_size: usize) -> Self {
        Self {
            upstream,
            max_idle,
            max_buf_size,
            idle: Mutex::new(Vec::with_capacity(max_idle)),
        }
    }

    /// Send `req` on an idle connection (or a new one) and return the response with a
    /// body that gives the connection back once it has been read to the end.
    pub async fn send(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let mut sender = self.checkout().await?;
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let lease = Lease { pool: self, sender };
        Ok(Response::from_parts(parts, PooledBody::new(body, lease)))
    }

    async fn checkout(&self) -> Result<Sender, BoxError> {
        // Newest first: the most recently used connection is the warmest. The loop is
        // bounded by the pool size, as nothing is pushed back while it runs.
        while let Some(mut sender) = self.pop() {
            if sender.is_closed() {
                continue;
            }
            // Usually ready at once; otherwise its connection task has not yet run
            // since the previous response ended.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let stream = TcpStream::connect(self.upstream).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(self.max_buf_size)
            .handshake(TokioIo::new(stream))
            .await?;
        // The connection ends when the upstream closes it or every sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn pop(&self) -> Option<Sender> {
        self.lock().pop()
    }

    fn put_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Sender>> {
        // A panic elsewhere cannot leave a Vec of senders inconsistent; keep going.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A sender on loan for one exchange.
struct Lease {
    pool: Arc<Pool>,
    sender: Sender,
}

/// The upstream response body, streamed frame by frame. When it has been read to the end
/// (or hyper saw `is_end_stream` and dropped it) the connection goes back to the pool.
pub struct PooledBody {
    inner: Option<Incoming>,
    lease: Option<Lease>,
    done: bool,
}

impl PooledBody {
    fn new(inner: Incoming, lease: Lease) -> Self {
        Self {
            inner: Some(inner),
            lease: Some(lease),
            done: false,
        }
    }

    /// For responses the proxy makes itself (502).
    pub fn empty() -> Self {
        Self {
            inner: None,
            lease: None,
            done: true,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if self.done || self.is_end_stream() {
            lease.pool.put_back(lease.sender);
        }
    }
}
