//! One load at a time: each outcome, each rejection reason, and that nothing but an applied
//! file ever changes the active value.

use crate::support::{active_version, list, reason, Env, List, Panicky, CAPACITY};
use holdfast_artifact::{Artifact, ArtifactKind, ArtifactOptions, LoadOutcome, Reason, SourceKind};

#[test]
fn applied_then_unchanged() {
    let env = Env::new();
    env.write(list(1, 3));
    let a = env.artifact();
    assert!(a.current().is_none());
    assert_eq!(a.start(), LoadOutcome::Applied { version: 1 });
    {
        let active = a.current();
        let active = active.as_ref().unwrap();
        assert_eq!(active.version, 1);
        assert_eq!(active.value.names, ["i0", "i1", "i2"]);
        assert_eq!(active.source, SourceKind::File);
        assert_eq!(
            active.sha256,
            holdfast_artifact::sha256_hex(list(1, 3).as_bytes())
        );
    }
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    // Rewritten with the same bytes: still unchanged.
    env.write(list(1, 3));
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    env.write(list(2, 4));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 2 });
    assert_eq!(active_version(&a), 2);
    assert_eq!(a.path(), env.path);

    let status = a.status();
    assert_eq!(status.kind, "test-list");
    assert_eq!(status.loads, 2);
    assert_eq!(status.rejections, 0);
    assert!(status.last_rejection.is_none());
    assert_eq!(status.active.as_ref().unwrap().version, 2);
    assert_eq!(env.loads("applied"), 2);
    assert_eq!(env.loads("unchanged"), 2);
    assert_eq!(env.loads("rejected"), 0);
}

#[test]
fn only_newer_versions_apply() {
    let env = Env::new();
    env.write(list(5, 3));
    let a = env.artifact();
    a.start();
    // Same version, other content.
    env.write(list(5, 4));
    match a.reload() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::NotNewer);
            assert_eq!(r.version, Some(5));
            assert!(r.detail.contains("active version 5"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    // Older.
    env.write(list(4, 3));
    assert_eq!(reason(a.reload()), Reason::NotNewer);
    assert_eq!(active_version(&a), 5);
    assert_eq!(a.current().as_ref().unwrap().value.names.len(), 3);
    assert_eq!(env.rejected(Reason::NotNewer), 2);
}

#[test]
fn a_rejected_file_is_remembered_not_parsed_again() {
    let env = Env::new();
    env.write(list(1, 3));
    let a = env.artifact();
    a.start();
    env.write(list(2, CAPACITY + 1));
    match a.reload() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::Capacity);
            assert_eq!(r.version, Some(2));
        }
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        assert_eq!(a.reload(), LoadOutcome::Unchanged);
    }
    assert_eq!(env.rejected(Reason::Capacity), 1);
    assert_eq!(env.loads("rejected"), 1);
    assert_eq!(env.loads("unchanged"), 3);
    let status = a.status();
    assert_eq!(status.rejections, 1);
    let last = status.last_rejection.unwrap();
    assert_eq!(last.reason, "capacity");
    assert_eq!(last.version, Some(2));
    assert!(last.detail.contains("room for 8"), "{}", last.detail);
    assert!(humantime::parse_rfc3339(&last.at).is_ok(), "{}", last.at);
    assert_eq!(active_version(&a), 1);

    // Good again, then the same bad bytes again: still remembered.
    env.write(list(3, 3));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 3 });
    env.write(list(2, CAPACITY + 1));
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    assert_eq!(env.rejected(Reason::Capacity), 1);
}

