//! Accepted files and what they turn into: the minimal file with every default, a file that
//! uses every feature, and the edges of each allowed range.

use crate::{accept, edge_with, file_with, pool_with, route_with};
use expect_test::expect;
use holdfast_config::{
    AccessLog, Admin, Balance, CheckKind, Edge, Fallback, HashKey, HealthCheck, HostMatch, Limits,
    Outlier, Overload, RetryOn, RetryPolicy, ServerAddr, Timeouts, TlsCert, UpstreamTls,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const MINIMAL: &str = r#"
[edge]
listen = ["127.0.0.1:8080"]

[admin]
listen = "127.0.0.1:9901"

[[pools]]
name = "primary"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn minimal_file_is_accepted_with_every_default() {
    let config = accept(MINIMAL);

    assert_eq!(
        config.edge,
        Edge {
            listen: vec![addr("127.0.0.1:8080")],
            tls_listen: vec![],
            tls: vec![],
            acme: vec![],
            h3_listen: vec![],
            h3: holdfast_config::H3 {
                max_streams: 100,
                idle_timeout: secs(30),
                zero_rtt: false,
                max_connections_per_ip: 256,
            },
            threads: None,
            h2c: false,
            forwarded: false,
            access_log: AccessLog::Stdout,
            limits: Limits {
                max_header_bytes: 32 * 1024,
                max_headers: 100,
                max_request_body: 100 * 1024 * 1024,
                request_buffer: 64 * 1024,
            },
            client_header_timeout: secs(30),
            idle_release_after: secs(1),
            shutdown_grace: secs(10),
            drain_timeout: secs(30),
            state_dir: None,
            trusted_proxies: vec![],
            client_ip_header: holdfast_config::ClientIpHeader::XForwardedFor,
            proxy_protocol: false,
            max_connections: 100_000,
            encoded_slashes: holdfast_config::EncodedSlashes::Refuse,
            client_cert_header: None,
            session_tickets: holdfast_config::SessionTickets::default(),
            ocsp_stapling: true,
        }
    );
    assert_eq!(config.modules, holdfast_config::Modules::default());
    assert_eq!(
        config.admin,
        Admin {
            listen: addr("127.0.0.1:9901")
        }
    );

    let [pool] = config.pools.as_slice() else {
        panic!("expected one pool, got {:?}", config.pools)
    };
    assert_eq!(pool.name, "primary");
    assert_eq!(pool.servers, [ServerAddr::Ip(addr("127.0.0.1:9000"))]);
    assert_eq!(pool.host_header, None);
    assert!(!pool.http2);
    assert_eq!(pool.tls, None);
    assert_eq!(pool.max_idle_per_server, 256);
    assert_eq!(pool.idle_timeout, secs(60));
    assert_eq!(pool.overload, None, "no max_concurrent: unlimited");
    assert_eq!(pool.outlier, DEFAULT_OUTLIER);
    assert_eq!(pool.max_connections, None, "unlimited");
    assert_eq!(pool.panic_threshold, 50);
    assert_eq!(pool.health, None, "no [pools.health]: no active checks");

    let [route] = config.routes.as_slice() else {
        panic!("expected one route, got {:?}", config.routes)
    };
    assert_eq!(route.name, "all");
    assert_eq!(route.hosts, []);
    assert_eq!(route.path_prefix, "/");
    assert_eq!(route.pools, vec![0]);
    assert_eq!(route.fallback, None);
    assert_eq!(
        route.timeouts,
        Timeouts {
            connect: secs(5),
            read: secs(60),
            total: None,
        }
    );
    assert!(route.request_headers.is_empty());
    assert!(route.response_headers.is_empty());
}

#[test]
fn admin_defaults_to_loopback_9901() {
    let config = accept(&edge_with(""));
    assert_eq!(config.admin.listen, addr("127.0.0.1:9901"));
}

#[test]
fn path_prefix_defaults_to_slash() {
    let config = accept(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = { host = "example.com" }
pool = "p"
"#,
    );
    assert_eq!(config.routes[0].path_prefix, "/");
    assert_eq!(
        config.routes[0].hosts,
        [HostMatch::Exact("example.com".into())]
    );
}

const FULL: &str = r#"
[edge]
listen = ["0.0.0.0:80", "[::]:8080"]
tls_listen = ["0.0.0.0:443"]
threads = 4
h2c = true
forwarded = true
access_log = "logs/access.log"
client_header_timeout = "10s"
shutdown_grace = "1m 30s"
drain_timeout = "45s"
max_header_bytes = "32KiB"
max_headers = 200
max_request_body = "10MiB"
request_buffer = "256KiB"

[[edge.tls]]
cert = "certs/default.pem"
key = "certs/default.key"

[[edge.tls]]
names = ["Example.COM", "*.example.com"]
cert = "/srv/tls/example.pem"
key = "/srv/tls/example.key"

[admin]
listen = "127.0.0.1:9901"

[[pools]]
name = "app"
servers = ["10.0.0.1:8000", "[2001:db8::1]:8000", "App-2.Internal:8000"]
host_header = "app.internal"
http2 = true
max_idle_per_server = 0
idle_timeout = "90s"
max_concurrent = 500
max_queued = 50
retry_after = "30s"

[pools.tls]
sni = "app.internal"
ca_file = "ca/internal.pem"

[pools.outlier]
consecutive_failures = 3
base_ejection = "10s"
max_ejection = "2m"
max_ejection_percent = 34

[[pools]]
name = "static"
servers = ["static.internal:443"]

[pools.tls]
verify = false

[[routes]]
name = "api"
match = { host = ["api.example.com", "*.API.example.com"], path_prefix = "/v1/" }
pool = "app"
timeouts = { connect = "250ms", read = "30s", total = "2m" }

[routes.request_headers]
set = { "X-Forwarded-Proto" = "https", "x-edge" = "holdfast" }
add = { Via = "1.1 holdfast" }
remove = ["X-Internal-Token", "cookie"]

[routes.response_headers]
set = { Strict-Transport-Security = "max-age=31536000" }
remove = ["Server"]

[[routes]]
name = "assets"
match = { host = "static.example.com" }
pool = "static"
"#;

#[test]
fn full_featured_file_is_accepted() {
    let config = accept(FULL);
    let e = &config.edge;

    assert_eq!(e.listen, [addr("0.0.0.0:80"), addr("[::]:8080")]);
    assert_eq!(e.tls_listen, [addr("0.0.0.0:443")]);
    assert_eq!(e.threads, Some(4));
    assert!(e.h2c);
    assert!(e.forwarded);
    assert_eq!(
        e.access_log,
        AccessLog::File(PathBuf::from("/etc/holdfast/logs/access.log"))
    );
    assert_eq!(e.client_header_timeout, secs(10));
    assert_eq!(e.shutdown_grace, secs(90));
    assert_eq!(e.drain_timeout, secs(45));
    assert_eq!(
        e.limits,
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 200,
            max_request_body: 10 * 1024 * 1024,
            request_buffer: 256 * 1024,
        }
    );
}

