//! The operator page (`GET /` on the admin address) and its live updates (`GET /events`,
//! Server-Sent Events), rendered from the `/status` document; and the admin plane's optional
//! token (`[admin] token_file`), honoured by the page, `/status`, `/metrics` and every `POST`.

use crate::support::*;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One pool "app" of `servers` (no checks); a server is tripped after 2 failures in a row
/// and never ejected (so it stays in rotation, `failing`).
fn edge_of(servers: &[SocketAddr], admin_keys: &str) -> Edge {
    let rest = format!("{admin_keys}\n{APP_POOL}");
    Edge::start_in_dir(
        &edge_config(1, &rest),
        &app_vars(
            &server_list(servers),
            "[pools.retry]\nattempts = 0\n\n[pools.outlier]\nconsecutive_failures = 2\nmax_ejection_percent = 0",
            "",
        ),
        |dir| std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap(),
    )
}

const TOKEN: &str = "test-token-0123456789abcdef";

/// Reads `GET /events` until an event's data contains `needle`; the data of that event.
async fn event_with(admin: SocketAddr, headers: &str, needle: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(
        format!("GET /events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n{headers}\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    within("an SSE event with the word", async {
        loop {
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the event stream ended: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some(event) = text
                .split("\n\n")
                .filter(|e| e.contains("event: page"))
                .find(|e| e.contains(needle))
            {
                return event.to_string();
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_refusing_server_as_failing_worst_first_and_live() {
    let good = Origin::text("good").await;
    let dead = dead_addr();
    let edge = edge_of(&[good.addr, dead], "");

    let page = get(&edge.admin_url("/")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    assert!(
        html.contains(r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#),
        "{html}"
    );
    assert!(html.contains("<main id=\"live\">"), "{html}");
    for external in ["src=\"http", "href=\"http", "url(", "@import", "//cdn"] {
        assert!(
            !html.contains(external),
            "no external asset ({external}): {html}"
        );
    }
    // Before traffic: neither server has been used.
    assert!(html.contains(&format!("data-server=\"{dead}\"")), "{html}");

    // Round robin: good, dead, good, dead: the dead one is tripped after its second failure.
    for _ in 0..4 {
        within_limit(get(&edge.url("/page"))).await;
    }
    assert_eq!(edge.server("app", dead).await["health"], "failing");

    let html = get(&edge.admin_url("/")).await.text();
    let failing_row = html.find(&format!("data-server=\"{dead}\"")).unwrap();
    let up_row = html
        .find(&format!("data-server=\"{}\"", good.addr))
        .unwrap();
    assert!(failing_row < up_row, "worst first: {html}");
    assert!(
        html.contains(&format!("pool app server {dead} is failing")),
        "{html}"
    );
    let row = &html[failing_row..up_row];
    assert!(row.contains("class=\"word\">failing<"), "{row}");

    // The live stream says the same.
    let event = event_with(
        edge.running().admin_addr,
        "",
        &format!("server {dead} is failing"),
    )
    .await;
    assert!(
        event.starts_with("event: page\ndata: ") || event.contains("\nevent: page\n"),
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_but_health_needs_it() {
    let origin = Origin::text("page").await;
    let edge = edge_of(&[origin.addr], "token_file = \"admin.token\"");
    let bearer = format!("Bearer {TOKEN}");
    let cookie = format!("holdfast_admin={TOKEN}");

    for path in ["/", "/status", "/metrics", "/events"] {
        let got = get(&edge.admin_url(path)).await;
        assert_eq!(got.status, 401, "{path} without the token");
        assert!(got.header("www-authenticate").is_some(), "{path}");
        let wrong = get_with(
            &edge.admin_url(path),
            &[("authorization", "Bearer nope-nope-nope-nope")],
        )
        .await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
    }
    for path in ["/", "/status", "/metrics"] {
        let got = get_with(&edge.admin_url(path), &[("authorization", &bearer)]).await;
        assert_eq!(got.status, 200, "{path} with the token");
        let got = get_with(&edge.admin_url(path), &[("cookie", &cookie)]).await;
        assert_eq!(got.status, 200, "{path} with the sign-in cookie");
    }
    assert_eq!(
        get(&edge.admin_url("/health")).await.status,
        200,
        "/health stays open"
    );

    // POST: the header only; the cookie alone cannot change anything.
    for path in ["/reload", "/cache/purge?all=true", "/modules/bot/disable"] {
        let req = |h: Option<(&str, &str)>| {
            let mut b = http::Request::post(edge.admin_url(path));
            if let Some((k, v)) = h {
                b = b.header(k, v);
            }
            b.body(Default::default()).unwrap()
        };
        assert_eq!(
            send(req(None)).await.status,
            401,
            "POST {path} without the token"
        );
        assert_eq!(
            send(req(Some(("cookie", &cookie)))).await.status,
            401,
            "POST {path} by cookie"
        );
        let with = send(req(Some(("authorization", &bearer)))).await;
        assert_ne!(
            with.status,
            401,
            "POST {path} with the token: {}",
            with.text()
        );
    }

    // Signing in: a wrong token is refused; the right one sets the cookie.
    let login = |token: &str| {
        http::Request::post(edge.admin_url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}").into())
            .unwrap()
    };
    assert_eq!(send(login("wrong-wrong-wrong-wrong")).await.status, 401);
    let ok = send(login(TOKEN)).await;
    assert_eq!(ok.status, 303);
    let set = ok.header("set-cookie").unwrap();
    assert!(
        set.starts_with(&cookie) && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );

    // The live stream with the cookie, as a signed-in browser opens it.
    event_with(
        edge.running().admin_addr,
        &format!("cookie: {cookie}\r\n"),
        "Pools and servers",
    )
    .await;
}

#[test]
fn a_weak_or_missing_token_file_stops_the_start_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "short\n").unwrap();
    let config = |file: &str| {
        render(
            &edge_config(1, &format!("token_file = \"{file}\"\n{APP_POOL}")),
            &app_vars("\"127.0.0.1:9\"", "", ""),
        )
    };
    for (file, expect) in [
        ("admin.token", "at least 16"),
        ("missing.token", "missing.token"),
    ] {
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, config(file)).unwrap();
        let err = holdfast::Running::start(holdfast::ConfigSource::File(path))
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("admin.token_file") && text.contains(expect),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let origin = Origin::text("page").await;
    let mut edge = edge_of(&[origin.addr], "");
    let admin = edge.running().admin_addr;
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = within("the first event", s.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("text/event-stream"));
    // The stream stays open; shutting down ends it instead of waiting for it.
    let stopped = tokio::task::spawn_blocking(move || {
        edge.stop();
    });
    within("shutdown with an open event stream", stopped)
        .await
        .unwrap();
    drop(s);
}

/// `GET /status` over TLS to the admin plane, trusting `ca`, presenting `client` if given;
/// the status line, or why the connection failed.
async fn tls_status(
    admin: SocketAddr,
    ca: &TestCa,
    client: Option<&Leaf>,
) -> Result<String, String> {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![
                    rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
                        .unwrap(),
                ],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("admin.test").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /status HTTP/1.1\r\nhost: admin.test\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // TLS 1.3: a refused client certificate shows on the first read.
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_reach_the_admin_plane() {
    let origin = Origin::text("page").await;
    let ca = TestCa::new("admin CA");
    let other = TestCa::new("someone else");
    let server = ca.leaf(&["admin.test"]);
    let rest = format!(
        "tls_cert = \"admin.pem\"\ntls_key = \"admin.key\"\nclient_ca = \"ca.pem\"\n{APP_POOL}"
    );
    let ca_pem = ca.pem.clone();
    let edge = Edge::start_in_dir(
        &edge_config(1, &rest),
        &app_vars(&server_list(&[origin.addr]), "", ""),
        |dir| {
            server.write(dir, "admin");
            std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        },
    );
    let admin = edge.running().admin_addr;
    let ok = tls_status(admin, &ca, Some(&ca.client("operator"))).await;
    assert_eq!(ok.as_deref(), Ok("HTTP/1.1 200 OK"), "{ok:?}");
    let none = tls_status(admin, &ca, None).await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let stranger = tls_status(admin, &ca, Some(&other.client("stranger"))).await;
    assert!(
        stranger.is_err(),
        "a certificate of another CA: {stranger:?}"
    );
    // Plain HTTP gets nothing either.
    let plain = raw(admin, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}

#[test]
fn a_client_ca_without_tls_is_refused_with_its_key() {
    let text = render(
        &edge_config(1, &format!("client_ca = \"ca.pem\"\n{APP_POOL}")),
        &app_vars("\"127.0.0.1:9\"", "", ""),
    );
    let errors = holdfast_config::parse(&text, std::path::Path::new(".")).unwrap_err();
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|e| e.contains("admin.client_ca") && e.contains("tls_cert")),
        "{all:?}"
    );
}
