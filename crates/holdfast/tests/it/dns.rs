//! DNS steering end to end (`[dns]`, the interface block of issue 8): two in-process HTTP
//! "providers" on 127.0.0.2 and 127.0.0.3, health-checked by the edge's own checker; the
//! steered name answers the primary, the secondary once the primary's checks fail, and the
//! primary again after its hold-down.

use crate::support::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};

const ZONE: &str = "$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 60
@    IN NS  ns1
ns1  IN A   192.0.2.1
";

const CONFIG: &str = r#"
[[pools]]
name = "primary"
servers = ["{primary}"]
[pools.health]
kind = "tcp"
interval = "50ms"
unhealthy_after = 2
healthy_after = 1

[[pools]]
name = "secondary"
servers = ["{secondary}"]
[pools.health]
kind = "tcp"
interval = "50ms"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pools = ["primary", "secondary"]

[dns]
listen = "127.0.0.1:0"

[[dns.zones]]
origin = "example.test."
file = "example.test.zone"

[[dns.steered]]
name = "www.example.test."
policy = "failover"
pools = ["primary", "secondary"]
ttl = 30
hold_down = "2s"
"#;

async fn origin_on(ip: &str) -> Origin {
    let listener = tokio::net::TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    Origin::serve(listener, handler(|_req| async { ok("provider") }))
}

/// The A answer for `name` over UDP.
async fn resolve(dns: SocketAddr, name: &str) -> (ResponseCode, Vec<IpAddr>, u32) {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within("a DNS answer", sock.recv(&mut buf)).await.unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    let ips = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    let ttl = r.answers.first().map_or(0, |rec| rec.ttl);
    (r.metadata.response_code, ips, ttl)
}

