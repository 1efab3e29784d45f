//! Rule lists, an artifact kind (`holdfast check --kind rule-list`): rules shipped as a file
//! by a generator (a WAF rule feed, an incident's blocks), run after `[[rules]]`.
//!
//! ```json
//! {"version": 1732600000,
//!  "rules": [{"id": "cve-2025-1234", "expr": "request.path.contains(\"/cgi-bin/\")", "action": "block"},
//!            {"id": "tag-scanners", "expr": "request.headers[\"user-agent\"] == \"zgrab\"", "action": "log", "mode": "log"}]}
//! ```
//!
//! An entry has the keys of a `[[rules]]` entry except `routes` (a list's rules apply to every
//! route). Checks, in order: JSON syntax (`Parse`); shape — unknown or missing fields, wrong
//! types (`Schema`); more than [`MAX_RULES`] entries (`Capacity`); no entries (`Empty`);
//! `version` ≥ 1 (`Range`); then every entry as the config check does (`[[rules]]`): ids not
//! empty and unique (`Duplicate`), expressions that compile over the known variables and
//! functions, known actions, statuses, modes and headers (`Invalid`) — all problems listed,
//! not only the first. The host adds one more check before a swap: no id may be an id of
//! `[[rules]]` (`Duplicate`).

use holdfast_artifact::{parse_json, ArtifactKind, Reason, Rejection};
use serde::Deserialize;

/// Most rules one list may hold.
pub const MAX_RULES: usize = 10_000;

/// The rule-list kind.
pub struct RuleListKind;

