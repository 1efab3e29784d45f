//! The JSON access log. Lines are formatted on the worker thread into a thread-local buffer
//! (no lock, no allocation per line once the buffer is warm) and handed to a writer thread in
//! batches; if the writer falls behind, batches are dropped and counted rather than slowing
//! the data path. A thread's buffer is handed over when it is full, and `FLUSH_AFTER` after
//! its first line by the thread's `flusher`, which sleeps while nothing is logged.

use crate::ctx::RequestCtx;
use prometheus::IntCounter;
use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Flush a worker's buffer once it holds this much.
const BATCH_BYTES: usize = 32 << 10;
/// Batches queued for the writer thread before new ones are dropped.
const QUEUE_BATCHES: usize = 256;
/// A line waits at most this long in its thread's buffer.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

enum Msg {
    Lines(Vec<u8>),
    Reopen(AccessLogTarget, SyncSender<std::io::Result<()>>),
    Flush(SyncSender<()>),
}

pub struct AccessLogWriter {
    id: usize,
    tx: SyncSender<Msg>,
    dropped: IntCounter,
}

struct LocalBuf {
    owner: usize,
    tx: Option<SyncSender<Msg>>,
    bytes: Vec<u8>,
    lines: u64,
    /// This thread's `flusher`, woken when a line lands in the empty buffer.
    flusher: Option<Arc<Notify>>,
}

impl LocalBuf {
    /// A line landed in the empty buffer: wake the flusher (a permit is kept if it is busy, so
    /// the line is flushed on its next round).
    fn wake_flusher(&self) {
        if let Some(written) = &self.flusher {
            written.notify_one();
        }
    }
}

thread_local! {
    static LOCAL: RefCell<LocalBuf> = const {
        RefCell::new(LocalBuf { owner: 0, tx: None, bytes: Vec::new(), lines: 0, flusher: None })
    };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// The task that hands the calling thread's buffered lines to the writer `FLUSH_AFTER` after
/// the first of them, for a thread that serves requests (a worker, the HTTP/3 thread): spawn
/// it on that thread's runtime. It is registered when called, so no line is missed before its
/// first poll. It sleeps while nothing is logged: a timer would wake every idle worker ten
/// times a second. `current` is the access log in force (a reload may change it).
pub(crate) fn flusher(
    current: impl Fn() -> Option<Arc<AccessLogWriter>>,
) -> impl std::future::Future<Output = ()> {
    let written = Arc::new(Notify::new());
    LOCAL.with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            local.flusher = Some(Arc::clone(&written));
        }
    });
    async move {
        loop {
            written.notified().await;
            tokio::time::sleep(FLUSH_AFTER).await;
            if let Some(log) = current() {
                log.flush_local();
            }
        }
    }
}

fn open(target: &AccessLogTarget) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        AccessLogTarget::Stdout => Box::new(std::io::stdout()),
        AccessLogTarget::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    })
}

fn run(mut out: Box<dyn Write + Send>, rx: Receiver<Msg>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Lines(bytes) => {
                if let Err(e) = out.write_all(&bytes) {
                    tracing::warn!(error = %e, "access log write failed");
                }
            }
            Msg::Reopen(target, reply) => {
                let _ = out.flush();
                let result = open(&target).map(|o| out = o);
                let _ = reply.send(result);
            }
            Msg::Flush(reply) => {
                let _ = out.flush();
                let _ = reply.send(());
            }
        }
    }
    let _ = out.flush();
}

impl AccessLogWriter {
    /// Open the target and start the writer thread.
    pub fn start(target: &AccessLogTarget, dropped: IntCounter) -> std::io::Result<Self> {
        let out = open(target)?;
        let (tx, rx) = sync_channel(QUEUE_BATCHES);
        std::thread::Builder::new()
            .name("holdfast-access-log".into())
            .spawn(move || run(out, rx))?;
        Ok(AccessLogWriter {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            dropped,
        })
    }

