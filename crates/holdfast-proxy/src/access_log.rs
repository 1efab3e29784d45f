//! The JSON access log. Lines are formatted on the worker thread into a thread-local buffer
//! (no lock, no allocation per line once the buffer is warm) and handed to a writer thread in
//! batches; if the writer falls behind, batches are dropped and counted rather than slowing
//! the data path.

use crate::ctx::RequestCtx;
use prometheus::IntCounter;
use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Flush a worker's buffer once it holds this much.
const BATCH_BYTES: usize = 32 << 10;
/// Batches queued for the writer thread before new ones are dropped.
const QUEUE_BATCHES: usize = 256;

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
}

thread_local! {
    static LOCAL: RefCell<LocalBuf> = const {
        RefCell::new(LocalBuf { owner: 0, tx: None, bytes: Vec::new(), lines: 0 })
    };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

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
            write_line(&mut local.bytes, ctx, route, bytes, elapsed, failed);
            local.lines += 1;
            if local.bytes.len() >= BATCH_BYTES {
                self.send_batch(&mut local);
            }
        });
    }

    /// Hand this thread's buffered lines to the writer (workers call it on a short timer).
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

fn json_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
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
    let time = humantime::format_rfc3339_millis(SystemTime::now() - elapsed);
    let _ = write!(out, "{{\"time\":\"{time}\",\"request_id\":");
    json_str(out, ctx.request_id.to_str().unwrap_or("-"));
    let _ = write!(out, ",\"client\":\"{}\",\"method\":", ctx.conn.client);
    json_str(out, ctx.method.as_str());
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
    let _ = write!(out, ",\"status\":{},\"route\":", ctx.status);
    json_str(out, route);
    match ctx.upstream.server {
        Some(s) => {
            let _ = write!(out, ",\"upstream\":\"{s}\"");
        }
        None => out.extend_from_slice(b",\"upstream\":null"),
    }
    let _ = write!(
        out,
        ",\"bytes\":{bytes},\"duration_ms\":{:.3}",
        elapsed.as_secs_f64() * 1000.0
    );
    match ctx.upstream.duration {
        Some(d) => {
            let _ = write!(out, ",\"upstream_ms\":{:.3}", d.as_secs_f64() * 1000.0);
        }
        None => out.extend_from_slice(b",\"upstream_ms\":null"),
    }
    if failed {
        out.extend_from_slice(b",\"body_error\":true");
    }
    out.extend_from_slice(b"}\n");
}
