//! The front door, spoken in raw bytes (a client library would fix the request first): one
//! test per class of `docs/security.md`'s table. Each asserts what the client got and what
//! the origin received: nothing, or exactly one normalised form. Paths are tried as an
//! attacker would against the `block-admin-probe` rule, a route prefix and the challenge.

use crate::support::*;

const FRONT_DOOR: &str = r#"
[[rules]]
id = "block-admin-probe"
expr = 'request.path.startsWith("/wp-admin")'
action = "block"

[[rules]]
id = "guard-protected"
expr = 'request.path.startsWith("/protected")'
action = "challenge"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[pools]]
name = "secret"
servers = ["{secret}"]

[[routes]]
name = "secret"
match = { path_prefix = "/secret" }
pool = "secret"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

struct Door {
    origin: Origin,
    secret: Origin,
    edge: Edge,
}

impl Door {
    async fn start() -> Door {
        Door::start_with("").await
    }

    async fn start_with(edge_keys: &str) -> Door {
        let origin = Origin::text("open").await;
        let secret = Origin::text("secret").await;
        let edge = Edge::start(
            &edge_config_with(1, edge_keys, FRONT_DOOR),
            &[
                ("origin", origin.addr.to_string()),
                ("secret", secret.addr.to_string()),
            ],
        );
        Door {
            origin,
            secret,
            edge,
        }
    }

    async fn send(&self, req: &[u8]) -> RawResponse {
        raw_exchange(self.edge.running().http_addrs[0], req).await
    }

    /// `req` is refused with `status`, the page names the request id and the connection is
    /// closed; no origin saw anything.
    async fn refused(&self, req: &[u8], status: u16) {
        let before = (self.origin.requests(), self.secret.requests());
        let got = self.send(req).await;
        let what = String::from_utf8_lossy(req);
        assert_eq!(got.status, status, "{what:?}: {}", got.head);
        // The edge's own page (hyper answers its parse errors with a bare status line).
        if let Some(id) = got.header("x-request-id") {
            assert!(got.text().contains(id), "{what:?}: {}", got.text());
            assert_eq!(
                got.header("connection"),
                Some("close"),
                "{what:?}: {}",
                got.head
            );
        }
        let after = (self.origin.requests(), self.secret.requests());
        assert_eq!(before, after, "{what:?} reached an origin");
    }

    /// Every request in `reqs` is refused with `status` and counted under `reason`.
    async fn all_refused(&self, reqs: &[&[u8]], status: u16, reason: &str) {
        for req in reqs {
            self.refused(req, status).await;
        }
        self.counted(reason, reqs.len()).await;
    }

