//! Reload: a valid file swaps routing atomically and bumps the generation; an invalid one
//! (any reason) changes nothing and says why; restart-only keys are refused; reloads under
//! load drop no request; `SIGHUP` reloads the real binary and `SIGTERM` stops it cleanly.

use crate::support::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Two pools; `{pool}` picks the one the catch-all route uses.
const TWO_POOLS: &str = r#"
[[pools]]
name = "blue"
servers = ["{blue}"]

[[pools]]
name = "green"
servers = ["{green}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "{pool}"
"#;

fn two_pools() -> String {
    edge_config(2, TWO_POOLS)
}

fn vars(blue: &Origin, green: &Origin, pool: &str) -> Vec<(&'static str, String)> {
    vec![
        ("blue", blue.addr.to_string()),
        ("green", green.addr.to_string()),
        ("pool", pool.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_reload_switches_the_pool_and_bumps_the_generation() {
    let blue = Origin::text("blue").await;
    let green = Origin::text("green").await;
    let edge = Edge::start(&two_pools(), &vars(&blue, &green, "blue"));
    assert_eq!(get(&edge.url("/")).await.text(), "blue");
    assert_eq!(edge.status().await["config"]["generation"], 1);

    edge.rewrite(&two_pools(), &vars(&blue, &green, "green"));
    assert_eq!(edge.reload_applied(), 2);
    assert_eq!(get(&edge.url("/")).await.text(), "green");
    // A pooled keep-alive connection opened before the reload sees the new routing too.
    let c = client();
    let ask = || async {
        let resp = c.get(edge.url("/").parse().unwrap()).await.unwrap();
        use http_body_util::BodyExt;
        resp.into_body().collect().await.unwrap().to_bytes()
    };
    assert_eq!(ask().await, "green");
    edge.rewrite(&two_pools(), &vars(&blue, &green, "blue"));
    assert_eq!(edge.reload_applied(), 3);
    assert_eq!(ask().await, "blue");

    let status = edge.status().await;
    assert_eq!(status["config"]["generation"], 3);
    assert_eq!(status["last_reload"]["result"], "applied");
    assert_eq!(status["last_reload"]["errors"], serde_json::json!([]));
    let metrics = edge.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"holdfast_config_reload_total{result="applied"}"#
        ),
        Some(2.0)
    );
    assert_eq!(metric(&metrics, "holdfast_config_generation"), Some(3.0));
}

/// Each way a file can be unusable, what the rejection must say about it.
struct Bad {
    what: &'static str,
    write: fn(&std::path::Path, &str),
    /// Substrings every error list must contain (besides the file's path).
    says: &'static [&'static str],
}

const BAD_FILES: &[Bad] = &[
    Bad {
        what: "route naming an unknown pool",
        write: |p, good| {
            std::fs::write(p, good.replace("pool = \"blue\"", "pool = \"red\"")).unwrap()
        },
        says: &[
            "routes[0].pool: unknown pool \"red\"",
            "define it under [[pools]]",
        ],
    },
    Bad {
        what: "TOML syntax error",
        write: |p, good| std::fs::write(p, format!("{good}\n[[routes]\n")).unwrap(),
        says: &["TOML syntax error", "line "],
    },
    Bad {
        what: "file over 1 MiB",
        write: |p, good| {
            let mut text = good.to_string();
            text.push_str(&format!("# {}\n", "x".repeat(1 << 20)));
            std::fs::write(p, text).unwrap()
        },
        says: &["larger than the 1048576-byte limit"],
    },
    Bad {
        what: "non-UTF-8 bytes",
        write: |p, good| {
            let mut bytes = good.as_bytes().to_vec();
            bytes.extend_from_slice(b"# caf\xe9\n");
            std::fs::write(p, bytes).unwrap()
        },
        says: &["not valid UTF-8 at byte"],
    },
    Bad {
        what: "missing file",
        write: |p, _| std::fs::remove_file(p).unwrap(),
        says: &["cannot read the file"],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_changes_nothing_and_says_where() {
    let blue = Origin::text("blue").await;
    let green = Origin::text("green").await;
    let edge = Edge::start(&two_pools(), &vars(&blue, &green, "blue"));
    let good = std::fs::read_to_string(&edge.config_path).unwrap();
    let sha = edge.status().await["config"]["sha256"].clone();
    let file = edge.config_path.display().to_string();

    for (n, bad) in BAD_FILES.iter().enumerate() {
        (bad.write)(&edge.config_path, &good);
        let (generation, errors) = edge.reload_rejected();
        assert_eq!(generation, 1, "{}", bad.what);
        let all = errors.join("\n");
        assert!(
            errors.iter().all(|e| e.starts_with(&format!("{file}: "))),
            "{}: every error names the file: {all}",
            bad.what
        );
        for s in bad.says {
            assert!(all.contains(s), "{}: expected {s:?} in: {all}", bad.what);
        }

        assert_eq!(get(&edge.url("/")).await.text(), "blue", "{}", bad.what);
        let status = edge.status().await;
        assert_eq!(status["config"]["generation"], 1, "{}", bad.what);
        assert_eq!(status["config"]["sha256"], sha, "{}", bad.what);
        assert_eq!(status["last_reload"]["result"], "rejected", "{}", bad.what);
        assert_eq!(status["last_reload"]["active_generation"], 1);
        assert_eq!(status["last_reload"]["errors"], serde_json::json!(errors));
        let metrics = edge.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                r#"holdfast_config_reload_total{result="rejected"}"#
            ),
            Some((n + 1) as f64),
            "{}",
            bad.what
        );
        assert_eq!(metric(&metrics, "holdfast_config_generation"), Some(1.0));
    }
    assert_eq!(green.requests(), 0, "no rejected file was ever applied");

    // Fixed, the next reload applies as generation 2: rejections use no generation number.
    edge.rewrite(&two_pools(), &vars(&blue, &green, "green"));
    assert_eq!(edge.reload_applied(), 2);
    assert_eq!(get(&edge.url("/")).await.text(), "green");
    assert_eq!(edge.status().await["last_reload"]["result"], "applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_listeners_or_threads_is_rejected_with_a_restart_hint() {
    let blue = Origin::text("blue").await;
    let green = Origin::text("green").await;
    let edge = Edge::start(&two_pools(), &vars(&blue, &green, "blue"));
    let good = std::fs::read_to_string(&edge.config_path).unwrap();
    let other = dead_addr().to_string();
    let changes = [
        (
            "edge.listen",
            good.replace(
                "listen = [\"127.0.0.1:0\"]",
                &format!("listen = [\"{other}\"]"),
            ),
        ),
        ("edge.threads", good.replace("threads = 2", "threads = 3")),
        (
            "admin.listen",
            good.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{other}\"")),
        ),
    ];
    for (key, text) in changes {
        assert_ne!(text, good, "the test changed {key}");
        std::fs::write(&edge.config_path, text).unwrap();
        let (generation, errors) = edge.reload_rejected();
        assert_eq!(generation, 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert!(e.contains(&format!(": {key}: changed")), "{e}");
        assert!(e.contains("restart Holdfast"), "{e}");
        assert_eq!(get(&edge.url("/")).await.text(), "blue");
    }
    let status = edge.status().await;
    assert_eq!(status["config"]["generation"], 1);
    assert_eq!(status["workers"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_fail_no_request() {
    const RELOADS: u64 = 50;
    const CLIENTS: usize = 4;
    /// Safety bound for each client loop; the loops normally stop when the reloads are done.
    const MAX_REQUESTS_PER_CLIENT: usize = 20_000;
    /// Requests that must complete between two reloads, so every reload meets live traffic.
    const BETWEEN_RELOADS: usize = 8;

    let blue = Origin::text("blue").await;
    let green = Origin::text("green").await;
    let edge = Edge::start(&two_pools(), &vars(&blue, &green, "blue"));
    let url: http::Uri = edge.url("/load").parse().unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (done, completed, url) = (done.clone(), completed.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            // Half the clients reuse keep-alive connections, half open one per request.
            let pooled = client();
            let mut failures = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..MAX_REQUESTS_PER_CLIENT {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let c = if n % 2 == 0 { pooled.clone() } else { client() };
                let result = async {
                    use http_body_util::BodyExt;
                    let resp = c.get(url.clone()).await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                    if status == 200 && (body == "blue" || body == "green") {
                        Ok(body)
                    } else {
                        Err(format!("{status}: {body}"))
                    }
                }
                .await;
                match result {
                    Ok(body) => {
                        seen.insert(body);
                    }
                    Err(e) => failures.push(e),
                }
                completed.fetch_add(1, Ordering::SeqCst);
            }
            (failures, seen)
        }));
    }

    for i in 1..=RELOADS {
        let floor = completed.load(Ordering::SeqCst) + BETWEEN_RELOADS;
        eventually(
            "client requests between reloads",
            Duration::from_secs(10),
            || {
                let completed = completed.clone();
                async move { completed.load(Ordering::SeqCst) >= floor }
            },
        )
        .await;
        let pool = if i % 2 == 1 { "green" } else { "blue" };
        edge.rewrite(&two_pools(), &vars(&blue, &green, pool));
        assert_eq!(edge.reload_applied(), i + 1);
    }
    let floor = completed.load(Ordering::SeqCst) + BETWEEN_RELOADS;
    eventually(
        "client requests after the last reload",
        Duration::from_secs(10),
        || {
            let completed = completed.clone();
            async move { completed.load(Ordering::SeqCst) >= floor }
        },
    )
    .await;
    done.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        let (f, s) = c.await.unwrap();
        failures.extend(f);
        seen.extend(s);
    }
    assert_eq!(failures.len(), 0, "failed requests: {failures:?}");
    assert_eq!(
        seen.len(),
        2,
        "both configurations served traffic: {seen:?}"
    );
    assert!(completed.load(Ordering::SeqCst) >= (RELOADS as usize + 1) * BETWEEN_RELOADS);
    let metrics = edge.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"holdfast_config_reload_total{result="applied"}"#
        ),
        Some(RELOADS as f64)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"holdfast_http_requests_total{route="all",status_class="5xx"}"#
        ),
        Some(0.0)
    );
    assert_eq!(edge.status().await["config"]["generation"], RELOADS + 1);
}

