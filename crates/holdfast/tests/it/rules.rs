//! The rule engine at the edge: the issue's `block-admin-probe` rule as written (403 for
//! `/wp-admin/x`, `/other` passes), a configurable block status, `log` mode (counted, not
//! acted on), `allow` before `block`, route scoping, a rule that fails at run time (a miss
//! plus an error count, never a 5xx), the kill switch, `/status` and `/metrics`, and the
//! 2 Jul 2019 pattern on a long input (it completes: `matches` is linear time), and
//! `client.rate` blocking a client past its count.

use crate::support::*;

/// The issue's first `[[rules]]` entry, exactly as written.
const ISSUE_RULE: &str = r#"
[[rules]]
id = "block-admin-probe"
expr = 'request.path.startsWith("/wp-admin")'     # CEL
action = "block"
"#;

fn edge_with(origin: &Origin, rules: &str, routes: &str) -> Edge {
    Edge::start(
        &edge_config(2, &format!("{rules}{routes}")),
        &[("origin", origin.addr.to_string())],
    )
}

async fn fetch(edge: &Edge, path: &str) -> Got {
    within_limit(get_with(&edge.url(path), &[])).await
}

async fn post_ok(edge: &Edge, path: &str) -> serde_json::Value {
    let got = within_limit(post(&edge.admin_url(path))).await;
    assert_eq!(got.status, 200, "POST {path}: {}", got.text());
    got.json()
}