#[test]
fn tls_paths_resolve_against_base_dir_and_names_are_lower_cased() {
    let config = accept(FULL);
    assert_eq!(
        config.edge.tls,
        [
            TlsCert {
                names: vec![],
                cert: "/etc/holdfast/certs/default.pem".into(),
                key: "/etc/holdfast/certs/default.key".into(),
                client_auth: None,
                policy: Default::default(),
            },
            TlsCert {
                names: vec!["example.com".into(), "*.example.com".into()],
                cert: "/srv/tls/example.pem".into(),
                key: "/srv/tls/example.key".into(),
                client_auth: None,
                policy: Default::default(),
            },
        ]
    );
}

#[test]
fn pools_keep_servers_host_header_and_upstream_tls() {
    let config = accept(FULL);
    let [app, stat] = config.pools.as_slice() else {
        panic!("expected two pools, got {:?}", config.pools)
    };

    assert_eq!(
        app.servers,
        [
            ServerAddr::Ip(addr("10.0.0.1:8000")),
            ServerAddr::Ip(addr("[2001:db8::1]:8000")),
            ServerAddr::Name {
                host: "app-2.internal".into(),
                port: 8000
            },
        ]
    );
    assert_eq!(app.host_header.as_ref().unwrap(), "app.internal");
    assert!(app.http2);
    assert_eq!(app.max_idle_per_server, 0);
    assert_eq!(app.idle_timeout, secs(90));
    assert_eq!(
        app.overload,
        Some(Overload {
            max_concurrent: 500,
            max_queued: 50,
            retry_after: secs(30),
        })
    );
    assert_eq!(
        app.tls,
        Some(UpstreamTls {
            sni: Some("app.internal".into()),
            ca_file: Some("/etc/holdfast/ca/internal.pem".into()),
            verify: true,
            client_cert: None,
        })
    );

    assert_eq!(
        stat.servers,
        [ServerAddr::Name {
            host: "static.internal".into(),
            port: 443
        }]
    );
    assert_eq!(
        stat.tls,
        Some(UpstreamTls {
            sni: None,
            ca_file: None,
            verify: false,
            client_cert: None,
        })
    );
    assert_eq!(stat.overload, None);
    assert_eq!(
        app.outlier,
        Outlier {
            consecutive_failures: 3,
            base_ejection: secs(10),
            max_ejection: secs(120),
            max_ejection_percent: 34,
        }
    );
    assert_eq!(stat.outlier, DEFAULT_OUTLIER);
}