async fn wait_answer(dns: SocketAddr, want: IpAddr) {
    eventually(
        &format!("www.example.test. to answer {want}"),
        LIMIT,
        || async { resolve(dns, "www.example.test.").await.1 == [want] },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steered_name_fails_over_to_the_secondary_and_returns_after_hold_down() {
    let mut primary = origin_on("127.0.0.2").await;
    let secondary = origin_on("127.0.0.3").await;
    let (p, s) = (primary.addr, secondary.addr);
    let edge = Edge::start_in_dir(
        &edge_config(1, CONFIG),
        &[("primary", p.to_string()), ("secondary", s.to_string())],
        |dir| std::fs::write(dir.join("example.test.zone"), ZONE).unwrap(),
    );
    let dns = edge.running().dns_addr.expect("the DNS server runs");

    wait_answer(dns, p.ip()).await;
    let (rcode, _, ttl) = resolve(dns, "www.example.test.").await;
    assert_eq!((rcode, ttl), (ResponseCode::NoError, 30));

    // Kill the primary: after unhealthy_after failed checks the name answers the secondary,
    // with the lower failover TTL.
    primary.stop();
    wait_answer(dns, s.ip()).await;
    assert_eq!(resolve(dns, "www.example.test.").await.2, 10);
    let status = get(&edge.admin_url("/status")).await.json();
    let steered = &status["dns"]["steered"][0];
    assert!(
        steered["reason"].as_str().unwrap().contains("secondary"),
        "{steered}"
    );

    // Back on the same address: healthy at once, but answered only after the hold-down.
    let listener = tokio::net::TcpListener::bind(p).await.unwrap();
    let _primary = Origin::serve(listener, handler(|_req| async { ok("provider") }));
    eventually("the primary to be healthy but held down", LIMIT, || async {
        let status = get(&edge.admin_url("/status")).await.json();
        status["dns"]["steered"][0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| {
                t["ip"] == p.ip().to_string() && t["healthy"] == true && t["eligible"] == false
            })
    })
    .await;
    assert_eq!(resolve(dns, "www.example.test.").await.1, [s.ip()]);
    wait_answer(dns, p.ip()).await;

    // The rest of the zone is served from the file; metrics count the queries.
    let (rcode, ips, _) = resolve(dns, "ns1.example.test.").await;
    assert_eq!(
        (rcode, ips),
        (ResponseCode::NoError, vec!["192.0.2.1".parse().unwrap()])
    );
    let metrics = get(&edge.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("holdfast_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("holdfast_dns_steering_changes_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_dns_and_refuses_to_change_it_while_running() {
    let primary = origin_on("127.0.0.2").await;
    let secondary = origin_on("127.0.0.3").await;
    let vars = [
        ("primary", primary.addr.to_string()),
        ("secondary", secondary.addr.to_string()),
    ];
    let edge = Edge::start_in_dir(&edge_config(1, CONFIG), &vars, |dir| {
        std::fs::write(dir.join("example.test.zone"), ZONE).unwrap()
    });
    assert!(matches!(
        edge.reload(),
        holdfast::ReloadOutcome::Applied { .. }
    ));
    edge.rewrite(
        &edge_config(1, &CONFIG.replace("ttl = 30", "ttl = 60")),
        &vars,
    );
    match edge.reload() {
        holdfast::ReloadOutcome::Rejected { errors, .. } => {
            assert!(
                errors.iter().any(|e| e.contains("dns.steered[0]: changed")),
                "{errors:?}"
            )
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let dns = edge.running().dns_addr.unwrap();
    wait_answer(dns, primary.addr.ip()).await;
}

// --- quorum across vantage points ---------------------------------------------------------

const QUORUM: &str = r#"
[[pools]]
name = "primary"
servers = ["{primary}"]
[pools.health]
path = "{check}"
interval = "50ms"
unhealthy_after = 1
healthy_after = 1

[[pools]]
name = "secondary"
servers = ["{secondary}"]
[pools.health]
kind = "tcp"
interval = "50ms"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"

[dns]
listen = "127.0.0.1:0"
peers = [{peers}]
peer_token = "s3cret"
peer_interval = "50ms"

[[dns.zones]]
origin = "example.test."
file = "example.test.zone"

[[dns.steered]]
name = "www.example.test."
pools = ["primary", "secondary"]
hold_down = "0s"
"#;

/// A port that was free a moment ago (admin addresses must be known to the peers' configs).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vantage_point_cannot_steer_alone_and_two_of_three_can() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // The primary fails the check path of each instance whose flag is set: a fault in one
    // instance's checker only, the same target for all.
    let failing: Arc<[AtomicBool; 3]> = Arc::new([
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    ]);
    let flags = failing.clone();
    let listener = tokio::net::TcpListener::bind(("127.0.0.2".parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let primary = Origin::serve(
        listener,
        handler(move |req| {
            let flags = flags.clone();
            async move {
                let i = match req.uri().path() {
                    "/a" => 0,
                    "/b" => 1,
                    _ => 2,
                };
                if flags[i].load(Ordering::SeqCst) {
                    status(503, "failing for this vantage point")
                } else {
                    ok("up")
                }
            }
        }),
    );
    let secondary = origin_on("127.0.0.3").await;
    let admins = [free_addr(), free_addr(), free_addr()];
    let edges: Vec<Edge> = ["/a", "/b", "/c"]
        .iter()
        .enumerate()
        .map(|(i, check)| {
            let peers = admins
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| format!("\"http://{a}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let template = edge_config(1, QUORUM).replace("{admin}", &admins[i].to_string());
            Edge::start_in_dir(
                &template,
                &[
                    ("primary", primary.addr.to_string()),
                    ("secondary", secondary.addr.to_string()),
                    ("check", check.to_string()),
                    ("peers", peers),
                ],
                |dir| std::fs::write(dir.join("example.test.zone"), ZONE).unwrap(),
            )
        })
        .collect();
    let dns: Vec<SocketAddr> = edges
        .iter()
        .map(|e| e.running().dns_addr.unwrap())
        .collect();
    let (p, s) = (primary.addr.ip(), secondary.addr.ip());
    for d in &dns {
        wait_answer(*d, p).await;
    }
    // Every instance hears both of its peers.
    for e in &edges {
        eventually("the peers to be reachable", LIMIT, || async {
            let status = get(&e.admin_url("/status")).await.json();
            let peers = status["dns"]["quorum"]["peers"].as_array().unwrap().clone();
            peers.len() == 2 && peers.iter().all(|p| p["reachable"] == true)
        })
        .await;
    }

    // Only instance C's checks fail: C sees the primary down, yet nobody moves.
    failing[2].store(true, Ordering::SeqCst);
    eventually(
        "C to see the primary down with one vote of three",
        LIMIT,
        || async {
            let status = get(&edges[2].admin_url("/status")).await.json();
            status["dns"]["quorum"]["votes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| {
                    v["ip"] == p.to_string()
                        && v["own_down"] == true
                        && v["down_votes"] == 1
                        && v["voters"] == 3
                })
        },
    )
    .await;
    for d in &dns {
        assert_eq!(resolve(*d, "www.example.test.").await.1, [p]);
    }

    // B's checks fail too: two of three agree, every instance (A included) moves.
    failing[1].store(true, Ordering::SeqCst);
    for d in &dns {
        wait_answer(*d, s).await;
    }

    // Each vantage point's view is on /metrics: C's own checks say down.
    let metrics = get(&edges[2].admin_url("/metrics")).await.text();
    let line = format!(
        "holdfast_dns_vantage_target_down{{pool=\"primary\",target=\"{p}\",vantage=\"self\"}} 1"
    );
    assert!(metrics.contains(&line), "{line} not in:\n{metrics}");

    // A peer with the wrong token gets nothing.
    let got = get_with(
        &edges[0].admin_url("/dns/peer"),
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(got.status, 401);
    let got = get_with(
        &edges[0].admin_url("/dns/peer"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["targets"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peers_leave_the_instance_on_its_own_checks() {
    let mut primary = origin_on("127.0.0.2").await;
    let secondary = origin_on("127.0.0.3").await;
    let dead = [dead_addr(), dead_addr()];
    let peers = dead
        .iter()
        .map(|a| format!("\"http://{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = QUORUM.replace("path = \"{check}\"", "kind = \"tcp\"");
    let edge = Edge::start_in_dir(
        &edge_config(1, &config),
        &[
            ("primary", primary.addr.to_string()),
            ("secondary", secondary.addr.to_string()),
            ("peers", peers),
        ],
        |dir| std::fs::write(dir.join("example.test.zone"), ZONE).unwrap(),
    );
    let dns = edge.running().dns_addr.unwrap();
    wait_answer(dns, primary.addr.ip()).await;
    primary.stop();
    wait_answer(dns, secondary.addr.ip()).await;
    let status = get(&edge.admin_url("/status")).await.json();
    let peers = status["dns"]["quorum"]["peers"].as_array().unwrap();
    assert!(
        peers
            .iter()
            .all(|p| p["reachable"] == false && p["error"].is_string()),
        "{peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drains_a_target_on_the_admin_plane() {
    let primary = origin_on("127.0.0.2").await;
    let secondary = origin_on("127.0.0.3").await;
    let edge = Edge::start_in_dir(
        &edge_config_with(1, "state_dir = \"state\"", CONFIG),
        &[
            ("primary", primary.addr.to_string()),
            ("secondary", secondary.addr.to_string()),
        ],
        |dir| std::fs::write(dir.join("example.test.zone"), ZONE).unwrap(),
    );
    let dns = edge.running().dns_addr.unwrap();
    wait_answer(dns, primary.addr.ip()).await;
    let got = post(&edge.admin_url(&format!("/dns/targets/{}/drain", primary.addr.ip()))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    wait_answer(dns, secondary.addr.ip()).await;
    let status = get(&edge.admin_url("/status")).await.json();
    assert_eq!(status["dns"]["overrides"]["127.0.0.2"], "drain", "{status}");
    assert!(edge.dir.path().join("state/dns-overrides.json").exists());
    let got = post(&edge.admin_url("/dns/targets/127.0.0.2/sideways")).await;
    assert_eq!(got.status, 404);
    let got = post(&edge.admin_url(&format!("/dns/targets/{}/clear", primary.addr.ip()))).await;
    assert_eq!(got.status, 200);
    wait_answer(dns, primary.addr.ip()).await;
}
