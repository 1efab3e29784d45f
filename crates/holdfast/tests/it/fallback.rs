//! A route's static fallback (`fallback = { status, file, content_type, retry_after }`):
//! served, with `Cache-Control: no-store`, when every pool of the route's chain is down, and
//! in place of the edge's error page when the last attempt failed on the origin side (502,
//! 504). The file is read when the runtime is built (start, reload, `holdfast check`); a
//! missing or oversized file is an error at `routes[0].fallback.file`.

use crate::support::*;
use std::net::SocketAddr;

const MAINTENANCE: &str = "<h1>Back soon</h1>\n";

/// The failover chain (`CHAIN`), its route ending in `fallback`.
fn chain() -> String {
    edge_config(2, CHAIN)
}

fn vars(
    primary: SocketAddr,
    primary_extra: &str,
    secondary: SocketAddr,
    secondary_extra: &str,
    fallback: &str,
) -> Vec<(&'static str, String)> {
    let route = format!("fallback = {fallback}");
    chain_vars(
        &[primary],
        primary_extra,
        &[secondary],
        secondary_extra,
        &route,
    )
}

/// One pool, one server, one route (`APP_POOL`); the route's `timeouts` and `fallback`.
fn single() -> String {
    edge_config(2, APP_POOL)
}

fn single_vars(primary: SocketAddr, timeouts: &str, fallback: &str) -> Vec<(&'static str, String)> {
    let route = format!("timeouts = {timeouts}\nfallback = {fallback}");
    app_vars(&server_list(&[primary]), "", &route)
}

/// Write `files` beside the config, then start the edge from `template`.
fn start_with_files(template: &str, vars: &[(&str, String)], files: &[(&str, &[u8])]) -> Edge {
    Edge::start_in_dir(template, vars, |dir| {
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    })
}

/// `got` is the fallback: `status`, the file's bytes, `content_type`, `retry_after`,
/// `Cache-Control: no-store`, and a request id like every response.
fn assert_fallback(
    got: &Got,
    status: u16,
    body: &str,
    content_type: &str,
    retry_after: Option<&str>,
) {
    assert_eq!(got.status, status, "{}", got.text());
    assert_eq!(got.text(), body);
    assert_eq!(got.header("content-type"), Some(content_type));
    assert_eq!(got.header("retry-after"), retry_after);
    assert_eq!(got.header("cache-control"), Some("no-store"));
    assert!(got.header("x-request-id").is_some(), "{:?}", got.headers);
}

/// `got` is the fallback `MAINTENANCE_FALLBACK`.
fn assert_maintenance(got: &Got) {
    assert_fallback(
        got,
        503,
        MAINTENANCE,
        "text/html; charset=utf-8",
        Some("30"),
    );
}