/// The `/status` entry of rule `id` (in the "rules" module's entry).
fn rule_status(status: &serde_json::Value, id: &str) -> serde_json::Value {
    let module = module_status(status, "rules");
    module["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("the rules module lists no rules: {module}"))
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no rule {id:?} in {module}"))
}

fn hits(metrics: &str, rule: &str, action: &str, mode: &str) -> f64 {
    sample(
        metrics,
        "holdfast_rule_hits_total",
        &[("rule", rule), ("action", action), ("mode", mode)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_rule_as_written_blocks_wp_admin_with_403_and_passes_the_rest() {
    let origin = Origin::text("hello").await;
    let edge = edge_with(&origin, ISSUE_RULE, BASIC_POOL);
    let got = fetch(&edge, "/wp-admin/x").await;
    assert_eq!(got.status, 403, "{}", got.text());
    assert!(got.text().contains("block-admin-probe"), "{}", got.text());
    let got = within_limit(get_with(
        &edge.url("/wp-admin/y"),
        &[("accept", "application/json")],
    ))
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(got.json()["status"], 403);
    let got = fetch(&edge, "/other").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "hello");
    assert_eq!(
        origin.requests(),
        1,
        "blocked requests never reach the origin"
    );

    let metrics = edge.metrics().await;
    assert_eq!(
        hits(&metrics, "block-admin-probe", "block", "enforce"),
        2.0,
        "{metrics}"
    );
    let status = edge.status().await;
    let rule = rule_status(&status, "block-admin-probe");
    assert_eq!(rule["hits"], 2, "{rule}");
    assert_eq!(rule["action"], "block", "{rule}");
    assert_eq!(rule["mode"], "enforce", "{rule}");
    assert_eq!(
        rule["engine"], "native",
        "a startsWith compiles to a native predicate: {rule}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_answers_with_its_configured_status() {
    let origin = Origin::text("hello").await;
    let rule = r#"
[[rules]]
id = "gone"
expr = 'request.path == "/old" && request.method == "GET"'
action = "block"
status = 451
"#;
    let edge = edge_with(&origin, rule, BASIC_POOL);
    assert_eq!(fetch(&edge, "/old").await.status, 451);
    assert_eq!(fetch(&edge, "/new").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_mode_counts_and_passes() {
    let origin = Origin::text("hello").await;
    let rules = r#"
[[rules]]
id = "shadow-admin"
expr = 'request.path.startsWith("/wp-admin")'
action = "block"
mode = "log"

[[rules]]
id = "seen"
expr = 'true'
action = "log"
"#;
    let edge = edge_with(&origin, rules, BASIC_POOL);
    for _ in 0..3 {
        assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 200);
    }
    assert_eq!(origin.requests(), 3);
    let metrics = edge.metrics().await;
    assert_eq!(
        hits(&metrics, "shadow-admin", "block", "log"),
        3.0,
        "{metrics}"
    );
    assert_eq!(hits(&metrics, "seen", "log", "enforce"), 3.0, "{metrics}");
    let status = edge.status().await;
    assert_eq!(rule_status(&status, "shadow-admin")["hits"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_before_block_skips_the_block() {
    let origin = Origin::text("hello").await;
    let rules = r#"
[[rules]]
id = "office"
expr = 'request.headers["x-office"] == "yes"'
action = "allow"

[[rules]]
id = "block-admin"
expr = 'request.path.startsWith("/admin")'
action = "block"
"#;
    let edge = edge_with(&origin, rules, BASIC_POOL);
    let got = within_limit(get_with(&edge.url("/admin/x"), &[("x-office", "yes")])).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(fetch(&edge, "/admin/x").await.status, 403);
    let status = edge.status().await;
    assert_eq!(rule_status(&status, "office")["hits"], 1);
    assert_eq!(rule_status(&status, "block-admin")["hits"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_scope_a_rule() {
    let origin = Origin::text("hello").await;
    let rules = r#"
[[rules]]
id = "api-only"
expr = 'request.path.endsWith(".php")'
action = "block"
routes = ["api"]
"#;
    let edge = edge_with(&origin, rules, TWO_ROUTES);
    assert_eq!(fetch(&edge, "/api/x.php").await.status, 403);
    assert_eq!(fetch(&edge, "/site/x.php").await.status, 200);
    let status = edge.status().await;
    let rule = rule_status(&status, "api-only");
    assert_eq!(rule["routes"], serde_json::json!(["api"]), "{rule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_that_fails_at_run_time_is_a_miss_and_is_counted() {
    let origin = Origin::text("hello").await;
    let rules = r#"
[[rules]]
id = "needs-header"
expr = 'request.headers["x-absent"].startsWith("a")'
action = "block"

[[rules]]
id = "block-admin-probe"
expr = 'request.path.startsWith("/wp-admin")'
action = "block"
"#;
    let edge = edge_with(&origin, rules, BASIC_POOL);
    assert_eq!(fetch(&edge, "/page").await.status, 200);
    // The failing rule does not stop the ones after it.
    assert_eq!(fetch(&edge, "/wp-admin/").await.status, 403);
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "holdfast_rule_errors_total",
            &[("rule", "needs-header")]
        ),
        Some(2.0),
        "{metrics}"
    );
    let status = edge.status().await;
    let rule = rule_status(&status, "needs-header");
    assert_eq!(rule["errors"], 2, "{rule}");
    assert_eq!(rule["hits"], 0, "{rule}");
    let module = module_status(&status, "rules");
    assert_eq!(
        module["state"], "ok",
        "a rule's error is not the module's: {module}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_stops_blocking_and_clear_brings_it_back() {
    let origin = Origin::text("hello").await;
    let edge = edge_with(&origin, ISSUE_RULE, BASIC_POOL);
    assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 403);
    let module = post_ok(&edge, "/modules/rules/disable").await;
    assert_eq!(module["state"], "disabled", "{module}");
    assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 200);
    let status = edge.status().await;
    assert_eq!(module_status(&status, "rules")["override"], "disabled");
    let module = post_ok(&edge, "/modules/rules/clear").await;
    assert_eq!(module["override"], "none", "{module}");
    assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_2019_pattern_on_a_long_input_completes() {
    let origin = Origin::text("hello").await;
    // The 2 Jul 2019 pattern; its literal `{}` escaped, as the regex crate requires. In a
    // TOML literal string and a CEL raw triple-quoted string, nothing needs escaping.
    let pattern = r#"(?:(?:\"|'|\]|\}|\\|\d|(?:nan|infinity|true|false|null|undefined|symbol|math)|\`|\-|\+)+[)]*;?((?:\s|-|~|!|\{\}|\|\||\+)*.*(?:.*=.*)))"#;
    let rules = format!(
        "\n[[rules]]\nid = \"waf-2019\"\nexpr = '''request.query.matches(r\"\"\"{pattern}\"\"\")'''\naction = \"log\"\n"
    );
    let edge = edge_with(&origin, &rules, BASIC_POOL);
    let long = "1".repeat(8_000);
    for _ in 0..3 {
        let got = fetch(&edge, &format!("/search?q={long}")).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    let status = edge.status().await;
    let rule = rule_status(&status, "waf-2019");
    assert_eq!(rule["errors"], 0, "the pattern compiles: {rule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_rules_and_their_counts_and_applies_changed_ones() {
    let origin = Origin::text("hello").await;
    let edge = edge_with(&origin, ISSUE_RULE, BASIC_POOL);
    let vars = [("origin", origin.addr.to_string())];
    assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 403);

    // The same file again: the same compiled rules, the count kept.
    edge.reload_applied();
    assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 403);
    let status = edge.status().await;
    assert_eq!(rule_status(&status, "block-admin-probe")["hits"], 2);

    // The rule changes: the new expression decides, counts start again.
    let changed = ISSUE_RULE.replace("/wp-admin", "/xmlrpc");
    edge.rewrite(&edge_config(2, &format!("{changed}{BASIC_POOL}")), &vars);
    edge.reload_applied();
    assert_eq!(fetch(&edge, "/wp-admin/x").await.status, 200);
    assert_eq!(fetch(&edge, "/xmlrpc.php").await.status, 403);
    let status = edge.status().await;
    assert_eq!(rule_status(&status, "block-admin-probe")["hits"], 1);

    // A challenge rule with an impossible difficulty is refused on reload; the running
    // rules stay.
    let challenge = format!(
        "{ISSUE_RULE}\n[[rules]]\nid = \"guard-protected\"\nexpr = 'request.path.startsWith(\"/protected\")'\naction = \"challenge\"\ndifficulty = 99\n"
    );
    edge.rewrite(&edge_config(2, &format!("{challenge}{BASIC_POOL}")), &vars);
    let (_, errors) = edge.reload_rejected();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("rules[1].difficulty") && e.contains("99 is out of range")),
        "{errors:?}"
    );
    assert_eq!(fetch(&edge, "/xmlrpc.php").await.status, 403);
    assert_eq!(fetch(&edge, "/protected/x").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_header_and_remove_header_edit_the_request_to_the_origin() {
    let origin = Origin::text("hello").await;
    let rules = r#"
[[rules]]
id = "tag-api"
expr = 'request.path.startsWith("/api/")'
action = "set_header"
header = "x-shield-tag"
value = "api"

[[rules]]
id = "strip-debug"
expr = '"x-debug" in request.headers'
action = "remove_header"
header = "x-debug"

[[rules]]
id = "block-bad"
expr = 'request.path == "/api/bad"'
action = "block"
"#;
    let edge = edge_with(&origin, rules, BASIC_POOL);
    let got = within_limit(get_with(
        &edge.url("/api/x"),
        &[("x-debug", "1"), ("x-shield-tag", "forged")],
    ))
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let got = within_limit(get_with(&edge.url("/site"), &[("x-debug", "2")])).await;
    assert_eq!(got.status, 200, "{}", got.text());
    // A block after an edit: the edit is dropped with the request.
    assert_eq!(fetch(&edge, "/api/bad").await.status, 403);
    {
        let seen = origin.seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            2,
            "the blocked request never reached the origin"
        );
        let api = &seen[0].headers;
        assert_eq!(
            api.get_all("x-shield-tag").iter().collect::<Vec<_>>(),
            vec!["api"],
            "set_header replaces the client's value: {api:?}"
        );
        assert!(api.get("x-debug").is_none(), "{api:?}");
        let site = &seen[1].headers;
        assert!(site.get("x-shield-tag").is_none(), "{site:?}");
        assert!(site.get("x-debug").is_none(), "{site:?}");
    }
    let status = edge.status().await;
    let tag = rule_status(&status, "tag-api");
    assert_eq!(tag["action"], "set_header", "{tag}");
    assert_eq!(tag["hits"], 2, "{tag}");
    assert_eq!(rule_status(&status, "strip-debug")["hits"], 2);
}

/// The `/status` artifact entry of IP list `name`.
fn list_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no artifacts: {status}"))
        .iter()
        .find(|a| a["kind"] == "ip-list" && a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no IP list {name:?} in {status}"))
}

fn list_rejections(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        "holdfast_artifact_rejected_total",
        &[("artifact", "ip-list:office"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_list_blocks_its_ranges_keeps_its_last_good_version_and_swaps_on_a_good_one() {
    let origin = Origin::text("hello").await;
    let template = edge_config_with(
        2,
        r#"state_dir = "state""#,
        &format!(
            r#"
[[ip_lists]]
name = "office"
file = "office.txt"

[[rules]]
id = "office-only"
expr = 'ip_in_list(client.ip, "office")'
action = "block"
{BASIC_POOL}"#
        ),
    );
    let edge = Edge::start_in_dir(&template, &[("origin", origin.addr.to_string())], |dir| {
        std::fs::write(
            dir.join("office.txt"),
            "# version: 1\n# loopback\n127.0.0.0/8\n",
        )
        .unwrap();
    });
    // The client is 127.0.0.1: in the list.
    assert_eq!(fetch(&edge, "/x").await.status, 403);
    let status = edge.status().await;
    assert_eq!(rule_status(&status, "office-only")["engine"], "native");
    assert_eq!(list_status(&status, "office")["active"]["version"], 1);

    // Rejected, each counted, version 1 kept: a bad CIDR (named by line), no version line,
    // an empty list, an oversize file.
    let file = edge.path("office.txt");
    let bad: [(Vec<u8>, &str); 4] = [
        (
            b"# version: 2\n127.0.0.0/8\n10.0.0.0/33\n".to_vec(),
            "parse",
        ),
        (b"10.0.0.0/8\n".to_vec(), "schema"),
        (b"# version: 3\n# nothing\n".to_vec(), "empty"),
        (vec![b'#'; 33 * 1024 * 1024], "too_large"),
    ];
    for (text, reason) in bad {
        replace_file(&file, &text);
        let got = within_limit(post(&edge.admin_url("/reload"))).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let list = list_status(&edge.status().await, "office");
        assert_eq!(list["active"]["version"], 1, "{reason}: {list}");
        assert_eq!(list["last_rejection"]["reason"], reason, "{list}");
        assert_eq!(list_rejections(&edge.metrics().await, reason), 1.0);
        assert_eq!(
            fetch(&edge, "/x").await.status,
            403,
            "{reason}: still the LKG"
        );
    }
    let list = list_status(&edge.status().await, "office");
    assert!(
        list["last_rejection"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("larger than")),
        "{list}"
    );

    // A good version without loopback: swapped, the request passes.
    replace_file(&file, b"# version: 9\n192.0.2.0/24\n");
    let got = within_limit(post(&edge.admin_url("/reload"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        list_status(&edge.status().await, "office")["active"]["version"],
        9
    );
    let got = fetch(&edge, "/x").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        rule_status(&edge.status().await, "office-only")["errors"],
        0
    );
}

#[test]
fn a_rule_naming_an_unknown_ip_list_is_a_config_error() {
    let text = edge_config(
        2,
        &format!(
            r#"
[[rules]]
id = "r"
expr = 'ip_in_list(client.ip, "nope")'
action = "block"
{BASIC_POOL}"#
        ),
    )
    .replace("{origin}", "127.0.0.1:9");
    let errs = holdfast_config::parse(&text, std::path::Path::new("/tmp")).unwrap_err();
    let all = errs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        all.contains("rules[0].expr") && all.contains("no IP list \"nope\""),
        "{all}"
    );
}

/// The `/status` artifact entry of rule list `name`.
fn rule_list_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no artifacts: {status}"))
        .iter()
        .find(|a| a["kind"] == "rule-list" && a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no rule list {name:?} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_list_runs_after_the_rules_rejects_bad_files_and_swaps_on_a_good_one() {
    let origin = Origin::text("hello").await;
    let template = edge_config_with(
        2,
        r#"state_dir = "state""#,
        &format!(
            r#"
[[rule_lists]]
name = "feed"
file = "feed.json"

[[rules]]
id = "office"
expr = 'request.headers["x-office"] == "yes"'
action = "allow"
{BASIC_POOL}"#
        ),
    );
    let edge = Edge::start_in_dir(&template, &[("origin", origin.addr.to_string())], |dir| {
        std::fs::write(
                dir.join("feed.json"),
                r#"{"version": 1, "rules": [{"id": "cgi", "expr": "request.path.contains(\"/cgi-bin/\")", "action": "block", "status": 410}]}"#,
            )
            .unwrap();
    });
    assert_eq!(fetch(&edge, "/cgi-bin/x").await.status, 410);
    assert_eq!(fetch(&edge, "/other").await.status, 200);
    // [[rules]] run first: an allow there skips the list.
    let got = within_limit(get_with(&edge.url("/cgi-bin/x"), &[("x-office", "yes")])).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let status = edge.status().await;
    let cgi = rule_status(&status, "cgi");
    assert_eq!(cgi["list"], "feed", "{cgi}");
    assert_eq!(cgi["hits"], 1, "{cgi}");
    assert_eq!(rule_list_status(&status, "feed")["active"]["version"], 1);

    // Rejected, counted, version 1 kept: an expression that does not compile, the same id
    // twice, an id of [[rules]].
    let file = edge.path("feed.json");
    let bad = [
        (
            r#"{"version": 2, "rules": [{"id": "x", "expr": "request.pth == \"/\"", "action": "block"}]}"#,
            "invalid",
        ),
        (
            r#"{"version": 3, "rules": [{"id": "x", "expr": "true", "action": "log"}, {"id": "x", "expr": "false", "action": "log"}]}"#,
            "duplicate",
        ),
        (
            r#"{"version": 4, "rules": [{"id": "office", "expr": "true", "action": "block"}]}"#,
            "duplicate",
        ),
    ];
    for (i, (text, reason)) in bad.into_iter().enumerate() {
        replace_file(&file, text.as_bytes());
        let got = within_limit(post(&edge.admin_url("/reload"))).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let list = rule_list_status(&edge.status().await, "feed");
        assert_eq!(list["active"]["version"], 1, "{reason}: {list}");
        assert_eq!(list["last_rejection"]["reason"], reason, "{list}");
        assert_eq!(list["rejections"], i + 1, "{list}");
        assert_eq!(
            fetch(&edge, "/cgi-bin/y").await.status,
            410,
            "{reason}: still version 1"
        );
    }
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "holdfast_artifact_rejected_total",
            &[("artifact", "rule-list:feed"), ("reason", "duplicate")]
        ),
        Some(2.0),
        "{metrics}"
    );

    // A good version 5: swapped and compiled.
    replace_file(
        &file,
        br#"{"version": 5, "rules": [{"id": "php", "expr": "request.path.endsWith(\".php\")", "action": "block"}]}"#,
    );
    let got = within_limit(post(&edge.admin_url("/reload"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(fetch(&edge, "/cgi-bin/y").await.status, 200);
    assert_eq!(fetch(&edge, "/x.php").await.status, 403);
    assert_eq!(
        rule_list_status(&edge.status().await, "feed")["active"]["version"],
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_rule_sends_the_request_to_another_routes_pools() {
    let alpha = Origin::text("alpha").await;
    let beta = Origin::text("beta").await;
    let config = r#"
[[pools]]
name = "a"
servers = ["{origin}"]

[[pools]]
name = "b"
servers = ["{other}"]

[[routes]]
name = "beta"
match = { path_prefix = "/beta-only/" }
pool = "b"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "a"

[[rules]]
id = "canary"
expr = 'request.headers["x-canary"] == "1"'
action = "route"
route = "beta"
"#;
    let edge = Edge::start(
        &edge_config(2, config),
        &[
            ("origin", alpha.addr.to_string()),
            ("other", beta.addr.to_string()),
        ],
    );
    assert_eq!(fetch(&edge, "/x").await.text(), "alpha");
    let got = within_limit(get_with(&edge.url("/x"), &[("x-canary", "1")])).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "beta");
    assert_eq!(beta.requests_to("/x"), 1);
    assert_eq!(alpha.requests(), 1);
    let rule = rule_status(&edge.status().await, "canary");
    assert_eq!(rule["action"], "route", "{rule}");
    assert_eq!(rule["hits"], 1, "{rule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_rule_applies_its_rules_only_limit_to_matching_requests() {
    let origin = Origin::text("hello").await;
    let rules = r#"
[[limits]]
name = "login"
key = "client_ip"
requests = 2
per = "1h"
rules_only = true

[[rules]]
id = "limit-login"
expr = 'request.path.startsWith("/login")'
action = "rate_limit"
limit = "login"
"#;
    let edge = edge_with(&origin, rules, BASIC_POOL);
    // Not matched: the limit never sees these.
    for _ in 0..5 {
        assert_eq!(fetch(&edge, "/other").await.status, 200);
    }
    assert_eq!(fetch(&edge, "/login").await.status, 200);
    assert_eq!(fetch(&edge, "/login").await.status, 200);
    let got = fetch(&edge, "/login").await;
    assert_eq!(got.status, 429, "{}", got.text());
    assert!(
        got.headers.get("retry-after").is_some(),
        "{:?}",
        got.headers
    );
    assert_eq!(fetch(&edge, "/other").await.status, 200);
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "holdfast_ratelimit_decisions_total",
            &[("limit", "login"), ("result", "allowed")]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "holdfast_ratelimit_decisions_total",
            &[("limit", "login"), ("result", "limited")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(rule_status(&edge.status().await, "limit-login")["hits"], 3);
}

/// An edge with `[modules.bot]` (`enabled`), a feature file whose bias alone scores every
/// request 98, and `rules`.
fn bot_rules_edge(origin: &Origin, enabled: bool, rules: &str) -> Edge {
    let template = edge_config_with(
        2,
        r#"state_dir = "state""#,
        &format!(
            r#"
[modules.bot]
enabled = {enabled}
features = "bot-features.json"
{rules}
{BASIC_POOL}"#
        ),
    );
    Edge::start_in_dir(&template, &[("origin", origin.addr.to_string())], |dir| {
        std::fs::write(
            dir.join("bot-features.json"),
            r#"{"version": 1, "bias": 5.0, "features": [{"name": "header_count", "weight": 0.0}]}"#,
        )
        .unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_score_is_the_bot_modules_score_and_unknown_is_its_own_value() {
    let rules = r#"
[[rules]]
id = "bots"
expr = 'bot.score != "unknown" && bot.score >= 90 && request.path.startsWith("/login")'
action = "block"

[[rules]]
id = "unscored"
expr = 'bot.score == "unknown"'
action = "set_header"
header = "x-unscored"
value = "1"
"#;
    let origin = Origin::text("hello").await;
    let edge = bot_rules_edge(&origin, true, rules);
    assert_eq!(fetch(&edge, "/login").await.status, 403);
    let got = fetch(&edge, "/home").await;
    assert_eq!(got.status, 200, "{}", got.text());
    {
        let seen = origin.seen.lock().unwrap();
        let h = &seen[0].headers;
        assert_eq!(h.get("x-holdfast-bot-score").unwrap(), "98", "{h:?}");
        assert!(h.get("x-unscored").is_none(), "{h:?}");
    }
    let status = edge.status().await;
    assert_eq!(rule_status(&status, "bots")["engine"], "native");
    assert_eq!(rule_status(&status, "unscored")["hits"], 0);

    // The bot module switched off: the score is unknown, never a block.
    let origin = Origin::text("hello").await;
    let edge = bot_rules_edge(&origin, false, rules);
    assert_eq!(fetch(&edge, "/login").await.status, 200);
    let seen = origin.seen.lock().unwrap();
    assert_eq!(seen[0].headers.get("x-unscored").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rate_blocks_a_client_past_five_requests_a_second() {
    let origin = Origin::text("hello").await;
    let edge = edge_with(
        &origin,
        r#"
[[rules]]
id = "too-fast"
expr = "client.rate > 5"
action = "block"
"#,
        BASIC_POOL,
    );
    // The window is a fixed second: the first five are at most the 5th of their window
    // (pass); of 30, some window holds a 6th (blocked) unless the machine takes more than
    // ~5 s for them, far beyond a loopback request's time.
    let statuses = thirty_back_to_back(&edge).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 403),
        "{statuses:?}"
    );
    let blocked = statuses.iter().filter(|s| **s == 403).count();
    let metrics = edge.metrics().await;
    assert_eq!(
        hits(&metrics, "too-fast", "block", "enforce"),
        f64::from(u32::try_from(blocked).unwrap_or(u32::MAX)),
        "{metrics}"
    );
}

/// Requests back to back from 127.0.0.1: the statuses of 30, checked as a `client.rate > 5`
/// block rule must answer (the first five pass, some later one is blocked).
async fn thirty_back_to_back(edge: &Edge) -> Vec<http::StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(fetch(edge, "/").await.status);
    }
    assert!(
        statuses.iter().take(5).all(|s| *s == 200),
        "the first five pass: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| *s == 403),
        "a 6th request in a second is blocked: {statuses:?}"
    );
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rate_in_a_rule_list_is_counted_though_no_config_rule_reads_it() {
    let origin = Origin::text("hello").await;
    let template = edge_config_with(
        2,
        r#"state_dir = "state""#,
        &format!(
            r#"
[[rule_lists]]
name = "feed"
file = "feed.json"

[[rules]]
id = "office"
expr = 'request.headers["x-office"] == "yes"'
action = "allow"
{BASIC_POOL}"#
        ),
    );
    let edge = Edge::start_in_dir(&template, &[("origin", origin.addr.to_string())], |dir| {
        std::fs::write(
            dir.join("feed.json"),
            r#"{"version": 1, "rules": [{"id": "fast", "expr": "client.rate > 5", "action": "block"}]}"#,
        )
        .unwrap();
    });
    thirty_back_to_back(&edge).await;
    assert_eq!(rule_status(&edge.status().await, "fast")["list"], "feed");
}
