//! The operations files in `deploy/`: the Prometheus alert rules pass `promtool check rules`,
//! and every metric (and label) an alert or a Grafana panel queries is in a real `/metrics`
//! scrape of an edge that went through what the alerts are about (a pool down, a failover,
//! the fallback page, a rejected artifact and reload, DNS answering its last healthy set, a
//! failing status page export, cache look-ups, limits and rules, a DNS query and a steering
//! change); the systemd unit passes
//! `systemd-analyze verify`. A missing tool fails the test and names its Debian package
//! (`scripts/test` installs them).

use crate::support::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is missing: install the Debian package {package} (scripts/test does)")
    })
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = std::process::Command::new(tool("promtool", "prometheus"))
        .args(["check", "rules"])
        .arg(root().join("deploy/alerts.yml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 15 rules found"), "{text}");
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(root().join("deploy/holdfast.service")).unwrap();
    for must in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=holdfast",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "LimitNOFILE=",
        // Readiness, and the main pid handed on at a binary upgrade.
        "Type=notify",
        "NotifyAccess=main",
    ] {
        assert!(unit.contains(must), "{must}");
    }
    let socket = std::fs::read_to_string(root().join("deploy/holdfast.socket")).unwrap();
    assert!(socket.contains("ListenDatagram="), "the DNS socket");
    // Verify both with this build's binary in place of the installed one.
    let dir = tempfile::tempdir().unwrap();
    let local = unit.replace("/usr/local/bin/holdfast", env!("CARGO_BIN_EXE_holdfast"));
    let path = dir.path().join("holdfast.service");
    std::fs::write(&path, local).unwrap();
    let socket_path = dir.path().join("holdfast.socket");
    std::fs::write(&socket_path, socket).unwrap();
    let out = std::process::Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&path)
        .arg(&socket_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    // Only lines about these units count (the host's own units may have warnings).
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("holdfast."))
        .collect();
    assert!(ours.is_empty(), "{text}");
}

/// `holdfast_*` metric names and the label names used with each, in a PromQL text.
fn queried(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr.get(i..).and_then(|s| s.find("holdfast_")) {
        let start = i + at;
        let end = start
            + expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len() - start);
        let name = expr[start..end].to_string();
        let mut labels = BTreeSet::new();
        if bytes.get(end) == Some(&b'{') {
            let close = end + expr[end..].find('}').unwrap();
            for m in expr[end + 1..close].split(',') {
                let key = m.split(['=', '!', '~']).next().unwrap().trim();
                if !key.is_empty() && key != "instance" {
                    labels.insert(key.to_string());
                }
            }
        }
        out.push((name, labels));
        i = end;
    }
    out
}

/// Every `expr:` of the alert rules (one line, or a `|` block) and every dashboard query.
fn all_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let rules = std::fs::read_to_string(root().join("deploy/alerts.yml")).unwrap();
    let mut lines = rules.lines().peekable();
    let mut alert = String::new();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            alert = name.to_string();
        } else if let Some(expr) = t.strip_prefix("expr: ") {
            let mut text = expr.to_string();
            if expr == "|" {
                text.clear();
                while lines.peek().is_some_and(|l| l.starts_with("          ")) {
                    text.push_str(lines.next().unwrap().trim());
                    text.push(' ');
                }
            }
            queries.push((format!("alert {alert}"), text));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                format!("panel {:?}", panel["title"].as_str().unwrap()),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"].as_str().filter(|q| q.contains("holdfast_")) {
            queries.push((format!("variable {}", var["name"]), q.to_string()));
        }
    }
    queries
}

const ZONE: &str = "$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 60
@    IN NS  ns1
ns1  IN A   192.0.2.1
";

const CONFIG: &str = r#"
[[pools]]
name = "app"
servers = ["{dead}"]
[pools.health]
kind = "tcp"
interval = "50ms"
unhealthy_after = 1

[[pools]]
name = "spare"
servers = ["{good}"]

[[pools]]
name = "spare2"
servers = ["{good2}"]

[[routes]]
name = "gone"
match = { path_prefix = "/gone" }
pools = ["app"]
fallback = { status = 503, file = "sorry.html" }

[[routes]]
name = "all"
match = { path_prefix = "/" }
pools = ["app", "spare"]
cache = { enabled = true }

[[limits]]
name = "per-ip"
key = "client_ip"
requests = 1000
per = "1s"

[[rules]]
id = "block-bad"
expr = 'request.path == "/bad"'
action = "block"

[[ip_lists]]
name = "partners"
file = "partners.txt"

[dns]
listen = "127.0.0.1:0"

[[dns.zones]]
origin = "example.test."
file = "example.test.zone"

[[dns.steered]]
name = "www.example.test."
policy = "failover"
pools = ["app"]

[[dns.steered]]
name = "api.example.test."
policy = "failover"
pools = ["spare", "spare2"]

[status_page]
listen = "127.0.0.1:0"
export_put = "http://{dead}/status/"