#[test]
fn each_bad_file_is_rejected_with_its_reason_and_the_active_value_stays() {
    let env = Env::new();
    env.write(list(1, 3));
    let a = env.artifact();
    a.start();
    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        (
            "truncated",
            list(2, 3).as_bytes()[..20].to_vec(),
            Reason::Parse,
        ),
        ("empty", Vec::new(), Reason::Parse),
        ("not json", b"version = 2".to_vec(), Reason::Parse),
        (
            "invalid utf-8",
            b"{\"version\": 2, \"items\": [{\"name\": \"\xff\"}]}".to_vec(),
            Reason::NotUtf8,
        ),
        (
            "extra top-level field",
            br#"{"version": 2, "items": [{"name": "a"}], "bias": 1}"#.to_vec(),
            Reason::Schema,
        ),
        (
            "entry with one field more",
            br#"{"version": 2, "items": [{"name": "a", "weight": 1}]}"#.to_vec(),
            Reason::Schema,
        ),
        (
            "entry with one field fewer",
            br#"{"version": 2, "items": [{}]}"#.to_vec(),
            Reason::Schema,
        ),
        (
            "missing version",
            br#"{"items": [{"name": "a"}]}"#.to_vec(),
            Reason::Schema,
        ),
        (
            "wrong type",
            br#"{"version": "2", "items": [{"name": "a"}]}"#.to_vec(),
            Reason::Schema,
        ),
        (
            "over capacity",
            list(2, CAPACITY + 1).into_bytes(),
            Reason::Capacity,
        ),
        ("no items", list(2, 0).into_bytes(), Reason::Empty),
        (
            "duplicate",
            br#"{"version": 2, "items": [{"name": "a"}, {"name": "a"}]}"#.to_vec(),
            Reason::Duplicate,
        ),
        (
            "too large",
            vec![b' '; List::MAX_BYTES as usize + 1],
            Reason::TooLarge,
        ),
    ];
    let mut counts = std::collections::HashMap::new();
    for (what, bytes, expected) in &cases {
        env.write(bytes);
        let outcome = a.reload();
        assert_eq!(reason(outcome.clone()), *expected, "{what}: {outcome:?}");
        assert_eq!(active_version(&a), 1, "{what}");
        let count = counts.entry(*expected).or_insert(0u64);
        *count += 1;
        assert_eq!(env.rejected(*expected), *count, "{what}");
    }
    // The schema messages name the field.
    env.write(br#"{"version": 9, "items": [{"name": "a", "weight": 1}]}"#);
    match a.reload() {
        LoadOutcome::Rejected(r) => assert!(r.detail.contains("items[0]"), "{}", r.detail),
        other => panic!("{other:?}"),
    }
    assert_eq!(env.loads("rejected"), cases.len() as u64 + 1);
    assert_eq!(env.loads("applied"), 1);
}

#[test]
fn exactly_max_bytes_is_accepted() {
    let env = Env::new();
    let mut text = list(1, 2);
    text.push_str(&" ".repeat(List::MAX_BYTES as usize - text.len()));
    assert_eq!(text.len() as u64, List::MAX_BYTES);
    env.write(&text);
    assert_eq!(env.artifact().start(), LoadOutcome::Applied { version: 1 });
}

#[test]
fn a_huge_file_is_rejected_without_reading_it_and_remembered() {
    let env = Env::new();
    env.write(list(1, 3));
    let a = env.artifact();
    a.start();
    let big = env.dir.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(100 << 20).unwrap(); // sparse: 100 MiB of zeros
    drop(f);
    std::fs::rename(&big, &env.path).unwrap();
    match a.reload() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::TooLarge);
            assert!(r.detail.contains("4096-byte limit"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    assert_eq!(env.rejected(Reason::TooLarge), 1);
    assert_eq!(active_version(&a), 1);
}

/// A FIFO whose writer never finishes: a reader that tried to read it whole would block.
#[cfg(unix)]
#[test]
fn the_rest_of_a_too_large_file_is_never_read() {
    use std::io::Write;
    let env = Env::new();
    let status = std::process::Command::new("mkfifo")
        .arg(&env.path)
        .status()
        .unwrap();
    assert!(status.success());
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let path = env.path.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // More than the limit, then keep the pipe open until told (or 20 s).
        let _ = w.write_all(&vec![b' '; List::MAX_BYTES as usize + 100]);
        let _ = stop_rx.recv_timeout(std::time::Duration::from_secs(20));
    });
    let started = std::time::Instant::now();
    let outcome = env.artifact().start();
    let took = started.elapsed();
    stop_tx.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(reason(outcome), Reason::TooLarge);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_sharp_shrink_is_rejected_until_forced_once() {
    let env = Env::new();
    env.write(list(1, 8));
    let a = env.artifact();
    a.start();
    // 2 of 8 is 75% fewer; the default guard allows 50%.
    env.write(list(2, 2));
    match a.reload() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::Shrink);
            assert_eq!(r.version, Some(2));
            assert!(r.detail.contains("2 entries, down from 8"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    assert_eq!(active_version(&a), 1);

    a.force_next();
    assert!(a.status().force_next);
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 2 });
    assert!(!a.status().force_next);
    assert_eq!(env.rejected(Reason::Shrink), 1);

    // The force was used up: the next sharp shrink is rejected again.
    env.write(list(3, 8));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 3 });
    env.write(list(4, 3));
    assert_eq!(reason(a.reload()), Reason::Shrink);
    // 4 of 8 is exactly the limit: applied.
    env.write(list(5, 4));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 5 });
}

