//! What goes wrong before validation: TOML syntax (reported with line and column), wrong
//! types (reported with their key path) and unknown keys (all of them, with their paths).

use crate::{check_errors, edge_with, file_with, pool_with, route_with};
use expect_test::expect;

#[test]
fn syntax_error_has_line_and_column() {
    check_errors(
        "[edge]\nlisten = [\"127.0.0.1:8080\"]\nthreads = \n",
        expect![[r#"
            line 3, column 11: TOML syntax error: string values must be quoted, expected literal string (fix the TOML syntax at that position)
        "#]],
    );
}

#[test]
fn unclosed_string_reports_the_end_of_its_line() {
    check_errors(
        "[edge]\nlisten = [\"127.0.0.1:8080]\n",
        expect![[r#"
            line 2, column 27: TOML syntax error: unclosed array, expected `]` (fix the TOML syntax at that position)
        "#]],
    );
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    check_errors(
        &edge_with("listen = [\"127.0.0.1:8081\"]"),
        expect![[r#"
        line 4, column 1: TOML syntax error: duplicate key (fix the TOML syntax at that position)
    "#]],
    );
}

#[test]
fn wrong_type_names_its_key_path() {
    check_errors(
        &edge_with("threads = \"two\""),
        expect![[r#"
        edge.threads: invalid type: string "two", expected i64 (see docs/config.md for the expected type)
    "#]],
    );
}

#[test]
fn wrong_type_in_an_array_of_tables() {
    check_errors(
        &pool_with("http2 = \"yes\""),
        expect![[r#"
        pools[0].http2: invalid type: string "yes", expected a boolean (see docs/config.md for the expected type)
    "#]],
    );
    check_errors(
        &route_with("timeouts = { connect = 5 }"),
        expect![[r#"
        routes[0].timeouts.connect: invalid type: integer `5`, expected a duration (see docs/config.md for the expected type)
    "#]],
    );
}

#[test]
fn negative_and_malformed_durations() {
    check_errors(
        &route_with("timeouts = { read = \"-5s\" }"),
        expect![[r#"
        routes[0].timeouts.read: invalid value: string "-5s", expected a duration (see docs/config.md for the expected type)
    "#]],
    );
    check_errors(
        &edge_with("shutdown_grace = \"ten seconds\""),
        expect![[r#"
        edge.shutdown_grace: invalid value: string "ten seconds", expected a duration (see docs/config.md for the expected type)
    "#]],
    );
}

#[test]
fn malformed_byte_sizes() {
    check_errors(
        &edge_with("max_request_body = \"10 parsecs\""),
        expect![[r#"
        edge.max_request_body: invalid byte size "10 parsecs": write a number with an optional unit B, KiB, MiB, GiB, KB, MB or GB (see docs/config.md for the expected type)
    "#]],
    );
    check_errors(
        &edge_with("max_request_body = -1"),
        expect![[r#"
        edge.max_request_body: a byte size cannot be negative (see docs/config.md for the expected type)
    "#]],
    );
}

#[test]
fn host_of_the_wrong_type() {
    check_errors(
        &file_with("", "", "").replace("path_prefix = \"/\"", "host = 5"),
        expect![[r#"
            routes[0].match.host: data did not match any variant of untagged enum OneOrMany (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn missing_required_keys() {
    check_errors(
        "",
        expect![[r#"
        (top level): missing field `edge` (see docs/config.md for the expected type)
    "#]],
    );
    check_errors(
        "[edge]\n",
        expect![[r#"
        edge: missing field `listen` (see docs/config.md for the expected type)
    "#]],
    );
    check_errors(
        &file_with("", "", "").replace("servers = [\"127.0.0.1:9000\"]", ""),
        expect![[r#"
            pools[0]: missing field `servers` (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn every_unknown_key_is_reported_with_its_path() {
    check_errors(
        r#"
colour = "blue"

[edge]
listen = ["127.0.0.1:8080"]
tls_listen = ["127.0.0.1:8443"]
thread = 4

[[edge.tls]]
cert = "c.pem"
key = "k.pem"
name = ["example.com"]

[admin]
listen = "127.0.0.1:9901"
auth = "none"

[[pools]]
name = "p"
servers = ["127.0.0.1:9000"]

[pools.tls]
verify = false
insecure = true

[[routes]]
name = "r"
match = { path_prefix = "/", method = "GET" }
pool = "p"
timeouts = { connect = "1s", idle = "1s" }
request_headers = { append = {} }

[[routes]]
name = "s"
match = {}
pool = "p"
weight = 2
"#,
        expect![[r#"
            admin.auth: unknown key (remove it or check its spelling against docs/config.md)
            colour: unknown key (remove it or check its spelling against docs/config.md)
            edge.thread: unknown key (remove it or check its spelling against docs/config.md)
            edge.tls[0].name: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].tls.insecure: unknown key (remove it or check its spelling against docs/config.md)
            routes[0].match.method: unknown key (remove it or check its spelling against docs/config.md)
            routes[0].request_headers.append: unknown key (remove it or check its spelling against docs/config.md)
            routes[0].timeouts.idle: unknown key (remove it or check its spelling against docs/config.md)
            routes[1].weight: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
}

#[test]
fn unknown_keys_come_with_the_semantic_errors() {
    check_errors(
        &pool_with("weight = 2\nservers2 = []").replace("name = \"primary\"", "name = \"\""),
        expect![[r#"
            pools[0].servers2: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].weight: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].name: empty name (give the pool a name)
            routes[0].pool: unknown pool "primary" (define it under [[pools]] or use one of [""])
        "#]],
    );
}

#[test]
fn type_error_keeps_unknown_keys_found_before_it() {
    check_errors(
        &file_with("colour = \"blue\"", "", "").replace("name = \"all\"", "name = 7"),
        expect![[r#"
            edge.colour: unknown key (remove it or check its spelling against docs/config.md)
            routes[0].name: invalid type: integer `7`, expected a string (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn column_counts_characters_not_bytes() {
    // `x` is the 16th character of line 2; `é` is two bytes in UTF-8.
    check_errors(
        "[edge]\nlisten = [\"é\"] x\n",
        expect![[r#"
        line 2, column 16: TOML syntax error: unexpected key or value, expected newline, `#` (fix the TOML syntax at that position)
    "#]],
    );
}

#[test]
fn syntax_error_on_the_first_line() {
    check_errors(
        "edge = \n",
        expect![[r#"
        line 1, column 8: TOML syntax error: string values must be quoted, expected literal string (fix the TOML syntax at that position)
    "#]],
    );
}

#[test]
fn retry_unknown_keys_and_wrong_types() {
    check_errors(
        &pool_with("[pools.retry]\nattemps = 2\nbudget = 20"),
        expect![[r#"
            pools[0].retry.attemps: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].retry.budget: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
    check_errors(
        &pool_with("[pools.retry]\non = \"connect\""),
        expect![[r#"
            pools[0].retry.on: invalid type: string "connect", expected a sequence (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.retry]\non = [503]"),
        expect![[r#"
            pools[0].retry.on[0]: invalid type: integer `503`, expected a string (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.retry]\nbackoff = 25"),
        expect![[r#"
            pools[0].retry.backoff: invalid type: integer `25`, expected a duration (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn outlier_unknown_keys_and_wrong_types() {
    check_errors(
        &pool_with("[pools.outlier]\nconsecutive_failure = 2\nenabled = true"),
        expect![[r#"
            pools[0].outlier.consecutive_failure: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].outlier.enabled: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
    check_errors(
        &pool_with("[pools.outlier]\nconsecutive_failures = \"5\""),
        expect![[r#"
            pools[0].outlier.consecutive_failures: invalid type: string "5", expected i64 (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.outlier]\nbase_ejection = 30"),
        expect![[r#"
            pools[0].outlier.base_ejection: invalid type: integer `30`, expected a duration (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.outlier]\nmax_ejection = \"-5s\""),
        expect![[r#"
            pools[0].outlier.max_ejection: invalid value: string "-5s", expected a duration (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.outlier]\nmax_ejection_percent = 50.5"),
        expect![[r#"
            pools[0].outlier.max_ejection_percent: invalid type: floating point `50.5`, expected i64 (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("outlier = \"on\""),
        expect![[r#"
            pools[0].outlier: invalid type: string "on", expected struct OutlierSpec (see docs/config.md for the expected type)
        "#]],
    );
}

/// A valid file whose one pool has `servers` (written as the inside of the array).
fn servers_with(servers: &str) -> String {
    pool_with("").replace(
        "servers = [\"127.0.0.1:9000\"]",
        &format!("servers = [{servers}]"),
    )
}

#[test]
fn unknown_keys_in_a_server_table() {
    check_errors(
        &servers_with(
            r#""127.0.0.1:9001", { address = "127.0.0.1:9002", colour = "blue" }, { address = "127.0.0.1:9003", weight = 2, weigth = 3 }"#,
        ),
        expect![[r#"
            pools[0].servers[1].colour: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].servers[2].weigth: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
}

#[test]
fn unknown_keys_in_a_server_table_come_with_the_semantic_errors() {
    check_errors(
        &servers_with(r#"{ address = "127.0.0.1:9002", weight = 0, colour = "blue" }"#).replace(
            "name = \"primary\"",
            "name = \"primary\"\nbalance = \"random\"",
        ),
        expect![[r#"
            pools[0].servers[0].colour: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].servers[0].weight: 0 is out of range (use 1 to 1000)
            pools[0].balance: unknown balance "random" (use "round_robin", "least_request" or "hash")
        "#]],
    );
}

/// The whole error list for `text` is one error located at `path` (or below it).
fn one_error_at(text: &str, path: &str) {
    let errors = crate::reject(text);
    assert!(
        errors.starts_with(path),
        "expected an error at {path}: {errors}"
    );
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

#[test]
fn server_tables_of_the_wrong_shape() {
    // No address.
    one_error_at(
        &servers_with(r#""127.0.0.1:9001", { weight = 2 }"#),
        "pools[0].servers[1]",
    );
    // A weight that is not an integer.
    one_error_at(
        &servers_with(r#"{ address = "127.0.0.1:9001", weight = "3" }"#),
        "pools[0].servers[0]",
    );
    one_error_at(
        &servers_with(r#"{ address = "127.0.0.1:9001", weight = 1.5 }"#),
        "pools[0].servers[0]",
    );
    // An address that is not a string.
    one_error_at(&servers_with("{ address = 9001 }"), "pools[0].servers[0]");
    // Neither a string nor a table.
    one_error_at(&servers_with("9001"), "pools[0].servers[0]");
}

#[test]
fn balance_and_hash_key_of_the_wrong_type() {
    one_error_at(&pool_with("balance = 1"), "pools[0].balance: ");
    one_error_at(
        &pool_with("balance = \"hash\"\nhash_key = [\"path\"]"),
        "pools[0].hash_key: ",
    );
}

#[test]
fn health_unknown_keys_and_wrong_types() {
    check_errors(
        &pool_with("[pools.health]\ntype = \"tcp\"\nport = 8081"),
        expect![[r#"
            pools[0].health.port: unknown key (remove it or check its spelling against docs/config.md)
            pools[0].health.type: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
    check_errors(
        &pool_with("[pools.health]\nexpect = 200"),
        expect![[r#"
            pools[0].health.expect: invalid type: integer `200`, expected a string (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.health]\ninterval = 5"),
        expect![[r#"
            pools[0].health.interval: invalid type: integer `5`, expected a duration (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &pool_with("[pools.retry]\nbuffer_body = \"64 KiBs\""),
        expect![[r#"
            pools[0].retry.buffer_body: invalid byte size "64 KiBs": write a number with an optional unit B, KiB, MiB, GiB, KB, MB or GB (see docs/config.md for the expected type)
        "#]],
    );
}

#[test]
fn chain_and_fallback_unknown_keys_and_wrong_types() {
    check_errors(
        &route_with("fallback = { file = \"down.html\", body = \"sorry\" }"),
        expect![[r#"
            routes[0].fallback.body: unknown key (remove it or check its spelling against docs/config.md)
        "#]],
    );
    check_errors(
        &route_with("fallback = { status = 503 }"),
        expect![[r#"
            routes[0].fallback: missing field `file` (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &route_with("fallback = \"down.html\""),
        expect![[r#"
            routes[0].fallback: invalid type: string "down.html", expected struct FallbackSpec (see docs/config.md for the expected type)
        "#]],
    );
    check_errors(
        &file_with("", "", "").replace("pool = \"primary\"", "pools = \"primary\""),
        expect![[r#"
            routes[0].pools: invalid type: string "primary", expected a sequence (see docs/config.md for the expected type)
        "#]],
    );
}
