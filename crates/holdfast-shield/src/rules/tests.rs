#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use std::net::{IpAddr, Ipv4Addr};

fn all_fields() -> Fields {
    Fields {
        method: true,
        path: true,
        host: true,
        query: true,
        headers: true,
        cookies: true,
        client_ip: true,
    }
}

fn rule(id: &str, expr: &str, action: RuleAction, shadow: bool) -> RuleSpec {
    RuleSpec {
        id: id.into(),
        expr: expr.into(),
        action,
        shadow,
        routes: vec![],
        fields: all_fields(),
    }
}

fn rules(specs: Vec<RuleSpec>) -> Rules {
    let metrics = RuleMetrics::new(&prometheus::Registry::new()).unwrap();
    Rules::new(specs, &metrics).unwrap()
}

fn decide(r: &Rules, path: &str, headers: &[(&str, &str)]) -> RuleOutcome {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let view = RequestView {
        method: &http::Method::GET,
        version: http::Version::HTTP_11,
        headers: &map,
        path,
        query,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        tls: false,
        route: "main",
    };
    r.decide(&view).unwrap()
}

const BLOCK: RuleAction = RuleAction::Block { status: 403 };

fn blocked_by(o: &RuleOutcome) -> Option<&str> {
    match o {
        RuleOutcome::Block(b) => Some(b.rule.as_str()),
        RuleOutcome::Pass | RuleOutcome::Challenge(_) => None,
    }
}

#[test]
fn the_issue_rule_blocks_its_prefix_only() {
    let r = rules(vec![rule(
        "block-admin-probe",
        r#"request.path.startsWith("/wp-admin")"#,
        BLOCK,
        false,
    )]);
    assert_eq!(
        blocked_by(&decide(&r, "/wp-admin/x", &[])),
        Some("block-admin-probe")
    );
    assert_eq!(decide(&r, "/other", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].hits(), 1);
}

#[test]
fn every_variable_is_there() {
    let r = rules(vec![rule(
        "all",
        r#"request.method == "GET" && request.host == "example.com"
           && request.query == "a=1" && request.headers["user-agent"] == "curl/8"
           && request.cookies["sid"] == "abc" && client.ip == "192.0.2.7""#,
        BLOCK,
        false,
    )]);
    let o = decide(
        &r,
        "/x?a=1",
        &[
            ("host", "Example.COM:8080"),
            ("user-agent", "curl/8"),
            ("cookie", "theme=dark; sid=abc"),
        ],
    );
    assert_eq!(blocked_by(&o), Some("all"));
    assert_eq!(r.rules[0].errors(), 0);
}

#[test]
fn allow_before_block_skips_it_and_log_only_counts() {
    let r = rules(vec![
        rule(
            "seen",
            r#"request.path.startsWith("/")"#,
            RuleAction::Log,
            false,
        ),
        rule(
            "ok",
            r#"request.path == "/admin/health""#,
            RuleAction::Allow,
            false,
        ),
        rule(
            "admin",
            r#"request.path.startsWith("/admin")"#,
            BLOCK,
            false,
        ),
    ]);
    assert_eq!(decide(&r, "/admin/health", &[]), RuleOutcome::Pass);
    assert_eq!(blocked_by(&decide(&r, "/admin/x", &[])), Some("admin"));
    assert_eq!(r.rules[0].hits(), 2);
    assert_eq!(r.rules[1].hits(), 1);
    assert_eq!(r.rules[2].hits(), 1);
}

#[test]
fn shadow_counts_and_passes() {
    let r = rules(vec![rule("shadow", "true", BLOCK, true)]);
    assert_eq!(decide(&r, "/x", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].hits(), 1);
}

#[test]
fn an_error_is_a_miss_and_counted() {
    let r = rules(vec![
        rule(
            "missing",
            r#"request.headers["x-absent"].startsWith("1")"#,
            BLOCK,
            false,
        ),
        rule("not-bool", "request.path", BLOCK, false),
    ]);
    assert_eq!(decide(&r, "/x", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].errors(), 1);
    assert_eq!(r.rules[1].errors(), 1);
    assert_eq!(r.rules[0].hits(), 0);
}

#[test]
fn routes_scope_a_rule() {
    let mut s = rule("other-route", "true", BLOCK, false);
    s.routes = vec!["other".into()];
    let r = rules(vec![s]);
    assert_eq!(decide(&r, "/x", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].hits(), 0);
}

#[test]
fn matches_is_linear_time_on_the_2019_pattern() {
    // The 2 Jul 2019 pattern; its literal `{}` escaped, which the regex crate requires.
    let pattern = PATTERN_2019;
    let expr = format!("request.query.matches({pattern:?})");
    let r = rules(vec![rule("waf-2019", &expr, BLOCK, false)]);
    let long = format!("x={}", "1".repeat(20_000));
    // No timing assert: that it returns at all is the point (a backtracking engine would not).
    let _ = decide(&r, &format!("/x?{long}"), &[]);
    assert_eq!(
        r.rules[0].errors(),
        0,
        "the pattern compiles with the regex crate"
    );
}

#[test]
fn only_the_needed_fields_are_built() {
    let mut s = rule("p", r#"request.path == "/x""#, BLOCK, false);
    s.fields = Fields {
        path: true,
        ..Fields::default()
    };
    let r = rules(vec![s]);
    assert_eq!(blocked_by(&decide(&r, "/x", &[])), Some("p"));
}

/// The 2 Jul 2019 pattern as the regex crate writes it (`{}` escaped).
pub(crate) const PATTERN_2019: &str = r#"(?:(?:\"|'|\]|\}|\\|\d|(?:nan|infinity|true|false|null|undefined|symbol|math)|\`|\-|\+)+[)]*;?((?:\s|-|~|!|\{\}|\|\||\+)*.*(?:.*=.*)))"#;

#[test]
fn in_and_has_guard_optional_keys() {
    let r = rules(vec![rule(
        "guarded",
        r#"("x-token" in request.headers && request.headers["x-token"].startsWith("a")) || has(request.cookies.sid)"#,
        BLOCK,
        false,
    )]);
    assert_eq!(decide(&r, "/x", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].errors(), 0, "a guarded absent key is no error");
    assert_eq!(
        blocked_by(&decide(&r, "/x", &[("x-token", "abc")])),
        Some("guarded")
    );
    assert_eq!(
        blocked_by(&decide(&r, "/x", &[("cookie", "sid=1")])),
        Some("guarded")
    );
}

#[test]
fn a_challenge_rule_asks_for_the_challenge_with_its_settings() {
    let r = rules(vec![rule(
        "guard-protected",
        r#"request.path.startsWith("/protected")"#,
        RuleAction::Challenge {
            difficulty: 12,
            nojs: false,
        },
        false,
    )]);
    assert_eq!(
        decide(&r, "/protected/x", &[]),
        RuleOutcome::Challenge(Box::new(crate::rules::Challenged {
            rule: "guard-protected".to_string(),
            difficulty: 12,
            nojs: false,
        }))
    );
    assert_eq!(decide(&r, "/other", &[]), RuleOutcome::Pass);
}