    /// Parse errors are counted when their connection ends, just after the answer: wait
    /// for the count, then check it is exact.
    async fn counted(&self, reason: &str, n: usize) {
        let sample = &format!(r#"holdfast_http_bad_requests_total{{reason="{reason}"}}"#);
        let edge = &self.edge;
        eventually(
            &format!("{n} refusals counted as {reason}"),
            std::time::Duration::from_secs(5),
            || async move { metric(&edge.metrics().await, sample).is_some_and(|v| v >= n as f64) },
        )
        .await;
        let now = metric(&edge.metrics().await, sample);
        assert_eq!(now, Some(n as f64), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET / HTTP/1.1\r\n\r\n",
            // The edge speaks HTTP/1.1 to origins, so HTTP/1.0 needs a Host too.
            b"GET / HTTP/1.0\r\n\r\n",
            // Absolute-form names the host, but HTTP/1.1 still requires the field.
            b"GET http://edge.test/ HTTP/1.1\r\n\r\n",
        ],
        400,
        "host_missing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_one_host_is_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n",
        ],
        400,
        "host_repeated",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_is_not_host_and_port_is_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test:80:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a%2etest\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \xc3\xa9.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
        ],
        400,
        "host_invalid",
    )
    .await;
    // The failure path's counterpart: a host, an address and an IPv6 literal with ports pass.
    for host in ["a.test:8080", "127.0.0.1", "[::1]:80"] {
        let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(door.send(req.as_bytes()).await.status, 200, "{host}");
        assert_eq!(door.origin.last().headers["host"], host);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_disagrees_with_the_absolute_target_is_refused_and_one_that_agrees_is_forwarded_once(
) {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
            b"GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET https://a.test/ HTTP/1.1\r\nHost: a.test:80\r\n\r\n",
        ],
        400,
        "host_mismatch",
    )
    .await;
    door.all_refused(
        &[b"GET http://user:pw@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"],
        400,
        "target_userinfo",
    )
    .await;

    let got = door
        .send(b"GET http://A.test:80/x?q=1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200, "{}", got.head);
    let seen = door.origin.last();
    assert_eq!(seen.uri, "/x?q=1", "origin-form toward the origin");
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_forms_that_do_not_fit_the_method_are_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"OPTIONS a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ],
        400,
        "target_form",
    )
    .await;
    door.all_refused(
        &[b"GET ftp://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"],
        400,
        "target_scheme",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_outside_printable_ascii_in_the_target_are_refused_with_400() {
    let door = Door::start().await;
    // UTF-8 the `http` crate would accept, a raw `\`, and control bytes and whitespace
    // (refused by the parser already: counted as malformed).
    door.all_refused(
        &[
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a\\..\\wp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ],
        400,
        "path",
    )
    .await;
    door.all_refused(
        &[
            b"GET /a\x01b HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a\tb HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a\x7fb HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ],
        400,
        "malformed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_with_501_and_never_forwarded() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            b"CONNECT / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ],
        501,
        "connect",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_that_imitates_a_standard_one_in_another_case_is_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"get /wp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"Post / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
        ],
        400,
        "method_case",
    )
    .await;
    // An extension method of its own passes.
    let got = door
        .send(b"PROPFIND /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200, "{}", got.head);
    assert_eq!(door.origin.last().method, "PROPFIND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_encoding_other_than_one_chunked_is_refused_with_400() {
    let door = Door::start().await;
    let body = "\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let reqs: Vec<Vec<u8>> = [
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ]
    .iter()
    .map(|te| format!("POST / HTTP/1.1\r\nHost: a.test\r\n{te}{body}").into_bytes())
    .collect();
    let reqs: Vec<&[u8]> = reqs.iter().map(Vec::as_slice).collect();
    door.all_refused(&reqs, 400, "transfer_encoding").await;
    // hyper's own refusals: a coding that is not chunked last, or on HTTP/1.0.
    door.all_refused(
        &[
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ],
        400,
        "malformed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_reaches_the_origin_with_one_framing_and_closes() {
    let door = Door::start().await;
    let mut c = RawConn::connect(door.edge.running().http_addrs[0]).await;
    c.write(b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await;
    let got = c.read_response().await;
    assert_eq!(got.status, 200, "{}", got.head);
    assert_eq!(got.header("connection"), Some("close"), "{}", got.head);
    assert!(
        c.read_to_end().await.is_empty(),
        "nothing follows on the connection"
    );
    let seen = door.origin.last();
    let framings = ["content-length", "transfer-encoding"]
        .iter()
        .filter(|h| seen.headers.contains_key(**h))
        .count();
    assert_eq!(framings, 1, "one framing header: {:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_leading_zeros_reaches_the_origin_as_plain_digits() {
    let door = Door::start().await;
    let got = door
        .send(b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 005\r\n\r\nhello")
        .await;
    assert_eq!(got.status, 200, "{}", got.head);
    assert_eq!(door.origin.last().headers["content-length"], "5");
    // The parser's own refusals: signs, lists, differing copies, overflow.
    door.all_refused(
        &[
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0x5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ],
        400,
        "malformed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_names_that_imitate_framing_or_routing_headers_are_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent_Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded_Host: evil.test\r\n\r\n",
        ],
        400,
        "lookalike_header",
    )
    .await;
    // Names outside tchar and names with trailing whitespace: the parser refuses them.
    door.all_refused(
        &[
            b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nContent Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A[1]: 5\r\n\r\n",
        ],
        400,
        "malformed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_underscore_names_are_dropped_before_the_origin() {
    let door = Door::start().await;
    let got = door
        .send(b"GET /x HTTP/1.1\r\nHost: a.test\r\nX_Custom: 1\r\nX-Custom: 2\r\nmy_id: 3\r\n\r\n")
        .await;
    assert_eq!(got.status, 200, "{}", got.head);
    let seen = door.origin.last();
    assert!(!seen.headers.contains_key("x_custom"), "{:?}", seen.headers);
    assert!(!seen.headers.contains_key("my_id"), "{:?}", seen.headers);
    assert_eq!(seen.headers["x-custom"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_bare_cr_and_nul_in_the_head_are_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\rX-B: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\x00\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: a.test\r\n\r\n",
        ],
        400,
        "malformed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_h2c_and_http2_settings_never_reach_the_origin() {
    let door = Door::start().await;
    let got = door
        .send(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        .await;
    assert_eq!(got.status, 200, "served as a plain request: {}", got.head);
    let seen = door.origin.last();
    assert!(!seen.headers.contains_key("upgrade"), "{:?}", seen.headers);
    assert!(
        !seen.headers.contains_key("http2-settings"),
        "{:?}",
        seen.headers
    );
    // h2c offered in a second Upgrade field, beside another protocol.
    let got = door
        .send(b"GET /y HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n")
        .await;
    assert_eq!(got.status, 200, "{}", got.head);
    let seen = door.origin.last();
    assert_eq!(seen.uri, "/y");
    assert!(!seen.headers.contains_key("upgrade"), "{:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_origin_refuses_is_not_tunnelled() {
    // The origin answers 200 to a WebSocket upgrade: what the client sends next is a new
    // request the edge parses (and checks), not bytes piped to the origin.
    let door = Door::start().await;
    let mut c = RawConn::connect(door.edge.running().http_addrs[0]).await;
    c.write(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    let got = c.read_response().await;
    assert_eq!(got.status, 200, "{}", got.head);
    c.write(b"GET /wp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    let second = c.read_response().await;
    assert_eq!(second.status, 403, "parsed and blocked: {}", second.head);
    assert_eq!(door.origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_that_fails_mid_stream_reaches_the_origin_as_an_aborted_request() {
    // The origin records every byte; it must never see the last chunk, and the client gets
    // 400 rather than a hang.
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(Some(tx));
    let origin = RawOrigin::start(move |mut conn| {
        let tx = tx.lock().unwrap().take();
        async move {
            let bytes = conn.read_to_end().await;
            if let Some(tx) = tx {
                let _ = tx.send(bytes);
            }
        }
    })
    .await;
    let edge = Edge::start(&basic(), &[("origin", origin.addr.to_string())]);
    let req = b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\nworld\r\n0\r\n\r\n";
    let got = raw_exchange(edge.running().http_addrs[0], req).await;
    assert_eq!(got.status, 400, "{}", got.head);
    let seen = within_limit(rx).await.unwrap_or_default();
    let seen = String::from_utf8_lossy(&seen);
    assert!(!seen.contains("world"), "{seen:?}");
    assert!(
        !seen.contains("0\r\n\r\n"),
        "the origin saw a complete-looking body: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_once_and_forwarded_normalised() {
    let door = Door::start().await;
    for (sent, forwarded) in [
        ("/a/./b//c/../d?x=/../&y=%2F", "/a/b/d?x=/../&y=%2F"),
        ("/%7Euser/%61", "/~user/a"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a/.", "/a/"),
    ] {
        let req = format!("GET {sent} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let got = door.send(req.as_bytes()).await;
        assert_eq!(got.status, 200, "{sent}: {}", got.head);
        assert_eq!(door.origin.last().uri, forwarded, "{sent}");
    }
}

/// The forms origins read as `/wp-admin`, `/secret` or `/protected`.
const BYPASSES: &[&str] = &[
    "/x/../{p}",
    "/%2e%2e/{p}",
    "/x/%2E%2E/{p}",
    "//{p}",
    "/./{p}",
    "/{p}/.",
    "/{p}//y/..",
];

fn bypasses(protected: &str) -> Vec<String> {
    let mut all: Vec<String> = BYPASSES
        .iter()
        .map(|b| b.replace("{p}", protected))
        .collect();
    // The first letter percent-encoded.
    let first = protected.as_bytes()[0];
    all.push(format!("/%{first:02x}{}", &protected[1..]));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_bypasses_of_a_block_rule_are_blocked() {
    let door = Door::start().await;
    for path in bypasses("wp-admin") {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let got = door.send(req.as_bytes()).await;
        assert_eq!(got.status, 403, "{path}: {}", got.head);
    }
    assert_eq!(door.origin.requests(), 0);
    // Case is not normalised: `/WP-admin` is another path (documented).
    let got = door
        .send(b"GET /WP-admin HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_bypasses_of_a_route_prefix_reach_that_route() {
    let door = Door::start().await;
    let forms = bypasses("secret");
    for path in &forms {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let got = door.send(req.as_bytes()).await;
        assert_eq!(got.status, 200, "{path}: {}", got.head);
        assert_eq!(got.text(), "secret", "{path} went to the secret route");
        let uri = door.secret.last().uri;
        assert!(
            uri == "/secret" || uri == "/secret/",
            "{path} arrived as {uri}"
        );
    }
    assert_eq!(door.secret.requests(), forms.len());
    assert_eq!(door.origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_bypasses_of_the_challenge_are_challenged() {
    let door = Door::start().await;
    for path in bypasses("protected") {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: a.test\r\nAccept: text/html\r\nUser-Agent: t/1\r\n\r\n"
        );
        let got = door.send(req.as_bytes()).await;
        assert_eq!(got.status, 403, "{path}: {}", got.head);
        assert!(got.text().contains("/.holdfast/challenge/"), "{path}");
    }
    assert_eq!(door.origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_cannot_be_normalised_safely_are_refused_with_400() {
    let door = Door::start().await;
    door.all_refused(
        &[
            b"GET /a%2Fb HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a%5c..%5cwp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a%00.html HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a%0d%0aX:1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a%zz HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /public/..;/wp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /public/..%3B/wp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ],
        400,
        "path",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_keep_forwards_them_encoded() {
    let door = Door::start_with("encoded_slashes = \"keep\"").await;
    for (sent, forwarded) in [
        ("/repo/a%2fb/raw", "/repo/a%2Fb/raw"),
        ("/x/../a%5Cb", "/a%5Cb"),
    ] {
        let req = format!("GET {sent} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let got = door.send(req.as_bytes()).await;
        assert_eq!(got.status, 200, "{sent}: {}", got.head);
        assert_eq!(door.origin.last().uri, forwarded, "{sent}");
    }
    // Kept encoded, a `..` between encoded slashes would climb at an origin that decodes them.
    door.all_refused(
        &[
            b"GET /a%2F..%2Fwp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a%2f%2e%2e%2fwp-admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"GET /a%00 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ],
        400,
        "path",
    )
    .await;
}

/// One HTTP/2 request over h2c (hyper's client: the frames are valid, the fields are ours).
async fn h2_request(door: &Door, uri: &str, headers: &[(&str, &str)]) -> u16 {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(door.edge.running().http_addrs[0])
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::new(bytes::Bytes::new())).unwrap();
    within_limit(sender.send_request(req))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_pass_the_same_front_door() {
    let door = Door::start_with("h2c = true").await;
    // `:authority` is the host: the origin (HTTP/1.1) gets it as its one Host.
    assert_eq!(h2_request(&door, "http://a.test/x", &[]).await, 200);
    let seen = door.origin.last();
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    assert_eq!(seen.headers["host"], "a.test");
    // A `host` field that names another host than `:authority` is refused.
    assert_eq!(
        h2_request(&door, "http://a.test/x", &[("host", "b.test")]).await,
        400
    );
    // Userinfo in `:authority`, a malformed authority, an `_` look-alike: refused.
    assert_eq!(h2_request(&door, "http://u@a.test/x", &[]).await, 400);
    assert_eq!(
        h2_request(&door, "http://a.test/x", &[("content_length", "5")]).await,
        400
    );
    // The path is normalised the same way: the bypass is blocked, the challenge holds.
    assert_eq!(
        h2_request(&door, "http://a.test/x/../wp-admin", &[]).await,
        403
    );
    assert_eq!(
        h2_request(&door, "http://a.test//protected", &[]).await,
        403
    );
    assert_eq!(h2_request(&door, "http://a.test/a%2Fb", &[]).await, 400);
    assert_eq!(door.origin.requests(), 1, "only the valid request went on");
    door.counted("host_mismatch", 1).await;
    door.counted("target_userinfo", 1).await;
    door.counted("lookalike_header", 1).await;
    door.counted("path", 1).await;
}
