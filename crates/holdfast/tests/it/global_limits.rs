//! Global rate limits (`scope = "global"`) across two edges sharing one real `redis-server`
//! (Debian's package; started here on a unix socket in a temporary folder, never a system
//! service). Without `redis-server` on `PATH` these tests fail and say so.
//!
//! Synchronisation is by bounded polling of `/status` (a limit's `unsynced` count, Redis'
//! state), never by sleeping. The limits count per hour, so nothing refills during a test.

use crate::support::*;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on `DIR/redis.sock`, killed on drop.
struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> RedisServer {
        let mut r = RedisServer {
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.spawn();
        r
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.sock().display())
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.sock())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the global rate-limit tests need it on \
                     PATH (Debian: apt-get install redis-server; .ci/run installs it)"
                )
            });
        self.child = Some(child);
        // Bounded poll: the socket accepts connections and answers PING.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if self.cli(&["PING"]).is_some_and(|o| o.trim() == "PONG") {
                return;
            }
            assert!(
                Instant::now() < until,
                "redis-server did not come up on {:?}",
                self.sock()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.sock())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Calls of `EVALSHA` and `EVAL` so far (`INFO commandstats`).
    fn script_calls(&self) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]).unwrap();
        ["cmdstat_evalsha:", "cmdstat_eval:"]
            .iter()
            .filter_map(|stat| {
                let line = info.lines().find(|l| l.starts_with(stat))?;
                let calls = line.split(',').next()?.split('=').nth(1)?;
                calls.trim().parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A per-route global limit that never denies (first: every request is counted in it), then
/// the per-IP global limit under test.
const LIMITS: &str = r#"
[redis]
url = "{redis}"
sync_interval = "50ms"

[[limits]]
name = "global-route"
key = "route"
requests = 1000000
per = "1h"
scope = "global"

[[limits]]
name = "global-ip"
key = "client_ip"
requests = 20
per = "1h"
scope = "global"
"#;

fn edge(origin: &Origin, redis: &RedisServer) -> Edge {
    Edge::start(
        &edge_config(2, &format!("{LIMITS}{BASIC_POOL}")),
        &[("origin", origin.addr.to_string()), ("redis", redis.url())],
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One GET from `from`: a 200 or a 429, never anything else.
async fn one(edge: &Edge, from: IpAddr) -> u16 {
    let got = within_limit(get_from(from, &edge.url("/"), &[])).await;
    let s = got.status.as_u16();
    assert!(s == 200 || s == 429, "status {s}: {}", got.text());
    s
}

async fn oks(edge: &Edge, from: IpAddr, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if one(edge, from).await == 200 {
            ok += 1;
        }
    }
    ok
}

async fn limits_module(edge: &Edge) -> serde_json::Value {
    module_status(&edge.status().await, "limits")
}

/// Every count of this edge has reached Redis.
async fn synced(edge: &Edge) {
    eventually(
        "the edge's counts reach redis",
        Duration::from_secs(10),
        || async {
            let m = limits_module(edge).await;
            m["limits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["global"]["unsynced"] == 0)
        },
    )
    .await;
}

async fn redis_state(edge: &Edge) -> String {
    limits_module(edge).await["redis"]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn errors_total(metrics: &str) -> f64 {
    ["timeout", "connect", "error"]
        .iter()
        .filter_map(|k| {
            sample(
                metrics,
                "holdfast_ratelimit_redis_errors_total",
                &[("kind", k)],
            )
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_edges_share_one_count_and_fall_back_to_local_limits_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let origin = Origin::text("ok").await;
    let a = edge(&origin, &redis);
    let b = edge(&origin, &redis);
    let edges = [&a, &b];
    let client = ip("127.0.0.1");

    // Rounds of K requests per edge, each round followed by both edges' syncs. An edge
    // allows while (what Redis last told it + its own unsent count) < 20, and what it was
    // told lags at most the other edge's last round: so at most 20 + 2 × K pass in all, and
    // at least 20 (no edge denies before Redis' total has reached 20).
    const K: usize = 3;
    let mut passed = 0;
    let mut sent = 0;
    for _ in 0..12 {
        for e in edges {
            passed += oks(e, client, K).await;
            sent += K;
        }
        for e in edges {
            synced(e).await;
        }
    }
    assert!(
        (20..=20 + 2 * K).contains(&passed),
        "{passed} of {sent} passed: want 20..={}",
        20 + 2 * K
    );
    // Later requests: 429 on both edges.
    for e in edges {
        assert_eq!(oks(e, client, 5).await, 0);
    }
    // The origin saw exactly what passed, and Redis' count is that number.
    assert_eq!(origin.requests(), passed);
    let per_ip_keys = redis.cli(&["KEYS", "holdfast:rl:global-ip:*"]).unwrap();
    let key = per_ip_keys.lines().next().unwrap().to_string();
    assert_eq!(
        redis.cli(&["GET", &key]).unwrap().trim(),
        passed.to_string()
    );
    let ttl: i64 = redis.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
    assert!(
        ttl > 3_600_000 && ttl <= 7_200_000,
        "window key lives 2 × per: {ttl}"
    );

    // Calls per request: 1000 more requests, 50 at a time, over both edges (each counted in
    // the route limit). Redis sees one EVALSHA per key per sync, not one per request.
    let before = redis.script_calls();
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..1000 {
        let url = edges[i % 2].url("/");
        handles.push(tokio::spawn(async move { get(&url).await.status.as_u16() }));
        if handles.len() == 50 {
            for h in handles.drain(..) {
                let s = h.await.unwrap();
                assert!(s == 200 || s == 429, "{s}");
            }
        }
    }
    for h in handles {
        let s = h.await.unwrap();
        assert!(s == 200 || s == 429, "{s}");
    }
    for e in edges {
        synced(e).await;
    }
    let elapsed = started.elapsed();
    let calls = redis.script_calls() - before;
    eprintln!(
        "global limits: {calls} EVALSHA/EVAL calls for 1000 requests over 2 edges in {elapsed:?}"
    );
    // At most one call per (edge, key) per sync, whatever the request rate: 2 edges × 2 keys
    // (the route, one client address) × the syncs in that time (+ the final ones) ...
    let syncs = u64::try_from(elapsed.as_millis() / 50).unwrap() + 3;
    assert!(
        calls > 0 && calls <= 4 * syncs,
        "{calls} calls in {elapsed:?}"
    );
    // ... far fewer than the requests (about 10 when the requests take 0.3 s).
    assert!(calls < 250, "{calls} calls for 1000 requests");
    let route_total: u64 = redis
        .cli(&["KEYS", "holdfast:rl:global-route:*"])
        .unwrap()
        .lines()
        .map(|k| {
            redis
                .cli(&["GET", k])
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        route_total,
        (sent + 10 + 1000) as u64,
        "every request counted once"
    );
    let edge_calls: f64 = sample(
        &a.metrics().await,
        "holdfast_ratelimit_redis_calls_total",
        &[],
    )
    .unwrap()
        + sample(
            &b.metrics().await,
            "holdfast_ratelimit_redis_calls_total",
            &[],
        )
        .unwrap();
    assert!(edge_calls >= (calls as f64), "{edge_calls}");
    for e in edges {
        assert_eq!(redis_state(e).await, "ok");
        assert_eq!(errors_total(&e.metrics().await), 0.0);
    }

    // Redis dies: the next sync of each edge fails, both say so, nothing is a 5xx.
    redis.kill();
    for e in edges {
        one(e, ip("127.0.0.3")).await;
    }
    for e in edges {
        eventually(
            "the edge sees redis down",
            Duration::from_secs(10),
            || async { redis_state(e).await == "down" },
        )
        .await;
        let m = limits_module(e).await;
        assert!(m["redis"]["last_error"].is_string(), "{m}");
        assert!(m["redis"]["since"].as_str().unwrap().ends_with('Z'), "{m}");
        assert!(errors_total(&e.metrics().await) >= 1.0);
    }
    // Limits hold locally, per edge: a new client gets 20 on each edge, then 429s.
    let fresh = ip("127.0.0.4");
    for e in edges {
        assert_eq!(oks(e, fresh, 30).await, 20);
    }
    // And the old client is limited too (locally: its local limiter was never used, so
    // it gets the local burst on each edge — fail-open, as documented), never a 5xx.
    for e in edges {
        one(e, client).await;
    }
    let errors_before = errors_total(&a.metrics().await);
    eventually(
        "errors keep being counted while redis is down",
        Duration::from_secs(10),
        || async { errors_total(&a.metrics().await) > errors_before },
    )
    .await;

    // Redis comes back on the same socket (empty): both edges recover by themselves, send
    // what they counted meanwhile, and the shared count holds again.
    redis.spawn();
    for e in edges {
        eventually(
            "the edge sees redis ok again",
            Duration::from_secs(10),
            || async { redis_state(e).await == "ok" },
        )
        .await;
        synced(e).await;
    }
    // 127.0.0.4 passed 20 on each edge during the outage: 40 in Redis now, so 429 on both.
    for e in edges {
        assert_eq!(oks(e, fresh, 3).await, 0);
    }
    let fresh_total: u64 = redis
        .cli(&["KEYS", "holdfast:rl:global-ip:*"])
        .unwrap()
        .lines()
        .filter_map(|k| redis.cli(&["GET", k])?.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(fresh_total >= 40, "{fresh_total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_the_same_limits_keeps_the_sync_and_the_counts() {
    let redis = RedisServer::start();
    let origin = Origin::text("ok").await;
    let a = edge(&origin, &redis);
    let client = ip("127.0.0.1");
    assert_eq!(oks(&a, client, 5).await, 5);
    synced(&a).await;
    let calls = limits_module(&a).await["redis"]["calls"].as_u64().unwrap();
    assert!(calls >= 2, "SCRIPT LOAD and at least one EVALSHA: {calls}");
    a.reload_applied();
    // Same runtime: the Redis call count carries on, and the count is still 5.
    let after = limits_module(&a).await["redis"]["calls"].as_u64().unwrap();
    assert!(after >= calls, "{after} < {calls}");
    assert_eq!(oks(&a, client, 20).await, 15);
}

/// A TCP relay in front of the Redis socket that can be stalled: while stalled it moves no
/// bytes either way (requests are held, nothing is answered, no connection is closed) — a
/// Redis that is slow, not down.
struct StallingRelay {
    addr: std::net::SocketAddr,
    stalled: tokio::sync::watch::Sender<bool>,
}

impl StallingRelay {
    async fn start(redis: &RedisServer) -> StallingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stalled, _) = tokio::sync::watch::channel(false);
        let gate = stalled.clone();
        let sock = redis.sock();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::UnixStream::connect(&sock).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                tokio::spawn(Self::pipe(cr, uw, gate.subscribe()));
                tokio::spawn(Self::pipe(ur, cw, gate.subscribe()));
            }
        });
        StallingRelay { addr, stalled }
    }

    async fn pipe(
        mut from: impl tokio::io::AsyncRead + Unpin,
        mut to: impl tokio::io::AsyncWrite + Unpin,
        mut stalled: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 << 10];
        loop {
            if stalled.wait_for(|s| !*s).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Bytes read just before a stall are held until it ends.
            if stalled.wait_for(|s| !*s).await.is_err() {
                return;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_times_out_limits_go_on_locally_and_the_sync_recovers() {
    let redis = RedisServer::start();
    let relay = StallingRelay::start(&redis).await;
    let origin = Origin::text("ok").await;
    let config = LIMITS.replace(
        "sync_interval = \"50ms\"",
        "sync_interval = \"50ms\"\ntimeout = \"200ms\"",
    );
    let a = Edge::start(
        &edge_config(2, &format!("{config}{BASIC_POOL}")),
        &[
            ("origin", origin.addr.to_string()),
            ("redis", format!("redis://{}", relay.addr)),
        ],
    );
    let client = ip("127.0.0.1");
    assert_eq!(oks(&a, client, 5).await, 5);
    synced(&a).await;
    assert_eq!(redis_state(&a).await, "ok");

    // Redis stops answering: the sync times out (counted as such), the edge says Redis is
    // down, and the limits go on locally — 200s then 429s, never a 5xx.
    relay.stall(true);
    let fresh = ip("127.0.0.5");
    one(&a, fresh).await;
    eventually(
        "the edge sees redis down",
        Duration::from_secs(10),
        || async { redis_state(&a).await == "down" },
    )
    .await;
    let timeouts = sample(
        &a.metrics().await,
        "holdfast_ratelimit_redis_errors_total",
        &[("kind", "timeout")],
    )
    .unwrap_or(0.0);
    assert!(timeouts >= 1.0, "{timeouts}");
    // The local fallback starts the client with its own full burst (fail-open, documented).
    assert_eq!(
        oks(&a, fresh, 30).await,
        20,
        "20 per client locally, then 429s"
    );

    // Redis answers again: the edge recovers by itself (a fresh connection, not the one with
    // late replies in it) and sends what it counted meanwhile.
    relay.stall(false);
    eventually(
        "the edge sees redis ok again",
        Duration::from_secs(10),
        || async { redis_state(&a).await == "ok" },
    )
    .await;
    synced(&a).await;
    let total: u64 = redis
        .cli(&["KEYS", "holdfast:rl:global-ip:*"])
        .unwrap()
        .lines()
        .filter_map(|k| redis.cli(&["GET", k])?.trim().parse::<u64>().ok())
        .sum();
    // 5 before, then 1 + 20 passed during the stall (refused requests are not counted).
    assert!(total >= 26, "{total}");
}