#[test]
fn routes_resolve_pools_hosts_timeouts_and_header_ops() {
    let config = accept(FULL);
    let [api, assets] = config.routes.as_slice() else {
        panic!("expected two routes, got {:?}", config.routes)
    };

    assert_eq!(api.pools, vec![0]);
    assert_eq!(assets.pools, vec![1]);
    assert_eq!(api.path_prefix, "/v1/");
    assert_eq!(
        api.hosts,
        [
            HostMatch::Exact("api.example.com".into()),
            HostMatch::Suffix(".api.example.com".into()),
        ]
    );
    assert_eq!(
        assets.hosts,
        [HostMatch::Exact("static.example.com".into())]
    );
    assert_eq!(
        api.timeouts,
        Timeouts {
            connect: Duration::from_millis(250),
            read: secs(30),
            total: Some(secs(120)),
        }
    );
    assert_eq!(assets.timeouts.connect, secs(5));

    // Header names are normalised to lower case; set/add keep the map's (sorted) key order.
    expect![[r#"
        HeaderOps {
            remove: [
                "x-internal-token",
                "cookie",
            ],
            set: [
                (
                    "x-forwarded-proto",
                    "https",
                ),
                (
                    "x-edge",
                    "holdfast",
                ),
            ],
            add: [
                (
                    "via",
                    "1.1 holdfast",
                ),
            ],
        }
    "#]]
    .assert_debug_eq(&api.request_headers);
    expect![[r#"
        HeaderOps {
            remove: [
                "server",
            ],
            set: [
                (
                    "strict-transport-security",
                    "max-age=31536000",
                ),
            ],
            add: [],
        }
    "#]]
    .assert_debug_eq(&api.response_headers);
    assert!(assets.request_headers.is_empty());
}

#[test]
fn host_patterns_match_as_documented() {
    let config = accept(FULL);
    let hosts = &config.routes[0].hosts;
    let matches = |h: &str| hosts.iter().any(|m| m.matches(h));

    assert!(matches("api.example.com"));
    assert!(matches("API.Example.com"));
    assert!(matches("eu.api.example.com"));
    assert!(matches("a.b.api.example.com"));
    assert!(!matches("example.com"));
    assert!(!matches("www.example.com"));
    assert!(!matches("xapi.example.com"));
}

#[test]
fn byte_sizes_accept_integers_and_units() {
    for (written, bytes) in [
        ("8192", 8192),
        ("\"8KiB\"", 8192),
        ("\"8 KiB\"", 8192),
        ("\"10kb\"", 10_000),
        ("\"1MiB\"", 1 << 20),
        ("\"1MB\"", 1_000_000),
        ("\"1048576B\"", 1 << 20),
    ] {
        let config = accept(&edge_with(&format!("max_header_bytes = {written}")));
        assert_eq!(
            config.edge.limits.max_header_bytes, bytes,
            "max_header_bytes = {written}"
        );
    }
    let config = accept(&edge_with("max_request_body = \"2GiB\""));
    assert_eq!(config.edge.limits.max_request_body, 2 << 30);
}

#[test]
fn request_buffer_defaults_to_64kib_may_be_zero_and_never_exceeds_the_body_limit() {
    let config = accept(&edge_with(""));
    assert_eq!(config.edge.limits.request_buffer, 64 << 10);
    assert!(config.routes.iter().all(|r| r.request_buffering));
    let config = accept(&edge_with("request_buffer = 0"));
    assert_eq!(config.edge.limits.request_buffer, 0);
    let config = accept(&edge_with(
        "max_request_body = \"16KiB\"\nrequest_buffer = \"8MiB\"",
    ));
    assert_eq!(config.edge.limits.request_buffer, 16 << 10);
}

#[test]
fn range_bounds_are_inclusive() {
    for lines in [
        "threads = 1",
        "threads = 1024",
        "max_headers = 1",
        "max_headers = 1000",
        "max_header_bytes = \"8KiB\"",
        "max_header_bytes = \"1MiB\"",
        "max_request_body = 1",
        "shutdown_grace = \"0s\"",
    ] {
        let config = crate::parse(&edge_with(lines));
        assert!(config.is_ok(), "{lines}: {config:?}");
    }
    let config = accept(&pool_with("max_idle_per_server = 65536"));
    assert_eq!(config.pools[0].max_idle_per_server, 65536);
}

#[test]
fn access_log_off_and_stdout() {
    let off = accept(&edge_with("access_log = \"off\""));
    assert_eq!(off.edge.access_log, AccessLog::Off);
    let stdout = accept(&edge_with("access_log = \"stdout\""));
    assert_eq!(stdout.edge.access_log, AccessLog::Stdout);
    let abs = accept(&edge_with("access_log = \"/var/log/holdfast.log\""));
    assert_eq!(
        abs.edge.access_log,
        AccessLog::File("/var/log/holdfast.log".into())
    );
}

#[test]
fn tls_only_edge_needs_an_empty_plain_listen_list() {
    let config = accept(
        r#"
[edge]
listen = []
tls_listen = ["[::1]:8443"]
[[edge.tls]]
cert = "c.pem"
key = "k.pem"
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
    );
    assert_eq!(config.edge.listen, []);
    assert_eq!(config.edge.tls_listen, [addr("[::1]:8443")]);
}

#[test]
fn port_zero_listeners_never_overlap() {
    let config = accept(
        r#"
[edge]
listen = ["127.0.0.1:0", "127.0.0.1:0"]
[admin]
listen = "127.0.0.1:0"
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
    );
    assert_eq!(config.edge.listen.len(), 2);
}

#[test]
fn same_port_on_different_ips_is_not_an_overlap() {
    let config = accept(
        r#"
[edge]
listen = ["127.0.0.1:8080", "127.0.0.2:8080"]
[admin]
listen = "127.0.0.3:8080"
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
    );
    assert_eq!(config.admin.listen, addr("127.0.0.3:8080"));
}

#[test]
fn routes_may_share_a_pool_and_keep_their_order() {
    let config = accept(&file_with(
        "",
        "",
        r#"
[[routes]]
name = "second"
match = { path_prefix = "/b/" }
pool = "primary"
"#,
    ));
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["all", "second"]);
    assert_eq!(config.routes[1].pools, vec![0]);
}

#[test]
fn a_single_total_timeout_keeps_the_other_defaults() {
    let config = accept(&route_with("timeouts = { total = \"45s\" }"));
    assert_eq!(
        config.routes[0].timeouts,
        Timeouts {
            connect: secs(5),
            read: secs(60),
            total: Some(secs(45)),
        }
    );
}

#[test]
fn server_names_are_lower_cased_and_display_as_host_port() {
    let config = accept(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
[[pools]]
name = "p"
servers = ["127.0.0.1:9000", "[::1]:9001", "Origin.internal:443"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
    );
    let shown: Vec<String> = config.pools[0]
        .servers
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        shown,
        ["127.0.0.1:9000", "[::1]:9001", "origin.internal:443"]
    );
}

#[test]
fn header_values_may_carry_non_ascii_bytes() {
    // RFC 9110 obs-text: passed through as the UTF-8 bytes written; control characters are not.
    let config = accept(&route_with(
        r#"response_headers = { set = { x-city = "Zürich" } }"#,
    ));
    let (name, value) = &config.routes[0].response_headers.set[0];
    assert_eq!(name, "x-city");
    assert_eq!(value.as_bytes(), "Zürich".as_bytes());
}

// --- [pools.retry] ----------------------------------------------------------------------

/// The documented defaults: one retry, on connect failures and resets, idempotent methods
/// only, a 20% budget with 10 retries a second always allowed over 10 s, 25 ms back-off.
fn assert_default_retry(retry: &RetryPolicy) {
    assert_eq!(retry.attempts, 1);
    assert_default_retry_on(&retry.on);
    assert!(!retry.non_idempotent);
    assert_eq!(retry.budget_percent, 20);
    assert_eq!(retry.min_per_second, 10);
    assert_eq!(retry.budget_window, secs(10));
    assert_eq!(retry.backoff, Duration::from_millis(25));
    assert_eq!(retry.buffer_body, 64 * 1024);
}

fn assert_default_retry_on(on: &RetryOn) {
    assert!(on.connect, "{on:?}");
    assert!(on.reset, "{on:?}");
    assert!(!on.timeout, "{on:?}");
    assert!(on.statuses.is_empty(), "{on:?}");
}

fn sorted(statuses: &[u16]) -> Vec<u16> {
    let mut v = statuses.to_vec();
    v.sort_unstable();
    v
}

#[test]
fn retry_defaults_when_the_table_is_absent() {
    let config = accept(MINIMAL);
    assert_default_retry(&config.pools[0].retry);
}

#[test]
fn retry_defaults_when_the_table_is_empty() {
    let config = accept(&pool_with("[pools.retry]"));
    assert_default_retry(&config.pools[0].retry);
}

#[test]
fn retry_table_is_read() {
    let config = accept(&pool_with(
        r#"
[pools.retry]
attempts = 3
on = ["timeout", "503", "connect", "502"]
non_idempotent = true
budget_percent = 50
min_per_second = 0
budget_window = "30s"
backoff = "100ms"
"#,
    ));
    let retry = &config.pools[0].retry;
    assert_eq!(retry.attempts, 3);
    assert!(retry.on.connect);
    assert!(!retry.on.reset, "reset is not listed, so not retried");
    assert!(retry.on.timeout);
    assert_eq!(sorted(&retry.on.statuses), [502, 503]);
    assert!(retry.non_idempotent);
    assert_eq!(retry.budget_percent, 50);
    assert_eq!(retry.min_per_second, 0);
    assert_eq!(retry.budget_window, secs(30));
    assert_eq!(retry.backoff, Duration::from_millis(100));
}

#[test]
fn retry_on_replaces_the_default_list() {
    let config = accept(&pool_with("[pools.retry]\non = [\"503\"]"));
    let on = &config.pools[0].retry.on;
    assert!(!on.connect, "{on:?}");
    assert!(!on.reset, "{on:?}");
    assert!(!on.timeout, "{on:?}");
    assert_eq!(on.statuses, [503]);
    // The other keys keep their defaults.
    assert_eq!(config.pools[0].retry.attempts, 1);
    assert_eq!(config.pools[0].retry.budget_percent, 20);
}

#[test]
fn retry_ranges_are_inclusive() {
    for lines in [
        "attempts = 0",
        "attempts = 10",
        "budget_percent = 0",
        "budget_percent = 100",
        "min_per_second = 0",
        "min_per_second = 10000",
        "budget_window = \"1s\"",
        "budget_window = \"60s\"",
        "backoff = \"1ms\"",
        "backoff = \"10s\"",
        "on = [\"500\", \"599\"]",
    ] {
        let config = crate::parse(&pool_with(&format!("[pools.retry]\n{lines}")));
        assert!(config.is_ok(), "{lines}: {config:?}");
    }
    let config = accept(&pool_with(
        "[pools.retry]\nattempts = 10\nbudget_percent = 100\nmin_per_second = 10000\nbudget_window = \"1m\"\nbackoff = \"10s\"\non = [\"599\", \"500\"]",
    ));
    let retry = &config.pools[0].retry;
    assert_eq!(retry.attempts, 10);
    assert_eq!(retry.budget_percent, 100);
    assert_eq!(retry.min_per_second, 10000);
    assert_eq!(retry.budget_window, secs(60));
    assert_eq!(retry.backoff, secs(10));
    assert_eq!(sorted(&retry.on.statuses), [500, 599]);
}

#[test]
fn each_pool_has_its_own_retry_policy() {
    let config = accept(&file_with(
        "",
        r#"
[pools.retry]
attempts = 0

[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]

[pools.retry]
attempts = 2
on = ["reset", "504"]
"#,
        "",
    ));
    let [first, second, third] = config.pools.as_slice() else {
        panic!("expected three pools, got {:?}", config.pools)
    };
    assert_eq!(first.retry.attempts, 0);
    assert_default_retry(&second.retry);
    assert_eq!(third.retry.attempts, 2);
    assert!(!third.retry.on.connect);
    assert!(third.retry.on.reset);
    assert_eq!(third.retry.on.statuses, [504]);
    assert_eq!(third.retry.budget_percent, 20);
}

// --- [pools.outlier] --------------------------------------------------------------------

/// The documented defaults: ejected after 5 failures in a row, for 30 s × the number of
/// ejections up to 300 s, at most half of the pool at once.
const DEFAULT_OUTLIER: Outlier = Outlier {
    consecutive_failures: 5,
    base_ejection: Duration::from_secs(30),
    max_ejection: Duration::from_secs(300),
    max_ejection_percent: 50,
};

fn outlier_with(lines: &str) -> Outlier {
    accept(&pool_with(&format!("[pools.outlier]\n{lines}"))).pools[0].outlier
}

#[test]
fn outlier_defaults_when_the_table_is_absent() {
    assert_eq!(accept(MINIMAL).pools[0].outlier, DEFAULT_OUTLIER);
}

#[test]
fn outlier_defaults_when_the_table_is_empty() {
    assert_eq!(outlier_with(""), DEFAULT_OUTLIER);
}

#[test]
fn outlier_table_is_read() {
    assert_eq!(
        outlier_with(
            r#"
consecutive_failures = 3
base_ejection = "1m 30s"
max_ejection = "1h"
max_ejection_percent = 25
"#
        ),
        Outlier {
            consecutive_failures: 3,
            base_ejection: secs(90),
            max_ejection: secs(3600),
            max_ejection_percent: 25,
        }
    );
}

#[test]
fn outlier_keys_not_written_keep_their_defaults() {
    assert_eq!(
        outlier_with("consecutive_failures = 0"),
        Outlier {
            consecutive_failures: 0,
            ..DEFAULT_OUTLIER
        },
        "0 is accepted: it turns ejection off"
    );
    assert_eq!(
        outlier_with("max_ejection_percent = 100"),
        Outlier {
            max_ejection_percent: 100,
            ..DEFAULT_OUTLIER
        }
    );
    assert_eq!(
        outlier_with("base_ejection = \"5s\""),
        Outlier {
            base_ejection: secs(5),
            ..DEFAULT_OUTLIER
        }
    );
    assert_eq!(
        outlier_with("max_ejection = \"30s\""),
        Outlier {
            max_ejection: secs(30),
            ..DEFAULT_OUTLIER
        },
        "max_ejection may equal the default base_ejection"
    );
}

#[test]
fn outlier_ranges_are_inclusive() {
    for (lines, want) in [
        ("consecutive_failures = 0", (0, 30, 300, 50)),
        ("consecutive_failures = 1000", (1000, 30, 300, 50)),
        ("max_ejection_percent = 0", (5, 30, 300, 0)),
        ("max_ejection_percent = 100", (5, 30, 300, 100)),
        ("base_ejection = \"1s\"", (5, 1, 300, 50)),
        ("base_ejection = \"1000ms\"", (5, 1, 300, 50)),
        (
            "base_ejection = \"1h\"\nmax_ejection = \"1h\"",
            (5, 3600, 3600, 50),
        ),
        (
            "base_ejection = \"1s\"\nmax_ejection = \"1s\"",
            (5, 1, 1, 50),
        ),
        ("max_ejection = \"24h\"", (5, 30, 86400, 50)),
        ("max_ejection = \"1d\"", (5, 30, 86400, 50)),
    ] {
        let (consecutive_failures, base, max, max_ejection_percent) = want;
        assert_eq!(
            outlier_with(lines),
            Outlier {
                consecutive_failures,
                base_ejection: secs(base),
                max_ejection: secs(max),
                max_ejection_percent,
            },
            "{lines}"
        );
    }
}

#[test]
fn each_pool_has_its_own_outlier_policy() {
    let config = accept(&file_with(
        "",
        r#"
[pools.outlier]
consecutive_failures = 0

[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]

[pools.retry]
attempts = 2

[pools.outlier]
base_ejection = "2s"
max_ejection = "10s"
"#,
        "",
    ));
    let [first, second, third] = config.pools.as_slice() else {
        panic!("expected three pools, got {:?}", config.pools)
    };
    assert_eq!(first.outlier.consecutive_failures, 0);
    assert_eq!(first.outlier.base_ejection, secs(30));
    assert_eq!(second.outlier, DEFAULT_OUTLIER);
    assert_eq!(
        third.outlier,
        Outlier {
            base_ejection: secs(2),
            max_ejection: secs(10),
            ..DEFAULT_OUTLIER
        }
    );
    assert_eq!(third.retry.attempts, 2);
}

// --- overload protection (max_concurrent, max_queued, retry_after) ----------------------

#[test]
fn max_concurrent_alone_takes_the_queue_and_retry_after_defaults() {
    let config = accept(&pool_with("max_concurrent = 10"));
    assert_eq!(
        config.pools[0].overload,
        Some(Overload {
            max_concurrent: 10,
            max_queued: 0,
            retry_after: secs(1),
        })
    );
}

#[test]
fn overload_keys_are_read() {
    let config = accept(&pool_with(
        "max_concurrent = 10\nmax_queued = 5\nretry_after = \"1m 30s\"",
    ));
    assert_eq!(
        config.pools[0].overload,
        Some(Overload {
            max_concurrent: 10,
            max_queued: 5,
            retry_after: secs(90),
        })
    );
}

#[test]
fn overload_ranges_are_inclusive() {
    for (lines, want) in [
        ("max_concurrent = 1", (1, 0, 1)),
        ("max_concurrent = 1000000", (1_000_000, 0, 1)),
        ("max_concurrent = 1\nmax_queued = 0", (1, 0, 1)),
        (
            "max_concurrent = 1\nmax_queued = 1000000",
            (1, 1_000_000, 1),
        ),
        ("max_concurrent = 1\nretry_after = \"1s\"", (1, 0, 1)),
        ("max_concurrent = 1\nretry_after = \"1h\"", (1, 0, 3600)),
        ("max_concurrent = 1\nretry_after = \"60000ms\"", (1, 0, 60)),
    ] {
        let config = accept(&pool_with(lines));
        let (max_concurrent, max_queued, retry_after) = want;
        assert_eq!(
            config.pools[0].overload,
            Some(Overload {
                max_concurrent,
                max_queued,
                retry_after: secs(retry_after),
            }),
            "{lines}"
        );
    }
}

#[test]
fn each_pool_has_its_own_limits() {
    let config = accept(&file_with(
        "",
        r#"max_concurrent = 3

[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]
max_concurrent = 7
max_queued = 2
"#,
        "",
    ));
    let [first, second, third] = config.pools.as_slice() else {
        panic!("expected three pools, got {:?}", config.pools)
    };
    assert_eq!(first.overload.map(|o| o.max_concurrent), Some(3));
    assert_eq!(second.overload, None);
    assert_eq!(
        third.overload,
        Some(Overload {
            max_concurrent: 7,
            max_queued: 2,
            retry_after: secs(1),
        })
    );
}

// --- balancing (balance, hash_key, server weights) --------------------------------------

/// A valid file whose one pool has `servers` (written as the inside of the array) and
/// `lines` after them.
fn servers_with(servers: &str, lines: &str) -> String {
    file_with("", lines, "").replace(
        "servers = [\"127.0.0.1:9000\"]",
        &format!("servers = [{servers}]"),
    )
}

#[test]
fn balance_defaults_to_round_robin_with_every_weight_1() {
    let config = accept(MINIMAL);
    assert_eq!(config.pools[0].balance, Balance::RoundRobin);
    assert_eq!(config.pools[0].weights, [1]);

    let config = accept(&servers_with(
        r#""127.0.0.1:9001", "127.0.0.1:9002", "origin.internal:80""#,
        "",
    ));
    assert_eq!(config.pools[0].balance, Balance::RoundRobin);
    assert_eq!(config.pools[0].weights, [1, 1, 1]);
}

#[test]
fn servers_may_be_tables_with_an_address_and_a_weight() {
    let config = accept(&servers_with(
        r#""127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }, { address = "Origin.Internal:80" }, { weight = 7, address = "[::1]:9003" }"#,
        "",
    ));
    let pool = &config.pools[0];
    assert_eq!(
        pool.servers,
        [
            ServerAddr::Ip(addr("127.0.0.1:9001")),
            ServerAddr::Ip(addr("127.0.0.1:9002")),
            ServerAddr::Name {
                host: "origin.internal".into(),
                port: 80
            },
            ServerAddr::Ip(addr("[::1]:9003")),
        ]
    );
    assert_eq!(pool.weights, [1, 3, 1, 7], "same order as servers");
    assert_eq!(pool.balance, Balance::RoundRobin);
}

#[test]
fn servers_table_form_in_a_multi_line_array() {
    let config = accept(&servers_with(
        "\n  { address = \"127.0.0.1:9001\", weight = 2 },\n  \"127.0.0.1:9002\",\n",
        "",
    ));
    assert_eq!(config.pools[0].weights, [2, 1]);
    assert_eq!(
        config.pools[0].servers,
        [
            ServerAddr::Ip(addr("127.0.0.1:9001")),
            ServerAddr::Ip(addr("127.0.0.1:9002")),
        ]
    );
}

#[test]
fn weight_range_is_inclusive() {
    let config = accept(&servers_with(
        r#"{ address = "127.0.0.1:9001", weight = 1 }, { address = "127.0.0.1:9002", weight = 1000 }"#,
        "",
    ));
    assert_eq!(config.pools[0].weights, [1, 1000]);
}

#[test]
fn balance_modes_are_read() {
    for (lines, want) in [
        ("balance = \"round_robin\"", Balance::RoundRobin),
        ("balance = \"least_request\"", Balance::LeastRequest),
        (
            "balance = \"hash\"\nhash_key = \"client_ip\"",
            Balance::Hash(HashKey::ClientIp),
        ),
        (
            "balance = \"hash\"\nhash_key = \"path\"",
            Balance::Hash(HashKey::Path),
        ),
        (
            "balance = \"hash\"\nhash_key = \"host\"",
            Balance::Hash(HashKey::Host),
        ),
        (
            "balance = \"hash\"\nhash_key = \"header:x-user\"",
            Balance::Hash(HashKey::Header(http::HeaderName::from_static("x-user"))),
        ),
    ] {
        let config = accept(&pool_with(lines));
        assert_eq!(config.pools[0].balance, want, "{lines}");
        assert_eq!(config.pools[0].weights, [1], "{lines}");
    }
}

#[test]
fn hash_header_names_are_case_insensitive() {
    let config = accept(&pool_with(
        "balance = \"hash\"\nhash_key = \"header:X-Session-Id\"",
    ));
    assert_eq!(
        config.pools[0].balance,
        Balance::Hash(HashKey::Header(http::HeaderName::from_static(
            "x-session-id"
        )))
    );
}

#[test]
fn each_pool_has_its_own_balance_and_weights() {
    let config = accept(&file_with(
        "",
        r#"balance = "least_request"

[[pools]]
name = "second"
servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 5 }]
balance = "hash"
hash_key = "path"

[[pools]]
name = "third"
servers = [{ address = "127.0.0.1:9003", weight = 2 }]
"#,
        "",
    ));
    let [first, second, third] = config.pools.as_slice() else {
        panic!("expected three pools, got {:?}", config.pools)
    };
    assert_eq!(first.balance, Balance::LeastRequest);
    assert_eq!(first.weights, [1]);
    assert_eq!(second.balance, Balance::Hash(HashKey::Path));
    assert_eq!(second.weights, [1, 5]);
    assert_eq!(third.balance, Balance::RoundRobin);
    assert_eq!(third.weights, [2]);
}

// --- retry.buffer_body, max_connections, panic_threshold --------------------------------

#[test]
fn buffer_body_is_read_and_zero_turns_it_off() {
    for (written, bytes) in [
        ("\"0\"", 0),
        ("0", 0),
        ("1024", 1024),
        ("\"1KB\"", 1000),
        ("\"256KiB\"", 256 << 10),
        ("\"16MiB\"", 16 << 20),
        ("16777216", 16 << 20),
    ] {
        let config = accept(&pool_with(&format!(
            "[pools.retry]\nbuffer_body = {written}"
        )));
        let retry = &config.pools[0].retry;
        assert_eq!(retry.buffer_body, bytes, "buffer_body = {written}");
        assert_eq!(
            retry.attempts, 1,
            "the other retry keys keep their defaults"
        );
    }
}

#[test]
fn max_connections_and_panic_threshold_are_read() {
    let config = accept(&pool_with("max_connections = 100\npanic_threshold = 25"));
    assert_eq!(config.pools[0].max_connections, Some(100));
    assert_eq!(config.pools[0].panic_threshold, 25);
    assert_eq!(
        config.pools[0].overload, None,
        "max_connections is per server, not the pool's max_concurrent"
    );
}

#[test]
fn max_connections_and_panic_threshold_ranges_are_inclusive() {
    for (lines, connections, threshold) in [
        ("max_connections = 1", Some(1), 50),
        ("max_connections = 1000000", Some(1_000_000), 50),
        ("panic_threshold = 0", None, 0),
        ("panic_threshold = 100", None, 100),
    ] {
        let config = accept(&pool_with(lines));
        assert_eq!(config.pools[0].max_connections, connections, "{lines}");
        assert_eq!(config.pools[0].panic_threshold, threshold, "{lines}");
    }
}

// --- [pools.health] ---------------------------------------------------------------------

/// The documented defaults: an HTTP `GET /` expecting 200-399 every 5 s with a 2 s timeout,
/// up after 2 passes in a row, down after 3 failures in a row.
fn default_health() -> HealthCheck {
    HealthCheck {
        kind: CheckKind::Http {
            path: "/".into(),
            expect: (200, 399),
            host: None,
        },
        interval: secs(5),
        timeout: secs(2),
        healthy_after: 2,
        unhealthy_after: 3,
    }
}

fn health_with(lines: &str) -> HealthCheck {
    let config = accept(&pool_with(&format!("[pools.health]\n{lines}")));
    config.pools[0]
        .health
        .clone()
        .expect("[pools.health] is written, so checks are on")
}

#[test]
fn an_empty_health_table_is_an_http_check_with_every_default() {
    assert_eq!(health_with(""), default_health());
    assert_eq!(health_with("kind = \"http\""), default_health());
}

#[test]
fn health_table_is_read() {
    assert_eq!(
        health_with(
            r#"
kind = "http"
path = "/healthz?deep=1"
expect = "204"
host = "origin.example"
interval = "500ms"
timeout = "250ms"
healthy_after = 1
unhealthy_after = 10
"#
        ),
        HealthCheck {
            kind: CheckKind::Http {
                path: "/healthz?deep=1".into(),
                expect: (204, 204),
                host: Some(http::HeaderValue::from_static("origin.example")),
            },
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(250),
            healthy_after: 1,
            unhealthy_after: 10,
        }
    );
}

#[test]
fn tcp_check_takes_the_same_timings() {
    assert_eq!(
        health_with("kind = \"tcp\""),
        HealthCheck {
            kind: CheckKind::Tcp,
            ..default_health()
        }
    );
    assert_eq!(
        health_with("kind = \"tcp\"\ninterval = \"1s\"\ntimeout = \"100ms\"\nunhealthy_after = 1"),
        HealthCheck {
            kind: CheckKind::Tcp,
            interval: secs(1),
            timeout: Duration::from_millis(100),
            unhealthy_after: 1,
            ..default_health()
        }
    );
}

#[test]
fn expect_is_a_status_or_an_inclusive_range() {
    for (written, range) in [
        ("200", (200, 200)),
        ("200-299", (200, 299)),
        ("200-200", (200, 200)),
        ("100", (100, 100)),
        ("599", (599, 599)),
        ("100-599", (100, 599)),
        ("301-302", (301, 302)),
    ] {
        let health = health_with(&format!("expect = {written:?}"));
        let CheckKind::Http { expect, path, host } = health.kind else {
            panic!("expect = {written:?}: not an HTTP check: {health:?}")
        };
        assert_eq!(expect, range, "expect = {written:?}");
        assert_eq!(path, "/", "expect = {written:?}");
        assert_eq!(host, None, "expect = {written:?}");
    }
}

#[test]
fn health_ranges_are_inclusive() {
    for (lines, want) in [
        ("interval = \"10ms\"", (10, 2_000, 2, 3)),
        ("interval = \"1h\"", (3_600_000, 2_000, 2, 3)),
        ("timeout = \"1ms\"", (5_000, 1, 2, 3)),
        ("timeout = \"60s\"", (5_000, 60_000, 2, 3)),
        ("healthy_after = 1", (5_000, 2_000, 1, 3)),
        ("healthy_after = 100", (5_000, 2_000, 100, 3)),
        ("unhealthy_after = 1", (5_000, 2_000, 2, 1)),
        ("unhealthy_after = 100", (5_000, 2_000, 2, 100)),
    ] {
        let (interval, timeout, healthy_after, unhealthy_after) = want;
        assert_eq!(
            health_with(lines),
            HealthCheck {
                interval: Duration::from_millis(interval),
                timeout: Duration::from_millis(timeout),
                healthy_after,
                unhealthy_after,
                ..default_health()
            },
            "{lines}"
        );
    }
}

#[test]
fn each_pool_has_its_own_health_check() {
    let config = accept(&file_with(
        "",
        r#"
[pools.health]
path = "/healthz"

[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]
max_connections = 8

[pools.retry]
attempts = 2

[pools.health]
kind = "tcp"
"#,
        "",
    ));
    let [first, second, third] = config.pools.as_slice() else {
        panic!("expected three pools, got {:?}", config.pools)
    };
    assert_eq!(
        first.health,
        Some(HealthCheck {
            kind: CheckKind::Http {
                path: "/healthz".into(),
                expect: (200, 399),
                host: None,
            },
            ..default_health()
        })
    );
    assert_eq!(first.max_connections, None);
    assert_eq!(second.health, None);
    assert_eq!(
        third.health,
        Some(HealthCheck {
            kind: CheckKind::Tcp,
            ..default_health()
        })
    );
    assert_eq!(third.max_connections, Some(8));
    assert_eq!(third.retry.attempts, 2);
}

// --- [[routes]] failover chain and fallback ---------------------------------------------

/// A valid file with pools "primary", "secondary" and "tertiary" (indices 0, 1, 2) and one
/// route whose `pool = "primary"` line is replaced by `route`.
fn chain_with(route: &str) -> String {
    file_with(
        "",
        r#"
[[pools]]
name = "secondary"
servers = ["127.0.0.1:9001"]

[[pools]]
name = "tertiary"
servers = ["127.0.0.1:9002"]
"#,
        "",
    )
    .replace("pool = \"primary\"\n", &format!("{route}\n"))
}

#[test]
fn pools_list_the_failover_chain_in_order() {
    for (route, chain) in [
        (r#"pools = ["primary", "secondary"]"#, vec![0, 1]),
        (r#"pools = ["tertiary", "primary"]"#, vec![2, 0]),
        (
            r#"pools = ["secondary", "tertiary", "primary"]"#,
            vec![1, 2, 0],
        ),
        (r#"pools = ["tertiary"]"#, vec![2]),
        (r#"pool = "secondary""#, vec![1]),
    ] {
        let config = accept(&chain_with(route));
        assert_eq!(config.routes[0].pools, chain, "{route}");
        assert_eq!(config.pools.len(), 3, "{route}");
    }
}

#[test]
fn pool_is_the_same_as_a_chain_of_one() {
    let one = accept(&chain_with(r#"pool = "secondary""#));
    let list = accept(&chain_with(r#"pools = ["secondary"]"#));
    assert_eq!(one.routes[0].pools, list.routes[0].pools);
    assert_eq!(one.routes[0].fallback, list.routes[0].fallback);
    assert_eq!(one.routes[0].pools, vec![1]);
}

#[test]
fn routes_may_share_pools_in_different_orders() {
    let config = accept(&chain_with(
        r#"pools = ["primary", "secondary"]

[[routes]]
name = "reverse"
match = { path_prefix = "/b/" }
pools = ["secondary", "primary"]
"#,
    ));
    assert_eq!(config.routes[0].pools, vec![0, 1]);
    assert_eq!(config.routes[1].pools, vec![1, 0]);
}

fn fallback_with(fallback: &str) -> Fallback {
    accept(&route_with(&format!("fallback = {fallback}")))
        .routes
        .remove(0)
        .fallback
        .expect("fallback is written")
}

#[test]
fn fallback_defaults_to_503_with_the_type_of_its_file() {
    assert_eq!(
        fallback_with(r#"{ file = "maintenance.html" }"#),
        Fallback {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            file: PathBuf::from("/etc/holdfast/maintenance.html"),
            content_type: http::HeaderValue::from_static("text/html; charset=utf-8"),
            retry_after: None,
        }
    );
}

#[test]
fn fallback_is_read() {
    assert_eq!(
        fallback_with(
            r#"{ status = 200, file = "pages/down.txt", content_type = "text/html; charset=utf-8", retry_after = "30s" }"#
        ),
        Fallback {
            status: http::StatusCode::OK,
            file: PathBuf::from("/etc/holdfast/pages/down.txt"),
            content_type: http::HeaderValue::from_static("text/html; charset=utf-8"),
            retry_after: Some(secs(30)),
        }
    );
    // As a table of its own, with an absolute path, which is kept.
    let config = accept(&route_with(
        "[routes.fallback]\nstatus = 599\nfile = \"/srv/www/sorry.json\"\nretry_after = \"2m\"",
    ));
    assert_eq!(
        config.routes[0].fallback,
        Some(Fallback {
            status: http::StatusCode::from_u16(599).unwrap(),
            file: PathBuf::from("/srv/www/sorry.json"),
            content_type: http::HeaderValue::from_static("application/json"),
            retry_after: Some(secs(120)),
        })
    );
}

#[test]
fn fallback_status_range_is_inclusive() {
    for status in [200, 503, 599] {
        let fallback = fallback_with(&format!("{{ status = {status}, file = \"down.html\" }}"));
        assert_eq!(fallback.status.as_u16(), status);
    }
}

#[test]
fn fallback_content_type_follows_the_file_extension() {
    for (file, content_type) in [
        ("down.html", "text/html; charset=utf-8"),
        ("down.htm", "text/html; charset=utf-8"),
        ("DOWN.HTML", "text/html; charset=utf-8"),
        ("down.json", "application/json"),
        ("down.txt", "text/plain; charset=utf-8"),
        ("down.png", "application/octet-stream"),
        ("down", "application/octet-stream"),
        ("pages.html/down", "application/octet-stream"),
    ] {
        let fallback = fallback_with(&format!("{{ file = {file:?} }}"));
        assert_eq!(fallback.content_type, content_type, "file = {file:?}");
        assert_eq!(
            fallback.file,
            PathBuf::from("/etc/holdfast").join(file),
            "file = {file:?}"
        );
    }
    // A content_type that is written wins over the extension.
    let fallback = fallback_with(r#"{ file = "down.html", content_type = "text/plain" }"#);
    assert_eq!(fallback.content_type, "text/plain");
}

#[test]
fn a_chain_with_a_fallback() {
    let config = accept(&chain_with(
        r#"pools = ["primary", "secondary"]
fallback = { file = "maintenance.html", retry_after = "30s" }"#,
    ));
    let route = &config.routes[0];
    assert_eq!(route.pools, vec![0, 1]);
    let fallback = route.fallback.as_ref().unwrap();
    assert_eq!(fallback.status, 503);
    assert_eq!(fallback.retry_after, Some(secs(30)));
}

#[test]
fn bot_module_defaults_and_state_dir() {
    let config = accept(
        &format!("{MINIMAL}\n[modules.bot]\nfeatures = \"bot-features.json\"\n")
            .replace("[edge]\n", "[edge]\nstate_dir = \"state\"\n"),
    );
    assert_eq!(
        config.edge.state_dir,
        Some(std::path::PathBuf::from("/etc/holdfast/state"))
    );
    let bot = config.modules.bot.expect("bot module");
    assert_eq!(
        bot,
        holdfast_config::BotModule {
            enabled: true,
            ja4h: false,
            features: std::path::PathBuf::from("/etc/holdfast/bot-features.json"),
            fail_policy: holdfast_config::FailPolicy::Open,
            public_key: None,
            max_shrink_percent: 50,
            time_budget: std::time::Duration::from_millis(10),
            report_interval: secs(10),
            breaker: holdfast_config::Breaker {
                error_percent: 50,
                min_requests: 20,
                window: secs(10),
                cooldown: secs(5),
            },
        }
    );
}

#[test]
fn bot_module_as_written() {
    let config = accept(&format!(
        "{MINIMAL}\n[modules.bot]\nenabled = false\nfeatures = \"f.json\"\nfail_policy = \"stale\"\npublic_key = \"AAAA\"\nmax_shrink_percent = 100\ntime_budget = \"500us\"\nreport_interval = \"1m\"\n[modules.bot.breaker]\nerror_percent = 10\nmin_requests = 5\nwindow = \"30s\"\ncooldown = \"200ms\"\n"
    ));
    let bot = config.modules.bot.expect("bot module");
    assert!(!bot.enabled);
    assert_eq!(bot.fail_policy, holdfast_config::FailPolicy::Stale);
    assert_eq!(bot.public_key.as_deref(), Some("AAAA"));
    assert_eq!(bot.max_shrink_percent, 100);
    assert_eq!(bot.time_budget, std::time::Duration::from_micros(500));
    assert_eq!(bot.report_interval, secs(60));
    assert_eq!(bot.breaker.error_percent, 10);
    assert_eq!(bot.breaker.min_requests, 5);
    assert_eq!(bot.breaker.cooldown, std::time::Duration::from_millis(200));
}

#[test]
fn limits_as_in_the_shield_issue() {
    let config = accept(&format!(
        "{MINIMAL}\n[[limits]]\nname = \"per-ip\"\nkey = \"client_ip\"\nrequests = 5\nper = \"1s\"\nroutes = [\"all\"]\n\n[[limits]]\nname = \"per-token\"\nkey = \"header:x-api-token\"\nrequests = 100\nper = \"1m\"\nburst = 20\nshadow = true\nmax_keys = 5000\n\n[[limits]]\nname = \"session\"\nkey = \"cookie:sid\"\nrequests = 1\nper = \"100ms\"\n"
    ));
    let [ip, token, session] = config.limits.as_slice() else {
        panic!("{:?}", config.limits);
    };
    assert_eq!(
        ip,
        &holdfast_config::Limit {
            name: "per-ip".into(),
            key: holdfast_config::LimitKey::ClientIp,
            requests: 5,
            per: secs(1),
            burst: 5,
            routes: vec![0],
            shadow: false,
            max_keys: 100_000,
            scope: holdfast_config::LimitScope::Local,
            rules_only: false,
        }
    );
    assert!(config.redis.is_none());
    assert_eq!(
        token.key,
        holdfast_config::LimitKey::Header(http::HeaderName::from_static("x-api-token"))
    );
    assert_eq!(
        (token.burst, token.shadow, token.max_keys),
        (20, true, 5000)
    );
    assert!(token.routes.is_empty());
    assert_eq!(session.key, holdfast_config::LimitKey::Cookie("sid".into()));
    assert_eq!(session.per, std::time::Duration::from_millis(100));
}

#[test]
fn global_limits_and_redis() {
    let config = accept(&format!(
        "{MINIMAL}\n[redis]\nurl = \"unix:///run/redis/redis.sock\"\n\n[[limits]]\nname = \"g\"\nkey = \"client_ip\"\nrequests = 20\nper = \"1h\"\nscope = \"global\"\n\n[[limits]]\nname = \"l\"\nkey = \"route\"\nrequests = 1\nper = \"1s\"\nscope = \"local\"\n"
    ));
    assert_eq!(
        config.redis,
        Some(holdfast_config::Redis {
            url: "unix:///run/redis/redis.sock".into(),
            timeout: std::time::Duration::from_millis(50),
            sync_interval: std::time::Duration::from_millis(100),
        })
    );
    let scopes: Vec<_> = config.limits.iter().map(|l| l.scope).collect();
    assert_eq!(
        scopes,
        [
            holdfast_config::LimitScope::Global,
            holdfast_config::LimitScope::Local
        ]
    );
    let config = accept(&format!(
        "{MINIMAL}\n[redis]\nurl = \"redis://10.0.0.5:6379\"\ntimeout = \"5s\"\nsync_interval = \"10ms\"\n"
    ));
    let redis = config.redis.expect("[redis]");
    assert_eq!(redis.url, "redis://10.0.0.5:6379");
    assert_eq!(redis.timeout, secs(5));
    assert_eq!(redis.sync_interval, std::time::Duration::from_millis(10));
}

#[test]
fn trusted_proxies_take_networks_and_addresses() {
    let config = accept(&MINIMAL.replace(
        "[edge]\n",
        "[edge]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::1/32\"]\n",
    ));
    let nets: Vec<String> = config
        .edge
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
}

#[test]
fn client_rate_is_a_rule_variable_read_only_by_the_rules_that_name_it() {
    let rate = |expr: &str| holdfast_config::check_rule_expr(expr).map(|f| (f.rate, f.client_ip));
    assert_eq!(rate("client.rate > 100"), Ok((true, false)));
    assert_eq!(rate("5 <= client.rate"), Ok((true, false)));
    assert_eq!(
        rate(r#"client.ip == "10.0.0.1" && client.rate >= 5"#),
        Ok((true, true))
    );
    assert_eq!(rate(r#"client.ip == "10.0.0.1""#), Ok((false, true)));
    assert_eq!(rate(r#"request.path == "/""#), Ok((false, false)));
    assert_eq!(
        rate("client.rates > 1"),
        Err("unknown field client.rates (known: ip, rate)".to_string())
    );
}

#[test]
fn rules_as_the_issue_writes_them_and_every_key() {
    let config = accept(&format!(
        r#"{MINIMAL}
[[rules]]
id = "block-admin-probe"
expr = 'request.path.startsWith("/wp-admin")'     # CEL
action = "block"

[[rules]]
id = "office"
expr = 'request.headers["x-office"] == "yes" && client.ip.startsWith("10.")'
action = "allow"
routes = ["all"]

[[rules]]
id = "gone"
expr = 'request.cookies.exists(k, k == "legacy") || request.query.matches("^old=")'
action = "block"
status = 410
mode = "log"

[[rules]]
id = "seen"
expr = 'request.method == "POST" && request.host.endsWith(".example.com")'
action = "log"
"#
    ));
    let r = &config.rules;
    assert_eq!(r.len(), 4);
    assert_eq!(
        r[0],
        holdfast_config::Rule {
            id: "block-admin-probe".into(),
            expr: r#"request.path.startsWith("/wp-admin")"#.into(),
            action: holdfast_config::RuleAction::Block { status: 403 },
            mode: holdfast_config::RuleMode::Enforce,
            fields: holdfast_config::RuleFields {
                path: true,
                ..Default::default()
            },
            routes: vec![],
            header: None,
            route: None,
            limit: None,
        }
    );
    assert_eq!(r[1].action, holdfast_config::RuleAction::Allow);
    assert_eq!(r[1].routes, vec![0]);
    assert_eq!(
        r[1].fields,
        holdfast_config::RuleFields {
            headers: true,
            client_ip: true,
            ..Default::default()
        }
    );
    assert_eq!(
        (r[2].action, r[2].mode),
        (
            holdfast_config::RuleAction::Block { status: 410 },
            holdfast_config::RuleMode::Log
        )
    );
    assert!(r[2].fields.cookies && r[2].fields.query && !r[2].fields.path);
    assert_eq!(r[3].action, holdfast_config::RuleAction::Log);
    assert!(r[3].fields.method && r[3].fields.host);
}

#[test]
fn a_route_may_stream_its_uploads() {
    let config = accept(&route_with("request_buffering = false"));
    assert!(!config.routes[0].request_buffering);
    let config = accept(&route_with("request_buffering = true"));
    assert!(config.routes[0].request_buffering);
}
