//! TLS shared across a fleet (issue 18): two members in one fleet on a real etcd. A session
//! ticket one member issued resumes on the other, also after the key ring rotated, and not
//! once its key is two periods old; with `[[edge.acme]]` only the elected member orders
//! from pebble, pebble validates on the other member (which answers the elected one's
//! `http-01` token), both serve the certificate, a garbage value in etcd changes nothing
//! that serves, and a member restarted with etcd down serves its `state_dir` copy.
//!
//! The ring's rotation over real periods (at least a minute) is unit-tested on a virtual
//! clock (`holdfast-fleet`'s `tickets`, `holdfast-proxy`'s `tls::tickets`); here the test
//! rewrites the stored ring as one and two periods later, the way the controller would.

use crate::acme::{served_leaf, subject_cn, Pebble};
use crate::fleet::{free_port, roll, wait_for_members, Etcd};
use crate::support::*;
use crate::tls_security::{client_with, handshake, provider, request};
use holdfast_fleet::FleetStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::{self, ClientConfig, HandshakeKind};

const MEMBER: &str = r#"
[fleet]
etcd = ["{etcd}"]
instance = "{id}"
heartbeat = "200ms"
lease_ttl = "2s"

[edge]
listen = ["{http}"]
tls_listen = ["{https}"]
threads = 1
state_dir = "state"

[admin]
listen = "{admin}"
"#;

/// A member listening on `http` and `https` (`127.0.0.1:0` for any).
fn member(etcd: &Etcd, id: &str, http: &str, https: &str) -> Edge {
    blocking(|| {
        Edge::start(
            MEMBER,
            &[
                ("etcd", etcd.url()),
                ("id", id.to_string()),
                ("http", http.to_string()),
                ("https", https.to_string()),
            ],
        )
    })
}

async fn elected(edge: &Edge) {
    eventually("the first member is elected", LIMIT, || async {
        edge.status().await["fleet"]["controller"] == true
    })
    .await;
}

/// Roll out a version of `tables` routing to `origin`, files written by `files` first.
async fn roll_version(
    etcd: &Etcd,
    members: &[Edge],
    origin: &Origin,
    tables: &str,
    files: impl FnOnce(&std::path::Path),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path());
    let text = format!(
        "[edge]\naccess_log = \"off\"\n{tables}\n\n[[pools]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"app\"\n",
        origin.addr
    );
    let path = dir.path().join("version.toml");
    std::fs::write(&path, text).unwrap();
    let (code, _) = roll(
        etcd,
        members,
        path.to_str().unwrap(),
        &["--stages", "100%", "--bake", "300ms", "--min-requests", "1"],
    )
    .await;
    assert_eq!(code, 0, "the version rolled out");
    dir
}

/// Connect to `edge` as `www.test`, make one request (TLS 1.3 tickets come after the
/// handshake), and say how the handshake went.
async fn visit(edge: &Edge, config: &Arc<ClientConfig>) -> HandshakeKind {
    let tls = handshake(edge.running().https_addrs[0], "www.test", config.clone())
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let (status, _) = request(tls, "www.test", "/", &[]).await.unwrap();
    assert_eq!(status, 200);
    kind
}

async fn etcd_store(etcd: &Etcd) -> holdfast_fleet::EtcdStore {
    holdfast_fleet::EtcdStore::connect(&[etcd.url()], Duration::from_secs(2))
        .await
        .unwrap()
}

/// Wait until every member has installed the ring at etcd's revision `rev` or a later one
/// (the controller may tidy the ring right after the test wrote it).
async fn ring_installed(members: &[Edge], rev: i64) {
    for (i, m) in members.iter().enumerate() {
        eventually(
            &format!("member {i} installs ring {rev}"),
            LIMIT,
            || async {
                let s = m.status().await;
                let t = &s["fleet"]["ticket_keys"];
                t["revision"].as_i64() >= Some(rev)
                    && t["source"] == "fleet"
                    && t["refused"].is_null()
            },
        )
        .await;
    }
}

fn hex_key(n: u8, len: usize) -> String {
    std::iter::repeat_n(format!("{n:02x}"), len).collect()
}

