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
        ja4h: true,
        bot: true,
        rate: true,
    }
}

fn rule(id: &str, expr: &str, action: RuleAction, shadow: bool) -> RuleDef {
    RuleDef {
        id: id.into(),
        expr: expr.into(),
        action,
        shadow,
        routes: vec![],
        fields: all_fields(),
        header: None,
        route: None,
        limit: None,
    }
}

fn rules(specs: Vec<RuleDef>) -> Rules {
    let metrics = RuleMetrics::new(&prometheus::Registry::new()).unwrap();
    Rules::new(specs, &metrics, &IpLists::new()).unwrap()
}

/// `Rules::decide_in` with `ctx` (what earlier modules wrote), on a plain GET of `path`.
fn decide_in(r: &Rules, path: &str, ctx: &holdfast_modules::ModuleCtx) -> RuleOutcome {
    let map = http::HeaderMap::new();
    let view = RequestView {
        method: &http::Method::GET,
        version: http::Version::HTTP_11,
        headers: &map,
        path,
        query: None,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        tls: false,
        route: "main",
    };
    r.decide_in(&view, ctx).unwrap()
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
        RuleOutcome::Pass | RuleOutcome::Challenge(_) | RuleOutcome::Edit(_) => None,
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
           && request.cookies["sid"] == "abc" && client.ip == "192.0.2.7"
           && client.rate == 1"#,
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
            effects: Default::default(),
        }))
    );
    assert_eq!(decide(&r, "/other", &[]), RuleOutcome::Pass);
}
/// The requests the equivalence test runs every expression on: methods, paths, queries,
/// hosts (with a port, upper-case, IPv6, absent), headers (absent, repeated, not UTF-8),
/// cookies (several headers, spaces, repeated names, a pair without `=`), IPv4 and IPv6.
fn sample_requests() -> Vec<(
    http::Method,
    String,
    Option<String>,
    http::HeaderMap,
    IpAddr,
)> {
    use std::net::Ipv6Addr;
    let methods = [http::Method::GET, http::Method::POST, http::Method::DELETE];
    let targets = [
        ("/", None),
        ("/wp-admin/setup.php", Some("a=1&b=2")),
        ("/api/v2/item-17", Some("")),
        ("/static/app.JS", Some("x=1111111111;=")),
        ("/Admin/health", None),
    ];
    let header_sets: Vec<Vec<(&str, &[u8])>> = vec![
        vec![],
        vec![
            ("host", b"Example.COM:8080"),
            ("user-agent", b"curl/8.5"),
            ("cookie", b"theme=dark; sid=abc"),
        ],
        vec![
            ("host", b"[::1]:443"),
            ("user-agent", b"Mozilla/5.0 (X11) Firefox"),
            ("user-agent", b"second"),
            ("x-api-key", b"k-0001"),
            ("cookie", b"sid = first ;novalue; sid=second"),
            ("cookie", b"lang=en"),
        ],
        vec![
            ("host", b"api.example.com"),
            ("x-api-key", b"bad\xffbyte"),
            ("accept", b"text/html"),
            ("cookie", b"=empty; sid="),
        ],
    ];
    let ips = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped()),
    ];
    let mut out = Vec::new();
    for (mi, m) in methods.iter().enumerate() {
        for (ti, (path, query)) in targets.iter().enumerate() {
            for (hi, hs) in header_sets.iter().enumerate() {
                let mut map = http::HeaderMap::new();
                for (k, v) in hs {
                    map.append(
                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        http::HeaderValue::from_bytes(v).unwrap(),
                    );
                }
                let ip = ips[(mi + ti + hi) % ips.len()];
                out.push((
                    m.clone(),
                    path.to_string(),
                    query.map(String::from),
                    map,
                    ip,
                ));
            }
        }
    }
    out
}

