//! `[fleet]` and `[fleet.rollout]`: etcd endpoints, the key prefix, this instance's id and
//! group, heartbeat and lease, and the defaults of the rollouts its controller runs.

use super::Errors;
use crate::config::{Fleet, FleetRollout};
use crate::spec::{FleetRolloutSpec, FleetSpec};
use std::time::Duration;

const DEFAULT_PREFIX: &str = "/holdfast";
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_STAGES: &str = "canary,10%,50%,100%";
const DEFAULT_BAKE: Duration = Duration::from_secs(60);
const DEFAULT_FAST_BAKE: Duration = Duration::from_secs(10);
const DEFAULT_MIN_REQUESTS: u64 = 100;
const DEFAULT_DATA_WAIT: Duration = Duration::from_secs(300);
const DEFAULT_ABS_MARGIN: f64 = 0.01;
const DEFAULT_REL_MARGIN: f64 = 0.5;

pub(super) fn fleet(
    spec: Option<&FleetSpec>,
    state_dir: Option<&str>,
    errs: &mut Errors,
) -> Option<Fleet> {
    let spec = spec?;
    if spec.etcd.is_empty() {
        errs.add(
            "fleet.etcd",
            "no etcd endpoint",
            "list at least one, e.g. etcd = [\"http://127.0.0.1:2379\"]",
        );
    }
    for (i, e) in spec.etcd.iter().enumerate() {
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 10 {
            errs.add(
                format!("fleet.etcd[{i}]"),
                format!("{e:?} is not an endpoint URL"),
                "write it as \"http://HOST:PORT\"",
            );
        }
    }
    if state_dir.is_none_or(str::is_empty) {
        errs.add("edge.state_dir", "required with [fleet]", "name a folder where fleet versions and their artifacts are kept, e.g. \"/var/lib/holdfast\"");
    }
    let prefix = spec
        .prefix
        .as_deref()
        .unwrap_or(DEFAULT_PREFIX)
        .trim_end_matches('/');
    if !prefix.starts_with('/') || prefix.len() < 2 {
        errs.add(
            "fleet.prefix",
            format!("{prefix:?} is not a key prefix"),
            "write an absolute key such as \"/holdfast\"",
        );
    }
    for (key, value) in [
        ("fleet.instance", &spec.instance),
        ("fleet.group", &spec.group),
    ] {
        if let Some(v) = value {
            if !is_name(v) {
                errs.add(
                    key,
                    format!("{v:?} is not a valid name"),
                    "use letters, digits, '.', '-' and '_' only",
                );
            }
        }
    }
    let heartbeat = positive("fleet.heartbeat", spec.heartbeat, DEFAULT_HEARTBEAT, errs);
    let lease_ttl = spec.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
    if lease_ttl < Duration::from_secs(2) || lease_ttl < heartbeat * 2 {
        errs.add("fleet.lease_ttl", format!("{lease_ttl:?} is too short"), "use at least 2s and at least twice fleet.heartbeat (etcd counts leases in whole seconds)");
    }
    Some(Fleet {
        etcd: spec.etcd.clone(),
        prefix: prefix.to_string(),
        instance: spec.instance.clone(),
        group: spec.group.clone(),
        heartbeat,
        lease_ttl,
        rollout: rollout(spec.rollout.as_ref(), errs),
    })
}

