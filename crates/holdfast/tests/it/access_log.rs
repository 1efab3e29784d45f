//! The JSON access log: one line per request with its request id, route, upstream and
//! timings, written to the configured file (flushed every 100 ms and on shutdown);
//! `access_log = "off"` writes nothing.

use crate::support::*;
use std::path::Path;
use std::time::Duration;

const LOGGED: &str = r#"
[edge]
listen = ["{edge}"]
threads = 1
access_log = "{log}"

[admin]
listen = "{admin}"

[[pools]]
name = "up"
servers = ["{origin}"]

[[pools]]
name = "gone"
servers = ["{dead}"]

[[routes]]
name = "broken"
match = { path_prefix = "/broken" }
pool = "gone"

[[routes]]
name = "site"
match = { path_prefix = "/" }
pool = "up"
"#;

fn vars(origin: &Origin, log: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("dead", dead_addr().to_string()),
        ("log", log.to_string()),
    ]
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

async fn wait_for_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    eventually(
        &format!("{n} access-log lines in {}", path.display()),
        Duration::from_secs(5),
        || {
            let count = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
            async move { count >= n }
        },
    )
    .await;
    lines(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_json_line() {
    let origin = Origin::text("twelve bytes").await;
    // A relative path is resolved against the configuration file's folder.
    let edge = Edge::start(LOGGED, &vars(&origin, "access.log"));
    let log = edge.dir.path().join("access.log");

    let ok = get_with(
        &edge.url("/page?q=1"),
        &[
            ("host", "www.example.com"),
            ("x-request-id", "client-chosen-id"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    let failed = get(&edge.url("/broken/x")).await;
    assert_eq!(failed.status, 502);

    let lines = wait_for_lines(&log, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (first, second) = (&lines[0], &lines[1]);

    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "bytes",
            "client",
            "duration_ms",
            "host",
            "method",
            "path",
            "protocol",
            "request_id",
            "route",
            "status",
            "time",
            "upstream",
            "upstream_ms"
        ],
        "{first}"
    );
    assert_eq!(first["request_id"], "client-chosen-id");
    assert_eq!(first["request_id"], ok.header("x-request-id").unwrap());
    assert!(
        first["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{first}"
    );
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "www.example.com");
    assert_eq!(first["path"], "/page?q=1");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "site");
    assert_eq!(first["upstream"], origin.addr.to_string());
    assert_eq!(first["bytes"], 12);
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0, "{first}");
    assert!(first["upstream_ms"].as_f64().unwrap() >= 0.0, "{first}");
    let time = first["time"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");

    assert_eq!(second["request_id"], failed.header("x-request-id").unwrap());
    assert_eq!(second["status"], 502);
    assert_eq!(second["route"], "broken");
    assert_eq!(second["path"], "/broken/x");
    assert!(
        second["upstream"].is_string(),
        "the server that was tried: {second}"
    );
    assert_eq!(second["upstream_ms"], serde_json::Value::Null, "{second}");
    assert_eq!(second["bytes"], failed.body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_route_is_logged_too() {
    let origin = Origin::text("ok").await;
    let template = LOGGED.replace(
        "match = { path_prefix = \"/\" }",
        "match = { host = \"example.com\" }",
    );
    let edge = Edge::start(&template, &vars(&origin, "access.log"));
    let got = get_with(&edge.url("/"), &[("host", "elsewhere.test")]).await;
    assert_eq!(got.status, 404);
    let lines = wait_for_lines(&edge.dir.path().join("access.log"), 1).await;
    assert_eq!(lines[0]["status"], 404);
    assert_eq!(lines[0]["route"], "-");
    assert_eq!(lines[0]["upstream"], serde_json::Value::Null);
    assert_eq!(lines[0]["upstream_ms"], serde_json::Value::Null);
    assert_eq!(lines[0]["request_id"], got.header("x-request-id").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_edge_flushes_the_log() {
    let origin = Origin::text("ok").await;
    let mut edge = Edge::start(LOGGED, &vars(&origin, "access.log"));
    let log = edge.dir.path().join("access.log");
    let mut ids = Vec::new();
    for _ in 0..5 {
        let got = get(&edge.url("/")).await;
        ids.push(got.header("x-request-id").unwrap().to_string());
    }
    blocking(|| edge.stop());
    let logged: Vec<String> = lines(&log)
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_writes_nothing() {
    let origin = Origin::text("ok").await;
    let mut edge = Edge::start(LOGGED, &vars(&origin, "off"));
    for path in ["/", "/broken"] {
        get(&edge.url(path)).await;
    }
    let dir = edge.dir.path().to_path_buf();
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(), ["edge.toml"]);
    blocking(|| edge.stop());
    assert_eq!(files(), ["edge.toml"]);
    assert!(!dir.join("off").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_to_off_stops_the_lines() {
    let origin = Origin::text("ok").await;
    let mut edge = Edge::start(LOGGED, &vars(&origin, "access.log"));
    let log = edge.dir.path().join("access.log");
    let logged = get(&edge.url("/before")).await;
    assert_eq!(
        wait_for_lines(&log, 1).await[0]["request_id"],
        logged.header("x-request-id").unwrap()
    );

    let vars_off = vars(&origin, "off");
    edge.rewrite(LOGGED, &vars_off);
    assert_eq!(edge.reload_applied(), 2);
    for _ in 0..3 {
        assert_eq!(get(&edge.url("/after")).await.status, 200);
    }
    blocking(|| edge.stop());
    let paths: Vec<String> = lines(&log)
        .iter()
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_log_that_cannot_be_opened_is_rejected() {
    let origin = Origin::text("ok").await;
    let edge = Edge::start(LOGGED, &vars(&origin, "access.log"));
    let log = edge.dir.path().join("access.log");
    edge.rewrite(LOGGED, &vars(&origin, "no-such-folder/access.log"));
    let (generation, errors) = edge.reload_rejected();
    assert_eq!(generation, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let file = edge.config_path.display().to_string();
    assert!(
        errors[0].starts_with(&format!("{file}: edge.access_log: cannot open: ")),
        "{errors:?}"
    );

    let got = get(&edge.url("/still-logged")).await;
    let lines = wait_for_lines(&log, 1).await;
    assert_eq!(lines[0]["request_id"], got.header("x-request-id").unwrap());
    assert!(!edge.dir.path().join("no-such-folder").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_can_move_the_log_to_another_file() {
    let origin = Origin::text("ok").await;
    let edge = Edge::start(LOGGED, &vars(&origin, "first.log"));
    let first = edge.dir.path().join("first.log");
    let second = edge.dir.path().join("second.log");
    get(&edge.url("/one")).await;
    wait_for_lines(&first, 1).await;
    edge.rewrite(LOGGED, &vars(&origin, "second.log"));
    assert_eq!(edge.reload_applied(), 2);
    get(&edge.url("/two")).await;
    let moved = wait_for_lines(&second, 1).await;
    assert_eq!(moved[0]["path"], "/two");
    let stayed: Vec<_> = lines(&first).iter().map(|l| l["path"].clone()).collect();
    assert_eq!(stayed, ["/one"]);
}
