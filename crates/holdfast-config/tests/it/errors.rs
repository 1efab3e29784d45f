//! Semantic errors (`validate`): each kind on its own, then many at once. Each snapshot is
//! the whole error list, so it also proves that nothing else was reported.

use crate::{check_each, check_errors, edge_with, file_with, pool_with, route_with};
use expect_test::expect;

#[test]
fn many_errors_are_reported_together() {
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:8080", "localhost:8081"]
colour = "blue"

[admin]
listen = "127.0.0.1:8080"

[[pools]]
name = "app"
servers = ["127.0.0.1:9000"]

[[pools]]
name = "app"
servers = []

[[routes]]
name = "api"
match = { path_prefix = "/api/" }
pool = "api"
timeouts = { connect = "0s" }
"#,
        expect![[r#"
            edge.colour: unknown key (remove it or check its spelling against docs/config.md)
            edge.listen[1]: invalid listen address "localhost:8081" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            admin.listen: 127.0.0.1:8080 is also the data listener edge.listen[0] (the admin plane must have its own address: change admin.listen)
            pools[1].name: duplicate pool name "app" (pool names must be unique)
            pools[1].servers: pool "app" has no servers (list at least one origin, e.g. servers = ["127.0.0.1:9000"])
            routes[0].pool: unknown pool "api" (define it under [[pools]] or use one of ["app", "app"])
            routes[0].timeouts.connect: must be greater than zero (write a duration such as "5s" or "250ms")
        "#]],
    );
}

#[test]
fn errors_are_in_file_order_with_indices_of_the_entries_written() {
    check_errors(
        r#"
[edge]
listen = ["not an address", "127.0.0.1:8080", "127.0.0.1:8080"]

[[pools]]
name = "a"
servers = ["127.0.0.1:9000", "nope", "127.0.0.1:0"]

[[routes]]
name = "r"
match = { path_prefix = "/" }
pool = "a"

[[routes]]
name = "r"
match = { path_prefix = "api" }
pool = "b"
"#,
        expect![[r#"
            edge.listen[0]: invalid listen address "not an address" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            edge.listen[2]: 127.0.0.1:8080 is already used by edge.listen[1] (list each listen address once)
            pools[0].servers[1]: invalid server address "nope" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[2]: invalid server address "127.0.0.1:0" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            routes[1].name: duplicate route name "r" (route names must be unique)
            routes[1].pool: unknown pool "b" (define it under [[pools]] or use one of ["a"])
            routes[1].match.path_prefix: "api" does not start with '/' (write an absolute path prefix such as "/api/")
        "#]],
    );
}

// --- [edge] listeners -------------------------------------------------------------------

#[test]
fn listen_address_must_be_ip_and_port() {
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1", "localhost:8080", ":8080", "127.0.0.1:65536", "[::1]:8080"]
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            edge.listen[0]: invalid listen address "127.0.0.1" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            edge.listen[1]: invalid listen address "localhost:8080" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            edge.listen[2]: invalid listen address ":8080" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            edge.listen[3]: invalid listen address "127.0.0.1:65536" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
        "#]],
    );
}

#[test]
fn tls_listen_address_must_be_ip_and_port() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["example.com:443"]
[[edge.tls]]
cert = "c.pem"
key = "k.pem"
"#,
        ),
        expect![[r#"
            edge.tls_listen[0]: invalid listen address "example.com:443" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
        "#]],
    );
}

#[test]
fn no_listener_at_all() {
    check_errors(
        r#"
[edge]
listen = []
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            edge.listen: no listener configured (add at least one address, e.g. listen = ["127.0.0.1:8080"])
        "#]],
    );
}

#[test]
fn admin_listener_may_not_share_a_data_listener_address() {
    check_errors(
        &edge_with(
            r#"
[admin]
listen = "127.0.0.1:8080"
"#,
        ),
        expect![[r#"
            admin.listen: 127.0.0.1:8080 is also the data listener edge.listen[0] (the admin plane must have its own address: change admin.listen)
        "#]],
    );
}

#[test]
fn wildcard_address_overlaps_any_ip_on_the_same_port() {
    check_errors(
        r#"
[edge]
listen = ["0.0.0.0:9901"]
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            admin.listen: 127.0.0.1:9901 is also the data listener edge.listen[0] (the admin plane must have its own address: change admin.listen)
        "#]],
    );
}

#[test]
fn a_wildcard_listed_first_or_on_admin_overlaps_later_addresses() {
    check_errors(
        r#"
[edge]
listen = ["0.0.0.0:8080", "127.0.0.1:8080", "127.0.0.1:9000"]
[admin]
listen = "[::]:9000"
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            edge.listen[1]: 127.0.0.1:8080 is already used by edge.listen[0] (list each listen address once)
            admin.listen: [::]:9000 is also the data listener edge.listen[2] (the admin plane must have its own address: change admin.listen)
        "#]],
    );
}

#[test]
fn ipv4_and_ipv6_wildcards_on_one_port_overlap() {
    check_errors(
        &edge_with("").replace("\"127.0.0.1:8080\"", "\"0.0.0.0:80\", \"[::]:80\""),
        expect![[r#"
            edge.listen[1]: [::]:80 is already used by edge.listen[0] (list each listen address once)
        "#]],
    );
}

#[test]
fn plain_and_tls_listeners_may_not_share_an_address() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["[::]:8080"]
[[edge.tls]]
cert = "c.pem"
key = "k.pem"
"#,
        ),
        expect![[r#"
            edge.tls_listen[0]: [::]:8080 is already used by edge.listen[0] (list each listen address once)
        "#]],
    );
}

#[test]
fn admin_listen_must_be_ip_and_port() {
    check_errors(
        &edge_with(
            r#"
[admin]
listen = "localhost:9901"
"#,
        ),
        expect![[r#"
            admin.listen: invalid listen address "localhost:9901" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
        "#]],
    );
}

#[test]
fn an_invalid_admin_address_is_not_compared_with_the_data_listeners() {
    // Only the address error: no overlap is claimed for an address that was never parsed.
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:9901"]
[admin]
listen = "localhost:9901"
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            admin.listen: invalid listen address "localhost:9901" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
        "#]],
    );
}

#[test]
fn listener_overlaps_name_tls_listen_entries_as_written() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["bad", "127.0.0.1:8443", "0.0.0.0:8443"]
[[edge.tls]]
cert = "c.pem"
key = "k.pem"
[admin]
listen = "127.0.0.1:8443"
"#,
        ),
        expect![[r#"
            edge.tls_listen[0]: invalid listen address "bad" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            admin.listen: 127.0.0.1:8443 is also the data listener edge.tls_listen[1] (the admin plane must have its own address: change admin.listen)
            admin.listen: 127.0.0.1:8443 is also the data listener edge.tls_listen[2] (the admin plane must have its own address: change admin.listen)
            edge.tls_listen[2]: 0.0.0.0:8443 is already used by edge.tls_listen[1] (list each listen address once)
        "#]],
    );
}

// --- [edge] scalars ---------------------------------------------------------------------

#[test]
fn threads_zero() {
    check_errors(
        &edge_with("threads = 0"),
        expect![[r#"
        edge.threads: 0 is out of range (use 1 to 1024, or leave it out for one worker per core)
    "#]],
    );
}

#[test]
fn threads_out_of_range() {
    check_each(
        edge_with,
        &["threads = 1025", "threads = -1"],
        expect![[r#"
            threads = 1025
                edge.threads: 1025 is out of range (use 1 to 1024, or leave it out for one worker per core)
            threads = -1
                edge.threads: -1 is out of range (use 1 to 1024, or leave it out for one worker per core)
        "#]],
    );
}

#[test]
fn max_headers_out_of_range() {
    check_each(
        edge_with,
        &["max_headers = 0", "max_headers = 1001"],
        expect![[r#"
            max_headers = 0
                edge.max_headers: 0 is out of range (use 1 to 1000)
            max_headers = 1001
                edge.max_headers: 1001 is out of range (use 1 to 1000)
        "#]],
    );
}

#[test]
fn max_header_bytes_out_of_range() {
    check_each(
        edge_with,
        &["max_header_bytes = \"4KiB\"", "max_header_bytes = 1048577"],
        expect![[r#"
            max_header_bytes = "4KiB"
                edge.max_header_bytes: 4096 bytes is out of range (use 8KiB to 1MiB)
            max_header_bytes = 1048577
                edge.max_header_bytes: 1048577 bytes is out of range (use 8KiB to 1MiB)
        "#]],
    );
}

#[test]
fn max_request_body_zero() {
    check_errors(
        &edge_with("max_request_body = 0"),
        expect![[r#"
        edge.max_request_body: must be greater than zero (write a size such as "10MiB")
    "#]],
    );
}

#[test]
fn client_header_timeout_zero() {
    check_errors(
        &edge_with("client_header_timeout = \"0s\""),
        expect![[r#"
        edge.client_header_timeout: must be greater than zero (write a duration such as "5s" or "250ms")
    "#]],
    );
}

#[test]
fn access_log_empty() {
    check_errors(
        &edge_with("access_log = \"\""),
        expect![[r#"
        edge.access_log: empty path (use "stdout", "off" or a file path)
    "#]],
    );
}

// --- [[edge.tls]] -----------------------------------------------------------------------

#[test]
fn tls_listen_without_certificates() {
    check_errors(
        &edge_with("tls_listen = [\"127.0.0.1:8443\"]"),
        expect![[r#"
            edge.tls: tls_listen is set but no certificate is configured (add an [[edge.tls]] table with cert and key, or an [[edge.acme]] table with the domains)
        "#]],
    );
}

#[test]
fn certificates_without_tls_listen() {
    check_errors(
        &edge_with(
            r#"
[[edge.tls]]
cert = "c.pem"
key = "k.pem"
"#,
        ),
        expect![[r#"
            edge.tls_listen: certificates are configured but no TLS listener (add tls_listen = ["127.0.0.1:8443"] or remove the [[edge.tls]] tables)
        "#]],
    );
}

#[test]
fn two_default_certificates() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["127.0.0.1:8443"]
[[edge.tls]]
cert = "a.pem"
key = "a.key"
[[edge.tls]]
names = ["example.com"]
cert = "b.pem"
key = "b.key"
[[edge.tls]]
cert = "c.pem"
key = "c.key"
"#,
        ),
        expect![[r#"
            edge.tls[2].names: a second default certificate (no names) (give this certificate its server names)
        "#]],
    );
}

#[test]
fn a_server_name_on_two_certificates() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["127.0.0.1:8443"]
[[edge.tls]]
names = ["example.com", "*.example.com"]
cert = "a.pem"
key = "a.key"
[[edge.tls]]
names = ["EXAMPLE.com"]
cert = "b.pem"
key = "b.key"
"#,
        ),
        expect![[r#"
            edge.tls[1].names[0]: server name "example.com" is given to two certificates (also edge.tls[0]) (each name may appear on one certificate only)
        "#]],
    );
}

#[test]
fn a_server_name_twice_on_one_certificate() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["127.0.0.1:8443"]
[[edge.tls]]
names = ["example.com", "www.example.com", "Example.com"]
cert = "a.pem"
key = "a.key"
"#,
        ),
        expect![[r#"
            edge.tls[0].names[2]: server name "example.com" is listed twice on this certificate (list each name once)
        "#]],
    );
}

#[test]
fn certificate_names_and_paths_are_checked() {
    check_errors(
        &edge_with(
            r#"
tls_listen = ["127.0.0.1:8443"]
[[edge.tls]]
names = ["example.com:443", "https://example.com"]
cert = ""
key = ""
"#,
        ),
        expect![[r#"
            edge.tls[0].names[0]: invalid host name "example.com:443" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            edge.tls[0].names[1]: invalid host name "https://example.com" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            edge.tls[0].cert: empty path (give the path of a PEM file)
            edge.tls[0].key: empty path (give the path of a PEM file)
        "#]],
    );
}

// --- [[pools]] --------------------------------------------------------------------------

#[test]
fn pool_names_must_be_unique_and_non_empty() {
    check_errors(
        &file_with(
            r#"
[[pools]]
name = "primary"
servers = ["127.0.0.1:9001"]

[[pools]]
name = ""
servers = ["127.0.0.1:9002"]
"#,
            "",
            "",
        ),
        expect![[r#"
            pools[1].name: empty name (give the pool a name)
            pools[2].name: duplicate pool name "primary" (pool names must be unique)
        "#]],
    );
}

#[test]
fn pool_without_servers() {
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
[[pools]]
name = "p"
servers = []
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            pools[0].servers: pool "p" has no servers (list at least one origin, e.g. servers = ["127.0.0.1:9000"])
        "#]],
    );
}

#[test]
fn server_addresses_need_a_host_and_a_port_1_to_65535() {
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
[[pools]]
name = "p"
servers = [
    "127.0.0.1",
    "127.0.0.1:0",
    "origin:65536",
    "http://origin:80",
    ":80",
    "::1:80",
    "origin_1:80",
]
[[routes]]
name = "r"
match = {}
pool = "p"
"#,
        expect![[r#"
            pools[0].servers[0]: invalid server address "127.0.0.1" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[1]: invalid server address "127.0.0.1:0" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[2]: invalid server address "origin:65536" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[3]: invalid server address "http://origin:80" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[4]: invalid server address ":80" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[5]: invalid server address "::1:80" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
            pools[0].servers[6]: invalid server address "origin_1:80" (write host:port, e.g. "127.0.0.1:9000" or "origin.internal:443" (port 1-65535))
        "#]],
    );
}

#[test]
fn host_header_must_be_a_header_value() {
    check_each(
        pool_with,
        &[r#"host_header = """#, r#"host_header = "a\nb""#],
        expect![[r#"
            host_header = ""
                pools[0].host_header: invalid Host value "" (write a host name, optionally with a port)
            host_header = "a\nb"
                pools[0].host_header: invalid Host value "a\nb" (write a host name, optionally with a port)
        "#]],
    );
}

#[test]
fn max_idle_per_server_out_of_range() {
    check_each(
        pool_with,
        &["max_idle_per_server = -1", "max_idle_per_server = 65537"],
        expect![[r#"
            max_idle_per_server = -1
                pools[0].max_idle_per_server: -1 is out of range (use 0 to 65536)
            max_idle_per_server = 65537
                pools[0].max_idle_per_server: 65537 is out of range (use 0 to 65536)
        "#]],
    );
}

#[test]
fn pool_idle_timeout_zero() {
    check_errors(
        &pool_with("idle_timeout = \"0s\""),
        expect![[r#"
        pools[0].idle_timeout: must be greater than zero (write a duration such as "5s" or "250ms")
    "#]],
    );
}

// --- overload protection (max_concurrent, max_queued, retry_after) ----------------------

#[test]
fn max_concurrent_out_of_range() {
    check_each(
        pool_with,
        &[
            "max_concurrent = 0",
            "max_concurrent = 1000001",
            "max_concurrent = -1",
        ],
        expect![[r#"
            max_concurrent = 0
                pools[0].max_concurrent: 0 is out of range (use 1 to 1000000)
            max_concurrent = 1000001
                pools[0].max_concurrent: 1000001 is out of range (use 1 to 1000000)
            max_concurrent = -1
                pools[0].max_concurrent: -1 is out of range (use 1 to 1000000)
        "#]],
    );
}

#[test]
fn max_queued_out_of_range() {
    check_each(
        pool_with,
        &[
            "max_concurrent = 10\nmax_queued = -1",
            "max_concurrent = 10\nmax_queued = 1000001",
        ],
        expect![[r#"
            max_concurrent = 10
            max_queued = -1
                pools[0].max_queued: -1 is out of range (use 0 to 1000000)
            max_concurrent = 10
            max_queued = 1000001
                pools[0].max_queued: 1000001 is out of range (use 0 to 1000000)
        "#]],
    );
}

#[test]
fn max_queued_without_max_concurrent() {
    check_each(
        pool_with,
        &["max_queued = 0", "max_queued = 5"],
        expect![[r#"
            max_queued = 0
                pools[0].max_queued: set without max_concurrent (a queue only forms behind a concurrency limit: set max_concurrent too)
            max_queued = 5
                pools[0].max_queued: set without max_concurrent (a queue only forms behind a concurrency limit: set max_concurrent too)
        "#]],
    );
}

#[test]
fn retry_after_zero_too_long_or_not_whole_seconds() {
    check_each(
        pool_with,
        &[
            "max_concurrent = 10\nretry_after = \"0s\"",
            "max_concurrent = 10\nretry_after = \"1h 1s\"",
            "max_concurrent = 10\nretry_after = \"2h\"",
            "max_concurrent = 10\nretry_after = \"1500ms\"",
            "max_concurrent = 10\nretry_after = \"999ms\"",
            "max_concurrent = 10\nretry_after = \"1s 1ns\"",
        ],
        expect![[r#"
            max_concurrent = 10
            retry_after = "0s"
                pools[0].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            max_concurrent = 10
            retry_after = "1h 1s"
                pools[0].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            max_concurrent = 10
            retry_after = "2h"
                pools[0].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            max_concurrent = 10
            retry_after = "1500ms"
                pools[0].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            max_concurrent = 10
            retry_after = "999ms"
                pools[0].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            max_concurrent = 10
            retry_after = "1s 1ns"
                pools[0].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
        "#]],
    );
}

#[test]
fn overload_errors_name_their_pool_and_are_reported_together() {
    check_errors(
        &file_with(
            "",
            r#"
[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]
max_concurrent = 0
max_queued = -3
retry_after = "90m"

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]
max_queued = 1
"#,
            "",
        ),
        expect![[r#"
            pools[1].retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            pools[1].max_concurrent: 0 is out of range (use 1 to 1000000)
            pools[1].max_queued: -3 is out of range (use 0 to 1000000)
            pools[2].max_queued: set without max_concurrent (a queue only forms behind a concurrency limit: set max_concurrent too)
        "#]],
    );
}

// --- [pools.retry] ----------------------------------------------------------------------

fn retry_with(lines: &str) -> String {
    pool_with(&format!("[pools.retry]\n{lines}"))
}

#[test]
fn retry_attempts_out_of_range() {
    check_each(
        retry_with,
        &["attempts = 11", "attempts = -1"],
        expect![[r#"
            attempts = 11
                pools[0].retry.attempts: 11 is out of range (use 0 to 10)
            attempts = -1
                pools[0].retry.attempts: -1 is out of range (use 0 to 10)
        "#]],
    );
}

#[test]
fn retry_budget_percent_out_of_range() {
    check_each(
        retry_with,
        &["budget_percent = 150", "budget_percent = -5"],
        expect![[r#"
            budget_percent = 150
                pools[0].retry.budget_percent: 150 is out of range (use 0 to 100)
            budget_percent = -5
                pools[0].retry.budget_percent: -5 is out of range (use 0 to 100)
        "#]],
    );
}

#[test]
fn retry_min_per_second_out_of_range() {
    check_each(
        retry_with,
        &["min_per_second = 10001", "min_per_second = -1"],
        expect![[r#"
            min_per_second = 10001
                pools[0].retry.min_per_second: 10001 is out of range (use 0 to 10000)
            min_per_second = -1
                pools[0].retry.min_per_second: -1 is out of range (use 0 to 10000)
        "#]],
    );
}

#[test]
fn retry_budget_window_out_of_range() {
    check_each(
        retry_with,
        &[
            "budget_window = \"0s\"",
            "budget_window = \"999ms\"",
            "budget_window = \"61s\"",
        ],
        expect![[r#"
            budget_window = "0s"
                pools[0].retry.budget_window: 0s is out of range (use 1s to 60s)
            budget_window = "999ms"
                pools[0].retry.budget_window: 999ms is out of range (use 1s to 60s)
            budget_window = "61s"
                pools[0].retry.budget_window: 1m 1s is out of range (use 1s to 60s)
        "#]],
    );
}

#[test]
fn retry_backoff_zero_or_too_long() {
    check_each(
        retry_with,
        &["backoff = \"0s\"", "backoff = \"10s 1ms\""],
        expect![[r#"
            backoff = "0s"
                pools[0].retry.backoff: must be greater than zero (write a duration such as "5s" or "250ms")
            backoff = "10s 1ms"
                pools[0].retry.backoff: longer than 10s (a retry that waits longer than that is no help to the client: use at most 10s)
        "#]],
    );
}

#[test]
fn retry_unknown_conditions() {
    check_errors(
        &retry_with(r#"on = ["connect", "50x", "499", "600", "", "200", "reset", "5xx"]"#),
        expect![[r#"
            pools[0].retry.on[1]: unknown retry condition "50x" (use "connect", "reset", "timeout" or a status code "500" to "599")
            pools[0].retry.on[2]: unknown retry condition "499" (use "connect", "reset", "timeout" or a status code "500" to "599")
            pools[0].retry.on[3]: unknown retry condition "600" (use "connect", "reset", "timeout" or a status code "500" to "599")
            pools[0].retry.on[4]: unknown retry condition "" (use "connect", "reset", "timeout" or a status code "500" to "599")
            pools[0].retry.on[5]: unknown retry condition "200" (use "connect", "reset", "timeout" or a status code "500" to "599")
            pools[0].retry.on[7]: unknown retry condition "5xx" (use "connect", "reset", "timeout" or a status code "500" to "599")
        "#]],
    );
}

#[test]
fn retry_errors_name_their_pool_and_are_reported_together() {
    check_errors(
        &file_with(
            "",
            r#"
[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]

[pools.retry]
attempts = 20
on = ["connect", "timeouts"]
budget_percent = 101
min_per_second = 20000
budget_window = "2m"
backoff = "0ms"
"#,
            "",
        ),
        expect![[r#"
            pools[1].retry.budget_window: 2m is out of range (use 1s to 60s)
            pools[1].retry.backoff: must be greater than zero (write a duration such as "5s" or "250ms")
            pools[1].retry.attempts: 20 is out of range (use 0 to 10)
            pools[1].retry.on[1]: unknown retry condition "timeouts" (use "connect", "reset", "timeout" or a status code "500" to "599")
            pools[1].retry.budget_percent: 101 is out of range (use 0 to 100)
            pools[1].retry.min_per_second: 20000 is out of range (use 0 to 10000)
        "#]],
    );
}

// --- [pools.outlier] --------------------------------------------------------------------

fn outlier_with(lines: &str) -> String {
    pool_with(&format!("[pools.outlier]\n{lines}"))
}

#[test]
fn outlier_consecutive_failures_out_of_range() {
    check_each(
        outlier_with,
        &["consecutive_failures = 1001", "consecutive_failures = -1"],
        expect![[r#"
            consecutive_failures = 1001
                pools[0].outlier.consecutive_failures: 1001 is out of range (use 0 to 1000)
            consecutive_failures = -1
                pools[0].outlier.consecutive_failures: -1 is out of range (use 0 to 1000)
        "#]],
    );
}

#[test]
fn outlier_max_ejection_percent_out_of_range() {
    check_each(
        outlier_with,
        &["max_ejection_percent = 101", "max_ejection_percent = -1"],
        expect![[r#"
            max_ejection_percent = 101
                pools[0].outlier.max_ejection_percent: 101 is out of range (use 0 to 100)
            max_ejection_percent = -1
                pools[0].outlier.max_ejection_percent: -1 is out of range (use 0 to 100)
        "#]],
    );
}

#[test]
fn outlier_base_ejection_zero_or_over_an_hour() {
    // max_ejection is written so that it cannot be the one at fault.
    check_each(
        outlier_with,
        &[
            "base_ejection = \"0s\"",
            "base_ejection = \"0s\"\nmax_ejection = \"24h\"",
            "base_ejection = \"0ms\"\nmax_ejection = \"24h\"",
            "base_ejection = \"999ms\"\nmax_ejection = \"24h\"",
            "base_ejection = \"1h 1s\"\nmax_ejection = \"24h\"",
            "base_ejection = \"2h\"\nmax_ejection = \"24h\"",
        ],
        expect![[r#"
            base_ejection = "0s"
                pools[0].outlier.base_ejection: out of range (use 1s to 1h)
            base_ejection = "0s"
            max_ejection = "24h"
                pools[0].outlier.base_ejection: out of range (use 1s to 1h)
            base_ejection = "0ms"
            max_ejection = "24h"
                pools[0].outlier.base_ejection: out of range (use 1s to 1h)
            base_ejection = "999ms"
            max_ejection = "24h"
                pools[0].outlier.base_ejection: out of range (use 1s to 1h)
            base_ejection = "1h 1s"
            max_ejection = "24h"
                pools[0].outlier.base_ejection: out of range (use 1s to 1h)
            base_ejection = "2h"
            max_ejection = "24h"
                pools[0].outlier.base_ejection: out of range (use 1s to 1h)
        "#]],
    );
}

#[test]
fn outlier_max_ejection_shorter_than_base_ejection() {
    check_each(
        outlier_with,
        &[
            "base_ejection = \"1m\"\nmax_ejection = \"59s\"",
            // The default base_ejection is 30s.
            "max_ejection = \"29s\"",
            "base_ejection = \"10s\"\nmax_ejection = \"9999ms\"",
            "base_ejection = \"1m\"\nmax_ejection = \"30s\"",
        ],
        expect![[r#"
            base_ejection = "1m"
            max_ejection = "59s"
                pools[0].outlier.max_ejection: shorter than base_ejection (make max_ejection at least as long as base_ejection)
            max_ejection = "29s"
                pools[0].outlier.max_ejection: shorter than base_ejection (make max_ejection at least as long as base_ejection)
            base_ejection = "10s"
            max_ejection = "9999ms"
                pools[0].outlier.max_ejection: shorter than base_ejection (make max_ejection at least as long as base_ejection)
            base_ejection = "1m"
            max_ejection = "30s"
                pools[0].outlier.max_ejection: shorter than base_ejection (make max_ejection at least as long as base_ejection)
        "#]],
    );
}

#[test]
fn outlier_max_ejection_over_a_day() {
    check_each(
        outlier_with,
        &[
            "max_ejection = \"24h 1s\"",
            "max_ejection = \"2d\"",
            "max_ejection = \"25h\"",
        ],
        expect![[r#"
            max_ejection = "24h 1s"
                pools[0].outlier.max_ejection: out of range (use at most 24h)
            max_ejection = "2d"
                pools[0].outlier.max_ejection: out of range (use at most 24h)
            max_ejection = "25h"
                pools[0].outlier.max_ejection: out of range (use at most 24h)
        "#]],
    );
}

#[test]
fn outlier_errors_name_their_pool_and_are_reported_together() {
    check_errors(
        &file_with(
            "",
            r#"
[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]

[pools.outlier]
consecutive_failures = 1001
base_ejection = "2m"
max_ejection = "1m"
max_ejection_percent = 101

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]

[pools.outlier]
base_ejection = "0s"
"#,
            "",
        ),
        expect![[r#"
            pools[1].outlier.max_ejection: shorter than base_ejection (make max_ejection at least as long as base_ejection)
            pools[1].outlier.consecutive_failures: 1001 is out of range (use 0 to 1000)
            pools[1].outlier.max_ejection_percent: 101 is out of range (use 0 to 100)
            pools[2].outlier.base_ejection: out of range (use 1s to 1h)
        "#]],
    );
}

// --- [[routes]] -------------------------------------------------------------------------

#[test]
fn no_routes() {
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]
"#,
        expect![[r#"
            routes: no routes defined (add a [[routes]] table with name, match and pool)
        "#]],
    );
}

#[test]
fn route_names_must_be_unique_and_non_empty() {
    check_errors(
        &route_with(
            r#"
[[routes]]
name = "all"
match = {}
pool = "primary"

[[routes]]
name = ""
match = {}
pool = "primary"
"#,
        ),
        expect![[r#"
            routes[1].name: duplicate route name "all" (route names must be unique)
            routes[2].name: empty name (give the route a name)
        "#]],
    );
}

#[test]
fn route_naming_an_unknown_pool() {
    check_errors(
        &file_with("", "", "").replace("pool = \"primary\"", "pool = \"primry\""),
        expect![[r#"
            routes[0].pool: unknown pool "primry" (define it under [[pools]] or use one of ["primary"])
        "#]],
    );
}

#[test]
fn path_prefix_must_start_with_a_slash() {
    check_errors(
        &file_with("", "", "").replace("path_prefix = \"/\"", "path_prefix = \"api/\""),
        expect![[r#"
            routes[0].match.path_prefix: "api/" does not start with '/' (write an absolute path prefix such as "/api/")
        "#]],
    );
}

#[test]
fn bad_host_patterns() {
    check_errors(
        &file_with("", "", "").replace(
            "match = { path_prefix = \"/\" }",
            r#"match = { host = ["example.com:8080", "http://example.com", "*", "*.*.example.com", "a..b", "", "under_score.example", "example.com.", "ok.example.com"] }"#,
        ),
        expect![[r#"
            routes[0].match.host[0]: invalid host name "example.com:8080" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[1]: invalid host name "http://example.com" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[2]: invalid host name "*" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[3]: invalid host name "*.*.example.com" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[4]: invalid host name "a..b" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[5]: invalid host name "" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[6]: invalid host name "under_score.example" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
            routes[0].match.host[7]: invalid host name "example.com." (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
        "#]],
    );
}

#[test]
fn a_single_bad_host_string() {
    check_errors(
        &file_with("", "", "").replace(
            "match = { path_prefix = \"/\" }",
            r#"match = { host = "*example.com" }"#,
        ),
        expect![[r#"
            routes[0].match.host[0]: invalid host name "*example.com" (write a DNS name such as "example.com" or "*.example.com" (no port, no scheme))
        "#]],
    );
}

#[test]
fn zero_timeouts() {
    check_errors(
        &route_with(r#"timeouts = { connect = "0s", read = "0ms", total = "0ns" }"#),
        expect![[r#"
            routes[0].timeouts.connect: must be greater than zero (write a duration such as "5s" or "250ms")
            routes[0].timeouts.read: must be greater than zero (write a duration such as "5s" or "250ms")
            routes[0].timeouts.total: must be greater than zero (write a duration such as "5s" or "250ms")
        "#]],
    );
}

#[test]
fn invalid_header_names() {
    check_errors(
        &route_with(
            r#"
[routes.request_headers]
set = { "bad name" = "v", "x-ok" = "v" }
add = { "x:colon" = "v" }
remove = ["", "é"]
"#,
        ),
        expect![[r#"
            routes[0].request_headers.remove[0]: invalid header name "" (use letters, digits and '-' only)
            routes[0].request_headers.remove[1]: invalid header name "é" (use letters, digits and '-' only)
            routes[0].request_headers.set.bad name: invalid header name "bad name" (use letters, digits and '-' only)
            routes[0].request_headers.add.x:colon: invalid header name "x:colon" (use letters, digits and '-' only)
        "#]],
    );
}

#[test]
fn invalid_header_values() {
    check_errors(
        &route_with(
            r#"
[routes.response_headers]
set = { "x-newline" = "a\r\nInjected: yes" }
add = { "x-nul" = "a\u0000b", "x-del" = "a\u007fb" }
"#,
        ),
        expect![[r#"
            routes[0].response_headers.set.x-newline: invalid header value "a\r\nInjected: yes" (use visible ASCII characters only (no line breaks))
            routes[0].response_headers.add.x-del: invalid header value "a\u{7f}b" (use visible ASCII characters only (no line breaks))
            routes[0].response_headers.add.x-nul: invalid header value "a\0b" (use visible ASCII characters only (no line breaks))
        "#]],
    );
}

// --- balancing (balance, hash_key, server weights) --------------------------------------

/// A valid file whose one pool has `servers` (written as the inside of the array).
fn servers_with(servers: &str) -> String {
    pool_with("").replace(
        "servers = [\"127.0.0.1:9000\"]",
        &format!("servers = [{servers}]"),
    )
}

#[test]
fn unknown_balance() {
    // Names are exact: no other spelling or case.
    check_each(
        pool_with,
        &[
            "balance = \"random\"",
            "balance = \"\"",
            "balance = \"Round_Robin\"",
            "balance = \"least-request\"",
            "balance = \"consistent_hash\"",
        ],
        expect![[r#"
            balance = "random"
                pools[0].balance: unknown balance "random" (use "round_robin", "least_request" or "hash")
            balance = ""
                pools[0].balance: unknown balance "" (use "round_robin", "least_request" or "hash")
            balance = "Round_Robin"
                pools[0].balance: unknown balance "Round_Robin" (use "round_robin", "least_request" or "hash")
            balance = "least-request"
                pools[0].balance: unknown balance "least-request" (use "round_robin", "least_request" or "hash")
            balance = "consistent_hash"
                pools[0].balance: unknown balance "consistent_hash" (use "round_robin", "least_request" or "hash")
        "#]],
    );
}

#[test]
fn hash_needs_a_hash_key() {
    check_errors(
        &pool_with("balance = \"hash\""),
        expect![[r#"
            pools[0].hash_key: required with balance = "hash" (set hash_key = "client_ip", "path", "host" or "header:<name>")
        "#]],
    );
}

#[test]
fn hash_key_without_hash() {
    check_each(
        pool_with,
        &[
            "hash_key = \"path\"",
            "balance = \"round_robin\"\nhash_key = \"client_ip\"",
            "balance = \"least_request\"\nhash_key = \"client_ip\"",
        ],
        expect![[r#"
            hash_key = "path"
                pools[0].hash_key: set without balance = "hash" (remove it, or set balance = "hash")
            balance = "round_robin"
            hash_key = "client_ip"
                pools[0].hash_key: set without balance = "hash" (remove it, or set balance = "hash")
            balance = "least_request"
            hash_key = "client_ip"
                pools[0].hash_key: set without balance = "hash" (remove it, or set balance = "hash")
        "#]],
    );
}

#[test]
fn unknown_hash_key() {
    check_each(
        pool_with,
        &[
            "balance = \"hash\"\nhash_key = \"cookie\"",
            "balance = \"hash\"\nhash_key = \"\"",
            "balance = \"hash\"\nhash_key = \"Path\"",
            "balance = \"hash\"\nhash_key = \"client-ip\"",
            "balance = \"hash\"\nhash_key = \"header\"",
            "balance = \"hash\"\nhash_key = \"query\"",
        ],
        expect![[r#"
            balance = "hash"
            hash_key = "cookie"
                pools[0].hash_key: unknown hash key "cookie" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = ""
                pools[0].hash_key: unknown hash key "" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = "Path"
                pools[0].hash_key: unknown hash key "Path" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = "client-ip"
                pools[0].hash_key: unknown hash key "client-ip" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = "header"
                pools[0].hash_key: unknown hash key "header" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = "query"
                pools[0].hash_key: unknown hash key "query" (use "client_ip", "path", "host" or "header:<name>")
        "#]],
    );
}

#[test]
fn hash_key_header_needs_a_valid_header_name() {
    check_each(
        pool_with,
        &[
            "balance = \"hash\"\nhash_key = \"header:\"",
            "balance = \"hash\"\nhash_key = \"header:bad name\"",
            "balance = \"hash\"\nhash_key = \"header:x:y\"",
        ],
        expect![[r#"
            balance = "hash"
            hash_key = "header:"
                pools[0].hash_key: unknown hash key "header:" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = "header:bad name"
                pools[0].hash_key: unknown hash key "header:bad name" (use "client_ip", "path", "host" or "header:<name>")
            balance = "hash"
            hash_key = "header:x:y"
                pools[0].hash_key: unknown hash key "header:x:y" (use "client_ip", "path", "host" or "header:<name>")
        "#]],
    );
}

#[test]
fn weight_out_of_range() {
    check_errors(
        &servers_with(
            r#""127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 0 }, { address = "127.0.0.1:9003", weight = 1001 }, { address = "127.0.0.1:9004", weight = -1 }"#,
        ),
        expect![[r#"
            pools[0].servers[1].weight: 0 is out of range (use 1 to 1000)
            pools[0].servers[2].weight: 1001 is out of range (use 1 to 1000)
            pools[0].servers[3].weight: -1 is out of range (use 1 to 1000)
        "#]],
    );
}

#[test]
fn invalid_address_in_a_server_table() {
    let errors = crate::reject(&servers_with(
        r#""127.0.0.1:9001", { address = "nope", weight = 2 }"#,
    ));
    assert!(
        errors.starts_with("pools[0].servers[1]")
            && errors.contains("invalid server address \"nope\""),
        "{errors}"
    );
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

#[test]
fn balancing_errors_name_their_pool_and_are_reported_together() {
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:8080"]

[[pools]]
name = "a"
servers = ["127.0.0.1:9001"]
balance = "random"

[[pools]]
name = "b"
servers = ["127.0.0.1:9002", { address = "127.0.0.1:9003", weight = 0 }]
balance = "hash"

[[pools]]
name = "c"
servers = ["127.0.0.1:9004"]
balance = "least_request"
hash_key = "path"

[[pools]]
name = "d"
servers = ["127.0.0.1:9005"]
balance = "hash"
hash_key = "cookie"

[[routes]]
name = "r"
match = {}
pool = "a"
"#,
        expect![[r#"
            pools[0].balance: unknown balance "random" (use "round_robin", "least_request" or "hash")
            pools[1].servers[1].weight: 0 is out of range (use 1 to 1000)
            pools[1].hash_key: required with balance = "hash" (set hash_key = "client_ip", "path", "host" or "header:<name>")
            pools[2].hash_key: set without balance = "hash" (remove it, or set balance = "hash")
            pools[3].hash_key: unknown hash key "cookie" (use "client_ip", "path", "host" or "header:<name>")
        "#]],
    );
}

// --- retry.buffer_body, max_connections, panic_threshold --------------------------------

#[test]
fn buffer_body_over_16mib() {
    check_each(
        retry_with,
        &["buffer_body = \"17MiB\"", "buffer_body = 16777217"],
        expect![[r#"
            buffer_body = "17MiB"
                pools[0].retry.buffer_body: 17825792 bytes is more than the 16MiB allowed (buffer at most 16MiB per request; larger bodies are streamed and not retried)
            buffer_body = 16777217
                pools[0].retry.buffer_body: 16777217 bytes is more than the 16MiB allowed (buffer at most 16MiB per request; larger bodies are streamed and not retried)
        "#]],
    );
}

#[test]
fn max_connections_out_of_range() {
    check_each(
        pool_with,
        &[
            "max_connections = 0",
            "max_connections = 1000001",
            "max_connections = -1",
        ],
        expect![[r#"
            max_connections = 0
                pools[0].max_connections: 0 is out of range (use 1 to 1000000)
            max_connections = 1000001
                pools[0].max_connections: 1000001 is out of range (use 1 to 1000000)
            max_connections = -1
                pools[0].max_connections: -1 is out of range (use 1 to 1000000)
        "#]],
    );
}

#[test]
fn panic_threshold_out_of_range() {
    check_each(
        pool_with,
        &["panic_threshold = 101", "panic_threshold = -1"],
        expect![[r#"
            panic_threshold = 101
                pools[0].panic_threshold: 101 is out of range (use 0 to 100)
            panic_threshold = -1
                pools[0].panic_threshold: -1 is out of range (use 0 to 100)
        "#]],
    );
}

// --- [pools.health] ---------------------------------------------------------------------

fn health_with(lines: &str) -> String {
    pool_with(&format!("[pools.health]\n{lines}"))
}

#[test]
fn health_thresholds_of_zero() {
    check_each(
        health_with,
        &[
            "healthy_after = 0\nunhealthy_after = 0",
            "healthy_after = 101\nunhealthy_after = -1",
        ],
        expect![[r#"
            healthy_after = 0
            unhealthy_after = 0
                pools[0].health.healthy_after: 0 is out of range (use 1 to 100)
                pools[0].health.unhealthy_after: 0 is out of range (use 1 to 100)
            healthy_after = 101
            unhealthy_after = -1
                pools[0].health.healthy_after: 101 is out of range (use 1 to 100)
                pools[0].health.unhealthy_after: -1 is out of range (use 1 to 100)
        "#]],
    );
}

#[test]
fn unknown_check_kind() {
    check_each(
        health_with,
        &[
            "kind = \"grpc\"",
            "kind = \"\"",
            "kind = \"HTTP\"",
            "kind = \"https\"",
            "kind = \"tcp \"",
        ],
        expect![[r#"
            kind = "grpc"
                pools[0].health.kind: unknown check kind "grpc" (use "http" or "tcp")
            kind = ""
                pools[0].health.kind: unknown check kind "" (use "http" or "tcp")
            kind = "HTTP"
                pools[0].health.kind: unknown check kind "HTTP" (use "http" or "tcp")
            kind = "https"
                pools[0].health.kind: unknown check kind "https" (use "http" or "tcp")
            kind = "tcp "
                pools[0].health.kind: unknown check kind "tcp " (use "http" or "tcp")
        "#]],
    );
}

#[test]
fn http_keys_with_a_tcp_check() {
    check_errors(
        &health_with(
            "kind = \"tcp\"\npath = \"/healthz\"\nexpect = \"200\"\nhost = \"origin.example\"",
        ),
        expect![[r#"
            pools[0].health.path: path applies to HTTP checks only (remove it, or set kind = "http")
            pools[0].health.expect: expect applies to HTTP checks only (remove it, or set kind = "http")
            pools[0].health.host: host applies to HTTP checks only (remove it, or set kind = "http")
        "#]],
    );
}

#[test]
fn check_path_must_be_absolute() {
    check_each(
        health_with,
        &[
            "path = \"healthz\"",
            "path = \"\"",
            "path = \"http://origin/healthz\"",
            "path = \"/a b\"",
        ],
        expect![[r#"
            path = "healthz"
                pools[0].health.path: invalid check path "healthz" (write an absolute path such as "/healthz")
            path = ""
                pools[0].health.path: invalid check path "" (write an absolute path such as "/healthz")
            path = "http://origin/healthz"
                pools[0].health.path: invalid check path "http://origin/healthz" (write an absolute path such as "/healthz")
            path = "/a b"
                pools[0].health.path: invalid check path "/a b" (write an absolute path such as "/healthz")
        "#]],
    );
}

#[test]
fn malformed_expect() {
    check_each(
        health_with,
        &[
            "expect = \"abc\"",
            "expect = \"600\"",
            "expect = \"399-200\"",
            "expect = \"\"",
            "expect = \"99\"",
            "expect = \"2xx\"",
            "expect = \"200-\"",
            "expect = \"-399\"",
            "expect = \"200-600\"",
            "expect = \"200-399-499\"",
            "expect = \"200,204\"",
        ],
        expect![[r#"
            expect = "abc"
                pools[0].health.expect: invalid status range "abc" (write a status "200" or a range "200-399" (100 to 599))
            expect = "600"
                pools[0].health.expect: invalid status range "600" (write a status "200" or a range "200-399" (100 to 599))
            expect = "399-200"
                pools[0].health.expect: invalid status range "399-200" (write a status "200" or a range "200-399" (100 to 599))
            expect = ""
                pools[0].health.expect: invalid status range "" (write a status "200" or a range "200-399" (100 to 599))
            expect = "99"
                pools[0].health.expect: invalid status range "99" (write a status "200" or a range "200-399" (100 to 599))
            expect = "2xx"
                pools[0].health.expect: invalid status range "2xx" (write a status "200" or a range "200-399" (100 to 599))
            expect = "200-"
                pools[0].health.expect: invalid status range "200-" (write a status "200" or a range "200-399" (100 to 599))
            expect = "-399"
                pools[0].health.expect: invalid status range "-399" (write a status "200" or a range "200-399" (100 to 599))
            expect = "200-600"
                pools[0].health.expect: invalid status range "200-600" (write a status "200" or a range "200-399" (100 to 599))
            expect = "200-399-499"
                pools[0].health.expect: invalid status range "200-399-499" (write a status "200" or a range "200-399" (100 to 599))
            expect = "200,204"
                pools[0].health.expect: invalid status range "200,204" (write a status "200" or a range "200-399" (100 to 599))
        "#]],
    );
}

#[test]
fn check_host_must_be_a_header_value() {
    check_each(
        health_with,
        &[r#"host = """#, r#"host = "a\nb""#],
        expect![[r#"
            host = ""
                pools[0].health.host: invalid Host value "" (write a host name, optionally with a port)
            host = "a\nb"
                pools[0].health.host: invalid Host value "a\nb" (write a host name, optionally with a port)
        "#]],
    );
}

#[test]
fn check_interval_and_timeout_out_of_range() {
    check_each(
        health_with,
        &[
            "interval = \"1ms\"",
            "interval = \"1h 1s\"\ntimeout = \"0s\"",
            "timeout = \"61s\"",
            "interval = \"0s\"",
            "interval = \"9ms\"",
            "interval = \"2h\"",
            "timeout = \"999us\"",
            "timeout = \"1m 1ms\"",
        ],
        expect![[r#"
            interval = "1ms"
                pools[0].health.interval: 1ms is out of range (use 10ms to 1h)
            interval = "1h 1s"
            timeout = "0s"
                pools[0].health.interval: 1h 1s is out of range (use 10ms to 1h)
                pools[0].health.timeout: 0s is out of range (use 1ms to 60s)
            timeout = "61s"
                pools[0].health.timeout: 1m 1s is out of range (use 1ms to 60s)
            interval = "0s"
                pools[0].health.interval: 0s is out of range (use 10ms to 1h)
            interval = "9ms"
                pools[0].health.interval: 9ms is out of range (use 10ms to 1h)
            interval = "2h"
                pools[0].health.interval: 2h is out of range (use 10ms to 1h)
            timeout = "999us"
                pools[0].health.timeout: 999us is out of range (use 1ms to 60s)
            timeout = "1m 1ms"
                pools[0].health.timeout: 1m 1ms is out of range (use 1ms to 60s)
        "#]],
    );
}

#[test]
fn health_errors_name_their_pool_and_are_reported_together() {
    check_errors(
        &file_with(
            "",
            r#"
[[pools]]
name = "second"
servers = ["127.0.0.1:9001"]
max_connections = 0
panic_threshold = 101

[pools.retry]
buffer_body = "17MiB"

[pools.health]
path = "healthz"
expect = "2xx"
interval = "1ms"
healthy_after = 0

[[pools]]
name = "third"
servers = ["127.0.0.1:9002"]

[pools.health]
kind = "tcp"
host = "origin.example"
unhealthy_after = 0
"#,
            "",
        ),
        expect![[r#"
            pools[1].retry.buffer_body: 17825792 bytes is more than the 16MiB allowed (buffer at most 16MiB per request; larger bodies are streamed and not retried)
            pools[1].max_connections: 0 is out of range (use 1 to 1000000)
            pools[1].panic_threshold: 101 is out of range (use 0 to 100)
            pools[1].health.interval: 1ms is out of range (use 10ms to 1h)
            pools[1].health.path: invalid check path "healthz" (write an absolute path such as "/healthz")
            pools[1].health.expect: invalid status range "2xx" (write a status "200" or a range "200-399" (100 to 599))
            pools[1].health.healthy_after: 0 is out of range (use 1 to 100)
            pools[2].health.host: host applies to HTTP checks only (remove it, or set kind = "http")
            pools[2].health.unhealthy_after: 0 is out of range (use 1 to 100)
        "#]],
    );
}

// --- [[routes]] failover chain ----------------------------------------------------------

/// A file with pools "primary" and "secondary" and one route whose `pool = "primary"` line
/// is replaced by `route`.
fn chain_with(route: &str) -> String {
    file_with(
        "",
        "[[pools]]\nname = \"secondary\"\nservers = [\"127.0.0.1:9001\"]",
        "",
    )
    .replace("pool = \"primary\"\n", &format!("{route}\n"))
}

#[test]
fn both_pool_and_pools() {
    check_errors(
        &chain_with("pool = \"primary\"\npools = [\"primary\", \"secondary\"]"),
        expect![[r#"
            routes[0].pools: give either pool or pools, not both (use pool = "name" for one pool, pools = ["primary", "secondary"] for a failover chain)
        "#]],
    );
}

#[test]
fn neither_pool_nor_pools() {
    check_errors(
        &chain_with(""),
        expect![[r#"
            routes[0].pool: missing pool (name a pool: pool = "..." or pools = ["primary", "secondary"])
        "#]],
    );
}

#[test]
fn empty_failover_chain() {
    check_errors(
        &chain_with("pools = []"),
        expect![[r#"
            routes[0].pools: empty failover chain (list at least one pool, e.g. pools = ["primary", "secondary"])
        "#]],
    );
}

#[test]
fn unknown_pool_in_the_chain() {
    check_each(
        chain_with,
        &[
            "pools = [\"primary\", \"secundary\"]",
            "pools = [\"nope\", \"secondary\", \"never\"]",
        ],
        expect![[r#"
            pools = ["primary", "secundary"]
                routes[0].pools[1]: unknown pool "secundary" (define it under [[pools]] or use one of ["primary", "secondary"])
            pools = ["nope", "secondary", "never"]
                routes[0].pools[0]: unknown pool "nope" (define it under [[pools]] or use one of ["primary", "secondary"])
                routes[0].pools[2]: unknown pool "never" (define it under [[pools]] or use one of ["primary", "secondary"])
        "#]],
    );
}

#[test]
fn repeated_pool_in_the_chain() {
    check_each(
        chain_with,
        &[
            "pools = [\"secondary\", \"secondary\"]",
            "pools = [\"primary\", \"secondary\", \"primary\"]",
        ],
        expect![[r#"
            pools = ["secondary", "secondary"]
                routes[0].pools[1]: pool "secondary" appears twice in the chain (list each pool once, in order of preference)
            pools = ["primary", "secondary", "primary"]
                routes[0].pools[2]: pool "primary" appears twice in the chain (list each pool once, in order of preference)
        "#]],
    );
}

// --- [[routes]] fallback ----------------------------------------------------------------

#[test]
fn fallback_status_out_of_range() {
    check_each(
        route_with,
        &[
            "fallback = { status = 99, file = \"down.html\" }",
            "fallback = { status = 600, file = \"down.html\" }",
            "fallback = { status = 0, file = \"down.html\" }",
            "fallback = { status = -1, file = \"down.html\" }",
            "fallback = { status = 100, file = \"down.html\" }",
            "fallback = { status = 199, file = \"down.html\" }",
            "fallback = { status = 1000, file = \"down.html\" }",
            "fallback = { status = 65736, file = \"down.html\" }",
        ],
        expect![[r#"
            fallback = { status = 99, file = "down.html" }
                routes[0].fallback.status: 99 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = 600, file = "down.html" }
                routes[0].fallback.status: 600 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = 0, file = "down.html" }
                routes[0].fallback.status: 0 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = -1, file = "down.html" }
                routes[0].fallback.status: -1 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = 100, file = "down.html" }
                routes[0].fallback.status: 100 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = 199, file = "down.html" }
                routes[0].fallback.status: 199 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = 1000, file = "down.html" }
                routes[0].fallback.status: 1000 is out of range (use a status from 200 to 599, e.g. 503)
            fallback = { status = 65736, file = "down.html" }
                routes[0].fallback.status: 65736 is out of range (use a status from 200 to 599, e.g. 503)
        "#]],
    );
}

#[test]
fn fallback_content_type_must_be_a_header_value() {
    check_each(
        route_with,
        &[
            r#"fallback = { file = "down.html", content_type = "text/html\r\nX-Injected: 1" }"#,
            r#"fallback = { file = "down.html", content_type = "" }"#,
        ],
        expect![[r#"
            fallback = { file = "down.html", content_type = "text/html\r\nX-Injected: 1" }
                routes[0].fallback.content_type: invalid Content-Type "text/html\r\nX-Injected: 1" (write a media type such as "text/html; charset=utf-8")
            fallback = { file = "down.html", content_type = "" }
                routes[0].fallback.content_type: invalid Content-Type "" (write a media type such as "text/html; charset=utf-8")
        "#]],
    );
}

#[test]
fn fallback_file_empty() {
    check_errors(
        &route_with(r#"fallback = { file = "" }"#),
        expect![[r#"
            routes[0].fallback.file: empty file name (name the file to serve, e.g. file = "maintenance.html")
        "#]],
    );
}

#[test]
fn fallback_retry_after_zero() {
    check_errors(
        &route_with(r#"fallback = { file = "down.html", retry_after = "0s" }"#),
        expect![[r#"
            routes[0].fallback.retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
        "#]],
    );
}

#[test]
fn chain_and_fallback_errors_are_reported_together() {
    check_errors(
        &chain_with(
            r#"pools = ["primary", "tertiary", "primary"]
fallback = { status = 99, file = "", content_type = "a\u0000b", retry_after = "0s" }

[[routes]]
name = "second"
match = { path_prefix = "/b/" }
pool = "secondary"
pools = ["secondary"]

[[routes]]
name = "third"
match = { path_prefix = "api" }
pools = []

[[routes]]
name = "fourth"
match = {}
fallback = { status = 600, file = "down.html" }
"#,
        ),
        expect![[r#"
            routes[0].pools[1]: unknown pool "tertiary" (define it under [[pools]] or use one of ["primary", "secondary"])
            routes[0].pools[2]: pool "primary" appears twice in the chain (list each pool once, in order of preference)
            routes[0].fallback.status: 99 is out of range (use a status from 200 to 599, e.g. 503)
            routes[0].fallback.file: empty file name (name the file to serve, e.g. file = "maintenance.html")
            routes[0].fallback.content_type: invalid Content-Type "a\0b" (write a media type such as "text/html; charset=utf-8")
            routes[0].fallback.retry_after: must be whole seconds from 1s to 1h (it is sent as Retry-After in seconds, e.g. "1s" or "30s")
            routes[1].pools: give either pool or pools, not both (use pool = "name" for one pool, pools = ["primary", "secondary"] for a failover chain)
            routes[2].pools: empty failover chain (list at least one pool, e.g. pools = ["primary", "secondary"])
            routes[2].match.path_prefix: "api" does not start with '/' (write an absolute path prefix such as "/api/")
            routes[3].pool: missing pool (name a pool: pool = "..." or pools = ["primary", "secondary"])
            routes[3].fallback.status: 600 is out of range (use a status from 200 to 599, e.g. 503)
        "#]],
    );
}

#[test]
fn every_new_key_is_checked_in_one_pass() {
    // Pools, health checks, chains and fallbacks all wrong in one file: nothing hides another.
    check_errors(
        r#"
[edge]
listen = ["127.0.0.1:8080"]

[[pools]]
name = "primary"
servers = ["127.0.0.1:9000"]
max_connections = 0

[pools.health]
kind = "tcp"
path = "/healthz"
healthy_after = 0

[[pools]]
name = "secondary"
servers = ["127.0.0.1:9001"]
panic_threshold = 101

[pools.retry]
buffer_body = "17MiB"

[pools.health]
expect = "399-200"
interval = "1ms"
unhealthy_after = 0

[[routes]]
name = "site"
match = {}
pools = ["primary", "backup", "primary"]
fallback = { status = 600, file = "" }
"#,
        expect![[r#"
            pools[0].max_connections: 0 is out of range (use 1 to 1000000)
            pools[0].health.path: path applies to HTTP checks only (remove it, or set kind = "http")
            pools[0].health.healthy_after: 0 is out of range (use 1 to 100)
            pools[1].retry.buffer_body: 17825792 bytes is more than the 16MiB allowed (buffer at most 16MiB per request; larger bodies are streamed and not retried)
            pools[1].panic_threshold: 101 is out of range (use 0 to 100)
            pools[1].health.interval: 1ms is out of range (use 10ms to 1h)
            pools[1].health.expect: invalid status range "399-200" (write a status "200" or a range "200-399" (100 to 599))
            pools[1].health.unhealthy_after: 0 is out of range (use 1 to 100)
            routes[0].pools[1]: unknown pool "backup" (define it under [[pools]] or use one of ["primary", "secondary"])
            routes[0].pools[2]: pool "primary" appears twice in the chain (list each pool once, in order of preference)
            routes[0].fallback.status: 600 is out of range (use a status from 200 to 599, e.g. 503)
            routes[0].fallback.file: empty file name (name the file to serve, e.g. file = "maintenance.html")
        "#]],
    );
}

/// A file with a `[modules.bot]` table made of `lines` (after `features`).
fn bot_with(lines: &str) -> String {
    format!(
        "{}\n[modules.bot]\nfeatures = \"bot-features.json\"\n{lines}\n",
        edge_with("")
    )
}

#[test]
fn bot_module_errors() {
    check_each(
        bot_with,
        &[
            "fail_policy = \"fail\"",
            "max_shrink_percent = 101",
            "time_budget = \"0s\"",
            "time_budget = \"2s\"",
            "report_interval = \"100ms\"",
            "public_key = \"\"",
            "[modules.bot.breaker]\nerror_percent = 0",
            "[modules.bot.breaker]\nerror_percent = 101\nwindow = \"0s\"\ncooldown = \"2h\"",
        ],
        expect![[r#"
            fail_policy = "fail"
                modules.bot.fail_policy: unknown fail policy "fail" (use "open" (no decision), "stale" (the last good decision) or "closed" (deny))
            max_shrink_percent = 101
                modules.bot.max_shrink_percent: 101 is out of range (use 0 to 100)
            time_budget = "0s"
                modules.bot.time_budget: 0s is out of range (use 1us to 1s)
            time_budget = "2s"
                modules.bot.time_budget: 2s is out of range (use 1us to 1s)
            report_interval = "100ms"
                modules.bot.report_interval: 100ms is out of range (use 1s to 1h)
            public_key = ""
                modules.bot.public_key: empty key (give the generator's ed25519 public key in base64, or leave it out)
            [modules.bot.breaker]
            error_percent = 0
                modules.bot.breaker.error_percent: 0 is out of range (use 1 to 100 (percent of calls that fail before the module trips))
            [modules.bot.breaker]
            error_percent = 101
            window = "0s"
            cooldown = "2h"
                modules.bot.breaker.error_percent: 101 is out of range (use 1 to 100 (percent of calls that fail before the module trips))
                modules.bot.breaker.window: 0s is out of range (use 1s to 10m)
                modules.bot.breaker.cooldown: 2h is out of range (use 100ms to 1h)
        "#]],
    );
}

#[test]
fn bot_module_needs_a_feature_file_and_state_dir_a_path() {
    check_each(
        |l| format!("{}\n[modules.bot]\n{l}\n", edge_with("state_dir = \"\"")),
        &["features = \"\"", "enabled = true"],
        expect![[r#"
            features = ""
                edge.state_dir: empty path (name a folder Holdfast may write, e.g. "/var/lib/holdfast", or leave it out)
                modules.bot.features: empty path (name the feature file, e.g. features = "bot-features.json")
            enabled = true
                modules.bot: missing field `features` (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn limit_errors() {
    check_each(
        |l| format!("{}\n[[limits]]\nname = \"l\"\n{l}\n", edge_with("")),
        &[
            "key = \"ip\"\nrequests = 5\nper = \"1s\"",
            "key = \"header:bad header\"\nrequests = 5\nper = \"1s\"",
            "key = \"cookie:\"\nrequests = 5\nper = \"1s\"",
            "key = \"client_ip\"\nrequests = 0\nper = \"0s\"\nburst = 0\nmax_keys = 0",
            "key = \"client_ip\"\nrequests = 5\nper = \"1s\"\nroutes = [\"nope\", \"all\", \"all\"]",
            "key = \"client_ip\"\nper = \"1s\"",
        ],
        expect![[r#"
            key = "ip"
            requests = 5
            per = "1s"
                limits[0].key: unknown key "ip" (use "client_ip", "client_prefix", "route", "header:NAME" or "cookie:NAME")
            key = "header:bad header"
            requests = 5
            per = "1s"
                limits[0].key: invalid header name "bad header" (use "client_ip", "client_prefix", "route", "header:NAME" or "cookie:NAME")
            key = "cookie:"
            requests = 5
            per = "1s"
                limits[0].key: invalid cookie name "" (use "client_ip", "client_prefix", "route", "header:NAME" or "cookie:NAME")
            key = "client_ip"
            requests = 0
            per = "0s"
            burst = 0
            max_keys = 0
                limits[0].requests: 0 is out of range (use 1 to 1000000)
                limits[0].per: 0s is out of range (use 1ms to 24h)
                limits[0].burst: 0 is out of range (use 1 to 1000000)
                limits[0].max_keys: 0 is out of range (use 2 to 10000000)
            key = "client_ip"
            requests = 5
            per = "1s"
            routes = ["nope", "all", "all"]
                limits[0].routes[0]: unknown route "nope" (use one of ["all"], or leave routes out to limit every route)
                limits[0].routes[2]: route "all" is listed twice (list each route once)
            key = "client_ip"
            per = "1s"
                limits[0]: missing field `requests` (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn global_limit_and_redis_errors() {
    let global = "[[limits]]\nname = \"g\"\nkey = \"client_ip\"\nrequests = 20\nper = \"1h\"\nscope = \"global\"";
    check_each(
        |l| format!("{}\n{l}\n", edge_with("")),
        &[
            global,
            "[[limits]]\nname = \"g\"\nkey = \"client_ip\"\nrequests = 20\nper = \"1h\"\nscope = \"cluster\"",
            "[redis]\nurl = \"http://127.0.0.1:6379\"",
            "[redis]\nurl = \"redis://127.0.0.1\"",
            "[redis]\nurl = \"redis://:6379\"",
            "[redis]\nurl = \"unix://redis.sock\"",
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\ntimeout = \"0s\"\nsync_interval = \"1ms\"",
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\ntimeout = \"6s\"\nsync_interval = \"11s\"",
            "[redis]\ntimeout = \"50ms\"",
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\ndb = 2",
        ],
        expect![[r#"
            [[limits]]
            name = "g"
            key = "client_ip"
            requests = 20
            per = "1h"
            scope = "global"
                limits[0].scope: a global limit needs a [redis] table (add [redis] with url = "redis://HOST:PORT" or "unix:///path", or use scope = "local")
            [[limits]]
            name = "g"
            key = "client_ip"
            requests = 20
            per = "1h"
            scope = "cluster"
                limits[0].scope: unknown scope "cluster" (use "local" (each instance counts on its own) or "global" (shared through [redis]))
            [redis]
            url = "http://127.0.0.1:6379"
                redis.url: unsupported Redis URL "http://127.0.0.1:6379" (write "redis://HOST:PORT", e.g. "redis://127.0.0.1:6379", or "unix:///path/to/redis.sock")
            [redis]
            url = "redis://127.0.0.1"
                redis.url: invalid Redis address "redis://127.0.0.1" (write "redis://HOST:PORT", e.g. "redis://127.0.0.1:6379", or "unix:///path/to/redis.sock")
            [redis]
            url = "redis://:6379"
                redis.url: invalid Redis address "redis://:6379" (write "redis://HOST:PORT", e.g. "redis://127.0.0.1:6379", or "unix:///path/to/redis.sock")
            [redis]
            url = "unix://redis.sock"
                redis.url: "unix://redis.sock" does not name an absolute socket path (write "redis://HOST:PORT", e.g. "redis://127.0.0.1:6379", or "unix:///path/to/redis.sock")
            [redis]
            url = "redis://127.0.0.1:6379"
            timeout = "0s"
            sync_interval = "1ms"
                redis.timeout: 0s is out of range (use 1ms to 5s: the longest one call may take before the limits fall back to local)
                redis.sync_interval: 1ms is out of range (use 10ms to 10s)
            [redis]
            url = "redis://127.0.0.1:6379"
            timeout = "6s"
            sync_interval = "11s"
                redis.timeout: 6s is out of range (use 1ms to 5s: the longest one call may take before the limits fall back to local)
                redis.sync_interval: 11s is out of range (use 10ms to 10s)
            [redis]
            timeout = "50ms"
                redis: missing field `url` (see docs/config.md for the expected type)
            [redis]
            url = "redis://127.0.0.1:6379"
            db = 2
                redis.db: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
}

#[test]
fn limit_names_are_unique() {
    check_each(
        |l| format!("{}\n{l}\n", edge_with("")),
        &["[[limits]]\nname = \"a\"\nkey = \"route\"\nrequests = 1\nper = \"1s\"\n[[limits]]\nname = \"a\"\nkey = \"route\"\nrequests = 1\nper = \"1s\"\n[[limits]]\nname = \"\"\nkey = \"route\"\nrequests = 1\nper = \"1s\""],
        expect![[r#"
            [[limits]]
            name = "a"
            key = "route"
            requests = 1
            per = "1s"
            [[limits]]
            name = "a"
            key = "route"
            requests = 1
            per = "1s"
            [[limits]]
            name = ""
            key = "route"
            requests = 1
            per = "1s"
                limits[1].name: duplicate limit name "a" (limit names must be unique: they label metrics and RateLimit headers)
                limits[2].name: empty name (give the limit a name)
        "#]],
    );
}

#[test]
fn trusted_proxies_must_be_addresses_or_networks() {
    check_each(
        edge_with,
        &["trusted_proxies = [\"10.0.0.0/33\", \"example.com\", \"\"]"],
        expect![[r#"
            trusted_proxies = ["10.0.0.0/33", "example.com", ""]
                edge.trusted_proxies[0]: invalid address or network "10.0.0.0/33" (write an IP address or a CIDR network, e.g. "10.0.0.0/8" or "2001:db8::/32")
                edge.trusted_proxies[1]: invalid address or network "example.com" (write an IP address or a CIDR network, e.g. "10.0.0.0/8" or "2001:db8::/32")
                edge.trusted_proxies[2]: invalid address or network "" (write an IP address or a CIDR network, e.g. "10.0.0.0/8" or "2001:db8::/32")
        "#]],
    );
}

#[test]
fn client_ip_sources_need_a_known_header_and_a_trusted_sender() {
    check_each(
        edge_with,
        &[
            "client_ip_header = \"x-real-ip\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
            "proxy_protocol = true",
        ],
        expect![[r#"
            client_ip_header = "x-real-ip"
            trusted_proxies = ["10.0.0.0/8"]
                edge.client_ip_header: unknown header "x-real-ip" (use "x-forwarded-for" or "forwarded" (RFC 7239))
            proxy_protocol = true
                edge.proxy_protocol: a PROXY protocol header is believed only from a trusted peer, and none is listed (list the load balancers that send it in edge.trusted_proxies, e.g. ["10.0.0.0/8"])
        "#]],
    );
}

#[test]
fn rule_errors() {
    let r = |body: &str| format!("[[rules]]\nid = \"r\"\n{body}");
    check_each(
        |l| format!("{}\n{l}\n", edge_with("")),
        &[
            &r("expr = 'request.path.startsWith(\"/a\"'\naction = \"block\""),
            &r("expr = 'request.pth == \"/\"'\naction = \"block\""),
            &r("expr = 'req.path == \"/\"'\naction = \"block\""),
            &r("expr = 'request.path.lower() == \"/\"'\naction = \"block\""),
            &r("expr = 'client.port == 1'\naction = \"block\""),
            &r("expr = 'bot.level > 1'\naction = \"block\""),
            &r("expr = ''\naction = \"block\""),
            &r("expr = '('\naction = \"block\""),
            &r("expr = 'request.query.matches(\"(a|{}\")'\naction = \"block\""),
            &r("expr = 'request.path.startsWith(\"/protected\")'\naction = \"challenge\"\ndifficulty = 40"),
            &r("expr = 'true'\naction = \"block\"\nnojs = false\ndifficulty = 8"),
            "[challenge]\nkeys = \"\"\ncookie_name = \"a b\"\nipv4_prefix = 33\nipv6_prefix = -1\nfail_policy = \"stale\"\nnojs_wait = \"1h\"\nttl = \"1s\"\ndifficulty = 0",
            &r("expr = 'true'\naction = \"deny\""),
            &r("expr = 'true'\naction = \"block\"\nstatus = 302"),
            &r("expr = 'true'\naction = \"log\"\nstatus = 403"),
            &r("expr = 'true'\naction = \"block\"\nmode = \"shadow\""),
            &r("expr = 'true'\naction = \"block\"\nroutes = [\"nope\"]"),
            &r("expr = 'true'\naction = \"set_header\"\nvalue = \"1\""),
            &r("expr = 'true'\naction = \"set_header\"\nheader = \"x-a\""),
            &r("expr = 'true'\naction = \"set_header\"\nheader = \"Host\"\nvalue = \"evil\""),
            &r("expr = 'true'\naction = \"set_header\"\nheader = \"bad name\"\nvalue = \"a\\nb\""),
            &r("expr = 'true'\naction = \"remove_header\"\nheader = \"x-a\"\nvalue = \"1\""),
            &r("expr = 'true'\naction = \"block\"\nheader = \"x-a\""),
            &r("expr = 'true'\naction = \"route\""),
            &r("expr = 'true'\naction = \"route\"\nroute = \"nope\""),
            &r("expr = 'true'\naction = \"block\"\nroute = \"all\""),
            &r("expr = 'true'\naction = \"rate_limit\""),
            &r("expr = 'true'\naction = \"rate_limit\"\nlimit = \"nope\""),
            &r("expr = 'true'\naction = \"log\"\nlimit = \"x\""),
            "[[limits]]\nname = \"l\"\nkey = \"client_ip\"\nrequests = 1\nper = \"1s\"\n[[rules]]\nid = \"r\"\nexpr = 'true'\naction = \"rate_limit\"\nlimit = \"l\"",
            "[[limits]]\nname = \"l\"\nkey = \"client_ip\"\nrequests = 1\nper = \"1s\"\nrules_only = true\nroutes = [\"all\"]",
            "[[rules]]\nid = \"\"\nexpr = 'true'\naction = \"log\"\n[[rules]]\nid = \"a\"\nexpr = 'true'\naction = \"log\"\n[[rules]]\nid = \"a\"\nexpr = 'true'\naction = \"log\"",
            "[[rules]]\nid = \"r\"\naction = \"block\"",
        ],
        expect![[r#"
            [[rules]]
            id = "r"
            expr = 'request.path.startsWith("/a"'
            action = "block"
                rules[0].expr: at 1:29: Syntax error: missing ')' at '<EOF>' (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'request.pth == "/"'
            action = "block"
                rules[0].expr: unknown field request.pth (known: method, path, host, query, headers, cookies, ja4h) (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'req.path == "/"'
            action = "block"
                rules[0].expr: unknown variable "req" (known: request, client, bot) (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'request.path.lower() == "/"'
            action = "block"
                rules[0].expr: unknown function "lower" (known: contains, size, startsWith, endsWith, matches, string, int, uint, double, bytes, max, min, ip_in_list) (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'client.port == 1'
            action = "block"
                rules[0].expr: unknown field client.port (known: ip, rate) (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'bot.level > 1'
            action = "block"
                rules[0].expr: unknown field bot.level (known: score) (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = ''
            action = "block"
                rules[0].expr: empty expression (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = '('
            action = "block"
                rules[0].expr: the CEL parser could not read this expression; check its brackets and quotes (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'request.query.matches("(a|{}")'
            action = "block"
                rules[0].expr: matches: "(a|{}" is not a valid regex: error: repetition operator missing expression (write a CEL expression over request.method, request.path, request.host, request.query, request.headers, request.cookies, request.ja4h, client.ip, client.rate and bot.score, e.g. 'request.path.startsWith("/wp-admin")')
            [[rules]]
            id = "r"
            expr = 'request.path.startsWith("/protected")'
            action = "challenge"
            difficulty = 40
                rules[0].difficulty: 40 is out of range (use 1 to 32 leading zero bits (each bit doubles the browser's work; 16 takes well under a second, the default))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "block"
            nojs = false
            difficulty = 8
                rules[0].difficulty: difficulty only applies to action "challenge" (remove difficulty, or use action = "challenge")
                rules[0].nojs: nojs only applies to action "challenge" (remove nojs, or use action = "challenge")
            [challenge]
            keys = ""
            cookie_name = "a b"
            ipv4_prefix = 33
            ipv6_prefix = -1
            fail_policy = "stale"
            nojs_wait = "1h"
            ttl = "1s"
            difficulty = 0
                challenge.keys: empty path (name the key file (one hex key of at least 32 bytes per line, e.g. from `openssl rand -hex 32`), or leave keys out to use a generated key)
                challenge.cookie_name: "a b" is not a cookie name (use 1 to 64 letters, digits, '-' or '_' (default "holdfast_challenge"))
                challenge.fail_policy: unknown fail policy "stale" (use "closed" (a failing challenge answers 403 on routes not marked critical) or "open" (it lets requests through))
                challenge.ttl: 1s is out of range (use 1m to 30days)
                challenge.ipv4_prefix: 33 is out of range (use 0 to 32: the leading address bits a pass cookie is bound to (0: any address))
                challenge.ipv6_prefix: -1 is out of range (use 0 to 128: the leading address bits a pass cookie is bound to (0: any address))
                challenge.difficulty: 0 is out of range (use 1 to 32 leading zero bits (each bit doubles the browser's work; 16 takes well under a second, the default))
                challenge.nojs_wait: 1h is out of range (use 0s to 5m)
            [[rules]]
            id = "r"
            expr = 'true'
            action = "deny"
                rules[0].action: unknown action "deny" (use "block", "allow", "log", "challenge", "set_header", "remove_header", "route" or "rate_limit")
            [[rules]]
            id = "r"
            expr = 'true'
            action = "block"
            status = 302
                rules[0].status: 302 is out of range (use a status from 400 to 599 (default 403))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "log"
            status = 403
                rules[0].status: status only applies to action "block" (remove status, or use action = "block")
            [[rules]]
            id = "r"
            expr = 'true'
            action = "block"
            mode = "shadow"
                rules[0].mode: unknown mode "shadow" (use "enforce" (act on a match) or "log" (count matches, act on none))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "block"
            routes = ["nope"]
                rules[0].routes[0]: unknown route "nope" (use one of ["all"], or leave routes out to apply to every route)
            [[rules]]
            id = "r"
            expr = 'true'
            action = "set_header"
            value = "1"
                rules[0].header: action "set_header" needs the header to edit (add header = "x-example" (the header of the request to the origin))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "set_header"
            header = "x-a"
                rules[0].value: action "set_header" needs a value (add value = "..." (use remove_header to drop a header))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "set_header"
            header = "Host"
            value = "evil"
                rules[0].header: "Host" frames or routes the request; rules cannot edit it (edit another header (the edge sets this one itself))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "set_header"
            header = "bad name"
            value = "a\nb"
                rules[0].header: "bad name" is not a valid header name (use letters, digits and - (e.g. "x-shield"))
                rules[0].value: "a\nb" is not a valid header value (use visible ASCII and spaces, no line breaks)
            [[rules]]
            id = "r"
            expr = 'true'
            action = "remove_header"
            header = "x-a"
            value = "1"
                rules[0].value: value only applies to action "set_header" (remove value)
            [[rules]]
            id = "r"
            expr = 'true'
            action = "block"
            header = "x-a"
                rules[0].header: header only applies to actions "set_header" and "remove_header" (remove header, or use one of those actions)
            [[rules]]
            id = "r"
            expr = 'true'
            action = "route"
                rules[0].route: action "route" needs the route to send the request to (add route = "<name of a [[routes]] entry>")
            [[rules]]
            id = "r"
            expr = 'true'
            action = "route"
            route = "nope"
                rules[0].route: unknown route "nope" (use one of ["all"])
            [[rules]]
            id = "r"
            expr = 'true'
            action = "block"
            route = "all"
                rules[0].route: route only applies to action "route" (remove route, or use action = "route" (to limit the rule to some routes, use routes = [...]))
            [[rules]]
            id = "r"
            expr = 'true'
            action = "rate_limit"
                rules[0].limit: action "rate_limit" needs the limit to apply (add limit = "<name of a [[limits]] entry with rules_only = true>")
            [[rules]]
            id = "r"
            expr = 'true'
            action = "rate_limit"
            limit = "nope"
                rules[0].limit: unknown limit "nope" (use one of the rules_only limits [])
            [[rules]]
            id = "r"
            expr = 'true'
            action = "log"
            limit = "x"
                rules[0].limit: limit only applies to action "rate_limit" (remove limit, or use action = "rate_limit")
            [[limits]]
            name = "l"
            key = "client_ip"
            requests = 1
            per = "1s"
            [[rules]]
            id = "r"
            expr = 'true'
            action = "rate_limit"
            limit = "l"
                rules[0].limit: limit "l" applies by route already (rules_only is not set) (set rules_only = true on limit "l", so that only rules apply it)
            [[limits]]
            name = "l"
            key = "client_ip"
            requests = 1
            per = "1s"
            rules_only = true
            routes = ["all"]
                limits[0].routes: a rules_only limit is applied by rules, not by route (remove routes (scope the rate_limit rule with its own routes instead))
            [[rules]]
            id = ""
            expr = 'true'
            action = "log"
            [[rules]]
            id = "a"
            expr = 'true'
            action = "log"
            [[rules]]
            id = "a"
            expr = 'true'
            action = "log"
                rules[0].id: empty id (give the rule an id)
                rules[2].id: duplicate rule id "a" (rule ids must be unique: they label metrics and /status)
            [[rules]]
            id = "r"
            action = "block"
                rules[0]: missing field `expr` (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn cache_errors_are_collected_with_their_paths() {
    check_errors(
        &route_with(
            r#"cache = { enabled = true, memory = "1KiB", max_object_size = "2KiB", lock_timeout = "0s", targeted_field = "bad field", key = { query = "shuffled", headers = ["ok", "no good"] } }"#,
        ),
        expect![[r#"
            routes[0].cache.max_object_size: 2048 bytes is more than cache.memory (1024 bytes) (lower max_object_size or raise memory)
            routes[0].cache.lock_timeout: must be greater than zero (write a duration such as "5s")
            routes[0].cache.targeted_field: invalid header name "bad field" (use a field name such as "Holdfast-Cache-Control")
            routes[0].cache.key.query: unknown query mode "shuffled" (use "sorted", "as_sent" or "ignore")
            routes[0].cache.key.headers[1]: invalid header name "no good" (use letters, digits and '-' only)
        "#]],
    );
}

#[test]
fn a_rule_reading_ja4h_needs_it_turned_on() {
    let rule =
        "[[rules]]\nid = \"fp\"\nexpr = 'request.ja4h.startsWith(\"ge11\")'\naction = \"log\"\n";
    check_errors(
        &format!("{}\n{rule}", edge_with("")),
        expect![[r#"
            rules[0].expr: reads request.ja4h, but JA4H is off (set ja4h = true in [modules.bot] (JA4H is under the FoxIO License 1.1: read docs/artifacts.md#ja4h-style-fingerprint first), or leave request.ja4h out)
        "#]],
    );
    check_errors(
        &format!(
            "{}\n{rule}[modules.bot]\nfeatures = \"f.json\"\n",
            edge_with("")
        ),
        expect![[r#"
            rules[0].expr: reads request.ja4h, but JA4H is off (set ja4h = true in [modules.bot] (JA4H is under the FoxIO License 1.1: read docs/artifacts.md#ja4h-style-fingerprint first), or leave request.ja4h out)
        "#]],
    );
    let on = format!(
        "{}\n{rule}[modules.bot]\nfeatures = \"f.json\"\nja4h = true\n",
        edge_with("")
    );
    holdfast_config::parse(&on, std::path::Path::new("/etc/holdfast")).unwrap();
}

#[test]
fn a_cache_key_without_the_host_is_refused() {
    check_errors(
        &route_with(r#"cache = { enabled = true, key = { host = false } }"#),
        expect![[r#"
            routes[0].cache.key.host: a cache key without the host lets one site's response answer another's (remove `host = false`: the host (and the scheme) are always part of the key)
        "#]],
    );
}

#[test]
fn connection_cap_and_encoded_slashes_are_checked() {
    check_each(
        edge_with,
        &[
            "max_connections = 0",
            "max_connections = 20000000",
            "encoded_slashes = \"decode\"",
        ],
        expect![[r#"
            max_connections = 0
                edge.max_connections: 0 is out of range (use 1 to 10000000 with an open-files limit (LimitNOFILE) above it, or leave it out for 100000)
            max_connections = 20000000
                edge.max_connections: 20000000 is out of range (use 1 to 10000000 with an open-files limit (LimitNOFILE) above it, or leave it out for 100000)
            encoded_slashes = "decode"
                edge.encoded_slashes: unknown value "decode" (use "refuse" to answer 400 to %2F and %5C in paths (the default), or "keep" to forward them still encoded)
        "#]],
    );
}
