//! `docs/config.md` stays true: every TOML example in it is accepted, and the sample error
//! output is exactly what the crate reports for the file it describes.

use crate::{accept, reject};
use holdfast_config::CheckKind;

const REFERENCE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"));

/// The bodies of the fenced blocks opened with "```{lang}", indentation removed.
fn blocks(lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in REFERENCE.lines() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None if trimmed == fence => current = Some(Vec::new()),
            None => {}
            Some(lines) if trimmed == "```" => {
                out.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(trimmed),
        }
    }
    assert!(
        current.is_none(),
        "unclosed ```{lang} block in docs/config.md"
    );
    out
}

#[test]
fn every_toml_example_is_accepted() {
    let examples = blocks("toml");
    assert_eq!(examples.len(), 2, "the complete and the smallest example");
    for example in &examples {
        accept(example);
    }
}

#[test]
fn complete_example_uses_every_table() {
    let config = accept(&blocks("toml")[0]);
    assert!(config
        .routes
        .iter()
        .any(|r| r.cache.as_ref().is_some_and(|c| !c.key.headers.is_empty())));
    assert!(!config.edge.tls.is_empty());
    assert!(config.pools.iter().any(|p| p.tls.is_some()));
    assert!(config.pools.iter().any(|p| p.host_header.is_some()));
    assert!(config
        .pools
        .iter()
        .any(|p| !p.retry.on.statuses.is_empty() && p.retry.attempts > 1));
    assert!(config
        .pools
        .iter()
        .any(|p| p.overload.is_some_and(|o| o.max_queued > 0)));
    assert!(config
        .pools
        .iter()
        .any(|p| p.outlier.consecutive_failures != 5 && p.outlier.max_ejection_percent > 0));
    assert!(config
        .pools
        .iter()
        .any(|p| matches!(p.balance, holdfast_config::Balance::Hash(_))));
    assert!(config
        .pools
        .iter()
        .any(|p| p.weights.iter().any(|w| *w > 1)));
    assert!(config.pools.iter().any(|p| p.max_connections.is_some()));
    assert!(config.pools.iter().any(|p| p.retry.buffer_body > 0));
    assert!(config
        .pools
        .iter()
        .any(|p| matches!(&p.health, Some(h) if matches!(h.kind, CheckKind::Http { .. }))));
    assert!(config
        .pools
        .iter()
        .any(|p| matches!(&p.health, Some(h) if h.kind == CheckKind::Tcp)));
    assert!(config.routes.iter().any(|r| r.timeouts.total.is_some()));
    // A failover chain across pools of two providers, ending in a fallback page.
    let failover = config
        .routes
        .iter()
        .find(|r| r.pools.len() >= 2)
        .expect("a route with a failover chain of two pools or more");
    let fallback = failover
        .fallback
        .as_ref()
        .expect("the failover route has a fallback");
    assert!(fallback.retry_after.is_some());
    let [first, second, ..] = failover.pools.as_slice() else {
        panic!("the failover chain has two pools: {:?}", failover.pools)
    };
    assert!(config.pools[*first].health.is_some());
    assert!(config.pools[*second].host_header.is_some());
    assert!(config.pools[*second]
        .tls
        .as_ref()
        .is_some_and(|t| t.sni.is_some()));
    assert!(
        config.routes.iter().any(|r| r.pools.len() == 1),
        "a route with a single `pool`"
    );
    assert!(config
        .routes
        .iter()
        .any(|r| !r.request_headers.is_empty() && !r.response_headers.is_empty()));
    // Bot scoring with a state folder for its last-known-good copy, every key written.
    assert!(config.edge.state_dir.is_some());
    let bot = config.modules.bot.as_ref().expect("a [modules.bot] table");
    assert!(bot.features.ends_with("bot-features.json"));
    assert_ne!(bot.fail_policy, holdfast_config::FailPolicy::Open);
    assert!(bot.public_key.is_some());
    assert_ne!(bot.max_shrink_percent, 50);
    assert_ne!(bot.breaker.min_requests, 20);
    // Rate limits: one per route with a burst, one shadow limit on a header.
    assert!(config
        .limits
        .iter()
        .any(|l| !l.routes.is_empty() && l.burst != l.requests));
    assert!(config
        .limits
        .iter()
        .any(|l| l.shadow && matches!(l.key, holdfast_config::LimitKey::Header(_))));
    // A global limit and the Redis it is counted in.
    assert!(config
        .limits
        .iter()
        .any(|l| l.scope == holdfast_config::LimitScope::Global));
    assert!(config.redis.is_some());
    // Rules: an allow scoped to a route, a block, a shadow block with its own status.
    assert!(config
        .rules
        .iter()
        .any(|r| r.action == holdfast_config::RuleAction::Allow && !r.routes.is_empty()));
    assert!(config
        .rules
        .iter()
        .any(|r| r.mode == holdfast_config::RuleMode::Log
            && r.action == holdfast_config::RuleAction::Block { status: 410 }));
}

#[test]
fn sample_error_output_is_real() {
    let [sample] = blocks("text").try_into().expect("one ```text block");
    let expected: String = sample
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("holdfast.toml: ").unwrap_or(l)))
        .collect();
    let actual = reject(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
colour = "blue"

[[pools]]
name = "app"
servers = ["127.0.0.1:9000"]

[[pools]]
name = "static"
servers = []

[[routes]]
name = "r"
match = {}
pool = "api"
timeouts = { connect = "0s" }
"#,
    );
    assert_eq!(actual, expected);
}