/// The leaves: every compiled field with every compiled test.
fn sample_leaves() -> Vec<String> {
    let fields = [
        ("request.method", &["GET", "POST"][..]),
        (
            "request.path",
            &["/wp-admin", "/api/v2/item-17", "php", "/"][..],
        ),
        (
            "request.host",
            &["example.com", "Example.COM", "::1", ""][..],
        ),
        ("request.query", &["a=1", "", "1111"][..]),
        (
            "client.ip",
            &["192.0.2.7", "2001:db8::1", "::ffff:203.0.113.9", "10."][..],
        ),
        (
            "request.headers[\"user-agent\"]",
            &["curl/8.5", "curl", "Firefox"][..],
        ),
        (
            "request.headers[\"x-api-key\"]",
            &["k-0001", "bad\u{fffd}byte", "k-"][..],
        ),
        (
            "request.cookies[\"sid\"]",
            &["abc", "first", "", "second"][..],
        ),
        ("request.cookies[\"lang\"]", &["en"][..]),
        (
            "request.ja4h",
            &["ge11", "ge11cn02", "po20nn", "_000000000000"][..],
        ),
    ];
    let mut out = Vec::new();
    for (f, lits) in fields {
        for lit in lits {
            for m in ["startsWith", "endsWith", "contains"] {
                out.push(format!("{f}.{m}({lit:?})"));
            }
            out.push(format!("{f} == {lit:?}"));
            out.push(format!("{lit:?} != {f}"));
        }
        out.push(format!("{f} in [{:?}, \"zzz\"]", lits[0]));
        out.push(format!("{f}.matches(\"^[a-z/]+[0-9]*$\")"));
        out.push(format!("{f}.matches({PATTERN_2019:?})"));
    }
    for key in ["user-agent", "x-absent", "cookie"] {
        out.push(format!("{key:?} in request.headers"));
        out.push(format!("has(request.headers.{})", key.replace('-', "_")));
    }
    for key in ["sid", "lang", "absent"] {
        out.push(format!("{key:?} in request.cookies"));
        out.push(format!("has(request.cookies.{key})"));
    }
    out.push("true".into());
    out.push("false".into());
    out
}

#[test]
fn native_predicates_answer_as_cel_does() {
    let leaves = sample_leaves();
    // Leaves, their negations, and pairs joined by && and || (an absent header's error on
    // either side included), plus a few deeper trees.
    let mut exprs: Vec<String> = leaves.clone();
    exprs.extend(leaves.iter().map(|l| format!("!({l})")));
    let n = leaves.len();
    for (i, a) in leaves.iter().enumerate() {
        let b = &leaves[(i * 7 + 3) % n];
        let c = &leaves[(i * 13 + 5) % n];
        exprs.push(format!("{a} && {b}"));
        exprs.push(format!("{a} || {b}"));
        exprs.push(format!("!({a}) || ({b} && !({c}))"));
        exprs.push(format!("({a} || {c}) && !({b})"));
    }
    let requests = sample_requests();
    let mut compared = 0usize;
    for expr in &exprs {
        let mut r = rules(vec![rule("r", expr, BLOCK, false)]);
        assert!(
            r.rules[0].native.is_some(),
            "{expr} should compile to a native predicate"
        );
        r.fields = all_fields();
        for (method, path, query, headers, ip) in &requests {
            let view = RequestView {
                method,
                version: http::Version::HTTP_11,
                headers,
                path,
                query: query.as_deref(),
                client_ip: *ip,
                tls: false,
                route: "main",
            };
            let native = r.rules[0]
                .native
                .as_ref()
                .unwrap()
                .eval(&native::Req::new(&view))
                .ok();
            let cel = match r.rules[0].program.execute(&r.context(&view, None)) {
                Ok(Value::Bool(b)) => Some(b),
                _ => None,
            };
            assert_eq!(
                native, cel,
                "{expr} on {method} {path}?{query:?} {headers:?} {ip}: native vs CEL"
            );
            compared += 1;
        }
    }
    assert!(compared > 50_000, "{compared} comparisons");
}

