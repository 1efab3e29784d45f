//! Session resumption: a client that comes back resumes its session (TLS 1.3 and 1.2
//! tickets), also after a reload (the ticket keys carry over), and not at all with
//! `session_tickets = { enabled = false }`. Rotation itself is unit-tested with a clock
//! (`holdfast-proxy`'s `tls::tickets`).

use super::{client_with, handshake, provider, request};
use crate::support::*;
use std::sync::Arc;
use tokio_rustls::rustls::{self, ClientConfig, HandshakeKind};

const EDGE: &str = r#"
[edge]
listen = ["{edge}"]
tls_listen = ["{edge}"]
threads = 1
access_log = "off"
{tickets}

[[edge.tls]]
cert = "default.pem"
key = "default.key"

[admin]
listen = "{admin}"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = {}
pool = "primary"
"#;

fn vars(origin: &Origin, tickets: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("tickets", tickets.to_string()),
    ]
}

/// Connect, make one request (TLS 1.3 tickets arrive after the handshake, so the client
/// must read), and say how the handshake went.
async fn visit(edge: &Edge, config: &Arc<ClientConfig>) -> HandshakeKind {
    let tls = handshake(edge.running().https_addrs[0], "www.test", config.clone())
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let (status, _) = request(tls, "www.test", "/", &[]).await.unwrap();
    assert_eq!(status, 200);
    kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_resumes_also_after_a_reload() {
    let origin = Origin::text("hello").await;
    let ca = TestCa::new("Holdfast test CA");
    let tickets = "session_tickets = { rotate = \"1h\" }";
    let edge = Edge::start_in_dir(EDGE, &vars(&origin, tickets), |dir| {
        ca.leaf(&["www.test"]).write(dir, "default");
    });
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = Arc::new(client_with(&ca, None, provider(), &[version]));
        assert_eq!(
            visit(&edge, &config).await,
            HandshakeKind::Full,
            "{version:?}"
        );
        assert_eq!(
            visit(&edge, &config).await,
            HandshakeKind::Resumed,
            "{version:?}"
        );
    }
    // A reload with the same settings keeps the keys: sessions made before it resume.
    let config = Arc::new(client_with(
        &ca,
        None,
        provider(),
        &[&rustls::version::TLS13],
    ));
    assert_eq!(visit(&edge, &config).await, HandshakeKind::Full);
    assert_eq!(edge.reload_applied(), 2);
    assert_eq!(visit(&edge, &config).await, HandshakeKind::Resumed);
    // New settings, new keys: the old tickets are not accepted.
    edge.rewrite(
        EDGE,
        &vars(&origin, "session_tickets = { rotate = \"2h\" }"),
    );
    assert_eq!(edge.reload_applied(), 3);
    let config = Arc::new(client_with(
        &ca,
        None,
        provider(),
        &[&rustls::version::TLS12],
    ));
    assert_eq!(visit(&edge, &config).await, HandshakeKind::Full);
    edge.rewrite(
        EDGE,
        &vars(&origin, "session_tickets = { rotate = \"3h\" }"),
    );
    assert_eq!(edge.reload_applied(), 4);
    assert_eq!(visit(&edge, &config).await, HandshakeKind::Full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tickets_every_handshake_is_full() {
    let origin = Origin::text("hello").await;
    let ca = TestCa::new("Holdfast test CA");
    let off = "session_tickets = { enabled = false }";
    let edge = Edge::start_in_dir(EDGE, &vars(&origin, off), |dir| {
        ca.leaf(&["www.test"]).write(dir, "default");
    });
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = Arc::new(client_with(&ca, None, provider(), &[version]));
        for _ in 0..2 {
            assert_eq!(
                visit(&edge, &config).await,
                HandshakeKind::Full,
                "{version:?}"
            );
        }
    }
}
