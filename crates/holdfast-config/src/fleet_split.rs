//! The split between what each instance owns (its local file: `[fleet]`, `[admin]` and the
//! `[edge]` listeners, TLS and HTTP/3 listeners, `threads` and `state_dir`) and what the fleet's
//! versions own (everything else), and the merge of the two into the one configuration an
//! instance loads. Text in, text out: no I/O.

use crate::error::ConfigError;
use std::path::Path;

/// Key paths only an instance's local file may set.
pub const INSTANCE_OWNED: &[&str] = &[
    "admin",
    "fleet",
    "edge.listen",
    "edge.tls_listen",
    "edge.h3_listen",
    "edge.threads",
    "edge.state_dir",
];

/// The instance part `rollout start` checks a version with (no instance's listeners).
pub const CHECK_PLACEHOLDER: &str = "[edge]\nlisten = [\"127.0.0.1:0\"]\n";

/// The instance part a version with `[[edge.tls]]` or `[[edge.acme]]` is checked with: a TLS
/// listener and a `state_dir` too (each instance's own file must then have them, or it
/// rejects the version).
const CHECK_PLACEHOLDER_TLS: &str =
    "[edge]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n";

/// The instance part to check `version_text` with: `CHECK_PLACEHOLDER`, with a TLS listener
/// and a `state_dir` when the version has TLS sites.
pub fn check_placeholder(version_text: &str) -> &'static str {
    let tls = toml::from_str::<toml::Table>(version_text).is_ok_and(|t| {
        t.get("edge")
            .and_then(toml::Value::as_table)
            .is_some_and(|e| e.contains_key("tls") || e.contains_key("acme"))
    });
    if tls {
        CHECK_PLACEHOLDER_TLS
    } else {
        CHECK_PLACEHOLDER
    }
}

/// Whether an instance's local file has a TLS listener (before its first fleet version it
/// then needs a placeholder certificate, which the binary makes).
pub fn has_tls_listener(local_text: &str) -> bool {
    toml::from_str::<toml::Table>(local_text).is_ok_and(|t| {
        t.get("edge")
            .and_then(toml::Value::as_table)
            .and_then(|e| e.get("tls_listen"))
            .and_then(toml::Value::as_array)
            .is_some_and(|a| !a.is_empty())
    })
}

/// The `[edge]` keys an instance owns.
const EDGE_OWNED: &[&str] = &["listen", "tls_listen", "h3_listen", "threads", "state_dir"];

fn table(text: &str, what: &str) -> Result<toml::Table, Vec<ConfigError>> {
    toml::from_str::<toml::Table>(text).map_err(|e| {
        vec![ConfigError::new(
            "(document)",
            format!("{what}: TOML syntax error: {}", e.message().trim()),
            "fix the TOML syntax (`holdfast check` shows the position)",
        )]
    })
}

/// Whether a local file makes its instance a fleet member (it has a `[fleet]` table); a
/// file that is not TOML is not one (its errors are reported as usual).
pub fn is_fleet_member(local_text: &str) -> bool {
    toml::from_str::<toml::Table>(local_text).is_ok_and(|t| t.contains_key("fleet"))
}

/// Every instance-owned key a fleet version sets, each as an error at its key path.
pub fn version_violations(version_text: &str) -> Vec<ConfigError> {
    let t = match table(version_text, "fleet version") {
        Ok(t) => t,
        Err(e) => return e,
    };
    let edge = t.get("edge").and_then(toml::Value::as_table);
    INSTANCE_OWNED
        .iter()
        .filter(|path| match path.strip_prefix("edge.") {
            Some(key) => edge.is_some_and(|e| e.contains_key(key)),
            None => t.contains_key(**path),
        })
        .map(|path| {
            ConfigError::new(
                *path,
                "belongs to each instance, not to the fleet's versions",
                "remove it from the version; set it in each instance's local file",
            )
        })
        .collect()
}

