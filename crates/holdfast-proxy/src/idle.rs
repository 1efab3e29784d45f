//! Idle HTTP/1 connections give their memory back (`edge.idle_release_after`), as nginx's
//! keep-alive connections do. While hyper serves a connection it holds an 8 KiB read buffer,
//! an 8 KiB write buffer, the boxed request future and a header timer, whether or not a
//! request is coming: ~20 KiB for a connection that may sit idle for a minute. Here a
//! connection with no request in flight that moved no bytes for `idle_release_after` is taken
//! apart with `into_parts` — the socket, the service and any bytes hyper had read but not yet
//! parsed come back — and waits for its next byte holding only the socket; that byte (and any
//! unparsed ones) is then replayed into a new hyper connection. Nothing changes on the wire.
//!
//! "Nothing in flight" is known exactly: each request holds a [`Hold`] from the moment
//! the service is called until its response body is dropped (hyper drops it once the body is
//! written, or when the connection ends). "Moved no bytes" is the [`Watched`] socket's count
//! of reads and writes, unchanged across a whole period; a write left pending (a client not
//! reading) keeps the connection as it is. A connection released in the middle of a request
//! head (a slow client) keeps the bytes it sent and the time its head began: the
//! `client_header_timeout` runs from then, across releases, so a release never gives a slow
//! client more time. That time is not read per request (a clock read on every head): the
//! release check stamps a head it finds begun with the check before it, the earliest the
//! head can have begun, so a slow head may get up to one `idle_release_after` less, never
//! more.

mod park;

pub(crate) use park::start as start_park;
pub(crate) use park::{next_byte, Next, StopRule};

use crate::body::{Hold, Release};
use crate::rewind::Rewind;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What one connection's socket and requests have done, shared by its [`Watched`] socket,
/// its service (one [`Hold`] per request) and the task that decides to release it.
#[derive(Debug)]
pub(crate) struct Activity {
    born: Instant,
    /// When the head being read began, in ms after `born` (valid while `read_since_idle`;
    /// `UNSTAMPED` until a release check or a released connection's next byte stamps it).
    head_began_ms: AtomicU64,
    /// Reads that returned bytes and writes that took some: only the socket writes it.
    moved: AtomicU64,
    in_flight: AtomicU32,
    /// A read returned bytes since the last response ended (a head may be half read).
    read_since_idle: AtomicBool,
    /// The last write or flush could not proceed: hyper may hold unsent bytes.
    write_blocked: AtomicBool,
}

const UNSTAMPED: u64 = u64::MAX;

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            born: Instant::now(),
            head_began_ms: AtomicU64::new(UNSTAMPED),
            moved: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            read_since_idle: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
        }
    }

    /// A request begins: in flight until the returned hold (kept by its response body) is
    /// dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Hold {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Hold::new(Arc::clone(self) as Arc<dyn Release>)
    }

    pub(crate) fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Whether hyper's state can be dropped now without losing anything: no request in
    /// flight and nothing left unsent (a head half read comes back with `into_parts`).
    pub(crate) fn releasable(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && !self.write_blocked.load(Ordering::Relaxed)
    }

    fn mid_head(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.read_since_idle.load(Ordering::Relaxed)
    }

    /// When the request head being read began: `Some` while bytes came after the last
    /// response ended, no request has begun since, and the head has been stamped.
    pub(crate) fn head_began(&self) -> Option<Instant> {
        let ms = self.head_began_ms.load(Ordering::Relaxed);
        (self.mid_head() && ms != UNSTAMPED)
            .then(|| self.born + std::time::Duration::from_millis(ms))
    }

    /// Bytes of a head arrived (or are replayed after a release): the first since the last
    /// response ended marks a head begun, not yet stamped.
    pub(crate) fn mark_read(&self) {
        if !self.read_since_idle.load(Ordering::Relaxed) {
            self.head_began_ms.store(UNSTAMPED, Ordering::Relaxed);
            self.read_since_idle.store(true, Ordering::Relaxed);
        }
    }

    /// A head begun and not yet stamped began at `at` at the earliest: stamp it so.
    pub(crate) fn stamp_head(&self, at: Instant) {
        if self.mid_head() && self.head_began_ms.load(Ordering::Relaxed) == UNSTAMPED {
            let since = at.saturating_duration_since(self.born).as_millis();
            let ms = u64::try_from(since).unwrap_or(UNSTAMPED - 1);
            self.head_began_ms.store(ms, Ordering::Relaxed);
        }
    }

    fn count(&self) {
        // One writer (the socket, on the connection's task): no read-modify-write needed.
        self.moved.store(
            self.moved.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
}

/// A request of the connection ended (its response body was dropped).
impl Release for Activity {
    fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.read_since_idle.store(false, Ordering::Relaxed);
        }
    }
}

