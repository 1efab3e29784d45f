//! Per-pool load balancing (`balance`, `hash_key`, server weights): smooth weighted round
//! robin, least request (power of two choices), rendezvous hashing on a request key; retries
//! still skip servers already tried; `/status` shows each server's weight and requests in
//! flight. Edges run one worker thread, so the order the edge picks servers in is the order
//! the test sends requests in.

use crate::support::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A server entry written as a plain string.
fn plain(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

/// A server entry written as a table with a weight.
fn weighted(addr: SocketAddr, weight: u32) -> String {
    format!("{{ address = \"{addr}\", weight = {weight} }}")
}

/// An edge with one pool "app" of `servers` (entries as written by `plain`/`weighted`) and
/// `balance` lines (e.g. `balance = "hash"\nhash_key = "path"`, or "" for the default),
/// followed by anything else for the pool (a `[pools.retry]` table).
fn start(servers: &[String], balance: &str) -> Edge {
    Edge::start(&config(), &vars(servers, balance))
}

/// `APP_POOL` behind one worker thread.
fn config() -> String {
    edge_config(1, APP_POOL)
}

fn vars(servers: &[String], balance: &str) -> Vec<(&'static str, String)> {
    app_vars(&servers.join(", "), balance, "")
}

/// GET `path` with `headers`; the body of the 200 answer (each origin answers its name).
async fn served_by(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> String {
    let got = within_limit(get_with(&edge.url(path), headers)).await;
    assert_eq!(got.status, 200, "GET {path} {headers:?}: {}", got.text());
    got.text()
}

fn count(seq: &[String], name: &str) -> usize {
    seq.iter().filter(|s| *s == name).count()
}

/// Every `window` consecutive answers (sliding, not only aligned) contain exactly `want`
/// answers from each server.
fn assert_every_window(seq: &[String], window: usize, want: &[(&str, usize)]) {
    for (start, w) in seq.windows(window).enumerate() {
        for (name, n) in want {
            assert_eq!(
                count(w, name),
                *n,
                "{name} in the window of {window} starting at request {start}: {w:?} (all: {seq:?})"
            );
        }
    }
}

// --- round robin ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_gives_each_server_its_weight_in_every_window() {
    let light = Origin::text("light").await;
    let heavy = Origin::text("heavy").await;
    // The string form and the table form side by side; round robin is the default.
    let edge = start(&[plain(light.addr), weighted(heavy.addr, 3)], "");

    let mut seq = Vec::new();
    for i in 0..40 {
        seq.push(served_by(&edge, &format!("/r/{i}"), &[]).await);
    }
    assert_eq!(light.requests(), 10, "{seq:?}");
    assert_eq!(heavy.requests(), 30, "{seq:?}");
    assert_eq!(count(&seq, "light"), 10, "{seq:?}");
    // Smoothly interleaved: any 4 consecutive requests are 1 light and 3 heavy, so the
    // heavy server never gets more than 3 in a row.
    assert_every_window(&seq, 4, &[("light", 1), ("heavy", 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_interleaves_uneven_weights() {
    // Weights 5, 1 and 1: every 7 requests in a row are 5 a, 1 b and 1 c.
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let c = Origin::text("c").await;
    let edge = start(
        &[weighted(a.addr, 5), weighted(b.addr, 1), plain(c.addr)],
        "balance = \"round_robin\"",
    );

    let mut seq = Vec::new();
    for i in 0..35 {
        seq.push(served_by(&edge, &format!("/r/{i}"), &[]).await);
    }
    assert_eq!((a.requests(), b.requests(), c.requests()), (25, 5, 5));
    assert_every_window(&seq, 7, &[("a", 5), ("b", 1), ("c", 1)]);
    // nginx's own example of its smooth weighted round robin: the heavy server's five are
    // spread out rather than sent as one burst of five.
    assert_eq!(seq[..7], ["a", "a", "b", "a", "c", "a", "a"], "{seq:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_round_robin_alternates_evenly() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(&[plain(a.addr), plain(b.addr)], "");

    let mut seq = Vec::new();
    for i in 0..20 {
        seq.push(served_by(&edge, &format!("/r/{i}"), &[]).await);
    }
    assert_eq!(a.requests(), 10, "{seq:?}");
    assert_eq!(b.requests(), 10, "{seq:?}");
    assert_every_window(&seq, 2, &[("a", 1), ("b", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_balance_change_on_reload() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(&[plain(a.addr), plain(b.addr)], "");
    for i in 0..10 {
        served_by(&edge, &format!("/r/{i}"), &[]).await;
    }
    assert_eq!((a.requests(), b.requests()), (5, 5));

    edge.rewrite(&config(), &vars(&[plain(a.addr), weighted(b.addr, 4)], ""));
    assert_eq!(edge.reload_applied(), 2);
    let mut seq = Vec::new();
    for i in 0..20 {
        seq.push(served_by(&edge, &format!("/r/{i}"), &[]).await);
    }
    assert_every_window(&seq, 5, &[("a", 1), ("b", 4)]);
    let status = edge.status().await;
    assert_eq!(
        server_status(&status, "app", &b.addr.to_string())["weight"],
        4
    );

    // From round robin to hashing on the path: now one path, one server.
    let hash = "balance = \"hash\"\nhash_key = \"path\"";
    edge.rewrite(
        &config(),
        &vars(&[plain(a.addr), weighted(b.addr, 4)], hash),
    );
    assert_eq!(edge.reload_applied(), 3);
    let first = served_by(&edge, "/same", &[]).await;
    for _ in 0..9 {
        assert_eq!(served_by(&edge, "/same", &[]).await, first);
    }
}

// --- hash -------------------------------------------------------------------------------

/// Sends each key three times, in three rounds over all keys (so repeats of a key are
/// never back to back); each key's server, after checking every repeat went to the same one.
async fn mapping(
    edge: &Edge,
    keys: &[String],
    request: impl Fn(&str) -> (String, Vec<(&'static str, String)>),
) -> BTreeMap<String, String> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _round in 0..3 {
        for key in keys {
            let (path, headers) = request(key);
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let server = served_by(edge, &path, &headers).await;
            seen.entry(key.clone()).or_default().push(server);
        }
    }
    seen.into_iter()
        .map(|(key, servers)| {
            assert!(
                servers.iter().all(|s| *s == servers[0]),
                "key {key:?} went to different servers: {servers:?}"
            );
            (key, servers[0].clone())
        })
        .collect()
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn users_per_server(map: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for server in map.values() {
        *out.entry(server.clone()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_a_header_sends_each_user_to_one_server() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(
        &[plain(a.addr), plain(b.addr)],
        "balance = \"hash\"\nhash_key = \"header:x-user\"",
    );

    let users = keys("user-", 20);
    let map = mapping(&edge, &users, |user| {
        // The path changes on every request: only the header may decide.
        (
            format!("/page/{}", a.requests() + b.requests()),
            vec![("x-user", user.to_string())],
        )
    })
    .await;
    let spread = users_per_server(&map);
    assert_eq!(
        spread.len(),
        2,
        "both servers get some of 20 users: {spread:?}"
    );
    assert_eq!(a.requests() + b.requests(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_header_hashes_as_empty() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(
        &[plain(a.addr), plain(b.addr)],
        "balance = \"hash\"\nhash_key = \"header:x-user\"",
    );

    let mut servers = Vec::new();
    for i in 0..10 {
        servers.push(served_by(&edge, &format!("/n/{i}"), &[]).await);
        servers.push(served_by(&edge, &format!("/e/{i}"), &[("x-user", "")]).await);
    }
    assert!(
        servers.iter().all(|s| *s == servers[0]),
        "requests without the header and with it empty all go to one server: {servers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_the_path_ignores_the_query() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(
        &[plain(a.addr), plain(b.addr)],
        "balance = \"hash\"\nhash_key = \"path\"",
    );

    let paths = keys("/item/", 20);
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let map = mapping(&edge, &paths, |path| {
        // A different query and header on every request: only the path may decide.
        let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (
            format!("{path}?v={n}"),
            vec![("x-user", format!("someone-{n}"))],
        )
    })
    .await;
    let spread = users_per_server(&map);
    assert_eq!(
        spread.len(),
        2,
        "both servers get some of 20 paths: {spread:?}"
    );
    // The same path without a query goes where it did with one.
    for (path, server) in &map {
        assert_eq!(served_by(&edge, path, &[]).await, *server, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_the_host_sends_each_host_to_one_server() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(
        &[plain(a.addr), plain(b.addr)],
        "balance = \"hash\"\nhash_key = \"host\"",
    );

    let hosts: Vec<String> = (0..20).map(|i| format!("site-{i}.example")).collect();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let map = mapping(&edge, &hosts, |host| {
        let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (format!("/p/{n}"), vec![("host", host.to_string())])
    })
    .await;
    let spread = users_per_server(&map);
    assert_eq!(
        spread.len(),
        2,
        "both servers get some of 20 hosts: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_the_client_ip_sends_one_client_to_one_server() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = start(
        &[plain(a.addr), plain(b.addr)],
        "balance = \"hash\"\nhash_key = \"client_ip\"",
    );

    // Every request comes from 127.0.0.1, on a new connection each (a new client port),
    // with a different path and header: all go to the same server.
    let mut servers = Vec::new();
    for i in 0..20 {
        let user = format!("user-{i}");
        servers.push(served_by(&edge, &format!("/c/{i}"), &[("x-user", &user)]).await);
    }
    assert!(
        servers.iter().all(|s| *s == servers[0]),
        "one client IP, one server: {servers:?}"
    );
    assert_eq!(a.requests() + b.requests(), 20);
    assert!(a.requests() == 20 || b.requests() == 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_respects_weights() {
    let light = Origin::text("light").await;
    let heavy = Origin::text("heavy").await;
    let edge = start(
        &[plain(light.addr), weighted(heavy.addr, 9)],
        "balance = \"hash\"\nhash_key = \"path\"",
    );

    // 100 keys: weighted 1:9 the heavy server expects 90 (binomial, σ = 3); unweighted it
    // would get 50 (σ = 5). 75 lies 5σ from both.
    for i in 0..100 {
        served_by(&edge, &format!("/w/{i}"), &[]).await;
    }
    assert_eq!(light.requests() + heavy.requests(), 100);
    assert!(
        heavy.requests() >= 75,
        "weight 9 against 1: heavy got {} of 100 keys",
        heavy.requests()
    );
    assert!(
        light.requests() > 0,
        "weight 1 still gets some keys: light got none of 100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_server_moves_only_the_keys_it_had() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let c = Origin::text("c").await;
    let balance = "balance = \"hash\"\nhash_key = \"header:x-user\"";
    let edge = start(&[plain(a.addr), plain(b.addr), plain(c.addr)], balance);

    let users = keys("user-", 30);
    let by_user = |user: &str| ("/".to_string(), vec![("x-user", user.to_string())]);
    let before = mapping(&edge, &users, by_user).await;
    let spread = users_per_server(&before);
    assert_eq!(spread.len(), 3, "all three servers get users: {spread:?}");

    // Remove the middle server: its neighbours' positions in the list change, their keys
    // must not (rendezvous hashing depends on the servers, not on their order).
    edge.rewrite(&config(), &vars(&[plain(a.addr), plain(c.addr)], balance));
    assert_eq!(edge.reload_applied(), 2);
    let b_before = b.requests();

    let after = mapping(&edge, &users, by_user).await;
    assert_eq!(b.requests(), b_before, "the removed server gets nothing");
    let mut moved = 0;
    for (user, was) in &before {
        let now = &after[user];
        if was == "b" {
            moved += 1;
            assert!(now == "a" || now == "c", "{user}: {now}");
        } else {
            assert_eq!(
                now, was,
                "{user} was on {was}, whose server stayed, but moved\nbefore: {before:?}\nafter: {after:?}"
            );
        }
    }
    assert_eq!(moved, spread["b"]);
}

// --- least request ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_new_requests_away_from_a_busy_server() {
    let (slow_gate, quick_gate) = (Gate::new(), Gate::new());
    let slow = Arc::new(gated_origin(&slow_gate, "slow").await);
    let quick = Arc::new(gated_origin(&quick_gate, "quick").await);
    let edge = start(
        &[plain(slow.addr), plain(quick.addr)],
        "balance = \"least_request\"",
    );
    let url = edge.url("/");
    let seen = || slow.requests() + quick.requests();

    // Both servers hold their requests. Sent one at a time (each waits until an origin has
    // it), four requests go two to each: with two servers both are compared, and the one
    // with fewer in flight wins.
    let mut held = Vec::new();
    for k in 1..=4 {
        let url = url.clone();
        held.push(tokio::spawn(async move { get(&url).await }));
        eventually("the request reached an origin", LIMIT, || async {
            seen() == k
        })
        .await;
    }
    assert_eq!((slow.requests(), quick.requests()), (2, 2));

    // The quick server finishes its two; the slow one still has two in flight.
    quick_gate.open();
    eventually("the quick server has nothing in flight", LIMIT, || async {
        server_status(&edge.status().await, "app", &quick.addr.to_string())["in_flight"] == 0
    })
    .await;

    // Ten more, one after another: the quick server has at most the previous one still
    // finishing (1), the slow one 2, so every one goes to the quick server.
    for i in 0..10 {
        let got = within_limit(get(&edge.url(&format!("/q/{i}")))).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "quick", "request {i}");
    }
    assert_eq!(quick.requests(), 12);
    assert_eq!(slow.requests(), 2, "nothing more went to the busy server");

    slow_gate.open();
    let mut bodies = Vec::new();
    for task in held {
        let got = within_limit(task).await.unwrap();
        assert_eq!(got.status, 200);
        bodies.push(got.text());
    }
    bodies.sort();
    assert_eq!(bodies, ["quick", "quick", "slow", "slow"]);
}

// --- /status ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_servers_weight_and_requests_in_flight() {
    let gate = Gate::new();
    let held = Arc::new(gated_origin(&gate, "held").await);
    let quick = Arc::new(Origin::text("quick").await);
    let edge = start(&[plain(held.addr), weighted(quick.addr, 3)], "");
    let (held_addr, quick_addr) = (held.addr.to_string(), quick.addr.to_string());

    let status = edge.status().await;
    let (h, q) = (
        server_status(&status, "app", &held_addr),
        server_status(&status, "app", &quick_addr),
    );
    assert_eq!(
        (&h["weight"], &h["in_flight"]),
        (&1.into(), &0.into()),
        "{h}"
    );
    assert_eq!(
        (&q["weight"], &q["in_flight"]),
        (&3.into(), &0.into()),
        "{q}"
    );

    // Weights 1 and 3: of 8 requests, 2 go to the held server and stay there.
    let url = edge.url("/");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    eventually("8 requests reached the origins", LIMIT, || async {
        held.requests() + quick.requests() == 8
    })
    .await;
    assert_eq!((held.requests(), quick.requests()), (2, 6));
    eventually("the quick server's requests ended", LIMIT, || async {
        server_status(&edge.status().await, "app", &quick_addr)["in_flight"] == 0
    })
    .await;
    let h = server_status(&edge.status().await, "app", &held_addr);
    assert_eq!(h["in_flight"], 2, "{h}");
    assert_eq!(h["weight"], 1, "{h}");

    gate.open();
    for task in tasks {
        let got = within_limit(task).await.unwrap();
        assert_eq!(got.status, 200);
    }
    eventually("the held requests ended", LIMIT, || async {
        server_status(&edge.status().await, "app", &held_addr)["in_flight"] == 0
    })
    .await;
    let status = edge.status().await;
    assert_eq!(server_status(&status, "app", &held_addr)["requests"], 2);
    assert_eq!(server_status(&status, "app", &quick_addr)["requests"], 6);
}

// --- retries ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_to_a_dead_server_retries_on_the_other() {
    let dead = dead_addr();
    let live = Origin::text("live").await;
    let edge = start(
        &[plain(dead), plain(live.addr)],
        "balance = \"hash\"\nhash_key = \"path\"\n[pools.retry]",
    );

    for i in 0..40 {
        assert_eq!(served_by(&edge, &format!("/k/{i}"), &[]).await, "live");
    }
    assert_eq!(
        live.requests(),
        40,
        "each request reached the live origin once"
    );
    let metrics = edge.metrics().await;
    assert!(
        connect_errors(&metrics, "app", dead) > 0.0,
        "some of 40 paths hash to the dead server, and are retried:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_skip_the_tried_server_in_every_balance_mode() {
    let dead = dead_addr();
    let live = Origin::text("live").await;
    for balance in [
        "balance = \"round_robin\"",
        "balance = \"least_request\"",
        "balance = \"hash\"\nhash_key = \"path\"",
        "balance = \"hash\"\nhash_key = \"host\"",
        "balance = \"hash\"\nhash_key = \"client_ip\"",
        "balance = \"hash\"\nhash_key = \"header:x-user\"",
    ] {
        // The dead server first, and weighted up so it is picked often.
        let edge = start(
            &[weighted(dead, 5), plain(live.addr)],
            &format!("{balance}\n[pools.retry]\nattempts = 3"),
        );
        let before = live.requests();
        for i in 0..20 {
            let (path, user, host) = (format!("/k/{i}"), format!("u{i}"), format!("h{i}.test"));
            let got = within_limit(get_with(
                &edge.url(&path),
                &[("x-user", &user), ("host", &host)],
            ))
            .await;
            assert_eq!(got.status, 200, "{balance}: GET {path}: {}", got.text());
            assert_eq!(got.text(), "live", "{balance}");
        }
        assert_eq!(live.requests() - before, 20, "{balance}");
    }
}