/// Every fleet-owned key in the local file of an instance that has `[fleet]`: the fleet's
/// versions set those, so the local file may not.
pub fn local_violations(local_text: &str) -> Vec<ConfigError> {
    let t = match table(local_text, "local file") {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mut errors = Vec::new();
    for (key, value) in &t {
        if key == "edge" {
            for k in value.as_table().into_iter().flat_map(|e| e.keys()) {
                if !EDGE_OWNED.contains(&k.as_str()) {
                    errors.push(owned_by_fleet(&format!("edge.{k}")));
                }
            }
        } else if key != "admin" && key != "fleet" {
            errors.push(owned_by_fleet(key));
        }
    }
    errors
}

fn owned_by_fleet(path: &str) -> ConfigError {
    ConfigError::new(
        path,
        "belongs to the fleet's versions when [fleet] is set",
        "move it into the file given to `holdfast rollout start`",
    )
}

/// The instance-owned tables and keys of `local_text`, with `edge.state_dir` made absolute
/// (the merged file lives elsewhere).
fn instance_part(local_text: &str, local_base: &Path) -> Result<toml::Table, Vec<ConfigError>> {
    let local = table(local_text, "local file")?;
    let mut out = toml::Table::new();
    for key in ["admin", "fleet"] {
        if let Some(v) = local.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    let mut edge = toml::Table::new();
    if let Some(local_edge) = local.get("edge").and_then(toml::Value::as_table) {
        for key in EDGE_OWNED {
            if let Some(v) = local_edge.get(*key) {
                edge.insert((*key).to_string(), v.clone());
            }
        }
        if let Some(dir) = local_edge.get("state_dir").and_then(toml::Value::as_str) {
            let abs = local_base.join(dir).to_string_lossy().into_owned();
            edge.insert("state_dir".into(), toml::Value::String(abs));
        }
    }
    out.insert("edge".into(), toml::Value::Table(edge));
    Ok(out)
}

/// The configuration an instance loads for a fleet version: the version's tables, with the
/// instance-owned keys of the local file. A version that sets an instance-owned key is
/// refused with its key paths.
pub fn merge_fleet_version(
    local_text: &str,
    local_base: &Path,
    version_text: &str,
) -> Result<String, Vec<ConfigError>> {
    let violations = version_violations(version_text);
    if !violations.is_empty() {
        return Err(violations);
    }
    let mut merged = table(version_text, "fleet version")?;
    let instance = instance_part(local_text, local_base)?;
    for (key, value) in instance {
        match (key.as_str(), value) {
            ("edge", toml::Value::Table(owned)) => {
                let edge = merged
                    .entry("edge")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let Some(edge) = edge.as_table_mut() {
                    edge.extend(owned);
                }
            }
            (_, value) => {
                merged.insert(key, value);
            }
        }
    }
    toml::to_string(&merged).map_err(|e| {
        vec![ConfigError::new(
            "(document)",
            format!("cannot write the merged configuration: {e}"),
            "",
        )]
    })
}

/// What an instance of a fleet serves before its first version: its own listeners, and one
/// rule answering every request 503 (an edge page naming the rule, which says why).
pub fn no_version_yet(local_text: &str, local_base: &Path) -> Result<String, Vec<ConfigError>> {
    // The pool is never contacted: the rule answers first. No access log: every line would
    // say the same (holdfast_http_requests_total counts them).
    const WAITING: &str = r#"
[edge]
access_log = "off"

[[pools]]
name = "none-yet"
servers = ["127.0.0.1:9"]

[[routes]]
name = "no-configuration-yet"
match = { path_prefix = "/" }
pool = "none-yet"

[[rules]]
id = "fleet-has-sent-no-configuration-yet"
expr = "true"
action = "block"
status = 503
"#;
    merge_fleet_version(local_text, local_base, WAITING)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = r#"
[fleet]
etcd = ["http://127.0.0.1:2379"]
instance = "edge-1"

[edge]
listen = ["127.0.0.1:8080"]
state_dir = "state"

[admin]
listen = "127.0.0.1:9901"
"#;

    #[test]
    fn a_version_that_sets_instance_owned_keys_is_refused_with_each_path() {
        let errors = version_violations(
            "[edge]\nlisten = [\"0.0.0.0:80\"]\nh2c = true\n[admin]\nlisten = \"0.0.0.0:1\"\n",
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["admin", "edge.listen"]);
        assert!(
            merge_fleet_version(LOCAL, Path::new("/etc/holdfast"), "[fleet]\netcd = []\n").is_err()
        );
    }

    #[test]
    fn a_local_file_with_fleet_owned_keys_is_refused() {
        let errors = local_violations(&format!("{LOCAL}\n[[pools]]\nname = \"a\"\nservers = []\n"));
        assert_eq!(
            errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            vec!["pools"]
        );
        assert!(local_violations(LOCAL).is_empty());
    }

    #[test]
    fn the_merge_takes_listeners_from_the_instance_and_the_rest_from_the_version() {
        let version = "[edge]\nh2c = true\n\n[[pools]]\nname = \"app\"\nservers = [\"127.0.0.1:9000\"]\n\n[[routes]]\nname = \"all\"\nmatch = { path_prefix = \"/\" }\npools = [\"app\"]\n";
        let merged =
            merge_fleet_version(LOCAL, Path::new("/etc/holdfast"), version).unwrap_or_default();
        let config = crate::parse(&merged, Path::new("/var/lib/x"));
        let config = config
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| unreachable!("{e}\n{merged}"));
        assert_eq!(config.edge.listen.len(), 1);
        assert!(config.edge.h2c);
        assert_eq!(
            config.edge.state_dir.as_deref(),
            Some(Path::new("/etc/holdfast/state"))
        );
        assert_eq!(
            config.fleet.and_then(|f| f.instance).as_deref(),
            Some("edge-1")
        );
        assert_eq!(config.pools.len(), 1);
    }

    #[test]
    fn the_no_version_config_parses() {
        let text = no_version_yet(LOCAL, Path::new("/etc/holdfast")).unwrap_or_default();
        let parsed = crate::parse(&text, Path::new("/"));
        assert!(parsed.is_ok(), "{parsed:?}\n{text}");
    }
}
