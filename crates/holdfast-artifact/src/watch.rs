//! Noticing that an artifact file changed, without a signal. Two sources feed one thread:
//! `notify` (inotify on Linux) on each file's *folder*, so a file replaced by an atomic
//! rename is seen as well as one written in place; and a poll that stats every file each
//! `poll` (size, mtime, inode) — the fallback when notify cannot start, and a safety net
//! when it misses something (network file systems, symlink swaps). Changes are debounced
//! (~50 ms, at most 500 ms behind a file that keeps changing) and the callback runs on the
//! watcher's own thread, never on a data-path thread; a panic in it is caught.

use notify::{RecursiveMode, Watcher as _};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Quiet time after the last event before the callback runs.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// A file that keeps changing is still reported this long after its first change.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// Shortest poll period (a zero `poll` would spin).
const MIN_POLL: Duration = Duration::from_millis(10);
/// Longest poll period (keeps `Instant` arithmetic far from overflow).
const MAX_POLL: Duration = Duration::from_secs(24 * 3600);
/// How long dropping a `Watcher` waits for its thread (a callback may be running).
const JOIN_WAIT: Duration = Duration::from_secs(2);

enum Msg {
    Event(notify::Result<notify::Event>),
    Stop,
}

/// Watches files; see the module documentation. Dropping it stops the thread.
pub struct Watcher {
    tx: mpsc::Sender<Msg>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
    notify: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("notify", &self.notify.is_some())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watch `paths` with notify and a poll every `poll`; `on_change` gets the path that
    /// changed (as given).
    pub fn start(
        paths: Vec<PathBuf>,
        poll: Duration,
        on_change: impl Fn(&Path) + Send + 'static,
    ) -> std::io::Result<Watcher> {
        Self::spawn(paths, poll, true, on_change)
    }

    /// Poll only, no notify: what `start` falls back to when notify cannot start.
    pub fn start_polling(
        paths: Vec<PathBuf>,
        poll: Duration,
        on_change: impl Fn(&Path) + Send + 'static,
    ) -> std::io::Result<Watcher> {
        Self::spawn(paths, poll, false, on_change)
    }

    /// Whether notify events are used (false: poll only).
    pub fn uses_notify(&self) -> bool {
        self.notify.is_some()
    }

    fn spawn(
        paths: Vec<PathBuf>,
        poll: Duration,
        use_notify: bool,
        on_change: impl Fn(&Path) + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let (tx, rx) = mpsc::channel();
        let mut files: Vec<Watched> = paths.into_iter().map(Watched::new).collect();
        let notify = if use_notify {
            start_notify(&files, tx.clone())
        } else {
            None
        };
        // The starting point, taken before the thread runs: a change made right after
        // `start` returns is a change.
        for f in &mut files {
            f.seen = fingerprint(&f.path);
        }
        let (done_tx, done) = mpsc::channel();
        let poll = poll.clamp(MIN_POLL, MAX_POLL);
        let thread = std::thread::Builder::new()
            .name("holdfast-watch".into())
            .spawn(move || {
                run(files, poll, &rx, &on_change);
                let _ = done_tx.send(());
            })?;
        Ok(Watcher {
            tx,
            done,
            thread: Some(thread),
            notify,
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        self.notify = None;
        match self.done.recv_timeout(JOIN_WAIT) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("the file watcher thread did not stop in time; leaving it");
            }
        }
    }
}

fn start_notify(files: &[Watched], tx: mpsc::Sender<Msg>) -> Option<notify::RecommendedWatcher> {
    let handler = move |event| {
        let _ = tx.send(Msg::Event(event));
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "file notifications unavailable; polling artifact files");
            return None;
        }
    };
    let dirs: BTreeSet<&PathBuf> = files.iter().map(|f| &f.dir).collect();
    let mut watching = 0;
    for dir in dirs {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => watching += 1,
            Err(e) => tracing::warn!(
                folder = %dir.display(),
                error = %e,
                "cannot watch the folder; its files are polled"
            ),
        }
    }
    (watching > 0).then_some(watcher)
}

