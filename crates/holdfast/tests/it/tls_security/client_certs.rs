//! Client certificates on listeners, per site: `secure.test` requires one from the clients'
//! CA, `optional.test` asks for one, the default certificate asks nothing. The verified
//! subject reaches the origin in `X-Client-Subject` (and the rules, which can block on it);
//! a client's own `X-Client-Subject` never does; a host that requires a certificate cannot
//! be reached over another site's connection or a plain listener (421).

use super::{client, fetch_tls, handshake, request, s_client};
use crate::support::*;
use std::net::SocketAddr;
use std::sync::Arc;

const EDGE: &str = r#"
[edge]
listen = ["{edge}"]
tls_listen = ["{edge}"]
threads = 1
access_log = "off"
client_cert_header = "X-Client-Subject"

[[edge.tls]]
cert = "default.pem"
key = "default.key"

[[edge.tls]]
names = ["secure.test"]
cert = "secure.pem"
key = "secure.key"
client_auth = "require"
client_ca = "clients.pem"

[[edge.tls]]
names = ["optional.test"]
cert = "optional.pem"
key = "optional.key"
client_auth = "optional"
client_ca = "clients.pem"

[admin]
listen = "{admin}"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = {}
pool = "primary"

[[rules]]
id = "no-mallory"
expr = 'request.headers["x-client-subject"] == "CN=mallory"'
action = "block"
"#;

struct Setup {
    edge: Edge,
    origin: Origin,
    ca: TestCa,
    clients: TestCa,
    alice: Leaf,
}

impl Setup {
    async fn start() -> Setup {
        let origin = Origin::text("hello").await;
        let ca = TestCa::new("Holdfast test CA");
        let clients = TestCa::new("Client CA");
        let alice = clients.client("alice");
        let edge = Edge::start_in_dir(EDGE, &[("origin", origin.addr.to_string())], |dir| {
            ca.leaf(&["fallback.test"]).write(dir, "default");
            ca.leaf(&["secure.test"]).write(dir, "secure");
            ca.leaf(&["optional.test"]).write(dir, "optional");
            std::fs::write(dir.join("clients.pem"), &clients.pem).unwrap();
        });
        Setup {
            edge,
            origin,
            ca,
            clients,
            alice,
        }
    }

    fn https(&self) -> SocketAddr {
        self.edge.running().https_addrs[0]
    }

    /// A request to `host` over a connection made for `host`, with `cert`.
    async fn fetch(
        &self,
        host: &str,
        cert: Option<&Leaf>,
        headers: &[(&str, &str)],
    ) -> Result<(http::StatusCode, bytes::Bytes), String> {
        let config = Arc::new(client(&self.ca, cert));
        fetch_tls(self.https(), host, host, config, headers).await
    }

    /// The subject header the origin saw on the last request.
    fn seen_subject(&self) -> Option<String> {
        self.origin
            .last()
            .headers
            .get("x-client-subject")
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_certificate_is_checked_in_the_handshake_and_its_subject_sent_on() {
    let s = Setup::start().await;
    let (status, body) = s.fetch("secure.test", Some(&s.alice), &[]).await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"hello"[..]));
    assert_eq!(s.seen_subject().as_deref(), Some("CN=alice"));

    let before = s.origin.requests();
    let stranger = TestCa::new("Client CA").client("alice");
    for (what, cert) in [
        ("no certificate", None),
        ("a certificate from another CA", Some(&stranger)),
    ] {
        let refused = s.fetch("secure.test", cert, &[]).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
    }
    assert_eq!(s.origin.requests(), before, "nothing reached the origin");

    // From outside: openssl without a certificate gets no HTTP answer.
    let https = s.https();
    let (_, out) = blocking(|| {
        s_client(
            https,
            "secure.test",
            &["-ign_eof"],
            "GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n",
        )
    });
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_lowercase().contains("certificate required") || out.contains("alert"),
        "openssl reports the refusal: {out}"
    );
    assert_eq!(s.origin.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_header_is_stripped_from_what_clients_send() {
    let s = Setup::start().await;
    let spoof = [("x-client-subject", "CN=admin")];
    // Plain listener, a site that asks nothing, an optional site without a certificate.
    let got = get_with(&s.edge.url("/"), &spoof).await;
    assert_eq!(got.status, 200);
    assert_eq!(s.seen_subject(), None, "plain listener");
    for host in ["fallback.test", "optional.test"] {
        let (status, _) = s.fetch(host, None, &spoof).await.unwrap();
        assert_eq!(status, 200, "{host}");
        assert_eq!(s.seen_subject(), None, "{host}");
    }
    // With a certificate the verified subject replaces the client's.
    for host in ["optional.test", "secure.test"] {
        let (status, _) = s.fetch(host, Some(&s.alice), &spoof).await.unwrap();
        assert_eq!(status, 200, "{host}");
        assert_eq!(s.seen_subject().as_deref(), Some("CN=alice"), "{host}");
        assert_eq!(
            s.origin
                .last()
                .headers
                .get_all("x-client-subject")
                .iter()
                .count(),
            1
        );
    }
    // Naming it as hop-by-hop does not drop the verified subject either.
    let hop = [
        ("connection", "x-client-subject"),
        ("x-client-subject", "CN=admin"),
    ];
    let (status, _) = s.fetch("secure.test", Some(&s.alice), &hop).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(s.seen_subject().as_deref(), Some("CN=alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_read_the_verified_subject() {
    let s = Setup::start().await;
    let mallory = s.clients.client("mallory");
    let (status, _) = s.fetch("secure.test", Some(&mallory), &[]).await.unwrap();
    assert_eq!(status, 403, "the rule blocks mallory");
    let (status, _) = s.fetch("secure.test", Some(&s.alice), &[]).await.unwrap();
    assert_eq!(status, 200);
    // A client claiming to be mallory is neither blocked nor believed.
    let got = get_with(&s.edge.url("/"), &[("x-client-subject", "CN=mallory")]).await;
    assert_eq!(got.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_requires_a_certificate_is_only_served_on_its_own_connection() {
    let s = Setup::start().await;
    let before = s.origin.requests();
    // Handshake for the default site (no certificate asked), then ask for secure.test.
    let config = Arc::new(client(&s.ca, Some(&s.alice)));
    let (status, _) = fetch_tls(
        s.https(),
        "fallback.test",
        "secure.test",
        config.clone(),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 421);
    // Made for optional.test with alice's certificate: still not secure.test's handshake.
    let tls = handshake(s.https(), "optional.test", config).await.unwrap();
    let (status, _) = request(tls, "secure.test", "/", &[]).await.unwrap();
    assert_eq!(status, 421);
    // A plain listener.
    let got = get_with(&s.edge.url("/"), &[("host", "secure.test")]).await;
    assert_eq!(got.status, 421, "{}", got.text());
    assert_eq!(s.origin.requests(), before, "nothing reached the origin");
    // An optional site reached from elsewhere is served, without a subject.
    let got = get_with(&s.edge.url("/"), &[("host", "optional.test")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(s.seen_subject(), None);
}