#[test]
fn force_before_writing_applies_the_next_file() {
    let env = Env::new();
    env.write(list(1, 8));
    let a = env.artifact();
    a.start();
    a.force_next();
    // An unchanged load does not use the force up.
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    assert!(a.status().force_next);
    env.write(list(2, 1));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 2 });
    assert!(!a.status().force_next);
}

#[test]
fn shrink_guard_off_at_100_percent() {
    let env = Env::new();
    env.write(list(1, 8));
    let a: Artifact<List> = Artifact::new(
        ArtifactOptions {
            max_shrink_percent: 100,
            ..env.options()
        },
        env.metrics.clone(),
    );
    a.start();
    env.write(list(2, 1));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 2 });
}

#[test]
fn a_missing_file_at_start_leaves_no_value() {
    let env = Env::new();
    let a: Artifact<List> = Artifact::new(ArtifactOptions::new(&env.path), env.metrics.clone());
    match a.start() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::Io);
            assert!(r.detail.contains("cannot read"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    assert!(a.current().is_none());
    let status = serde_json::to_value(a.status()).unwrap();
    assert_eq!(status["active"], serde_json::Value::Null);
    assert_eq!(status["last_rejection"]["reason"], "io");
    assert_eq!(status["last_rejection"]["version"], serde_json::Value::Null);
    // Not remembered: the file appears, the next load applies it.
    env.write(list(1, 1));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 1 });
}

#[test]
fn a_panicking_loader_is_a_rejection() {
    let env = Env::new();
    env.write("ok");
    let a: Artifact<Panicky> = Artifact::new(ArtifactOptions::new(&env.path), env.metrics.clone());
    assert_eq!(a.start(), LoadOutcome::Applied { version: 2 });
    env.write("boom");
    match a.reload() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::Parse);
            assert!(r.detail.contains("index out of range"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.current().as_ref().unwrap().value, 2);
    assert_eq!(env.metrics.rejected(Panicky::NAME, Reason::Parse), 1);
}

#[test]
fn status_serializes_for_the_admin_page() {
    let env = Env::new();
    env.write(list(7, 2));
    let a = env.artifact();
    a.start();
    env.write("{");
    a.reload();
    let v = serde_json::to_value(a.status()).unwrap();
    assert_eq!(v["kind"], "test-list");
    assert_eq!(v["path"], env.path.display().to_string());
    assert_eq!(v["active"]["version"], 7);
    assert_eq!(v["active"]["source"], "file");
    assert_eq!(v["active"]["sha256"].as_str().unwrap().len(), 64);
    assert!(humantime::parse_rfc3339(v["active"]["loaded_at"].as_str().unwrap()).is_ok());
    assert_eq!(v["last_rejection"]["reason"], "parse");
    assert_eq!(v["loads"], 1);
    assert_eq!(v["rejections"], 1);
}