/// The real binary, killed if the test ends early.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// The `http` and `admin` addresses from the "holdfast is serving" JSON log line.
fn serving_addrs(line: &str) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &v["fields"];
    if fields["message"] != "holdfast is serving" {
        return None;
    }
    // `http` is logged with Debug: "[127.0.0.1:port]".
    let http = fields["http"]
        .as_str()?
        .trim_matches(['[', ']'])
        .split(',')
        .next()?;
    let admin = fields["admin"].as_str()?;
    Some((http.trim().parse().ok()?, admin.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary_and_sigterm_stops_it_cleanly() {
    use std::io::BufRead;
    let blue = Origin::text("blue").await;
    let green = Origin::text("green").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, render(&two_pools(), &vars(&blue, &green, "blue"))).unwrap();

    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("HOLDFAST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read stderr on a thread (so the pipe never fills), handing over the addresses once.
    let stderr = child.0.stderr.take().unwrap();
    let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = serving_addrs(&line) {
                let _ = addrs_tx.send(a);
            }
            lines.push(line);
        }
        lines
    });
    let (http, admin) = blocking(|| addrs_rx.recv_timeout(Duration::from_secs(20)))
        .expect("the binary logged that it is serving");
    // A SIGHUP sent the moment the edge says it is serving reloads it (same file: a new
    // generation) rather than killing it.
    signal(&child.0, "HUP");
    let status_url = format!("http://{admin}/status");
    let generation = |n: u64| {
        let url = status_url.clone();
        move || {
            let url = url.clone();
            async move { get(&url).await.json()["config"]["generation"] == n }
        }
    };
    eventually(
        "generation 2 after the first SIGHUP",
        Duration::from_secs(10),
        generation(2),
    )
    .await;
    assert_eq!(get(&format!("http://{http}/")).await.text(), "blue");

    std::fs::write(&config, render(&two_pools(), &vars(&blue, &green, "green"))).unwrap();
    signal(&child.0, "HUP");
    eventually(
        "generation 3 after the second SIGHUP",
        Duration::from_secs(10),
        generation(3),
    )
    .await;
    assert_eq!(get(&format!("http://{http}/")).await.text(), "green");

    // A bad file on SIGHUP is rejected; the process keeps serving the last good one.
    std::fs::write(&config, render(&two_pools(), &vars(&blue, &green, "red"))).unwrap();
    signal(&child.0, "HUP");
    eventually(
        "a rejected reload after the third SIGHUP",
        Duration::from_secs(10),
        || {
            let url = status_url.clone();
            async move { get(&url).await.json()["last_reload"]["result"] == "rejected" }
        },
    )
    .await;
    let status = get(&status_url).await.json();
    assert_eq!(status["config"]["generation"], 3);
    assert!(
        status["last_reload"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("routes[0].pool"),
        "{status}"
    );
    assert_eq!(get(&format!("http://{http}/")).await.text(), "green");

    signal(&child.0, "TERM");
    let mut exit = None;
    eventually(
        "the binary exits after SIGTERM",
        Duration::from_secs(15),
        || {
            exit = exit.or_else(|| child.0.try_wait().unwrap());
            let exited = exit.is_some();
            async move { exited }
        },
    )
    .await;
    let exit = exit.unwrap();
    let lines = log.join().unwrap();
    assert!(exit.success(), "exit {exit:?}; log:\n{}", lines.join("\n"));
    let log = lines.join("\n");
    assert!(log.contains("SIGHUP: reloaded"), "{log}");
    assert!(log.contains("SIGHUP: reload rejected"), "{log}");
    assert!(log.contains("holdfast stopped"), "{log}");
}

