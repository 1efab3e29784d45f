//! The public status page (`[status_page]`): its own listener; components judged from the
//! same health state as `/status` (operational, degraded, outage); incidents posted on the
//! admin plane and kept in `state_dir`; the static snapshot exported to `export_dir` and
//! `PUT` to `export_put` after every change; a failing export counted and shown, never
//! affecting serving.

use crate::support::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

/// One pool "app" of `servers` (a server trips after one failure, never ejected), route
/// "all", and a status page whose component "Website" is route "all".
fn edge_with_page(servers: &[SocketAddr], put: &str) -> Edge {
    let page = format!(
        r#"
[status_page]
listen = "127.0.0.1:0"
title = "Example status"
export_dir = "export"
{put}

[[status_page.components]]
name = "Website"
routes = ["all"]
"#
    );
    Edge::start(
        &edge_config_with(1, "state_dir = \"state\"", &format!("{APP_POOL}{page}")),
        &app_vars(
            &server_list(servers),
            "[pools.retry]\nattempts = 0\n\n[pools.outlier]\nconsecutive_failures = 1\nmax_ejection_percent = 0",
            "",
        ),
    )
}

fn page_url(edge: &Edge, path: &str) -> String {
    format!("http://{}{path}", edge.running().status_page_addr.unwrap())
}