/// What the poll compares. `None`: the file is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, device) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.dev())
    };
    #[cfg(not(unix))]
    let (inode, device) = (0, 0);
    Some(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
        device,
    })
}

struct Watched {
    path: PathBuf,
    /// The folder watched with notify (absolute) and the file's name in it.
    dir: PathBuf,
    name: Option<OsString>,
    seen: Option<Fingerprint>,
    pending: Option<Pending>,
}

#[derive(Clone, Copy)]
struct Pending {
    first: Instant,
    due: Instant,
    /// An event named the file: report it even if the fingerprint did not change (two
    /// writes of the same size within the file system's timestamp granularity).
    named: bool,
}

impl Watched {
    fn new(path: PathBuf) -> Self {
        let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let dir = absolute
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let name = absolute.file_name().map(OsString::from);
        Watched {
            path,
            dir,
            name,
            seen: None,
            pending: None,
        }
    }

    fn mark(&mut self, now: Instant, named: bool) {
        let first = self.pending.map_or(now, |p| p.first);
        let named = named || self.pending.is_some_and(|p| p.named);
        self.pending = Some(Pending {
            first,
            due: (now + DEBOUNCE).min(first + MAX_DELAY),
            named,
        });
    }
}

fn run(
    mut files: Vec<Watched>,
    poll: Duration,
    rx: &mpsc::Receiver<Msg>,
    on_change: &dyn Fn(&Path),
) {
    let mut next_poll = Instant::now() + poll;
    loop {
        let wake = files
            .iter()
            .filter_map(|f| f.pending.map(|p| p.due))
            .fold(next_poll, Instant::min);
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Msg::Event(event)) => on_event(&mut files, event, Instant::now()),
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if now >= next_poll {
            for f in &mut files {
                if fingerprint(&f.path) != f.seen {
                    f.mark(now, false);
                }
            }
            next_poll = now + poll;
        }
        for f in &mut files {
            let Some(pending) = f.pending else { continue };
            if pending.due > now {
                continue;
            }
            f.pending = None;
            let current = fingerprint(&f.path);
            let changed = current != f.seen;
            f.seen = current;
            if changed || pending.named {
                let path = f.path.as_path();
                if catch_unwind(AssertUnwindSafe(|| on_change(path))).is_err() {
                    tracing::error!(path = %path.display(), "the file change handler panicked");
                }
            }
        }
    }
}

fn on_event(files: &mut [Watched], event: notify::Result<notify::Event>, now: Instant) {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            // Lost track (queue overflow, watch removed): compare every file.
            tracing::debug!(error = %e, "file notification error; checking every file");
            for f in files.iter_mut() {
                f.mark(now, false);
            }
            return;
        }
    };
    if event.need_rescan() || event.paths.is_empty() {
        for f in files.iter_mut() {
            f.mark(now, false);
        }
        return;
    }
    // Reads (our own included) are not changes; a close after writing is.
    use notify::event::{AccessKind, AccessMode, EventKind};
    if matches!(event.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) {
        return;
    }
    for p in &event.paths {
        for f in files.iter_mut() {
            if p.parent() == Some(f.dir.as_path()) {
                // Our own file named: report it. Another entry of the folder (a symlink
                // swapped, a temporary file renamed): report ours only if it changed.
                let named = f.name.as_deref() == p.file_name();
                f.mark(now, named);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_is_bounded() {
        let mut w = Watched::new(PathBuf::from("/tmp/x/a.json"));
        assert_eq!(w.dir, Path::new("/tmp/x"));
        let t0 = Instant::now();
        w.mark(t0, false);
        let mut last = t0;
        for i in 1..100 {
            last = t0 + Duration::from_millis(i * 10);
            w.mark(last, i == 3);
        }
        let p = w.pending.unwrap();
        assert!(p.named);
        assert_eq!(p.first, t0);
        assert_eq!(p.due, t0 + MAX_DELAY);
        assert!(p.due < last + DEBOUNCE);
    }

    #[test]
    fn fingerprint_of_missing_file_is_none() {
        assert!(fingerprint(Path::new("/nonexistent/holdfast/a.json")).is_none());
    }
}
