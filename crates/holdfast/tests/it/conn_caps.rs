//! Per-server request caps (`max_connections`): a server with that many requests in flight
//! is skipped; when every server of the pool is full the edge answers 503 at once, with the
//! pool's `Retry-After`, counted in `holdfast_upstream_overload_rejected_total`. Origins hang
//! at a `Gate` the test opens; "at once" means before the gate is opened.

use crate::support::*;
use std::net::SocketAddr;

/// An edge with one pool "app" of `servers`; `pool` follows its `servers` line.
fn start(servers: &[SocketAddr], pool: &str) -> Edge {
    app_edge(2, &server_list(servers), pool, "")
}

fn rejected(metrics: &str) -> f64 {
    overload_rejected(metrics, "app").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_turns_the_next_request_away_at_once() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let edge = start(&[origin.addr], "max_connections = 2");
    let url = edge.url("/page");

    let held = vec![spawn_get(url.clone()), spawn_get(url.clone())];
    until_seen(&[&origin], 2).await;

    // The gate is still closed: this answer can only come from the edge.
    let got = within("a third request", get(&url)).await;
    assert_overload_page(&got, "1");
    assert_eq!(origin.requests(), 2, "the third never reached the origin");
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "the first two are still held"
    );
    assert_eq!(rejected(&edge.metrics().await), 1.0);

    gate.open();
    all_ok(held, &["slow"]).await;
    // Their slots are freed when their responses end.
    eventually("a free slot again", LIMIT, || async {
        let got = within("a request after the gate opened", get(&url)).await;
        got.status == 200
    })
    .await;
    assert_eq!(origin.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_retry_after_is_sent() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let edge = start(&[origin.addr], "max_connections = 1\nretry_after = \"7s\"");
    let url = edge.url("/page");

    let held = vec![spawn_get(url.clone())];
    until_seen(&[&origin], 1).await;
    let got = within("a second request", get(&url)).await;
    gate.open();
    all_ok(held, &["slow"]).await;
    assert_overload_page(&got, "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_skipped_for_another() {
    // Hashing on x-user sends the same user to the same server, until it is full.
    let gate = Gate::new();
    let a = gated_origin(&gate, "a").await;
    let b = gated_origin(&gate, "b").await;
    let edge = start(
        &[a.addr, b.addr],
        "max_connections = 2\nbalance = \"hash\"\nhash_key = \"header:x-user\"",
    );
    let url = edge.url("/page");
    const USER: &[(&str, &str)] = &[("x-user", "alice")];

    let mut held = vec![
        spawn_get_with(url.clone(), USER),
        spawn_get_with(url.clone(), USER),
    ];
    until_seen(&[&a, &b], 2).await;
    let (full, other) = if a.requests() == 2 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(full.requests(), 2, "one user, one server");
    assert_eq!(other.requests(), 0);

    held.push(spawn_get_with(url.clone(), USER));
    eventually("the third request at the other server", LIMIT, || async {
        other.requests() >= 1
    })
    .await;
    assert_eq!(full.requests(), 2, "the full server was skipped");
    assert_eq!(other.requests(), 1);
    assert!(held.iter().all(|h| !h.is_finished()));

    gate.open();
    all_ok(held, &["a", "b"]).await;
    assert_eq!(rejected(&edge.metrics().await), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_full_the_pool_turns_requests_away() {
    let gate = Gate::new();
    let a = gated_origin(&gate, "a").await;
    let b = gated_origin(&gate, "b").await;
    let edge = start(&[a.addr, b.addr], "max_connections = 1");
    let url = edge.url("/page");

    let held = vec![spawn_get(url.clone()), spawn_get(url.clone())];
    until_seen(&[&a, &b], 2).await;
    assert_eq!(a.requests(), 1, "one each");
    assert_eq!(b.requests(), 1, "one each");

    let got = within("a third request", get(&url)).await;
    assert_overload_page(&got, "1");
    assert_eq!(a.requests() + b.requests(), 2);
    assert_eq!(rejected(&edge.metrics().await), 1.0);

    gate.open();
    all_ok(held, &["a", "b"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_not_a_failed_server() {
    // Turning requests away for a full server does not count against it: it is not ejected.
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let edge = start(
        &[origin.addr],
        "max_connections = 1\n\n[pools.outlier]\nconsecutive_failures = 1\nmax_ejection_percent = 100",
    );
    let url = edge.url("/page");
    let held = vec![spawn_get(url.clone())];
    until_seen(&[&origin], 1).await;
    for _ in 0..3 {
        assert_overload_page(&within("a request to a full server", get(&url)).await, "1");
    }
    let entry = server_status(&edge.status().await, "app", &origin.addr.to_string());
    assert_eq!(entry["health"], "up", "{entry}");
    assert_eq!(entry["ejections"], 0, "{entry}");
    gate.open();
    all_ok(held, &["slow"]).await;
}
