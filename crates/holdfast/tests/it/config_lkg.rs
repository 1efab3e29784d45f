//! The main configuration's last-known-good copy: a file rejected at start, with a valid
//! copy in its `state_dir`, starts the edge on that copy (loudly); without a copy it does
//! not start.

use crate::support::*;

fn config(origin: std::net::SocketAddr, extra_edge_keys: &str) -> String {
    render(
        &edge_config_with(
            1,
            &format!("state_dir = \"state\"\n{extra_edge_keys}"),
            BASIC_POOL,
        ),
        &[("origin", origin.to_string())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_rejected_at_start_runs_on_the_last_known_good_copy() {
    let origin = Origin::text("from origin").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, config(origin.addr, "")).unwrap();
    let mut edge = Edge::start_file(dir, path.clone());
    let lkg = edge.dir.path().join("state/config.lkg");
    assert!(lkg.exists(), "the running config is kept as the LKG");
    let status = get(&edge.admin_url("/status")).await.json();
    assert_eq!(status["config"]["running_on"], "file");
    edge.stop();

    // A bad edit on disk (an unknown key and a bad value), then a restart.
    std::fs::write(
        &path,
        config(origin.addr, "threads_typo = 3\nmax_headers = 0"),
    )
    .unwrap();
    let dir = std::mem::replace(&mut edge.dir, tempfile::tempdir().unwrap());
    let edge = Edge::start_file(dir, path.clone());
    let got = get(&edge.url("/")).await;
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (200, "from origin")
    );
    let status = get(&edge.admin_url("/status")).await.json();
    assert_eq!(status["config"]["running_on"], "lkg", "{status}");
    let why = status["config"]["rejected_at_start"].to_string();
    assert!(
        why.contains("edge.threads_typo") && why.contains("edge.max_headers"),
        "{why}"
    );

    // Fixed and reloaded: the file runs again.
    std::fs::write(&path, config(origin.addr, "")).unwrap();
    assert!(matches!(
        edge.reload(),
        holdfast::ReloadOutcome::Applied { .. }
    ));
    let status = get(&edge.admin_url("/status")).await.json();
    assert_eq!(status["config"]["running_on"], "file");
    assert!(status["config"]["rejected_at_start"].is_null());
}

#[test]
fn without_a_copy_a_rejected_config_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        config("127.0.0.1:9".parse().unwrap(), "max_headers = 0"),
    )
    .unwrap();
    let started = holdfast::Running::start(holdfast::ConfigSource::File(path));
    let Err(e) = started else {
        panic!("an invalid config with no LKG must not start");
    };
    assert!(e.to_string().contains("edge.max_headers"), "{e}");
}

#[test]
fn an_invalid_copy_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("state/config.lkg"), "[edge]\nlisten = 5\n").unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        config("127.0.0.1:9".parse().unwrap(), "max_headers = 0"),
    )
    .unwrap();
    let started = holdfast::Running::start(holdfast::ConfigSource::File(path));
    assert!(started.is_err(), "a broken LKG is no way to start");
}