/// One pool and one route, whose responses carry `{generation}` in `x-generation`.
const GENERATION: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
response_headers = { set = { "x-generation" = "{generation}" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_origin_connections_and_server_counters() {
    let origin = Origin::text("hello").await;
    let vars = |g: &str| {
        vec![
            ("origin", origin.addr.to_string()),
            ("generation", g.to_string()),
        ]
    };
    let edge = Edge::start(&edge_config(1, GENERATION), &vars("1"));
    for _ in 0..5 {
        assert_eq!(get(&edge.url("/")).await.status, 200);
    }
    let connections_before = origin.connections.load(Ordering::SeqCst);
    let addr = origin.addr.to_string();
    let before = server_status(&edge.status().await, "primary", &addr);
    assert_eq!(before["requests"], 5, "{before}");

    edge.rewrite(&edge_config(1, GENERATION), &vars("2"));
    let outcome = blocking(|| edge.reload());
    assert!(
        matches!(outcome, holdfast::ReloadOutcome::Applied { .. }),
        "{outcome:?}"
    );

    for _ in 0..5 {
        let got = get(&edge.url("/")).await;
        assert_eq!(
            got.header("x-generation"),
            Some("2"),
            "the new generation serves"
        );
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        connections_before,
        "idle origin connections survived the reload: no new connection was opened"
    );
    let after = server_status(&edge.status().await, "primary", &addr);
    assert_eq!(after["requests"], 10, "counters carry over: {after}");
}