    /// Switch to (or re-open, e.g. after rotation) a target; the old one stays on error.
    pub fn reopen(&self, target: &AccessLogTarget) -> std::io::Result<()> {
        let (reply, wait) = sync_channel(1);
        self.tx
            .send(Msg::Reopen(target.clone(), reply))
            .map_err(|_| std::io::Error::other("access log writer stopped"))?;
        wait.recv()
            .map_err(|_| std::io::Error::other("access log writer stopped"))?
    }

    /// Wait until everything handed to the writer thread so far is written out.
    pub fn sync(&self) {
        let (reply, wait) = sync_channel(1);
        if self.tx.send(Msg::Flush(reply)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
    }

    pub(crate) fn record(
        &self,
        ctx: &RequestCtx,
        route: &str,
        bytes: u64,
        elapsed: Duration,
        failed: bool,
    ) {
        LOCAL.with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                return;
            };
            if local.owner != self.id {
                self.send_batch(&mut local);
                local.owner = self.id;
                local.tx = Some(self.tx.clone());
            }
            let first = local.bytes.is_empty();
            write_line(&mut local.bytes, ctx, route, bytes, elapsed, failed);
            local.lines += 1;
            if local.bytes.len() >= BATCH_BYTES {
                self.send_batch(&mut local);
            } else if first {
                local.wake_flusher();
            }
        });
    }

    /// Hand this thread's buffered lines to the writer (its `flusher` calls it after the first
    /// line, and a thread calls it once more as it stops).
    pub fn flush_local(&self) {
        LOCAL.with(|local| {
            if let Ok(mut local) = local.try_borrow_mut() {
                self.send_batch(&mut local);
            }
        });
    }

    fn send_batch(&self, local: &mut LocalBuf) {
        if local.bytes.is_empty() {
            return;
        }
        let Some(tx) = &local.tx else {
            local.bytes.clear();
            return;
        };
        let batch = std::mem::replace(&mut local.bytes, Vec::with_capacity(BATCH_BYTES + 1024));
        let lines = std::mem::take(&mut local.lines);
        match tx.try_send(Msg::Lines(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc_by(lines);
            }
        }
    }
}

