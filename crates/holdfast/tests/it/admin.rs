//! The admin plane: `/health`, `/metrics` (Prometheus text), `/status` (JSON), `POST /reload`;
//! it lives on its own listener only, and keeps answering while the data path is busy.

use crate::support::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_ok() {
    let origin = Origin::text("hello").await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);
    let got = get(&edge.admin_url("/health")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text().trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status_class() {
    let origin = Origin::start(handler(|req| async move {
        if req.uri().path() == "/missing" {
            status(404, "no")
        } else {
            ok("yes")
        }
    }))
    .await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);
    let before = edge.metrics().await;
    let ok_sample = r#"holdfast_http_requests_total{route="all",status_class="2xx"}"#;
    let not_found = r#"holdfast_http_requests_total{route="all",status_class="4xx"}"#;
    assert_eq!(metric(&before, ok_sample), Some(0.0), "{before}");

    assert_eq!(get(&edge.url("/")).await.status, 200);
    assert_eq!(get(&edge.url("/")).await.status, 200);
    assert_eq!(get(&edge.url("/missing")).await.status, 404);

    let got = get(&edge.admin_url("/metrics")).await;
    assert_eq!(got.status, 200);
    assert!(
        got.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        got.header("content-type")
    );
    let text = got.text();
    // Counted when the response body ends, which may be just after the client has it.
    eventually("requests counted", Duration::from_secs(5), || {
        let url = edge.admin_url("/metrics");
        async move {
            let text = get(&url).await.text();
            metric(&text, ok_sample) == Some(2.0) && metric(&text, not_found) == Some(1.0)
        }
    })
    .await;
    assert_eq!(metric(&text, "holdfast_config_generation"), Some(1.0));
    assert!(
        text.contains("# TYPE holdfast_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains(r#"holdfast_http_request_duration_seconds_bucket{route="all",le="+Inf"}"#),
        "{text}"
    );
    let count = r#"holdfast_http_request_duration_seconds_count{route="all"}"#;
    assert!(metric(&text, count).is_some(), "{text}");
    assert_eq!(metric(&text, "holdfast_build_info"), Some(1.0));
}

fn is_hex64(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_describes_the_running_edge() {
    let origin = Origin::text("hello").await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);
    let got = get(&edge.admin_url("/status")).await;
    assert_eq!(got.status, 200);
    assert!(got
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let s = got.json();

    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_seconds"].is_u64(), "{s}");
    assert_eq!(s["serving"], true);
    assert_eq!(s["workers"], 2);
    assert_eq!(s["config"]["generation"], 1);
    assert_eq!(
        s["config"]["source"],
        edge.config_path.display().to_string()
    );
    assert!(is_hex64(&s["config"]["sha256"]), "{s}");
    let bytes = std::fs::read(&edge.config_path).unwrap();
    assert_eq!(s["config"]["sha256"], holdfast_artifact::sha256_hex(&bytes));
    assert!(
        s["config"]["loaded_at"].as_str().unwrap().ends_with('Z'),
        "{s}"
    );
    assert_eq!(s["last_reload"], serde_json::Value::Null);

    let running = edge.running();
    assert_eq!(
        s["listeners"],
        serde_json::json!({
            "http": [running.http_addrs[0].to_string()],
            "https": [],
            "h3": [],
            "admin": running.admin_addr.to_string(),
        })
    );
    let pools = s["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{s}");
    assert_eq!(pools[0]["name"], "primary");
    let server = &pools[0]["servers"][0];
    assert_eq!(server["address"], origin.addr.to_string());
    assert_eq!(server["resolved"], origin.addr.to_string());
    assert_eq!(server["requests"], 0);

    // The fingerprint follows the file: changed bytes, changed sha256, still 64 hex digits.
    let text = std::fs::read_to_string(&edge.config_path).unwrap();
    std::fs::write(&edge.config_path, format!("{text}\n# edited\n")).unwrap();
    assert_eq!(edge.reload_applied(), 2);
    let after = edge.status().await;
    assert!(is_hex64(&after["config"]["sha256"]), "{after}");
    assert_ne!(after["config"]["sha256"], s["config"]["sha256"]);
    let bytes = std::fs::read(&edge.config_path).unwrap();
    assert_eq!(
        after["config"]["sha256"],
        holdfast_artifact::sha256_hex(&bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_or_rejects_with_errors() {
    let origin = Origin::text("hello").await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);

    let got = post(&edge.admin_url("/reload")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        got.json(),
        serde_json::json!({"result": "applied", "generation": 2})
    );

    let text = std::fs::read_to_string(&edge.config_path).unwrap();
    std::fs::write(
        &edge.config_path,
        text.replace("pool = \"primary\"", "pool = \"nope\""),
    )
    .unwrap();
    let got = post(&edge.admin_url("/reload")).await;
    assert_eq!(got.status, 422, "{}", got.text());
    let body = got.json();
    assert_eq!(body["result"], "rejected");
    assert_eq!(body["generation"], 2);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    let file = edge.config_path.display();
    let expected = format!("{file}: routes[0].pool: unknown pool \"nope\"");
    assert!(errors[0].as_str().unwrap().starts_with(&expected), "{body}");

    assert_eq!(get(&edge.url("/")).await.text(), "hello");
    assert_eq!(
        get(&edge.admin_url("/reload")).await.status,
        405,
        "reload is POST only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_on_the_data_listener_go_to_the_origin() {
    let origin = Origin::start(handler(|req| async move {
        ok(format!("origin saw {}", req.uri().path()))
    }))
    .await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);
    for path in ["/status", "/metrics", "/health"] {
        let got = get(&edge.url(path)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), format!("origin saw {path}"));
    }
    let got = post(&edge.url("/reload")).await;
    assert_eq!(got.text(), "origin saw /reload");
    assert_eq!(origin.requests(), 4);
    assert_eq!(
        edge.status().await["config"]["generation"],
        1,
        "no reload happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_answers_while_the_data_path_is_busy() {
    const HUNG: usize = 64;
    // The origin holds every request until released.
    let (release, released) = tokio::sync::watch::channel(false);
    let origin = Origin::start(handler(move |_req| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            ok("late")
        }
    }))
    .await;
    let template = edge_config(1, BASIC_POOL);
    let edge = Edge::start(&template, &[("origin", origin.addr.to_string())]);

    let url = edge.url("/hang");
    let hung: Vec<_> = (0..HUNG)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    let origin = Arc::new(origin);
    eventually(
        "every request reached the origin",
        Duration::from_secs(10),
        || {
            let origin = origin.clone();
            async move { origin.requests() == HUNG }
        },
    )
    .await;

    let health = tokio::time::timeout(Duration::from_secs(5), get(&edge.admin_url("/health")))
        .await
        .expect("/health answers while the data path is busy");
    assert_eq!(health.status, 200);
    let status = tokio::time::timeout(Duration::from_secs(5), edge.status())
        .await
        .expect("/status answers while the data path is busy");
    assert_eq!(status["pools"][0]["servers"][0]["requests"], HUNG as u64);
    let metrics = edge.metrics().await;
    assert!(
        metric(&metrics, "holdfast_http_connections_active").unwrap() >= HUNG as f64,
        "{metrics}"
    );

    release.send(true).unwrap();
    for h in hung {
        assert_eq!(h.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_answers_while_a_reload_is_in_progress() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Linux's O_NONBLOCK: opening a FIFO's write end this way succeeds only once a reader has it open.
    const O_NONBLOCK: i32 = 0o4000;
    let origin = Origin::text("hello").await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);
    let text = std::fs::read_to_string(&edge.config_path).unwrap();
    // The config becomes a FIFO: the reload blocks reading it until the test writes it.
    std::fs::remove_file(&edge.config_path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&edge.config_path)
        .status()
        .unwrap();
    assert!(made.success());

    let reload_url = edge.admin_url("/reload");
    let reload = tokio::spawn(async move { post(&reload_url).await });
    let mut writer = None;
    eventually(
        "the reload opened the config file",
        Duration::from_secs(10),
        || {
            writer = writer.take().or_else(|| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(O_NONBLOCK)
                    .open(&edge.config_path)
                    .ok()
            });
            let opened = writer.is_some();
            async move { opened }
        },
    )
    .await;
    let mut writer = writer.unwrap();

    // The reload is now waiting for the file's bytes; the admin plane still answers.
    let answer = |path: &'static str| {
        let url = edge.admin_url(path);
        async move {
            tokio::time::timeout(Duration::from_secs(5), get(&url))
                .await
                .unwrap_or_else(|_| panic!("{path} did not answer during a reload"))
        }
    };
    let status = answer("/status").await;
    assert_eq!(status.json()["config"]["generation"], 1);
    assert_eq!(answer("/health").await.status, 200);
    assert_eq!(answer("/metrics").await.status, 200);
    assert_eq!(get(&edge.url("/")).await.text(), "hello");
    assert!(!reload.is_finished());

    writer.write_all(text.as_bytes()).unwrap();
    drop(writer);
    let reloaded = reload.await.unwrap();
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(reloaded.json()["generation"], 2);
    assert_eq!(edge.status().await["config"]["generation"], 2);
}
