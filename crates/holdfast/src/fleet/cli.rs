//! `holdfast rollout`: the operator's commands. `start` checks a version offline exactly as
//! `holdfast check` does (artifacts included) and refuses an invalid one without touching
//! etcd; then it stores the version and its artifacts and starts the rollout. The other
//! commands read the fleet's state or write intents for the elected controller.

use holdfast_config::Config;
use holdfast_fleet::ops::{self, NewVersion, StartOptions};
use holdfast_fleet::{EtcdStore, HistoryEntry, Intent, Layout, RolloutState};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Largest artifact a version may carry (etcd's default request limit is 1.5 MiB).
const MAX_ARTIFACT_BYTES: u64 = 1 << 20;

#[derive(clap::Args)]
pub struct RolloutArgs {
    /// etcd endpoints (`http://host:port`; repeat the flag or separate with commas).
    #[arg(long, required = true, value_delimiter = ',', value_name = "URL")]
    pub etcd: Vec<String>,
    /// The fleet's key prefix (`[fleet] prefix` of its instances).
    #[arg(long, default_value = "/holdfast", value_name = "PREFIX")]
    pub prefix: String,
    #[command(subcommand)]
    pub action: RolloutAction,
}

/// Settings of one rollout; unset ones come from the controller's `[fleet.rollout]`.
#[derive(clap::Args, Clone, Default)]
pub struct RolloutFlags {
    /// Stages: group names and percentages of the instances not yet on the version.
    #[arg(long, value_name = "LIST")]
    pub stages: Option<String>,
    /// How long each stage runs before the gate judges it.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub bake: Option<Duration>,
    /// Fast lane (kill switches, an urgent rule): the same stages, bake in seconds.
    #[arg(long)]
    pub fast: bool,
    /// Requests the stage's instances must answer in the bake for the gate to judge.
    #[arg(long, value_name = "N")]
    pub min_requests: Option<u64>,
    /// Gate: how far above the baseline a rate may go, in rate units (0.01 = 1 point).
    #[arg(long, value_name = "RATE")]
    pub abs_margin: Option<f64>,
    /// Gate: how far above the baseline a rate may go, as a fraction of it (0.5 = 50%).
    #[arg(long, value_name = "FRACTION")]
    pub rel_margin: Option<f64>,
}

#[derive(clap::Subcommand)]
pub enum RolloutAction {
    /// Check FILE offline, store it as a new version and roll it out; prints its number.
    Start {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        flags: RolloutFlags,
    },
    /// The rollout in progress (or the last one) and every instance.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Wait for the rollout to end: exit 0 when done, 3 when rolled back or failed, 2 on timeout.
    Wait {
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        timeout: Duration,
    },
    /// Hold the rollout where it is.
    Pause,
    /// Continue a paused rollout (its bake starts over).
    Resume,
    /// Roll back now: every instance that took the version returns to the previous one.
    Abort,
    /// Finished rollouts.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Roll out an earlier version again (a staged rollout like any other).
    Rollback {
        #[arg(long, value_name = "VERSION")]
        to: u64,
        #[command(flatten)]
        flags: RolloutFlags,
    },
}

/// Run one `holdfast rollout` command.
pub fn run(args: RolloutArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("holdfast rollout: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run_async(args))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("holdfast rollout: {message}");
    ExitCode::FAILURE
}

async fn run_async(args: RolloutArgs) -> ExitCode {
    let layout = Layout::new(&args.prefix);
    // `start` checks the version before anything touches etcd.
    let prepared = match &args.action {
        RolloutAction::Start { file, .. } => match prepare_version(file) {
            Ok(v) => Some(v),
            Err(errors) => {
                for e in errors {
                    println!("{e}");
                }
                eprintln!(
                    "holdfast rollout: {}: invalid; nothing was sent to the fleet",
                    file.display()
                );
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let store = match EtcdStore::connect(&args.etcd, Duration::from_secs(5)).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let store = &store;
    match args.action {
        RolloutAction::Start { flags, .. } => {
            let Some(version) = prepared else {
                return fail("internal: no version prepared");
            };
            let options = match start_options(&flags) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            let defaults = match ops::defaults(store, &layout).await {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            match ops::start(
                store,
                &layout,
                version,
                holdfast_artifact::sha256_hex,
                &options,
                &defaults,
                super::now_ms(),
            )
            .await
            {
                Ok(n) => {
                    println!("{n}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        RolloutAction::Rollback { to, flags } => {
            let options = match start_options(&flags) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            let defaults = match ops::defaults(store, &layout).await {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            match ops::rollback_to(store, &layout, to, &options, &defaults, super::now_ms()).await {
                Ok(()) => {
                    println!("{to}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        RolloutAction::Status { json } => match ops::status(store, &layout).await {
            Ok(s) => {
                if json {
                    println!("{}", status_json(&s));
                } else {
                    print!("{}", status_text(&s));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        RolloutAction::Wait { timeout } => wait(store, &layout, timeout).await,
        RolloutAction::Pause => intent(store, &layout, Intent::Pause).await,
        RolloutAction::Resume => intent(store, &layout, Intent::Resume).await,
        RolloutAction::Abort => intent(store, &layout, Intent::Abort).await,
        RolloutAction::History { json } => match ops::history(store, &layout).await {
            Ok(h) => {
                if json {
                    println!(
                        "{}",
                        serde_json::Value::Array(h.iter().map(history_json).collect())
                    );
                } else {
                    for e in &h {
                        println!("{}", history_line(e));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

fn start_options(flags: &RolloutFlags) -> Result<StartOptions, String> {
    let stages = match &flags.stages {
        Some(text) => Some(holdfast_fleet::stages::parse(text).map_err(|e| format!("--{e}"))?),
        None => None,
    };
    if flags.bake.is_some_and(|b| b.is_zero()) {
        return Err("--bake: must be greater than zero".into());
    }
    let margins = match (flags.abs_margin, flags.rel_margin) {
        (None, None) => None,
        (abs, rel) => {
            let d = holdfast_fleet::gate::DEFAULT_MARGIN;
            let m = holdfast_fleet::Margin {
                abs: abs.unwrap_or(d.abs),
                rel: rel.unwrap_or(d.rel),
            };
            if !(m.abs.is_finite() && m.rel.is_finite() && m.abs >= 0.0 && m.rel >= 0.0) {
                return Err("--abs-margin, --rel-margin: must be 0 or more".into());
            }
            Some(holdfast_fleet::Margins::uniform(m))
        }
    };
    Ok(StartOptions {
        stages,
        bake_ms: flags
            .bake
            .map(|b| u64::try_from(b.as_millis()).unwrap_or(u64::MAX)),
        fast: flags.fast,
        min_requests: flags.min_requests,
        margins,
    })
}

async fn intent(store: &EtcdStore, layout: &Layout, intent: Intent) -> ExitCode {
    match ops::intent(store, layout, intent).await {
        Ok(r) => {
            println!(
                "version {}: {intent:?} asked; the controller applies it at its next tick",
                r.version
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn wait(store: &EtcdStore, layout: &Layout, timeout: Duration) -> ExitCode {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        match ops::status(store, layout).await {
            Ok(s) => match &s.rollout {
                None => return fail("no rollout has been started"),
                Some(r) if r.state == RolloutState::Done => {
                    println!("version {}: done", r.version);
                    return ExitCode::SUCCESS;
                }
                Some(r) if r.state.finished() => {
                    println!("version {}: {}: {}", r.version, r.state.label(), r.reason);
                    return ExitCode::from(3);
                }
                Some(_) => {}
            },
            Err(e) => eprintln!("holdfast rollout: {e} (still waiting)"),
        }
        if tokio::time::Instant::now() >= until {
            eprintln!(
                "holdfast rollout: wait: not finished within {}",
                humantime::format_duration(timeout)
            );
            return ExitCode::from(2);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn status_json(s: &ops::Status) -> serde_json::Value {
    let r = s.rollout.as_ref();
    let mut instances: Vec<serde_json::Value> = s
        .instances
        .values()
        .map(|i| {
            json!({
                "id": i.id,
                "group": i.group,
                "version": i.version,
                "alive": true,
                "rejected": r.is_some_and(|r| i.rejected.as_ref().is_some_and(|x| x.version == r.version)),
                "target": s.targets.get(&i.id).copied().or(s.current),
                "counters": i.counters,
            })
        })
        .collect();
    // Instances that took the rollout's version and are gone (lease expired).
    for id in r.iter().flat_map(|r| r.taken.iter()) {
        if !s.instances.contains_key(id) {
            instances.push(json!({
                "id": id,
                "group": null,
                "version": null,
                "alive": false,
                "rejected": false,
                "target": s.targets.get(id).copied().or(s.current),
                "counters": null,
            }));
        }
    }
    json!({
        "version": r.map(|r| r.version),
        "previous": r.and_then(|r| r.previous),
        "state": r.map(|r| r.state.label()),
        "stage": r.map(|r| r.stage_label()),
        "reason": r.map(|r| r.reason.clone()),
        "current": s.current,
        "fast": r.map(|r| r.fast),
        "stages": r.map(|r| r.stages.iter().map(holdfast_fleet::RolloutStage::label).collect::<Vec<_>>()),
        "bake_ms": r.map(|r| r.bake_ms),
        "gate": r.and_then(|r| r.gate.clone()),
        "rejected_errors": r.and_then(|r| r.rejected.clone()).map(|(id, errors)| json!({"instance": id, "errors": errors})),
        "controller": s.leader,
        "instances": instances,
    })
}

fn status_text(s: &ops::Status) -> String {
    let mut out = String::new();
    match &s.rollout {
        None => out.push_str("no rollout yet\n"),
        Some(r) => {
            out.push_str(&format!(
                "version {} (previous {}): {}, stage {}\n",
                r.version,
                r.previous.map_or_else(|| "none".into(), |p| p.to_string()),
                r.state.label(),
                r.stage_label()
            ));
            if !r.reason.is_empty() {
                out.push_str(&format!("reason: {}\n", r.reason));
            }
        }
    }
    out.push_str(&format!(
        "current: {}; controller: {}\n",
        s.current.map_or_else(|| "none".into(), |c| c.to_string()),
        s.leader.as_deref().unwrap_or("none")
    ));
    for i in s.instances.values() {
        out.push_str(&format!(
            "  {:<16} group {:<10} version {:<6} requests {}\n",
            i.id,
            i.group.as_deref().unwrap_or("-"),
            i.version.map_or_else(|| "none".into(), |v| v.to_string()),
            i.counters.requests
        ));
    }
    out
}

fn history_json(e: &HistoryEntry) -> serde_json::Value {
    json!({
        "version": e.version,
        "previous": e.previous,
        "result": e.result.label(),
        "reason": e.reason,
        "stages": e.stages,
        "started": rfc3339(e.started_ms),
        "finished": rfc3339(e.finished_ms),
    })
}

fn history_line(e: &HistoryEntry) -> String {
    format!(
        "{}  version {} (from {}): {}{}",
        rfc3339(e.finished_ms),
        e.version,
        e.previous.map_or_else(|| "none".into(), |p| p.to_string()),
        e.result.label(),
        if e.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", e.reason)
        }
    )
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Check a version file as `holdfast check` would (merged with a placeholder instance part)
/// and read every artifact it names; every problem as `FILE: ...`.
fn prepare_version(file: &Path) -> Result<NewVersion, Vec<String>> {
    let label = file.display().to_string();
    let read = holdfast_artifact::read_bounded_text(file, holdfast_config::MAX_CONFIG_BYTES)
        .map_err(|e| vec![format!("{label}: {e}")])?;
    let base = crate::controller::base_dir(file);
    let in_file = |errs: Vec<holdfast_config::ConfigError>| {
        errs.iter()
            .map(|e| format!("{label}: {e}"))
            .collect::<Vec<_>>()
    };
    let merged = holdfast_config::merge_fleet_version(
        holdfast_config::check_placeholder(&read.content),
        &base,
        &read.content,
    )
    .map_err(in_file)?;
    crate::check::check_text(&label, merged.clone(), &base)?;
    let config = holdfast_config::parse(&merged, &base).map_err(in_file)?;
    let mut errors = Vec::new();
    let mut artifacts = BTreeMap::new();
    for (key, path, kind) in artifact_paths(&config) {
        if let Some(kind) = kind {
            let key_text = config
                .modules
                .bot
                .as_ref()
                .and_then(|b| b.public_key.clone());
            let public_key = if kind == "bot-features" {
                key_text.as_deref()
            } else {
                None
            };
            if let Err(e) = crate::check::check_artifact(kind, &path, public_key) {
                errors.extend(e.into_iter().map(|e| format!("{label}: {key}: {e}")));
                continue;
            }
        }
        let Ok(rel) = path.strip_prefix(&base) else {
            errors.push(format!(
                "{label}: {key}: {} is outside the version's folder (a fleet version carries its artifacts by paths relative to its file)",
                path.display()
            ));
            continue;
        };
        match holdfast_artifact::read_bounded(&path, MAX_ARTIFACT_BYTES) {
            Ok(read) => {
                artifacts.insert(rel.to_string_lossy().into_owned(), read.content);
            }
            Err(e) => errors.push(format!("{label}: {key}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NewVersion {
        config: read.content,
        artifacts,
        source: label,
    })
}

/// Every file the configuration names: `(key path, resolved path, artifact kind to check)`.
fn artifact_paths(c: &Config) -> Vec<(String, PathBuf, Option<&'static str>)> {
    let mut out = Vec::new();
    for (i, t) in c.edge.tls.iter().enumerate() {
        out.push((format!("edge.tls[{i}].cert"), t.cert.clone(), None));
        out.push((format!("edge.tls[{i}].key"), t.key.clone(), None));
    }
    for (i, p) in c.pools.iter().enumerate() {
        if let Some(ca) = p.tls.as_ref().and_then(|t| t.ca_file.clone()) {
            out.push((format!("pools[{i}].tls.ca_file"), ca, None));
        }
    }
    for (i, r) in c.routes.iter().enumerate() {
        if let Some(f) = &r.fallback {
            out.push((format!("routes[{i}].fallback.file"), f.file.clone(), None));
        }
    }
    for (i, l) in c.ip_lists.iter().enumerate() {
        out.push((
            format!("ip_lists[{i}].file"),
            l.file.clone(),
            Some("ip-list"),
        ));
    }
    for (i, l) in c.rule_lists.iter().enumerate() {
        out.push((
            format!("rule_lists[{i}].file"),
            l.file.clone(),
            Some("rule-list"),
        ));
    }
    if let Some(bot) = &c.modules.bot {
        out.push((
            "modules.bot.features".into(),
            bot.features.clone(),
            Some("bot-features"),
        ));
        if bot.public_key.is_some() {
            let mut sig = bot.features.clone().into_os_string();
            sig.push(".sig");
            out.push((
                "modules.bot.features (.sig)".into(),
                PathBuf::from(sig),
                None,
            ));
        }
    }
    if let Some(keys) = &c.challenge.keys {
        out.push(("challenge.keys".into(), keys.clone(), None));
    }
    if let Some(dns) = &c.dns {
        for (i, z) in dns.zones.iter().enumerate() {
            out.push((format!("dns.zones[{i}].file"), z.file.clone(), None));
        }
    }
    out
}