/// A JSON string; plain ASCII without quotes or backslashes (the usual case) is copied as is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let plain = s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// A JSON string from bytes the caller knows need no escaping.
fn json_plain(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

/// Integers through `itoa`: `write!` costs hundreds of instructions per call.
fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` (below 1000) as exactly three digits.
fn write_3digits(out: &mut Vec<u8>, n: u32) {
    let n = n % 1000;
    out.extend_from_slice(&[
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

thread_local! {
    /// `YYYY-MM-DDTHH:MM:SS` of the last second formatted on this thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// RFC 3339 with milliseconds; the calendar part is formatted once per second per thread.
fn write_time(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let Ok(mut cached) = cell.try_borrow_mut() else {
            return;
        };
        if cached.0 != secs {
            let full = humantime::format_rfc3339_seconds(at).to_string();
            cached.1 = full.trim_end_matches('Z').to_string();
            cached.0 = secs;
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
    out.push(b'.');
    write_3digits(out, since.subsec_millis());
    out.push(b'Z');
}

/// Milliseconds with three decimals, from whole microseconds (no float formatting).
fn write_ms(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    write_int(out, micros / 1000);
    out.push(b'.');
    write_3digits(out, (micros % 1000) as u32);
}

/// The protocol as the access log and metrics name it.
pub(crate) fn protocol(version: http::Version) -> &'static [u8] {
    match version {
        http::Version::HTTP_09 => b"HTTP/0.9",
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_2 => b"HTTP/2",
        http::Version::HTTP_3 => b"HTTP/3",
        _ => b"HTTP/1.1",
    }
}

fn write_line(
    out: &mut Vec<u8>,
    ctx: &RequestCtx,
    route: &str,
    bytes: u64,
    elapsed: Duration,
    failed: bool,
) {
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, SystemTime::now() - elapsed);
    out.extend_from_slice(b"\",\"request_id\":");
    // Request ids are `[A-Za-z0-9._:-]` (checked or generated): nothing to escape.
    json_plain(out, ctx.request_id.as_bytes());
    // The client IP was formatted once for the connection; Display for SocketAddr is slow.
    out.extend_from_slice(b",\"client\":\"");
    let v6 = ctx.conn.client.is_ipv6();
    if v6 {
        out.push(b'[');
    }
    out.extend_from_slice(ctx.conn.client_ip.as_bytes());
    if v6 {
        out.push(b']');
    }
    out.push(b':');
    write_int(out, ctx.conn.client.port());
    out.extend_from_slice(b"\",\"method\":");
    // A method is an HTTP token: nothing to escape.
    json_plain(out, ctx.method.as_str().as_bytes());
    out.extend_from_slice(b",\"protocol\":");
    json_plain(out, protocol(ctx.version));
    out.extend_from_slice(b",\"host\":");
    json_str(
        out,
        ctx.host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-"),
    );
    out.extend_from_slice(b",\"path\":");
    json_str(out, ctx.path.as_str());
    out.extend_from_slice(b",\"status\":");
    write_int(out, ctx.status);
    out.extend_from_slice(b",\"route\":");
    json_str(out, route);
    match &ctx.upstream.server {
        Some(s) => {
            out.extend_from_slice(b",\"upstream\":");
            // An IP socket address: nothing to escape.
            json_plain(out, s.as_bytes());
        }
        None => out.extend_from_slice(b",\"upstream\":null"),
    }
    out.extend_from_slice(b",\"bytes\":");
    write_int(out, bytes);
    out.extend_from_slice(b",\"duration_ms\":");
    write_ms(out, elapsed);
    match ctx.upstream.duration {
        Some(d) => {
            out.extend_from_slice(b",\"upstream_ms\":");
            write_ms(out, d);
        }
        None => out.extend_from_slice(b",\"upstream_ms\":null"),
    }
    if let Some(result) = ctx.cache.result {
        out.extend_from_slice(b",\"cache\":");
        json_plain(out, result.as_str().as_bytes());
    }
    if failed {
        out.extend_from_slice(b",\"body_error\":true");
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `record` does for a first line, without a line.
    fn wake_flusher() {
        LOCAL.with(|local| local.borrow().wake_flusher());
    }

    /// The flusher runs when a line lands in an empty buffer (and only then: an idle worker
    /// is not woken; `strace -c` on an idle edge shows it, see bench/README.md).
    #[test]
    fn a_first_line_wakes_the_threads_flusher() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let rounds = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&rounds);
            let task = tokio::spawn(flusher(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                None
            }));
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            assert_eq!(rounds.load(Ordering::SeqCst), 0, "nothing logged, no round");
            wake_flusher();
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while rounds.load(Ordering::SeqCst) == 0 {
                assert!(std::time::Instant::now() < until, "the flusher never ran");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(rounds.load(Ordering::SeqCst), 1, "one wake, one round");
            task.abort();
        });
        // Another thread's flusher is not this one's: a wake here reaches nothing.
        std::thread::spawn(wake_flusher).join().unwrap();
    }

    #[test]
    fn formats_time_with_millis_and_caches_the_second() {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let mut out = Vec::new();
        write_time(&mut out, at);
        write_time(&mut out, at + Duration::from_millis(5));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2025-11-24T16:00:00.123Z2025-11-24T16:00:00.128Z"
        );
    }

    #[test]
    fn formats_milliseconds_from_micros() {
        let mut out = Vec::new();
        write_ms(&mut out, Duration::from_micros(1_234_567));
        out.push(b' ');
        write_ms(&mut out, Duration::from_micros(7));
        assert_eq!(String::from_utf8(out).unwrap(), "1234.567 0.007");
    }
}