/// A client socket that counts what it moves into its connection's [`Activity`].
pub(crate) struct Watched<S> {
    inner: Rewind<S>,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: Rewind<S>, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }

    pub(crate) fn into_inner(self) -> Rewind<S> {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.count();
            this.activity.mark_read();
        }
        r
    }
}

impl<S> Watched<S> {
    /// After a write or flush: pending leaves hyper holding unsent bytes; a write that took
    /// bytes is activity (a flush with nothing to send, as hyper does at every poll, is not).
    fn wrote<T>(
        &self,
        r: Poll<io::Result<T>>,
        took: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        let blocked = r.is_pending();
        if self.activity.write_blocked.load(Ordering::Relaxed) != blocked {
            self.activity
                .write_blocked
                .store(blocked, Ordering::Relaxed);
        }
        if let Poll::Ready(Ok(v)) = &r {
            if took(v) {
                self.activity.count();
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(r, |()| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_request_holds_the_connection_until_its_response_is_dropped() {
        let a = Arc::new(Activity::new());
        assert!(a.releasable());
        let first = a.begin();
        let second = a.begin();
        assert!(!a.releasable());
        drop(first);
        assert!(!a.releasable(), "one request is still in flight");
        drop(second);
        assert!(a.releasable());
    }

    #[test]
    fn a_head_keeps_the_time_it_began_until_its_request_begins() {
        let a = Arc::new(Activity::new());
        assert_eq!(a.head_began(), None);
        a.mark_read();
        assert_eq!(a.head_began(), None, "begun, not yet stamped");
        a.stamp_head(a.born + std::time::Duration::from_millis(7));
        a.mark_read();
        a.stamp_head(a.born + std::time::Duration::from_millis(900));
        assert_eq!(
            a.head_began(),
            Some(a.born + std::time::Duration::from_millis(7)),
            "later bytes and checks of the same head keep its start"
        );
        let req = a.begin();
        assert_eq!(a.head_began(), None, "the head is complete");
        assert!(!a.releasable());
        drop(req);
        assert!(a.releasable());
        assert_eq!(a.head_began(), None, "the next head has not begun");
        a.stamp_head(a.born + std::time::Duration::from_millis(900));
        assert_eq!(a.head_began(), None, "only a begun head is stamped");
        a.mark_read();
        a.stamp_head(a.born + std::time::Duration::from_millis(1200));
        assert_eq!(
            a.head_began(),
            Some(a.born + std::time::Duration::from_millis(1200)),
            "the next head has its own start"
        );
    }

    #[tokio::test]
    async fn the_socket_counts_reads_and_writes_and_a_blocked_write() {
        let (client, server) = tokio::io::duplex(8);
        let a = Arc::new(Activity::new());
        let mut w = Watched::new(Rewind::new(Vec::new(), server), Arc::clone(&a));
        let mut client = client;
        client.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        w.read_exact(&mut buf).await.unwrap();
        assert_eq!(a.moved(), 1);
        a.stamp_head(Instant::now());
        assert!(a.head_began().is_some(), "bytes of a head were read");
        drop(a.begin());
        assert!(a.releasable());
        // fill the pipe: the write that cannot proceed marks the connection busy
        w.write_all(&[0u8; 8]).await.unwrap();
        let blocked = futures_util::poll!(Box::pin(w.write(&[1u8])));
        assert!(blocked.is_pending());
        assert!(!a.releasable(), "hyper may hold unsent bytes");
        let mut sink = [0u8; 8];
        client.read_exact(&mut sink).await.unwrap();
        w.write_all(&[1u8]).await.unwrap();
        assert!(a.releasable());
        assert!(a.moved() >= 3);
    }
}