/// The sum of `holdfast_pool_failover_total{route="site"}` samples with the label `label`
/// (e.g. `to="fallback"`).
fn failovers_with(metrics: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("holdfast_pool_failover_total{"))
        .filter(|l| l.contains(r#"route="site""#) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

const MAINTENANCE_FALLBACK: &str = r#"{ status = 503, file = "maintenance.html", content_type = "text/html; charset=utf-8", retry_after = "30s" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_pool_down_the_fallback_is_served_until_a_pool_is_back() {
    let mut p = Killable::start(with_checks("p", |_| 200)).await;
    let mut s = Killable::start(with_checks("s", |_| 200)).await;
    let checks = format!("{SHORT_EJECTIONS}{QUICK_CHECKS}");
    let edge = start_with_files(
        &chain(),
        &vars(p.addr, &checks, s.addr, &checks, MAINTENANCE_FALLBACK),
        &[("maintenance.html", MAINTENANCE.as_bytes())],
    );
    let url = edge.url("/page");
    let got = within_limit(get(&url)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "p");
    assert_eq!(active_pool(&edge, "site").await, "primary");

    // Every origin dies. From the first request on, clients get the fallback: before the
    // checks notice, in place of the 502 of the last failed attempt; after, directly.
    p.kill().await;
    s.kill().await;
    for _ in 0..5 {
        let got = within_limit(get(&url)).await;
        assert_maintenance(&got);
    }
    // `active` is what the route last chose for a request: polled with requests.
    eventually("the route to serve its fallback", LIMIT, || async {
        let got = within_limit(get(&url)).await;
        assert_maintenance(&got);
        active_pool(&edge, "site").await == "fallback"
    })
    .await;
    let metrics = edge.metrics().await;
    assert!(
        failovers_with(&metrics, r#"to="fallback""#) >= 1.0,
        "{metrics}"
    );

    // The secondary pool comes back: it serves again.
    s.restart();
    eventually("the secondary pool to serve again", LIMIT, || async {
        let got = within_limit(get(&url)).await;
        if got.status == 200 {
            assert_eq!(got.text(), "s");
            true
        } else {
            assert_maintenance(&got);
            false
        }
    })
    .await;
    assert_eq!(active_pool(&edge, "site").await, "secondary");
    for _ in 0..5 {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.text(), "s");
    }
    let metrics = edge.metrics().await;
    assert!(
        failovers_with(&metrics, r#"from="fallback""#) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_active_checks_failed_pools_also_lead_to_the_fallback() {
    // Passive health only, one server per pool (the 50% ejection cap ejects none of them,
    // which does not matter to the chain). Status 200, a JSON file, no retry_after.
    let (d1, d2) = (dead_addr(), dead_addr());
    let passive = "[pools.outlier]\nconsecutive_failures = 1\nbase_ejection = \"1h\"\nmax_ejection = \"1h\"\n";
    let body = r#"{"status":"maintenance"}"#;
    let edge = start_with_files(
        &chain(),
        &vars(
            d1,
            passive,
            d2,
            passive,
            r#"{ status = 200, file = "sorry.json" }"#,
        ),
        &[("sorry.json", body.as_bytes())],
    );

    let url = edge.url("/page");
    for _ in 0..10 {
        let got = within_limit(get(&url)).await;
        assert_fallback(&got, 200, body, "application/json", None);
    }
    assert_eq!(active_pool(&edge, "site").await, "fallback");
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "primary", d1) + connect_errors(&metrics, "secondary", d2),
        2.0,
        "the first request tried both pools; once both were down, none was tried:\n{metrics}"
    );
    assert!(
        failovers_with(&metrics, r#"to="fallback""#) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_replaces_the_edges_timeout_page_but_not_an_origins_answer() {
    let slow = Origin::start(handler(|_req| async {
        tokio::time::sleep(FOREVER).await;
        ok("too late")
    }))
    .await;
    let edge = start_with_files(
        &single(),
        &single_vars(slow.addr, r#"{ read = "300ms" }"#, MAINTENANCE_FALLBACK),
        &[("maintenance.html", MAINTENANCE.as_bytes())],
    );
    let got = within_limit(get(&edge.url("/page"))).await;
    assert_maintenance(&got);

    // An origin's own 502 is its answer, not an edge error page.
    let answering = Origin::start(handler(|_req| async { status(502, "origin says 502") })).await;
    let edge = start_with_files(
        &single(),
        &single_vars(answering.addr, "{}", MAINTENANCE_FALLBACK),
        &[("maintenance.html", MAINTENANCE.as_bytes())],
    );
    let got = within_limit(get(&edge.url("/page"))).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.text(), "origin says 502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_type_follows_the_file_extension() {
    for (file, content_type) in [
        ("page.html", "text/html; charset=utf-8"),
        ("page.htm", "text/html; charset=utf-8"),
        ("page.json", "application/json"),
        ("page.txt", "text/plain; charset=utf-8"),
        ("page.bin", "application/octet-stream"),
    ] {
        let edge = start_with_files(
            &single(),
            &single_vars(dead_addr(), "{}", &format!(r#"{{ file = "{file}" }}"#)),
            &[(file, b"down")],
        );
        let got = within_limit(get(&edge.url("/page"))).await;
        // Default status 503; no retry_after, no Retry-After.
        assert_fallback(&got, 503, "down", content_type, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_oversized_fallback_file_is_rejected() {
    let origin = Origin::text("page").await;
    let fallback = r#"{ file = "maintenance.html" }"#;
    let edge = start_with_files(
        &single(),
        &single_vars(origin.addr, "{}", fallback),
        &[("maintenance.html", MAINTENANCE.as_bytes())],
    );
    assert_eq!(within_limit(get(&edge.url("/"))).await.text(), "page");
    let rewrite = |fallback: &str| {
        edge.rewrite(&single(), &single_vars(origin.addr, "{}", fallback));
    };
    // A reload must be rejected with an error at `key`, which `holdfast check` names too.
    let assert_rejected_at = |key: &str| {
        let (_, errors) = edge.reload_rejected();
        let at = format!(": {key}: ");
        assert!(errors.iter().any(|e| e.contains(&at)), "{errors:?}");
        assert!(check_errors(&edge.config_path).contains(&at));
    };

    // A reload naming a file that is not there.
    rewrite(r#"{ file = "missing.html" }"#);
    let got = post(&edge.admin_url("/reload")).await;
    assert_eq!(got.status, 422, "{}", got.text());
    let body = got.json();
    assert_eq!(body["result"], "rejected", "{body}");
    assert_eq!(body["generation"], 1, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains(": routes[0].fallback.file: ")),
        "{body}"
    );
    assert!(
        check_errors(&edge.config_path).contains(": routes[0].fallback.file: "),
        "holdfast check names the key too"
    );
    // The edge runs on, unchanged.
    assert_eq!(within_limit(get(&edge.url("/"))).await.text(), "page");
    assert_eq!(edge.status().await["config"]["generation"], 1);

    // More than 1 MiB.
    std::fs::write(edge.dir.path().join("huge.html"), vec![b'x'; (1 << 20) + 1]).unwrap();
    rewrite(r#"{ file = "huge.html" }"#);
    assert_rejected_at("routes[0].fallback.file");

    // A status out of range.
    rewrite(r#"{ status = 600, file = "maintenance.html" }"#);
    assert_rejected_at("routes[0].fallback.status");

    // Exactly 1 MiB is allowed.
    std::fs::write(edge.dir.path().join("big.html"), vec![b'x'; 1 << 20]).unwrap();
    rewrite(r#"{ file = "big.html" }"#);
    edge.reload_applied();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_read_again_on_reload() {
    let dead = dead_addr();
    let fallback = r#"{ file = "maintenance.txt" }"#;
    let edge = start_with_files(
        &single(),
        &single_vars(dead, "{}", fallback),
        &[("maintenance.txt", b"first")],
    );
    let url = edge.url("/page");
    let got = within_limit(get(&url)).await;
    assert_fallback(&got, 503, "first", "text/plain; charset=utf-8", None);

    // Changed on disk: still the old bytes until a reload builds the runtime again.
    std::fs::write(edge.dir.path().join("maintenance.txt"), b"second").unwrap();
    assert_eq!(within_limit(get(&url)).await.text(), "first");
    edge.reload_applied();
    let got = within_limit(get(&url)).await;
    assert_fallback(&got, 503, "second", "text/plain; charset=utf-8", None);
}

#[test]
fn an_edge_does_not_start_without_its_fallback_file() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("edge.toml");
    std::fs::write(
        &config_path,
        render(
            &single(),
            &single_vars(
                "127.0.0.1:9".parse().unwrap(),
                "{}",
                r#"{ file = "missing.html" }"#,
            ),
        ),
    )
    .unwrap();
    assert!(check_errors(&config_path).contains(": routes[0].fallback.file: "));
    match holdfast::Running::start(holdfast::ConfigSource::File(config_path.clone())) {
        Ok(running) => {
            running.shutdown();
            panic!("the edge started without its fallback file");
        }
        Err(e) => assert!(e.to_string().contains("routes[0].fallback.file"), "{e}"),
    }
}