/// A loaded list: its version and its rules, checked as `[[rules]]` are.
#[derive(Debug)]
pub struct LoadedRuleList {
    version: u64,
    pub rules: Vec<holdfast_config::Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleListJson {
    version: u64,
    rules: Vec<ListedRuleJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedRuleJson {
    id: String,
    expr: String,
    action: String,
    status: Option<i64>,
    mode: Option<String>,
    header: Option<String>,
    value: Option<String>,
}

impl ArtifactKind for RuleListKind {
    type Value = LoadedRuleList;
    const NAME: &'static str = "rule-list";
    const MAX_BYTES: u64 = 4 * 1024 * 1024;

    fn load(bytes: &[u8]) -> Result<LoadedRuleList, Rejection> {
        let spec: RuleListJson = parse_json(bytes)?;
        let version = spec.version;
        compile(spec).map_err(|r| r.with_version(version))
    }

    fn version(value: &LoadedRuleList) -> u64 {
        value.version
    }

    fn entries(value: &LoadedRuleList) -> usize {
        value.rules.len()
    }
}

fn compile(spec: RuleListJson) -> Result<LoadedRuleList, Rejection> {
    let n = spec.rules.len();
    if n > MAX_RULES {
        return Err(Rejection::new(
            Reason::Capacity,
            format!("rules: {n} entries, more than {MAX_RULES}; split the list"),
        ));
    }
    if n == 0 {
        return Err(Rejection::new(
            Reason::Empty,
            "rules: no entries; list at least one rule (or remove the [[rule_lists]] entry)",
        ));
    }
    if spec.version == 0 {
        return Err(Rejection::new(
            Reason::Range,
            "version: 0 is not a version; use 1 or more, higher than the active list's",
        ));
    }
    let specs: Vec<holdfast_config::RuleSpec> = spec
        .rules
        .into_iter()
        .map(|e| holdfast_config::RuleSpec {
            id: e.id,
            expr: e.expr,
            action: e.action,
            status: e.status,
            mode: e.mode,
            routes: None,
            header: e.header,
            value: e.value,
            route: None,
            limit: None,
            difficulty: None,
            nojs: None,
        })
        .collect();
    if let Some(e) = specs.iter().find(|e| e.action == "challenge") {
        return Err(Rejection::new(
            Reason::Invalid,
            format!(
                "rules: {:?}: action \"challenge\" is not available in a rule list (its \
                 difficulty and page come from the config); put it in [[rules]]",
                e.id
            ),
        ));
    }
    let rules = holdfast_config::rule_list_entries(&specs).map_err(|errs| {
        let duplicate = errs
            .iter()
            .any(|e| e.to_string().contains("duplicate rule id"));
        let detail = errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Rejection::new(
            if duplicate {
                Reason::Duplicate
            } else {
                Reason::Invalid
            },
            detail,
        )
    })?;
    Ok(LoadedRuleList {
        version: spec.version,
        rules,
    })
}

/// The host's check: no id of the list is an id of `[[rules]]`.
pub fn no_config_ids(list: &LoadedRuleList, config_ids: &[String]) -> Result<(), Rejection> {
    let clashes: Vec<String> = list
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| config_ids.contains(&r.id))
        .map(|(i, r)| format!("rules[{i}].id: {:?}", r.id))
        .collect();
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(Rejection::new(
            Reason::Duplicate,
            format!(
                "{} already a [[rules]] id in the config; rename the list's rule (ids label \
                 metrics and /status)",
                clashes.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn load(text: &str) -> Result<LoadedRuleList, Rejection> {
        RuleListKind::load(text.as_bytes())
    }

    #[test]
    fn a_good_list_loads() {
        let l = load(
            r#"{"version": 3, "rules": [
                {"id": "a", "expr": "request.path.startsWith(\"/a\")", "action": "block", "status": 451},
                {"id": "b", "expr": "true", "action": "log", "mode": "log"},
                {"id": "c", "expr": "true", "action": "set_header", "header": "x-c", "value": "1"}]}"#,
        )
        .unwrap();
        assert_eq!(RuleListKind::version(&l), 3);
        assert_eq!(l.rules.len(), 3);
        assert_eq!(
            l.rules[0].action,
            holdfast_config::RuleAction::Block { status: 451 }
        );
    }

    #[test]
    fn bad_lists_are_rejected_for_what_they_are() {
        let cases = [
            (r#"{"version": 1, "rules": ["#, Reason::Parse),
            (r#"{"version": 1, "rules": [], "extra": 1}"#, Reason::Schema),
            (
                r#"{"version": 1, "rules": [{"id": "a", "expr": "true", "action": "block", "routes": ["x"]}]}"#,
                Reason::Schema,
            ),
            (r#"{"version": 1, "rules": []}"#, Reason::Empty),
            (
                r#"{"version": 0, "rules": [{"id": "a", "expr": "true", "action": "log"}]}"#,
                Reason::Range,
            ),
            (
                r#"{"version": 1, "rules": [{"id": "a", "expr": "request.pth == 1", "action": "log"}]}"#,
                Reason::Invalid,
            ),
            (
                r#"{"version": 1, "rules": [{"id": "a", "expr": "true", "action": "deny"}]}"#,
                Reason::Invalid,
            ),
            (
                r#"{"version": 1, "rules": [{"id": "a", "expr": "true", "action": "log"}, {"id": "a", "expr": "false", "action": "log"}]}"#,
                Reason::Duplicate,
            ),
            (
                r#"{"version": 1, "rules": [{"id": "a", "expr": "true", "action": "challenge"}]}"#,
                Reason::Invalid,
            ),
        ];
        for (text, reason) in cases {
            let r = load(text).unwrap_err();
            assert_eq!(r.reason, reason, "{text}: {}", r.detail);
        }
        let r = load(r#"{"version": 1, "rules": [{"id": "a", "expr": "request.pth == 1", "action": "log"}, {"id": "b", "expr": "(", "action": "log"}]}"#).unwrap_err();
        assert!(
            r.detail.contains("rules[0].expr") && r.detail.contains("rules[1].expr"),
            "every problem is listed: {}",
            r.detail
        );
        let list =
            load(r#"{"version": 1, "rules": [{"id": "a", "expr": "true", "action": "log"}]}"#)
                .unwrap();
        let r = no_config_ids(&list, &["a".to_string()]).unwrap_err();
        assert_eq!(r.reason, Reason::Duplicate);
        assert!(no_config_ids(&list, &["b".to_string()]).is_ok());
    }
}
