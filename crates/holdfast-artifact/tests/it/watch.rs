//! The watcher notices writes in place and atomic renames (notify, and the poll alone),
//! calls back on its own thread, and stops when dropped. Every wait is a channel receive
//! with a deadline; nothing sleeps to synchronise.

use crate::support::{active_version, list, Env};
use holdfast_artifact::{LoadOutcome, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// "A changed file is picked up within 2 seconds without any signal."
const DEADLINE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_secs(1);

/// With notify, a poll so slow that only notify can meet the deadline.
const SLOW_POLL: Duration = Duration::from_secs(3600);

fn channel_watcher(paths: Vec<PathBuf>, poll_only: bool) -> (Watcher, Receiver<PathBuf>) {
    let (tx, rx) = mpsc::channel();
    let callback = move |p: &Path| {
        let _ = tx.send(p.to_path_buf());
    };
    let w = if poll_only {
        Watcher::start_polling(paths, POLL, callback)
    } else {
        Watcher::start(paths, SLOW_POLL, callback)
    }
    .unwrap();
    (w, rx)
}

/// The first callback within the deadline; later ones (one change can be several events)
/// are drained.
#[track_caller]
fn changed(rx: &Receiver<PathBuf>) -> PathBuf {
    let started = Instant::now();
    let p = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("no change seen within {DEADLINE:?}: {e:?}"));
    assert!(started.elapsed() < DEADLINE);
    while rx.try_recv().is_ok() {}
    p
}

fn write_atomically(path: &Path, bytes: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn notify_sees_a_write_in_place_and_an_atomic_rename() {
    let env = Env::new();
    env.write(list(1, 1));
    let (w, rx) = channel_watcher(vec![env.path.clone()], false);
    assert!(w.uses_notify());
    env.write(list(2, 2));
    assert_eq!(changed(&rx), env.path);
    write_atomically(&env.path, &list(3, 3));
    assert_eq!(changed(&rx), env.path);
    // A file created where there was none.
    let other = env.dir.path().join("new.json");
    let (_w2, rx2) = channel_watcher(vec![other.clone()], false);
    std::fs::write(&other, "x").unwrap();
    assert_eq!(changed(&rx2), other);
}

#[test]
fn poll_alone_sees_a_write_and_an_atomic_rename() {
    let env = Env::new();
    env.write(list(1, 1));
    let (w, rx) = channel_watcher(vec![env.path.clone()], true);
    assert!(!w.uses_notify());
    env.write(list(2, 2));
    assert_eq!(changed(&rx), env.path);
    // Same length as before, new inode.
    write_atomically(&env.path, &list(3, 2));
    assert_eq!(changed(&rx), env.path);
    std::fs::remove_file(&env.path).unwrap();
    assert_eq!(changed(&rx), env.path);
}

#[test]
fn a_missing_folder_falls_back_to_polling() {
    let env = Env::new();
    let dir = env.dir.path().join("later");
    let path = dir.join("list.json");
    let (tx, rx) = mpsc::channel();
    let w = Watcher::start(vec![path.clone()], POLL, move |p: &Path| {
        let _ = tx.send(p.to_path_buf());
    })
    .unwrap();
    assert!(!w.uses_notify());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&path, "x").unwrap();
    assert_eq!(changed(&rx), path);
}

#[test]
fn other_files_in_the_folder_are_not_reported() {
    let env = Env::new();
    env.write(list(1, 1));
    let (_w, rx) = channel_watcher(vec![env.path.clone()], false);
    std::fs::write(env.dir.path().join("unrelated.txt"), "x").unwrap();
    // Reading the watched file is not a change either.
    let _ = std::fs::read(&env.path).unwrap();
    // A change made afterwards is the first thing reported.
    env.write(list(2, 2));
    assert_eq!(changed(&rx), env.path);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );
}

#[test]
fn drop_stops_the_thread() {
    let env = Env::new();
    env.write(list(1, 1));
    let (w, rx) = channel_watcher(vec![env.path.clone()], false);
    drop(w);
    // The callback (and its sender) went with the thread.
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn a_panicking_callback_does_not_stop_the_watcher() {
    let env = Env::new();
    env.write(list(1, 1));
    let (tx, rx) = mpsc::channel();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let _w = Watcher::start(vec![env.path.clone()], POLL, move |p: &Path| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            panic!("handler bug");
        }
        let _ = tx.send(p.to_path_buf());
    })
    .unwrap();
    env.write(list(2, 2));
    // The first callback panicked; wait until it has run, then change again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        env.write(format!("{} ", list(3, 3)));
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn end_to_end_with_an_artifact() {
    let env = Env::new();
    env.write(list(1, 1));
    let a = Arc::new(env.artifact());
    a.start();
    let (tx, rx) = mpsc::channel();
    let watched = a.clone();
    let _w = Watcher::start(a.watch_paths(), POLL, move |_: &Path| {
        let _ = tx.send(watched.reload());
    })
    .unwrap();
    write_atomically(&env.path, &list(2, 2));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(LoadOutcome::Applied { version: 2 }) => break,
            Ok(_) => {}
            Err(e) => panic!("not applied within {DEADLINE:?}: {e:?}"),
        }
    }
    assert_eq!(active_version(&a), 2);
}
