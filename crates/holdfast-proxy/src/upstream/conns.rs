//! The connection pool of one origin server. Idle HTTP/1.1 connections are kept per worker
//! thread (no cross-thread wake-ups, uncontended locks), bounded by `max_idle_per_server` and
//! `idle_timeout`; an HTTP/2 connection is shared per worker. A connection goes back to the
//! idle list only after a response body arrived whole (`OriginHook::reuse`). The locks here
//! are held for a push or a pop, never across an `.await`.

use crate::body::RequestBody;
use holdfast_common::lock;
use hyper::client::conn::{http1, http2};
use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

thread_local! {
    static WORKER_SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Called once by each worker thread so servers can keep per-worker idle lists.
pub(crate) fn set_worker_slot(slot: usize) {
    WORKER_SLOT.with(|s| s.set(slot));
}

/// A connection ready to carry one request.
pub(crate) enum Conn {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Conn {
    /// The connection to hand back once the response body is whole: HTTP/1.1 only (an
    /// HTTP/2 connection stays shared in its worker's slot).
    pub fn reusable(self) -> Option<http1::SendRequest<RequestBody>> {
        match self {
            Conn::H1(sender) => Some(sender),
            Conn::H2(_) => None,
        }
    }
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl Idle {
    /// Idle for longer than `limit` at `now`: to be closed, not handed out.
    fn expired(&self, now: Instant, limit: Duration) -> bool {
        now.saturating_duration_since(self.since) > limit
    }
}

/// One worker's connections to a server.
#[derive(Default)]
struct WorkerConns {
    idle: Vec<Idle>,
    h2: Option<http2::SendRequest<RequestBody>>,
}

/// A server's idle connections, one list per worker thread.
pub(crate) struct IdleConns {
    workers: Box<[Mutex<WorkerConns>]>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl IdleConns {
    pub fn new(workers: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        IdleConns {
            workers: (0..workers.max(1))
                .map(|_| Mutex::new(WorkerConns::default()))
                .collect(),
            max_idle,
            idle_timeout,
        }
    }

    fn mine(&self) -> Option<&Mutex<WorkerConns>> {
        let i = WORKER_SLOT.with(Cell::get);
        self.workers.get(i % self.workers.len().max(1))
    }

    /// An idle HTTP/1.1 connection of this worker, or the worker's HTTP/2 connection.
    pub fn checkout(&self) -> Option<Conn> {
        let mut mine = lock(self.mine()?);
        if let Some(h2) = &mine.h2 {
            if !h2.is_closed() {
                return Some(Conn::H2(h2.clone()));
            }
            mine.h2 = None;
        }
        let now = Instant::now();
        while let Some(idle) = mine.idle.pop() {
            if !idle.expired(now, self.idle_timeout) && !idle.sender.is_closed() {
                return Some(Conn::H1(idle.sender));
            }
        }
        None
    }

    /// Keep a new HTTP/2 connection for this worker's later requests.
    pub fn keep_h2(&self, sender: &http2::SendRequest<RequestBody>) {
        if let Some(mine) = self.mine() {
            lock(mine).h2 = Some(sender.clone());
        }
    }

    /// Keep an HTTP/1.1 connection whose response ended, if it is open and there is room.
    pub fn put(&self, sender: http1::SendRequest<RequestBody>) {
        self.put_at(sender, Instant::now());
    }

    /// `put` at `now`. The worker's list is in the order connections came back, so those idle
    /// longer than `idle_timeout` are at its front: they are closed here. (`checkout` takes
    /// from the back, so under steady traffic it would never reach them.)
    fn put_at(&self, sender: http1::SendRequest<RequestBody>, now: Instant) {
        if sender.is_closed() {
            return;
        }
        if let Some(mine) = self.mine() {
            let mut mine = lock(mine);
            let expired = mine
                .idle
                .iter()
                .take_while(|idle| idle.expired(now, self.idle_timeout))
                .count();
            mine.idle.drain(..expired);
            if mine.idle.len() < self.max_idle {
                mine.idle.push(Idle { sender, since: now });
            }
        }
    }

    /// Idle connections over all workers (for `/status`).
    pub fn count(&self) -> usize {
        self.workers.iter().map(|w| lock(w).idle.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncReadExt;

    /// An open HTTP/1.1 sender over an in-memory pipe; the peer half is returned to keep it open.
    async fn sender() -> (http1::SendRequest<RequestBody>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (sender, conn) = http1::handshake(TokioIo::new(ours)).await.unwrap();
        tokio::spawn(conn);
        (sender, theirs)
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_by_its_worker_only() {
        let conns = IdleConns::new(2, 4, Duration::from_secs(60));
        set_worker_slot(0);
        let (s, _peer) = sender().await;
        conns.put(s);
        assert_eq!(conns.count(), 1);
        set_worker_slot(1);
        assert!(conns.checkout().is_none(), "another worker's list is empty");
        set_worker_slot(0);
        assert!(matches!(conns.checkout(), Some(Conn::H1(_))));
        assert!(conns.checkout().is_none(), "taken out of the list");
    }

    #[tokio::test]
    async fn at_most_max_idle_are_kept() {
        set_worker_slot(0);
        let conns = IdleConns::new(1, 2, Duration::from_secs(60));
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (s, peer) = sender().await;
            peers.push(peer);
            conns.put(s);
        }
        assert_eq!(conns.count(), 2);
    }

    #[tokio::test]
    async fn a_closed_connection_is_neither_kept_nor_handed_out() {
        set_worker_slot(0);
        let conns = IdleConns::new(1, 4, Duration::from_secs(60));
        let (s, peer) = sender().await;
        conns.put(s);
        drop(peer);
        // Bounded polling: the connection task notices the closed pipe.
        let mut out = conns.checkout();
        for _ in 0..1000 {
            if out.is_none() {
                break;
            }
            if let Some(Conn::H1(s)) = out.take() {
                conns.put(s);
            }
            tokio::task::yield_now().await;
            out = conns.checkout();
        }
        assert!(out.is_none(), "a closed connection was handed out");
        assert_eq!(conns.count(), 0);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed_when_others_come_back() {
        set_worker_slot(0);
        let conns = IdleConns::new(1, 2, Duration::from_secs(60));
        let start = Instant::now();
        let (old, mut p1) = sender().await;
        let (newer, _p2) = sender().await;
        let (latest, _p3) = sender().await;
        conns.put_at(old, start);
        conns.put_at(newer, start + Duration::from_secs(30));
        assert_eq!(conns.count(), 2);
        conns.put_at(latest, start + Duration::from_secs(61));
        assert_eq!(
            conns.count(),
            2,
            "the one idle past 60 s made room for the latest"
        );
        // The expired connection was closed: its origin side reads the end of the stream.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), p1.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the connection idle past the timeout is closed: {read:?}"
        );
        assert!(conns.checkout().is_some() && conns.checkout().is_some());
        assert!(conns.checkout().is_none());
    }
}
