//! An origin that cannot be reached: the client gets a 502 page (HTML or JSON) naming the
//! request id and blaming the origin; the failure is counted in metrics and shown on
//! `/status`; other routes keep working; and the origin is used again once it is back.

use crate::support::*;

const EDGE: &str = r#"
[[pools]]
name = "down"
servers = ["{down}"]

[[pools]]
name = "up"
servers = ["{up}"]

[[routes]]
name = "healthy"
match = { path_prefix = "/ok/" }
pool = "up"

[[routes]]
name = "broken"
match = { path_prefix = "/" }
pool = "down"
"#;

fn start(down: std::net::SocketAddr, up: std::net::SocketAddr) -> Edge {
    Edge::start(
        &edge_config(1, EDGE),
        &[("down", down.to_string()), ("up", up.to_string())],
    )
}

fn connect_errors(metrics: &str, pool: &str, server: std::net::SocketAddr) -> Option<f64> {
    metric(
        metrics,
        &format!(
            r#"holdfast_upstream_errors_total{{kind="connect",pool="{pool}",server="{server}"}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_origin_is_a_502_page_blaming_the_origin() {
    let up = Origin::text("up").await;
    let (_reserved, down) = reserved_port();
    let edge = start(down, up.addr);

    let got = get(&edge.url("/page")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(got.header("content-type").unwrap().starts_with("text/html"));
    let id = got.header("x-request-id").unwrap();
    assert!(
        got.text().contains(id),
        "page names the request id: {}",
        got.text()
    );
    assert!(
        got.text().contains("origin"),
        "page blames the origin: {}",
        got.text()
    );
    assert_eq!(got.header("cache-control"), Some("no-store"));

    let json = get_with(&edge.url("/api"), &[("accept", "application/json")]).await;
    assert_eq!(json.status, 502);
    assert!(json
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = json.json();
    assert_eq!(body["status"], 502);
    assert_eq!(body["failed"], "origin");
    assert_eq!(body["request_id"], json.header("x-request-id").unwrap());
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_counted_and_shown_on_status() {
    let up = Origin::text("up").await;
    let (_reserved, down) = reserved_port();
    let edge = start(down, up.addr);
    for _ in 0..3 {
        assert_eq!(get(&edge.url("/")).await.status, 502);
    }

    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "down", down),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        connect_errors(&metrics, "up", up.addr),
        Some(0.0),
        "{metrics}"
    );

    let status = edge.status().await;
    let server = server_status(&status, "down", &down.to_string());
    assert_eq!(server["requests"], 3, "{server}");
    assert_eq!(server["failures"], 3, "{server}");
    let last_error = server["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{server}"));
    assert!(
        last_error.contains("refused"),
        "last_error says why the origin could not be reached: {last_error:?}"
    );
    assert!(server["last_error_at"].is_string(), "{server}");

    let healthy = server_status(&status, "up", &up.addr.to_string());
    assert_eq!(healthy["failures"], 0, "{healthy}");
    assert!(healthy["last_error"].is_null(), "{healthy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_routes_keep_working_while_an_origin_is_down() {
    let up = Origin::text("up").await;
    let (_reserved, down) = reserved_port();
    let edge = start(down, up.addr);
    for _ in 0..5 {
        assert_eq!(get(&edge.url("/broken")).await.status, 502);
        let ok = get(&edge.url("/ok/fine")).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.text(), "up");
    }
    assert_eq!(up.requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_comes_back_is_used_again() {
    let up = Origin::text("up").await;
    let (reserved, down) = reserved_port();
    let edge = start(down, up.addr);
    assert_eq!(get(&edge.url("/")).await.status, 502);

    let listener = reserved.listen(1024).unwrap();
    let back = Origin::serve(listener, handler(|_req| async { ok("back") }));
    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "back");
    assert_eq!(back.requests(), 1);

    let status = edge.status().await;
    let server = server_status(&status, "down", &down.to_string());
    assert_eq!(server["requests"], 2, "{server}");
    assert_eq!(server["failures"], 1, "{server}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_closes_without_answering_is_a_502() {
    let hangs_up = RawOrigin::start(|mut c| async move {
        c.read_request().await;
        drop(c);
    })
    .await;
    let up = Origin::text("up").await;
    let edge = start(hangs_up.addr, up.addr);
    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(got.text().contains("origin"));

    let metrics = edge.metrics().await;
    let sample = format!(
        r#"holdfast_upstream_errors_total{{kind="protocol",pool="down",server="{}"}}"#,
        hangs_up.addr
    );
    assert_eq!(metric(&metrics, &sample), Some(1.0), "{metrics}");
    assert_eq!(connect_errors(&metrics, "down", hangs_up.addr), Some(0.0));
}