#[test]
fn other_shapes_stay_with_cel_and_still_work() {
    for expr in [
        r#"size(request.path) > 3"#,
        r#"request.headers["User-Agent"] == "x""#,
        r#"request.path in "/a/b""#,
        r#"request.method == 1"#,
        r#"startsWith(request.path, "/x")"#,
        r#"request.path"#,
    ] {
        let r = rules(vec![rule("r", expr, BLOCK, false)]);
        assert_eq!(r.rules[0].engine(), "cel", "{expr}");
    }
    // A CEL rule between native ones: each answers, in order.
    let r = rules(vec![
        rule("n1", r#"request.path == "/n1""#, BLOCK, false),
        rule("c", r#"size(request.path) == 2"#, BLOCK, false),
        rule("n2", r#"request.path.startsWith("/n")"#, BLOCK, false),
    ]);
    assert_eq!(
        (
            r.rules[0].engine(),
            r.rules[1].engine(),
            r.rules[2].engine()
        ),
        ("native", "cel", "native")
    );
    assert_eq!(blocked_by(&decide(&r, "/n1", &[])), Some("n1"));
    assert_eq!(blocked_by(&decide(&r, "/c", &[])), Some("c"));
    assert_eq!(blocked_by(&decide(&r, "/nx", &[])), Some("n2"));
    assert_eq!(decide(&r, "/other", &[]), RuleOutcome::Pass);
}

#[test]
fn each_route_runs_its_own_rules_in_file_order() {
    let mut a = rule("a", "true", RuleAction::Log, false);
    a.routes = vec!["main".into()];
    let mut b = rule("b", "true", BLOCK, false);
    b.routes = vec!["other".into()];
    let c = rule("c", r#"request.path == "/c""#, BLOCK, false);
    let r = rules(vec![a, b, c]);
    assert_eq!(r.for_route("main"), &[0, 2]);
    assert_eq!(r.for_route("other"), &[1, 2]);
    assert_eq!(r.for_route("unnamed"), &[2]);
    assert_eq!(blocked_by(&decide(&r, "/c", &[])), Some("c"));
    assert_eq!(r.rules[0].hits(), 1);
    assert_eq!(r.rules[1].hits(), 0);
}

#[test]
fn the_benchmark_shapes_compile_natively() {
    // bench/shield.sh's rules and replay parts, as they write them (CEL raw strings).
    let replay = format!(
        r#"request.query.matches(r"""{PATTERN_2019}""") || ("x-payload" in request.headers && request.headers["x-payload"].matches(r"""{PATTERN_2019}"""))"#
    );
    let r = rules(vec![
        rule(
            "prefix",
            r#"request.path.startsWith("/blocked-01/")"#,
            BLOCK,
            false,
        ),
        rule(
            "key",
            r#"request.headers["x-api-key"] == "stolen-key-01""#,
            BLOCK,
            false,
        ),
        rule(
            "method",
            r#"request.method == "DELETE" && request.path == "/admin-01""#,
            BLOCK,
            false,
        ),
        rule(
            "probe",
            r#"request.path.matches(r"^/probe-01/[a-z]+\.php$")"#,
            BLOCK,
            false,
        ),
        rule("waf-2019", &replay, BLOCK, false),
    ]);
    for rule in &r.rules {
        assert_eq!(rule.engine(), "native", "{}", rule.spec.id);
    }
    let digits = "1".repeat(4000);
    let payload = format!("x={digits}");
    assert_eq!(
        decide(
            &r,
            &format!("/1k?x={}", &digits[..180]),
            &[("x-payload", &payload)]
        ),
        RuleOutcome::Pass
    );
    assert_eq!(
        blocked_by(&decide(&r, "/probe-01/a.php", &[])),
        Some("probe")
    );
    assert_eq!(blocked_by(&decide(&r, "/1k?1=1", &[])), Some("waf-2019"));
    assert!(r.rules.iter().all(|r| r.errors() == 0));
}

fn edit_rule(id: &str, expr: &str, name: &str, value: Option<&str>) -> RuleDef {
    let action = if value.is_some() {
        RuleAction::SetHeader
    } else {
        RuleAction::RemoveHeader
    };
    let mut s = rule(id, expr, action, false);
    s.header = Some(HeaderEdit {
        name: http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value: value.map(|v| http::HeaderValue::from_str(v).unwrap()),
    });
    s
}

fn edits(o: &RuleOutcome) -> Vec<(String, Option<String>)> {
    match o {
        RuleOutcome::Edit(e) => e
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    h.value.as_ref().map(|v| v.to_str().unwrap().to_string()),
                )
            })
            .collect(),
        _ => vec![],
    }
}

#[test]
fn header_edits_collect_in_order_and_a_block_drops_them() {
    let r = rules(vec![
        edit_rule(
            "tag",
            r#"request.path.startsWith("/api")"#,
            "x-shield",
            Some("api"),
        ),
        edit_rule("strip", "true", "x-debug", None),
        rule(
            "ok",
            r#"request.path == "/api/ok""#,
            RuleAction::Allow,
            false,
        ),
        rule("bad", r#"request.path == "/api/bad""#, BLOCK, false),
        edit_rule("late", "true", "x-late", Some("1")),
    ]);
    assert_eq!(
        edits(&decide(&r, "/api/x", &[])),
        vec![
            ("x-shield".into(), Some("api".into())),
            ("x-debug".into(), None),
            ("x-late".into(), Some("1".into())),
        ]
    );
    // allow stops the rules after it, keeping the edits before it
    assert_eq!(
        edits(&decide(&r, "/api/ok", &[])),
        vec![
            ("x-shield".into(), Some("api".into())),
            ("x-debug".into(), None)
        ]
    );
    assert_eq!(blocked_by(&decide(&r, "/api/bad", &[])), Some("bad"));
    // a shadow edit counts and edits nothing
    let mut shadow = edit_rule("s", "true", "x-s", Some("1"));
    shadow.shadow = true;
    let r = rules(vec![shadow]);
    assert_eq!(decide(&r, "/", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].hits(), 1);
}

/// An IP list "office" loaded from a file in `dir` (kept by the caller).
fn office_list(dir: &std::path::Path, text: &str) -> IpLists {
    use holdfast_artifact::{Artifact, ArtifactMetrics, ArtifactOptions};
    let path = dir.join("office.txt");
    std::fs::write(&path, text).unwrap();
    let mut options = ArtifactOptions::new(&path);
    options.name = Some("office".into());
    let metrics = Arc::new(ArtifactMetrics::new(&prometheus::Registry::new()).unwrap());
    let list = Arc::new(Artifact::<crate::ip_list::IpListKind>::new(
        options, metrics,
    ));
    list.start();
    IpLists::from([("office".to_string(), list)])
}

#[test]
fn ip_in_list_answers_alike_natively_and_in_cel() {
    let dir = tempfile::tempdir().unwrap();
    let lists = office_list(
        dir.path(),
        "# version: 1\n192.0.2.0/24\n2001:db8::/32\n203.0.113.9\n",
    );
    let metrics = RuleMetrics::new(&prometheus::Registry::new()).unwrap();
    let exprs = [
        r#"ip_in_list(client.ip, "office")"#,
        r#"!ip_in_list(client.ip, "office") && request.path.startsWith("/")"#,
        r#"ip_in_list(request.headers["x-real-ip"], "office")"#,
        r#"ip_in_list(request.cookies["sid"], "office")"#,
    ];
    let mut compared = 0;
    for expr in exprs {
        let mut r = Rules::new(vec![rule("r", expr, BLOCK, false)], &metrics, &lists).unwrap();
        assert_eq!(r.rules[0].engine(), "native", "{expr}");
        r.fields = all_fields();
        for (method, path, query, mut headers, ip) in sample_requests() {
            for real in [
                None,
                Some("192.0.2.77"),
                Some("2001:db8::5"),
                Some("nonsense"),
            ] {
                if let Some(v) = real {
                    headers.insert("x-real-ip", http::HeaderValue::from_static(v));
                }
                let view = RequestView {
                    method: &method,
                    version: http::Version::HTTP_11,
                    headers: &headers,
                    path: &path,
                    query: query.as_deref(),
                    client_ip: ip,
                    tls: false,
                    route: "main",
                };
                let native = r.rules[0]
                    .native
                    .as_ref()
                    .unwrap()
                    .eval(&native::Req::new(&view))
                    .ok();
                let cel = match r.rules[0].program.execute(&r.context(&view, None)) {
                    Ok(Value::Bool(b)) => Some(b),
                    _ => None,
                };
                assert_eq!(native, cel, "{expr} on {ip} {headers:?}");
                compared += 1;
            }
        }
    }
    assert!(compared > 200);
    // The sample requests include 192.0.2.7 (in) and 10.1.2.3 (out).
    let r = Rules::new(
        vec![rule(
            "office",
            r#"ip_in_list(client.ip, "office")"#,
            BLOCK,
            false,
        )],
        &metrics,
        &lists,
    )
    .unwrap();
    assert_eq!(blocked_by(&decide(&r, "/", &[])), Some("office"));
}

#[test]
fn a_list_without_a_value_is_the_rules_error() {
    let dir = tempfile::tempdir().unwrap();
    let lists = office_list(dir.path(), "192.0.2.0/24\n"); // no version line: rejected
    let metrics = RuleMetrics::new(&prometheus::Registry::new()).unwrap();
    let r = Rules::new(
        vec![rule(
            "office",
            r#"ip_in_list(client.ip, "office")"#,
            BLOCK,
            false,
        )],
        &metrics,
        &lists,
    )
    .unwrap();
    assert_eq!(decide(&r, "/", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].errors(), 1);
}

#[test]
fn the_first_matching_route_rule_reroutes_and_later_rules_still_run() {
    let mut a = rule(
        "to-v2",
        r#"request.path.startsWith("/api/")"#,
        RuleAction::Route,
        false,
    );
    a.route = Some(Arc::from("v2"));
    let mut b = rule("to-v3", "true", RuleAction::Route, false);
    b.route = Some(Arc::from("v3"));
    let c = edit_rule("tag", "true", "x-tag", Some("1"));
    let r = rules(vec![a, b, c]);
    match decide(&r, "/api/x", &[]) {
        RuleOutcome::Edit(e) => {
            assert_eq!(e.route.as_deref(), Some("v2"));
            assert_eq!(e.headers.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    match decide(&r, "/site", &[]) {
        RuleOutcome::Edit(e) => assert_eq!(e.route.as_deref(), Some("v3")),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.rules[1].hits(), 2);
}

#[test]
fn request_ja4h_is_the_bot_modules_fingerprint() {
    let r = rules(vec![
        rule("h2", r#"request.ja4h.startsWith("ge20")"#, BLOCK, false),
        rule("h11", r#"request.ja4h.startsWith("ge11n")"#, BLOCK, false),
    ]);
    assert_eq!(r.rules[0].engine(), "native");
    assert_eq!(
        blocked_by(&decide(&r, "/", &[("accept", "*/*")])),
        Some("h11")
    );
    // With a cookie the fourth character is `c`: no rule matches.
    assert_eq!(decide(&r, "/", &[("cookie", "a=1")]), RuleOutcome::Pass);
}

#[test]
fn bot_score_answers_alike_natively_and_in_cel_unknown_included() {
    let exprs = [
        "bot.score > 50",
        "bot.score >= 50",
        "bot.score < 50",
        "bot.score <= 1",
        "bot.score == 99",
        "bot.score != 99",
        r#"bot.score == "unknown""#,
        r#"bot.score != "unknown""#,
        r#""unknown" == bot.score"#,
        "50 == bot.score",
        r#"bot.score != "unknown" && bot.score > 80"#,
        r#"bot.score == "unknown" || bot.score < 20"#,
        r#"request.path.startsWith("/login") && bot.score >= 70"#,
    ];
    let scores = [
        BotScore::Unknown,
        BotScore::Score(1),
        BotScore::Score(50),
        BotScore::Score(80),
        BotScore::Score(99),
    ];
    let map = http::HeaderMap::new();
    for expr in exprs {
        let mut r = rules(vec![rule("r", expr, BLOCK, false)]);
        assert_eq!(r.rules[0].engine(), "native", "{expr}");
        assert!(r.reads_bot(), "{expr}");
        r.fields = all_fields();
        for path in ["/login", "/x"] {
            let view = RequestView {
                method: &http::Method::GET,
                version: http::Version::HTTP_11,
                headers: &map,
                path,
                query: None,
                client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                tls: false,
                route: "main",
            };
            for score in scores {
                let (native, cel) = {
                    let native = r.rules[0]
                        .native
                        .as_ref()
                        .unwrap()
                        .eval(&native::Req::new(&view).with_bot(score))
                        .ok();
                    let cel = match r.rules[0]
                        .program
                        .execute(&r.context_with(&view, None, score))
                    {
                        Ok(Value::Bool(b)) => Some(b),
                        _ => None,
                    };
                    (native, cel)
                };
                assert_eq!(native, cel, "{expr} with {score:?} on {path}");
            }
        }
    }
    // The score comes from the request's ModuleCtx; without one it is unknown.
    let r = rules(vec![rule("bots", "bot.score >= 80", BLOCK, false)]);
    let blocked = decide_in(
        &r,
        "/",
        &holdfast_modules::ModuleCtx {
            bot_score: BotScore::Score(90),
        },
    );
    assert_eq!(blocked_by(&blocked), Some("bots"));
    assert_eq!(decide(&r, "/", &[]), RuleOutcome::Pass);
    assert_eq!(r.rules[0].errors(), 1, "unknown > 80 is the rule's error");
}

#[test]
fn a_challenge_carries_the_effects_of_the_rules_before_it() {
    let challenge = RuleAction::Challenge {
        difficulty: 10,
        nojs: true,
    };
    let r = rules(vec![
        edit_rule("tag", "true", "x-tag", Some("1")),
        rule(
            "guard",
            r#"request.path.startsWith("/p")"#,
            challenge,
            false,
        ),
        edit_rule("late", "true", "x-late", Some("1")),
    ]);
    match decide(&r, "/p/x", &[]) {
        RuleOutcome::Challenge(c) => {
            assert_eq!(c.rule, "guard");
            assert_eq!(c.effects.headers.len(), 1, "{:?}", c.effects);
            assert_eq!(c.effects.headers[0].name, "x-tag");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        edits(&decide(&r, "/other", &[])),
        vec![
            ("x-tag".into(), Some("1".into())),
            ("x-late".into(), Some("1".into()))
        ]
    );
}

#[test]
fn client_rate_answers_alike_natively_and_in_cel() {
    let exprs = [
        "client.rate > 3",
        "client.rate >= 3",
        "client.rate < 3",
        "client.rate <= 1",
        "client.rate == 4",
        "client.rate != 4",
        "3 < client.rate",
        "3 >= client.rate",
        "1 == client.rate",
        "4 != client.rate",
        r#"request.path.startsWith("/login") && client.rate > 2"#,
        r#"client.ip == "192.0.2.7" || client.rate <= 2"#,
    ];
    let map = http::HeaderMap::new();
    for expr in exprs {
        let mut r = rules(vec![rule("r", expr, BLOCK, false)]);
        assert_eq!(r.rules[0].engine(), "native", "{expr}");
        assert!(r.reads_rate(), "{expr}");
        r.fields = all_fields();
        for path in ["/login", "/x"] {
            let view = RequestView {
                method: &http::Method::GET,
                version: http::Version::HTTP_11,
                headers: &map,
                path,
                query: None,
                client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)),
                tls: false,
                route: "main",
            };
            for rate in [None, Some(1), Some(2), Some(3), Some(4), Some(1000)] {
                let native = r.rules[0]
                    .native
                    .as_ref()
                    .unwrap()
                    .eval(&native::Req::new(&view).with_rate(rate))
                    .ok();
                let cel = match r.rules[0].program.execute(&r.context(&view, rate)) {
                    Ok(Value::Bool(b)) => Some(b),
                    _ => None,
                };
                assert_eq!(native, cel, "{expr} with rate {rate:?} on {path}");
            }
        }
    }
    // A shape left to CEL reads the same value.
    let r = rules(vec![rule("r", "client.rate + 0 > 3", BLOCK, false)]);
    assert_eq!(r.rules[0].engine(), "cel");
}

/// `rule`'s fields as the config check would give them.
fn checked(id: &str, expr: &str) -> RuleDef {
    RuleDef {
        fields: holdfast_config::check_rule_expr(expr).unwrap(),
        ..rule(id, expr, BLOCK, false)
    }
}

fn decide_from(r: &Rules, ip: [u8; 4]) -> RuleOutcome {
    let map = http::HeaderMap::new();
    let view = RequestView {
        method: &http::Method::GET,
        version: http::Version::HTTP_11,
        headers: &map,
        path: "/",
        query: None,
        client_ip: IpAddr::V4(Ipv4Addr::from(ip)),
        tls: false,
        route: "main",
    };
    r.decide(&view).unwrap()
}

#[test]
fn client_rate_blocks_an_address_past_its_count_and_not_another() {
    // An hour's window: the test cannot straddle two windows.
    let window = std::time::Duration::from_secs(3600);
    for expr in ["client.rate > 3", "client.rate + 0 > 3"] {
        let r = rules(vec![checked("fast", expr)]).with_rate_window(window);
        assert!(r.reads_rate());
        let a = [198, 51, 100, 1];
        let b = [198, 51, 100, 2];
        for _ in 0..3 {
            assert_eq!(decide_from(&r, a), RuleOutcome::Pass, "{expr}");
        }
        for _ in 0..3 {
            assert_eq!(blocked_by(&decide_from(&r, a)), Some("fast"), "{expr}");
        }
        // Another address has its own count (a test that would fail were the count global).
        for _ in 0..3 {
            assert_eq!(decide_from(&r, b), RuleOutcome::Pass, "{expr}");
        }
        assert_eq!(blocked_by(&decide_from(&r, b)), Some("fast"), "{expr}");
        assert_eq!(r.rules[0].errors(), 0, "{expr}");
    }
}

#[test]
fn client_rate_counts_once_per_request_and_only_when_read() {
    let window = std::time::Duration::from_secs(3600);
    // Three rules read it: each request still counts once (the 4th request is the first
    // with a rate above 3, for every rule).
    let r = rules(vec![
        RuleDef {
            action: RuleAction::Log,
            ..checked("a", "client.rate > 3")
        },
        RuleDef {
            action: RuleAction::Log,
            ..checked("b", "client.rate + 0 > 3")
        },
        checked("c", "client.rate > 3"),
    ])
    .with_rate_window(window);
    let ip = [203, 0, 113, 9];
    for _ in 0..3 {
        assert_eq!(decide_from(&r, ip), RuleOutcome::Pass);
    }
    assert_eq!(blocked_by(&decide_from(&r, ip)), Some("c"));
    assert_eq!((r.rules[0].hits(), r.rules[1].hits()), (1, 1));
    // No rule reads it: no table, nothing counted.
    let r = rules(vec![checked("p", r#"request.path == "/x""#)]);
    assert!(!r.reads_rate());
    for _ in 0..5 {
        assert_eq!(decide_from(&r, ip), RuleOutcome::Pass);
    }
    assert!(r.rate.get().is_none());
}