[[status_page.components]]
name = "Website"
routes = ["all"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_and_panel_queries_metrics_holdfast_exports() {
    let cacheable = || {
        handler(|_req| async {
            let mut r = ok("page");
            r.headers_mut().insert(
                "cache-control",
                http::HeaderValue::from_static("max-age=60"),
            );
            r
        })
    };
    let on = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move { tokio::net::TcpListener::bind((ip, 0)).await.unwrap() }
    };
    let good = Origin::serve(on("127.0.0.2").await, cacheable());
    let good2 = Origin::serve(on("127.0.0.3").await, cacheable());
    let dead = dead_addr();
    let edge = Edge::start_in_dir(
        &edge_config_with(
            1,
            "state_dir = \"state\"\ntls_listen = [\"127.0.0.1:0\"]\n[[edge.tls]]\ncert = \"site.pem\"\nkey = \"site.key\"",
            CONFIG,
        ),
        &[
            ("dead", dead.to_string()),
            ("good", good.addr.to_string()),
            ("good2", good2.addr.to_string()),
        ],
        |dir| {
            std::fs::write(dir.join("example.test.zone"), ZONE).unwrap();
            TestCa::new("deploy test CA")
                .leaf(&["www.example.test"])
                .write(dir, "site");
            std::fs::write(dir.join("sorry.html"), "sorry").unwrap();
            std::fs::write(dir.join("partners.txt"), "# version: 1\n192.0.2.0/24\n").unwrap();
        },
    );
    eventually(
        "the dead pool held down by its checks",
        Duration::from_secs(10),
        || async { edge.server("app", dead).await["health"] == "down" },
    )
    .await;
    for path in ["/", "/", "/gone", "/bad"] {
        within_limit(get(&edge.url(path))).await;
    }
    // One DNS query (A www.example.test.), answered or not.
    let dns = edge.running().dns_addr.unwrap();
    let query: Vec<u8> = [
        &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
        b"\x03www\x07example\x04test\x00",
        &[0, 1, 0, 1],
    ]
    .concat();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&query, dns).unwrap();
    let mut answer = [0u8; 512];
    let _ = socket.recv_from(&mut answer);
    // A steering change: the operator takes api's first target down (once steering has run).
    eventually("the override applied", Duration::from_secs(10), || async {
        post(&edge.admin_url("/dns/targets/127.0.0.2/down"))
            .await
            .status
            == 200
    })
    .await;
    // A rejected artifact file and a rejected reload.
    std::fs::write(edge.dir.path().join("partners.txt"), "not a network\n").unwrap();
    let text = std::fs::read_to_string(&edge.config_path).unwrap();
    std::fs::write(&edge.config_path, "[edge]\nnot valid").unwrap();
    assert!(matches!(
        edge.reload(),
        holdfast::ReloadOutcome::Rejected { .. }
    ));
    std::fs::write(&edge.config_path, text).unwrap();
    eventually(
        "the failed export and the prevented empty answer",
        Duration::from_secs(15),
        || async {
            let m = edge.metrics().await;
            sample(
                &m,
                "holdfast_status_page_exports_total",
                &[("result", "failed"), ("target", "put")],
            )
            .unwrap_or(0.0)
                >= 1.0
                && m.contains("holdfast_dns_empty_answer_prevented_total{")
                && m.contains("holdfast_dns_steering_changes_total{name=\"api.example.test.\"} 1")
        },
    )
    .await;

    let metrics = edge.metrics().await;
    let mut missing = Vec::new();
    let queries = all_queries();
    assert!(queries.len() >= 25, "{queries:?}");
    for (what, expr) in &queries {
        let used = queried(expr);
        assert!(
            !used.is_empty(),
            "{what} queries no holdfast metric: {expr}"
        );
        for (name, labels) in used {
            let family = name
                .strip_suffix("_bucket")
                .filter(|_| {
                    metrics.contains(&format!(
                        "# TYPE {} histogram",
                        name.trim_end_matches("_bucket")
                    ))
                })
                .unwrap_or(&name);
            let samples: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
                })
                .collect();
            if samples.is_empty() || !metrics.contains(&format!("# TYPE {family} ")) {
                missing.push(format!("{what}: {name} is not in the scrape"));
                continue;
            }
            for label in labels {
                if !samples.iter().any(|s| s.contains(&format!("{label}=\""))) {
                    missing.push(format!("{what}: {name} has no label {label}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}\n\n{metrics}", missing.join("\n"));
}

#[test]
fn the_query_reader_finds_names_and_labels() {
    // The check above is only worth something if it reads the queries right.
    let got = queried(
        r#"sum by (route) (rate(holdfast_cache_lookups_total{instance=~"$i",result=~"hit"}[5m])) / holdfast_x"#,
    );
    assert_eq!(got[0].0, "holdfast_cache_lookups_total");
    assert_eq!(got[0].1.iter().collect::<Vec<_>>(), ["result"]);
    assert_eq!(got[1].0, "holdfast_x");
}
