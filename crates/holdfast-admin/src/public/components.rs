//! A component's state (operational, degraded, outage) from the `/status` document: the
//! routes, pools and steered names it is made of, each judged as the data path sees it.

use serde::Serialize;
use serde_json::Value;

/// What the public page says of a component (worst last, so `max` is the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    Operational,
    Degraded,
    Outage,
}

impl ComponentState {
    pub fn label(self) -> &'static str {
        match self {
            ComponentState::Operational => "Operational",
            ComponentState::Degraded => "Degraded",
            ComponentState::Outage => "Outage",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::Degraded => "degraded",
            ComponentState::Outage => "outage",
        }
    }
}

/// One component as shown and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentView {
    pub name: String,
    pub state: ComponentState,
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn named<'a>(v: &'a Value, key: &str, name: &str) -> Option<&'a Value> {
    list(v, key)
        .iter()
        .find(|x| x.get("name").and_then(Value::as_str) == Some(name))
}

/// A pool: operational while no server is failing, ejected or down; an outage when all are.
pub fn pool_state(status: &Value, pool: &str) -> ComponentState {
    let Some(p) = named(status, "pools", pool) else {
        return ComponentState::Outage;
    };
    let servers = list(p, "servers");
    let bad = servers
        .iter()
        .filter(|s| {
            matches!(
                s.get("health").and_then(Value::as_str),
                Some("failing" | "ejected" | "down")
            )
        })
        .count();
    match bad {
        0 => ComponentState::Operational,
        n if n == servers.len() => ComponentState::Outage,
        _ => ComponentState::Degraded,
    }
}

/// A route: an outage while it serves its fallback page (or its only pool is out), degraded
/// while failed over or while its active pool is degraded.
pub fn route_state(status: &Value, route: &str) -> ComponentState {
    let Some(r) = named(status, "routes", route) else {
        return ComponentState::Outage;
    };
    let active = r
        .get("active")
        .and_then(Value::as_str)
        .unwrap_or("fallback");
    if active == "fallback" {
        return ComponentState::Outage;
    }
    let first = list(r, "pools").first().and_then(Value::as_str);
    let chain = if first == Some(active) {
        ComponentState::Operational
    } else {
        ComponentState::Degraded
    };
    chain.max(pool_state(status, active))
}

/// A steered name: an outage while every target is down, degraded while one is unhealthy.
pub fn dns_state(status: &Value, name: &str) -> ComponentState {
    let Some(n) = status.get("dns").and_then(|d| named(d, "steered", name)) else {
        return ComponentState::Outage;
    };
    if n.get("all_down").and_then(Value::as_bool) == Some(true) {
        return ComponentState::Outage;
    }
    if list(n, "targets")
        .iter()
        .any(|t| t.get("healthy").and_then(Value::as_bool) == Some(false))
    {
        return ComponentState::Degraded;
    }
    ComponentState::Operational
}

/// Every configured component, judged now.
pub fn components(status: &Value, config: &[holdfast_config::Component]) -> Vec<ComponentView> {
    config
        .iter()
        .map(|c| {
            let state = c
                .routes
                .iter()
                .map(|r| route_state(status, r))
                .chain(c.pools.iter().map(|p| pool_state(status, p)))
                .chain(c.dns.iter().map(|n| dns_state(status, n)))
                .max()
                .unwrap_or(ComponentState::Operational);
            ComponentView {
                name: c.name.clone(),
                state,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(a: &str, b: &str, active: &str) -> Value {
        json!({
            "pools": [{"name": "p", "servers": [{"health": a}, {"health": b}]},
                      {"name": "q", "servers": [{"health": "up"}]}],
            "routes": [{"name": "all", "pools": ["p", "q"], "active": active}],
            "dns": {"steered": [{"name": "www.example.com.", "all_down": false,
                                 "targets": [{"healthy": true}, {"healthy": false}]}]}
        })
    }

    #[test]
    fn states_follow_the_data_path() {
        use ComponentState::*;
        assert_eq!(pool_state(&status("up", "unknown", "p"), "p"), Operational);
        assert_eq!(pool_state(&status("up", "failing", "p"), "p"), Degraded);
        assert_eq!(pool_state(&status("down", "ejected", "p"), "p"), Outage);
        assert_eq!(route_state(&status("up", "up", "p"), "all"), Operational);
        assert_eq!(route_state(&status("up", "failing", "p"), "all"), Degraded);
        assert_eq!(route_state(&status("down", "down", "q"), "all"), Degraded);
        assert_eq!(
            route_state(&status("down", "down", "fallback"), "all"),
            Outage
        );
        assert_eq!(route_state(&status("up", "up", "p"), "nope"), Outage);
        assert_eq!(
            dns_state(&status("up", "up", "p"), "www.example.com."),
            Degraded
        );
        let c = holdfast_config::Component {
            name: "Website".into(),
            routes: vec!["all".into()],
            pools: vec!["q".into()],
            dns: vec![],
        };
        let got = components(&status("up", "failing", "p"), &[c]);
        assert_eq!(got[0].state, Degraded);
    }
}