/// Rewrite the stored ring as `periods` rotations later: every key's start moves back by
/// `periods` periods, and a new key is added for each rotation (as the controller does).
async fn age_ring(store: &holdfast_fleet::EtcdStore, periods: u64) -> i64 {
    let key = "/holdfast/tls/ticket_keys";
    let kv = store.get(key).await.unwrap().unwrap();
    let mut ring: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    let period = ring["period_secs"].as_u64().unwrap();
    let keys = ring["keys"].as_array_mut().unwrap();
    for k in keys.iter_mut() {
        let from = k["from"].as_u64().unwrap();
        k["from"] = (from - periods * period).into();
    }
    let newest = keys
        .iter()
        .map(|k| k["from"].as_u64().unwrap())
        .max()
        .unwrap();
    // A new id each time (ids in one ring must differ).
    let seed = keys.len() as u8;
    for i in 1..=periods {
        let n = seed.wrapping_mul(16).wrapping_add(i as u8);
        keys.push(serde_json::json!({
            "id": hex_key(n, 4),
            "secret": hex_key(n, 32),
            "from": newest + i * period,
        }));
    }
    store
        .put(key, serde_json::to_vec(&ring).unwrap(), None)
        .await
        .unwrap();
    store.get(key).await.unwrap().unwrap().mod_revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_ticket_from_one_member_resumes_on_another_for_two_key_periods() {
    let etcd = Etcd::start().await;
    let origin = Origin::text("hello").await;
    let a = member(&etcd, "edge-a", "127.0.0.1:0", "127.0.0.1:0");
    elected(&a).await;
    let b = member(&etcd, "edge-b", "127.0.0.1:0", "127.0.0.1:0");
    wait_for_members(&etcd, 2).await;
    let ca = TestCa::new("Holdfast fleet test CA");
    let members = [a, b];
    let _version = roll_version(
        &etcd,
        &members,
        &origin,
        "session_tickets = { rotate = \"1h\" }\n\n[[edge.tls]]\ncert = \"www.pem\"\nkey = \"www.key\"\n",
        |dir| ca.leaf(&["www.test"]).write(dir, "www"),
    )
    .await;
    let store = etcd_store(&etcd).await;
    let first = store
        .get("/holdfast/tls/ticket_keys")
        .await
        .unwrap()
        .expect("the controller wrote the ring")
        .mod_revision;
    ring_installed(&members, first).await;
    let [a, b] = &members;

    // A full handshake on A; its ticket resumes on B. Another client keeps A's tickets.
    let client = || {
        Arc::new(client_with(
            &ca,
            None,
            provider(),
            &[&rustls::version::TLS13],
        ))
    };
    let (roaming, keeper) = (client(), client());
    assert_eq!(visit(a, &roaming).await, HandshakeKind::Full);
    assert_eq!(visit(b, &roaming).await, HandshakeKind::Resumed);
    assert_eq!(visit(a, &keeper).await, HandshakeKind::Full);

    // One rotation later: the key that issued them only decrypts now, and still does.
    let rotated = age_ring(&store, 1).await;
    ring_installed(&members, rotated).await;
    assert_eq!(visit(b, &roaming).await, HandshakeKind::Resumed);

    // Two rotations after it issued: forgotten; `keeper` makes a full handshake again.
    let forgotten = age_ring(&store, 1).await;
    ring_installed(&members, forgotten).await;
    assert_eq!(visit(b, &keeper).await, HandshakeKind::Full);

    // A ring that fails a check changes nothing and is counted.
    store
        .put(
            "/holdfast/tls/ticket_keys",
            b"{\"period_secs\":0,\"keys\":[]}".to_vec(),
            None,
        )
        .await
        .unwrap();
    eventually("the bad ring is refused", LIMIT, || async {
        let metrics = get(&b.admin_url("/metrics")).await.text();
        metric(&metrics, "holdfast_fleet_ticket_rings_refused_total") == Some(1.0)
    })
    .await;
    assert_eq!(b.status().await["fleet"]["ticket_keys"]["source"], "fleet");
    let fresh = client();
    assert_eq!(visit(a, &fresh).await, HandshakeKind::Full);
    assert_eq!(visit(b, &fresh).await, HandshakeKind::Resumed);
}

const NAMES: [&str; 2] = ["shop.acme.test", "www.acme.test"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_member_orders_the_fleets_certificate_and_every_member_serves_and_validates_it() {
    let mut etcd = Etcd::start().await;
    let origin = Origin::text("from the origin").await;
    // pebble validates on B, the member that does not order.
    let (b_http, b_https) = (free_port(), free_port());
    let pebble = Pebble::start(b_http, b_https, None);
    let root = pebble.root().await;
    let a = member(&etcd, "edge-a", "127.0.0.1:0", "127.0.0.1:0");
    elected(&a).await;
    let b = member(
        &etcd,
        "edge-b",
        &format!("127.0.0.1:{b_http}"),
        &format!("127.0.0.1:{b_https}"),
    );
    wait_for_members(&etcd, 2).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("wfe-ca.pem");
    std::fs::write(&ca_file, &pebble.wfe_ca.pem).unwrap();
    let names = NAMES.map(|n| format!("\"{n}\"")).join(", ");
    let tables = format!(
        "\n[[edge.acme]]\ndomains = [{names}]\ndirectory = \"{}\"\nchallenge = \"http-01\"\nca_file = \"{}\"\n",
        pebble.directory(),
        ca_file.display()
    );
    let mut members = vec![a, b];
    let _version = roll_version(&etcd, &members, &origin, &tables, |_| {}).await;

    // Both serve the one certificate pebble issued.
    let https = |m: &Edge| m.running().https_addrs[0];
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let leaf = loop {
        let got_a = served_leaf(https(&members[0]), NAMES[0], &root).await;
        let got_b = served_leaf(https(&members[1]), NAMES[1], &root).await;
        if let Some(leaf) = got_a.filter(|a| Some(a) == got_b.as_ref()) {
            break leaf;
        }
        assert!(
            std::time::Instant::now() < until,
            "both members serve the issued certificate; A: {}, B: {}",
            members[0].status().await["acme"],
            members[1].status().await["acme"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!subject_cn(&leaf).contains("placeholder"));
    // Only the elected member ordered; B's answer to its token is what pebble validated.
    let orders = |m: &Edge| {
        let url = m.admin_url("/metrics");
        async move {
            let text = get(&url).await.text();
            (
                metric(&text, r#"holdfast_acme_orders_total{result="issued"}"#),
                metric(
                    &text,
                    r#"holdfast_acme_fleet_certificates_total{result="installed"}"#,
                ),
            )
        }
    };
    assert_eq!(orders(&members[0]).await.0, Some(1.0));
    assert_eq!(orders(&members[1]).await, (Some(0.0), Some(1.0)));
    assert_eq!(members[0].status().await["acme"][0]["fleet"], "orders");
    assert_eq!(members[1].status().await["acme"][0]["fleet"], "follows");

    // A token the elected member publishes is answered by the other one's reserved path.
    let store = etcd_store(&etcd).await;
    let key = "/holdfast/acme/challenges/by-hand";
    store
        .put(key, br#"{"http":{"tok-1":"tok-1.thumb"}}"#.to_vec(), None)
        .await
        .unwrap();
    let challenge_url = members[1].url("/.well-known/acme-challenge/tok-1");
    eventually("B answers the published token", LIMIT, || async {
        let got = get(&challenge_url).await;
        got.status == 200 && got.text() == "tok-1.thumb"
    })
    .await;
    let acked = store.get("/holdfast/acme/seen/edge-b").await.unwrap();
    assert!(acked.is_some(), "B acknowledged the challenges it answers");

    // Garbage in etcd: refused and counted; the certificate serving stays.
    let certs = store.get_prefix("/holdfast/acme/certs/").await.unwrap();
    assert_eq!(certs.len(), 1, "one key per name set");
    store
        .put(&certs[0].key, b"garbage".to_vec(), None)
        .await
        .unwrap();
    // Counted by each member that read it before the elected one (which always does: it
    // repairs only what it read) wrote its certificate back.
    eventually("the garbage is refused", LIMIT, || async {
        let mut rejected = 0.0;
        for m in &members {
            let text = get(&m.admin_url("/metrics")).await.text();
            let sample = r#"holdfast_acme_fleet_certificates_total{result="rejected"}"#;
            rejected += metric(&text, sample).unwrap_or(0.0);
        }
        rejected >= 1.0
    })
    .await;
    for m in &members {
        assert_eq!(
            served_leaf(https(m), NAMES[0], &root).await,
            Some(leaf.clone())
        );
    }
    // The elected member puts its certificate back.
    eventually("A repairs the stored certificate", LIMIT, || async {
        let kv = store.get(&certs[0].key).await.unwrap().unwrap();
        kv.value != b"garbage"
    })
    .await;

    // etcd down, B restarted: it serves its state_dir copy.
    etcd.kill();
    let mut b = members.remove(1);
    blocking(|| b.stop());
    let dir = std::mem::replace(&mut b.dir, tempfile::tempdir().unwrap());
    let restarted = blocking(|| Edge::start_file(dir, b.config_path.clone()));
    assert_eq!(
        served_leaf(restarted.running().https_addrs[0], NAMES[1], &root).await,
        Some(leaf)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ring_from_etcd_a_member_resumes_with_its_own_keys_and_says_so() {
    // etcd never answers: no version, no ring. The member serves its placeholder
    // certificate before the first version, and tickets from its own keys.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let m = blocking(|| {
        Edge::start(
            MEMBER,
            &[
                ("etcd", nowhere),
                ("id", "edge-a".to_string()),
                ("http", "127.0.0.1:0".to_string()),
                ("https", "127.0.0.1:0".to_string()),
            ],
        )
    });
    let status = m.status().await;
    assert_eq!(
        status["fleet"]["ticket_keys"]["source"], "local",
        "{status}"
    );
    let metrics = get(&m.admin_url("/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "holdfast_fleet_ticket_keys_shared"),
        Some(0.0)
    );
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAny(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tls = handshake(m.running().https_addrs[0], "www.test", config.clone())
            .await
            .unwrap();
        kinds.push(tls.get_ref().1.handshake_kind().unwrap());
        // Before the first version every answer is 503; reading it brings the tickets.
        let (status, _) = request(tls, "www.test", "/", &[]).await.unwrap();
        assert_eq!(status, 503);
    }
    assert_eq!(kinds, [HandshakeKind::Full, HandshakeKind::Resumed]);
}