fn exported(dir: &Path) -> serde_json::Value {
    std::fs::read(dir.join("export/status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

async fn post_json(url: &str, body: serde_json::Value) -> Got {
    send(
        http::Request::post(url)
            .header("content-type", "application/json")
            .body(body.to_string().into())
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_page_follows_health_and_incidents_and_is_exported() {
    let good = Origin::text("good").await;
    let mut bad = Killable::start(handler(|_req| async { ok("fine") })).await;
    let store = Origin::start(handler(|_req| async { status(201, "") })).await;
    let edge = edge_with_page(
        &[good.addr, bad.addr],
        &format!("export_put = \"http://{}/status/\"", store.addr),
    );

    let page = get(&page_url(&edge, "/")).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    for must in [
        "<html lang=\"en\">",
        "name=\"viewport\"",
        "<main>",
        "<header>",
        "<footer>",
        "Example status",
        "All systems operational",
    ] {
        assert!(html.contains(must), "{must}: {html}");
    }
    assert!(!html.contains("<script"), "no JavaScript needed: {html}");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "{html}"
    );

    eventually("the first export", LIMIT, || async {
        exported(edge.dir.path())["components"][0]["state"] == "operational"
    })
    .await;
    assert!(edge.dir.path().join("export/index.html").exists());
    eventually("both files PUT", LIMIT, || async {
        let seen = store.seen.lock().unwrap().clone();
        ["/status/index.html", "/status/status.json"]
            .iter()
            .all(|p| {
                seen.iter()
                    .any(|s| s.method == http::Method::PUT && s.uri.path() == *p)
            })
    })
    .await;

    // An incident, posted on the admin plane: served and exported at once.
    let opened = post_json(
        &edge.admin_url("/incidents"),
        serde_json::json!({"title": "Slow checkout", "body": "Looking into it.", "state": "investigating"}),
    )
    .await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    let id = opened.json()["id"].as_u64().unwrap();
    let updated = post_json(
        &edge.admin_url(&format!("/incidents/{id}")),
        serde_json::json!({"body": "A fix is out.", "state": "monitoring"}),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let html = get(&page_url(&edge, "/")).await.text();
    assert!(
        html.contains("Slow checkout") && html.contains("A fix is out."),
        "{html}"
    );
    eventually("the incident exported", LIMIT, || async {
        exported(edge.dir.path())["incidents"][0]["state"] == "monitoring"
    })
    .await;
    assert!(edge.dir.path().join("state/incidents.json").exists());
    let missing = post_json(
        &edge.admin_url("/incidents/99"),
        serde_json::json!({"body": "x", "state": "resolved"}),
    )
    .await;
    assert_eq!(missing.status, 404);

    // An origin dies: its server turns failing, the component degraded, served and exported.
    bad.kill().await;
    eventually("the dead server tripped", LIMIT, || async {
        within_limit(get(&edge.url("/"))).await;
        edge.server("app", bad.addr).await["health"] == "failing"
    })
    .await;
    let html = get(&page_url(&edge, "/")).await.text();
    assert!(
        html.contains("Some systems degraded") && html.contains(">Degraded<"),
        "{html}"
    );
    eventually("the degraded component exported", LIMIT, || async {
        exported(edge.dir.path())["components"][0]["state"] == "degraded"
    })
    .await;
    let status = edge.status().await;
    assert_eq!(
        status["status_page"]["components"][0]["state"], "degraded",
        "{status}"
    );
    assert_eq!(
        status["status_page"]["export"]["failing"], false,
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_export_is_counted_and_shown_and_serving_goes_on() {
    let good = Origin::text("good").await;
    let dead = dead_addr();
    let edge = edge_with_page(
        &[good.addr],
        &format!("export_put = \"http://{dead}/status/\""),
    );

    eventually("the failed PUT counted", LIMIT, || async {
        let metrics = edge.metrics().await;
        sample(
            &metrics,
            "holdfast_status_page_exports_total",
            &[("target", "put"), ("result", "failed")],
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    let status = edge.status().await;
    let export = &status["status_page"]["export"];
    assert_eq!(export["failing"], true, "{status}");
    assert!(
        export["last_error"]
            .as_str()
            .unwrap()
            .contains("export_put"),
        "{status}"
    );
    let operator = get(&edge.admin_url("/")).await.text();
    assert!(
        operator.contains("the public status page&#39;s export fails")
            || operator.contains("the public status page's export fails"),
        "{operator}"
    );
    // The folder export still worked, and both the page and the data path serve.
    assert_eq!(
        exported(edge.dir.path())["components"][0]["state"],
        "operational"
    );
    assert_eq!(get(&page_url(&edge, "/")).await.status, 200);
    assert_eq!(within_limit(get(&edge.url("/"))).await.status, 200);
}

#[test]
fn a_component_naming_nothing_that_exists_is_refused() {
    let text = render(
        &edge_config(
            1,
            &format!(
                "{APP_POOL}\n[status_page]\nlisten = \"127.0.0.1:0\"\nexport_put = \"ftp://x/\"\n\n[[status_page.components]]\nname = \"Website\"\nroutes = [\"nope\"]\ndns = [\"www.example.com\"]\n"
            ),
        ),
        &app_vars("\"127.0.0.1:9\"", "", ""),
    );
    let errors = holdfast_config::parse(&text, Path::new(".")).unwrap_err();
    let all = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for key in [
        "status_page.components[0].routes[0]: unknown route \"nope\"",
        "status_page.components[0].dns[0]",
        "status_page.export_put",
    ] {
        assert!(all.contains(key), "{key} in\n{all}");
    }
}

#[test]
fn export_put_takes_https_and_its_ca_file_only_with_https() {
    let errors = |keys: &str| {
        let text = render(
            &edge_config(
                1,
                // Parsed only, never bound.
                &format!("{BASIC_POOL}\n[status_page]\nlisten = \"127.0.0.1:18081\"\n{keys}\n"),
            ),
            &[("origin", "127.0.0.1:9".to_string())],
        );
        match holdfast_config::parse(&text, Path::new("/etc/holdfast")) {
            Ok(config) => {
                let page = config.status_page.unwrap();
                format!("ok {:?} {:?}", page.export_put, page.export_ca_file)
            }
            Err(errors) => errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    assert_eq!(
        errors("export_put = \"https://storage.example.net/status/\"\nexport_ca_file = \"ca.pem\""),
        "ok Some(\"https://storage.example.net/status/\") Some(\"/etc/holdfast/ca.pem\")"
    );
    let plain =
        errors("export_put = \"http://storage.example.net/status/\"\nexport_ca_file = \"ca.pem\"");
    assert!(
        plain.contains("status_page.export_ca_file: set, but export_put is not an https:// URL"),
        "{plain}"
    );
    let ftp = errors("export_put = \"ftp://storage.example.net/status/\"");
    assert!(
        ftp.contains("status_page.export_put: \"ftp://storage.example.net/status/\" is not an http:// or https:// URL"),
        "{ftp}"
    );
}