fn is_name(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn positive(path: &str, d: Option<Duration>, default: Duration, errs: &mut Errors) -> Duration {
    super::positive(path, d, default, errs)
}

/// Group names or `N%` (1 to 100), the last one `100%`.
pub(crate) fn stages(text: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    for p in &parts {
        let ok = match p.strip_suffix('%') {
            Some(n) => n.parse::<u8>().is_ok_and(|n| (1..=100).contains(&n)),
            None => is_name(p),
        };
        if !ok {
            return Err(format!(
                "{p:?} is neither a group name nor a percentage from 1% to 100%"
            ));
        }
    }
    if parts.last().map(String::as_str) != Some("100%") {
        return Err("the last stage must be 100%".into());
    }
    Ok(parts)
}

fn rollout(spec: Option<&FleetRolloutSpec>, errs: &mut Errors) -> FleetRollout {
    let stages_text = spec
        .and_then(|s| s.stages.as_deref())
        .unwrap_or(DEFAULT_STAGES);
    let stages = stages(stages_text).unwrap_or_else(|e| {
        errs.add(
            "fleet.rollout.stages",
            e,
            "write e.g. \"canary,10%,50%,100%\"",
        );
        Vec::new()
    });
    let bake = positive(
        "fleet.rollout.bake",
        spec.and_then(|s| s.bake),
        DEFAULT_BAKE,
        errs,
    );
    let fast_bake = positive(
        "fleet.rollout.fast_bake",
        spec.and_then(|s| s.fast_bake),
        DEFAULT_FAST_BAKE,
        errs,
    );
    let data_wait = spec.and_then(|s| s.data_wait).unwrap_or(DEFAULT_DATA_WAIT);
    let min_requests = match spec.and_then(|s| s.min_requests) {
        None => DEFAULT_MIN_REQUESTS,
        Some(n) if n >= 1 => n.unsigned_abs(),
        Some(n) => {
            errs.add(
                "fleet.rollout.min_requests",
                format!("{n} is out of range"),
                "use 1 or more: the gate never passes on no data",
            );
            DEFAULT_MIN_REQUESTS
        }
    };
    let margin = |key: &str, v: Option<f64>, default: f64, max: f64, errs: &mut Errors| match v {
        None => default,
        Some(m) if m.is_finite() && (0.0..=max).contains(&m) => m,
        Some(m) => {
            errs.add(
                key,
                format!("{m} is out of range"),
                &format!("use 0 to {max}"),
            );
            default
        }
    };
    FleetRollout {
        stages,
        bake,
        fast_bake,
        min_requests,
        data_wait,
        abs_margin: margin(
            "fleet.rollout.abs_margin",
            spec.and_then(|s| s.abs_margin),
            DEFAULT_ABS_MARGIN,
            1.0,
            errs,
        ),
        rel_margin: margin(
            "fleet.rollout.rel_margin",
            spec.and_then(|s| s.rel_margin),
            DEFAULT_REL_MARGIN,
            100.0,
            errs,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = "[[pools]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\npool = \"a\"\n";

    fn errors(edge_and_fleet: &str) -> Vec<String> {
        match crate::parse(&format!("{edge_and_fleet}\n{BASE}"), Path::new("/")) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_apply() {
        let text = format!("[edge]\nlisten = [\"127.0.0.1:1\"]\nstate_dir = \"s\"\n[fleet]\netcd = [\"http://127.0.0.1:2379\"]\n{BASE}");
        let fleet = crate::parse(&text, Path::new("/"))
            .ok()
            .and_then(|c| c.fleet);
        let Some(fleet) = fleet else {
            unreachable!("no [fleet]")
        };
        assert_eq!(fleet.prefix, "/holdfast");
        assert_eq!(fleet.rollout.stages, vec!["canary", "10%", "50%", "100%"]);
        assert_eq!(fleet.rollout.min_requests, 100);
        assert_eq!(fleet.instance, None);
    }

    #[test]
    fn every_bad_key_is_reported_with_its_path() {
        let errs = errors(
            "[edge]\nlisten = [\"127.0.0.1:1\"]\n[fleet]\netcd = [\"127.0.0.1:2379\"]\nprefix = \"holdfast\"\ninstance = \"edge 1\"\nheartbeat = \"5s\"\nlease_ttl = \"6s\"\n[fleet.rollout]\nstages = \"canary,50%\"\nmin_requests = 0\nabs_margin = 2.0\n",
        );
        let paths: Vec<&str> = errs.iter().filter_map(|e| e.split(':').next()).collect();
        assert_eq!(
            paths,
            vec![
                "fleet.etcd[0]",
                "edge.state_dir",
                "fleet.prefix",
                "fleet.instance",
                "fleet.lease_ttl",
                "fleet.rollout.stages",
                "fleet.rollout.min_requests",
                "fleet.rollout.abs_margin"
            ],
            "{errs:#?}"
        );
    }
}
