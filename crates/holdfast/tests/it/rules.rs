//! The rule engine at the edge: the issue's `block-admin-probe` rule as written (403 for
//! `/wp-admin/x`, `/other` passes), a configurable block status, `log` mode (counted, not
//! acted on), `allow` before `block`, route scoping, a rule that fails at run time (a miss
//! plus an error count, never a 5xx), the kill switch, `/status` and `/metrics`, and the
//! 2 Jul 2019 pattern on a long input (it completes: `matches` is linear time).

use crate::support::*;

/// The issue's first `[[rules]]` entry, exactly as written.
const ISSUE_RULE: &str = r#"
[[rules]]
id = "block-admin-probe"
expr = 'request.path.startsWith("/wp-admin")'     # CEL
action = "block"
"#;

/// Two routes to one pool: "api" for `/api/`, then "all".
const TWO_ROUTES: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "api"
match = { path_prefix = "/api/" }
pool = "primary"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
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

    // A challenge rule is refused on reload; the running rules stay.
    let challenge = format!(
        "{ISSUE_RULE}\n[[rules]]\nid = \"guard-protected\"\nexpr = 'request.path.startsWith(\"/protected\")'\naction = \"challenge\"\n"
    );
    edge.rewrite(&edge_config(2, &format!("{challenge}{BASIC_POOL}")), &vars);
    let (_, errors) = edge.reload_rejected();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("rules[1].action") && e.contains("challenge is not available yet")),
        "{errors:?}"
    );
    assert_eq!(fetch(&edge, "/xmlrpc.php").await.status, 403);
    assert_eq!(fetch(&edge, "/protected/x").await.status, 200);
}
