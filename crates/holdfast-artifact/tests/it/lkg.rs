//! The last-known-good copy: written after each applied file (exact bytes), never touched by
//! a rejection, and what a restart with a bad file on disk comes up on.

use crate::support::{active_version, list, reason, Env, List, CAPACITY};
use holdfast_artifact::{Artifact, ArtifactOptions, LoadOutcome, Reason, SourceKind};
use std::fs;

#[test]
fn written_after_each_apply_with_the_exact_bytes() {
    let env = Env::new();
    let a = env.artifact();
    assert!(!env.lkg().exists());
    env.write(list(1, 3));
    a.start();
    assert_eq!(fs::read(env.lkg()).unwrap(), list(1, 3).as_bytes());
    env.write(list(2, 4));
    a.reload();
    assert_eq!(fs::read(env.lkg()).unwrap(), list(2, 4).as_bytes());
    assert_eq!(
        env.lkg(),
        env.state.join("test-list.lkg"),
        "state_dir/<NAME>.lkg"
    );
    // Nothing else is left in the state folder (no temporary files).
    assert_eq!(fs::read_dir(&env.state).unwrap().count(), 1);
}

#[test]
fn a_rejection_never_touches_it() {
    let env = Env::new();
    env.write(list(1, 3));
    let a = env.artifact();
    a.start();
    let before = fs::metadata(env.lkg()).unwrap();
    for bad in [
        list(2, CAPACITY + 1),
        list(1, 2),
        "{".to_string(),
        String::new(),
    ] {
        env.write(&bad);
        assert!(matches!(a.reload(), LoadOutcome::Rejected(_)), "{bad}");
    }
    let after = fs::metadata(env.lkg()).unwrap();
    assert_eq!(fs::read(env.lkg()).unwrap(), list(1, 3).as_bytes());
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino());
    }
}

#[test]
fn a_restart_with_a_bad_file_comes_up_on_it() {
    let env = Env::new();
    env.write(list(3, 4));
    env.artifact().start();
    // The generator breaks; the process restarts.
    env.write(list(4, CAPACITY * 2));
    let a = env.artifact();
    match a.start() {
        LoadOutcome::Rejected(r) => assert_eq!(r.reason, Reason::Capacity),
        other => panic!("{other:?}"),
    }
    {
        let active = a.current();
        let active = active.as_ref().unwrap();
        assert_eq!(active.version, 3);
        assert_eq!(active.source, SourceKind::Lkg);
        assert_eq!(active.value.names.len(), 4);
    }
    let status = serde_json::to_value(a.status()).unwrap();
    assert_eq!(status["active"]["source"], "lkg");
    assert_eq!(status["active"]["version"], 3);
    assert_eq!(status["last_rejection"]["reason"], "capacity");
    assert_eq!(status["last_rejection"]["version"], 4);
    assert_eq!(env.metrics.version("test-list"), 3);
    assert_eq!(env.rejected(Reason::Capacity), 1);

    // The same bad file again: remembered. A fixed, newer one: applied from the file.
    assert_eq!(a.reload(), LoadOutcome::Unchanged);
    env.write(list(5, 4));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 5 });
    assert_eq!(a.current().as_ref().unwrap().source, SourceKind::File);
    assert_eq!(fs::read(env.lkg()).unwrap(), list(5, 4).as_bytes());
}

#[test]
fn a_restart_with_the_file_missing_comes_up_on_it() {
    let env = Env::new();
    env.write(list(2, 2));
    env.artifact().start();
    fs::remove_file(&env.path).unwrap();
    let a = env.artifact();
    assert_eq!(reason(a.start()), Reason::Io);
    assert_eq!(active_version(&a), 2);
    assert_eq!(a.current().as_ref().unwrap().source, SourceKind::Lkg);
}

#[test]
fn an_older_file_than_the_lkg_is_not_newer_after_starting_on_it() {
    let env = Env::new();
    env.write(list(3, 2));
    env.artifact().start();
    env.write("garbage");
    let a = env.artifact();
    a.start();
    assert_eq!(active_version(&a), 3);
    env.write(list(2, 2));
    assert_eq!(reason(a.reload()), Reason::NotNewer);
}

#[test]
fn an_unusable_lkg_is_not_used() {
    let env = Env::new();
    fs::create_dir_all(&env.state).unwrap();
    // Written by an older build with more room, say: over today's capacity.
    fs::write(env.lkg(), list(9, CAPACITY + 1)).unwrap();
    env.write("{");
    let a = env.artifact();
    assert_eq!(reason(a.start()), Reason::Parse);
    assert!(a.current().is_none());
    assert!(a.status().active.is_none());
}

#[test]
fn no_state_dir_no_copy() {
    let env = Env::new();
    env.write(list(1, 1));
    let a: Artifact<List> = Artifact::new(ArtifactOptions::new(&env.path), env.metrics.clone());
    a.start();
    assert!(!env.state.exists());
    env.write("{");
    let b: Artifact<List> = Artifact::new(ArtifactOptions::new(&env.path), env.metrics.clone());
    assert_eq!(reason(b.start()), Reason::Parse);
    assert!(b.current().is_none());
}

#[test]
fn an_older_file_at_start_does_not_replace_a_newer_lkg() {
    // Only if newer, across restarts too: a delayed generator's older file stays out.
    let env = Env::new();
    env.write(list(5, 2));
    env.artifact().start();
    env.write(list(4, 2));
    let a = env.artifact();
    assert_eq!(reason(a.start()), Reason::NotNewer);
    let active = a.current();
    let active = active.as_ref().unwrap();
    assert_eq!((active.version, active.source), (5, SourceKind::Lkg));
    assert_eq!(fs::read(env.lkg()).unwrap(), list(5, 2).as_bytes());
    // A rollback is a newer version number.
    env.write(list(6, 2));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 6 });
}

#[test]
fn the_same_file_as_the_lkg_at_start_is_taken_from_the_file() {
    let env = Env::new();
    env.write(list(5, 2));
    env.artifact().start();
    let a = env.artifact();
    assert_eq!(a.start(), LoadOutcome::Applied { version: 5 });
    assert_eq!(a.current().as_ref().unwrap().source, SourceKind::File);
}

#[test]
fn the_on_lkg_gauge_says_when_the_last_known_good_copy_runs() {
    let env = Env::new();
    env.write(list(3, 4));
    let first = env.artifact();
    first.start();
    assert_eq!(env.metrics.on_lkg("test-list"), 0, "from the file");
    env.write(list(4, CAPACITY * 2));
    let a = env.artifact();
    a.start();
    assert_eq!(a.current().as_ref().unwrap().source, SourceKind::Lkg);
    assert_eq!(
        env.metrics.on_lkg("test-list"),
        1,
        "on the last-known-good copy"
    );
    env.write(list(5, 4));
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 5 });
    assert_eq!(env.metrics.on_lkg("test-list"), 0, "from the file again");
}
