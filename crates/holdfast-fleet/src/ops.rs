//! The operator's side (`holdfast rollout`): store a version and start its rollout, write
//! intents (pause, resume, abort), read the status and the history. The CLI only writes
//! intents and new rollouts; the controller holding the election does the rest.

use crate::error::{decode, encode, FleetError};
use crate::layout::Layout;
use crate::record::{
    HistoryEntry, InstanceReport, Intent, Phase, RolloutRecord, RolloutState, VersionRecord,
};
use crate::rollout::RolloutDefaults;
use crate::store::{Compare, FleetStore, TxnOp};
use std::collections::{BTreeMap, BTreeSet};

/// What `rollout start` asks for; `None` takes the controller-independent default.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub stages: Option<Vec<crate::stages::RolloutStage>>,
    pub bake_ms: Option<u64>,
    pub fast: bool,
    pub min_requests: Option<u64>,
    pub margins: Option<crate::gate::Margins>,
}

/// A new version: its configuration text, artifacts (path as written -> bytes) and source.
pub struct NewVersion {
    pub config: String,
    pub artifacts: BTreeMap<String, Vec<u8>>,
    pub source: String,
}

/// SHA-256 of bytes, lower-case hex (the caller's digest function: this crate has no hasher).
pub type Digest = fn(&[u8]) -> String;

fn record_for(
    version: u64,
    previous: Option<u64>,
    options: &StartOptions,
    defaults: &RolloutDefaults,
    now_ms: u64,
) -> RolloutRecord {
    let bake_ms = options.bake_ms.unwrap_or(if options.fast {
        defaults.fast_bake_ms
    } else {
        defaults.bake_ms
    });
    RolloutRecord {
        version,
        previous,
        state: RolloutState::Rolling,
        stages: options
            .stages
            .clone()
            .unwrap_or_else(|| defaults.stages.clone()),
        stage: 0,
        phase: Phase::Pending,
        bake_ms,
        min_requests: options.min_requests.unwrap_or(defaults.min_requests),
        data_wait_ms: defaults.data_wait_ms.max(bake_ms),
        margins: options.margins.unwrap_or(defaults.margins),
        fast: options.fast,
        taken: BTreeSet::new(),
        reason: String::new(),
        gate: None,
        rejected: None,
        started_ms: now_ms,
        updated_ms: now_ms,
    }
}

async fn read_u64(store: &dyn FleetStore, key: &str) -> Result<Option<u64>, FleetError> {
    match store.get(key).await? {
        Some(kv) => Ok(Some(decode(key, &kv.value)?)),
        None => Ok(None),
    }
}

/// The rollout record and its revision (0 when there is none).
async fn rollout(
    store: &dyn FleetStore,
    layout: &Layout,
) -> Result<(Option<RolloutRecord>, i64), FleetError> {
    let key = layout.rollout();
    match store.get(&key).await? {
        Some(kv) => Ok((Some(decode(&key, &kv.value)?), kv.mod_revision)),
        None => Ok((None, 0)),
    }
}

fn refuse_if_running(record: Option<&RolloutRecord>) -> Result<(), FleetError> {
    match record {
        Some(r) if !r.state.finished() => Err(FleetError::Refused(format!(
            "version {} is being rolled out ({}, stage {}): wait for it, or `holdfast rollout abort` it first",
            r.version,
            r.state.label(),
            r.stage_label()
        ))),
        _ => Ok(()),
    }
}

/// Store a new version (its blobs first) and start rolling it out. Returns its number.
pub async fn start(
    store: &dyn FleetStore,
    layout: &Layout,
    version: NewVersion,
    digest: Digest,
    options: &StartOptions,
    defaults: &RolloutDefaults,
    now_ms: u64,
) -> Result<u64, FleetError> {
    let (running, revision) = rollout(store, layout).await?;
    refuse_if_running(running.as_ref())?;
    let number = store
        .get_prefix(&layout.versions())
        .await?
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let mut artifacts = BTreeMap::new();
    for (path, bytes) in version.artifacts {
        let sha = digest(&bytes);
        // Content-addressed: writing the same blob twice is harmless.
        store.put(&layout.blob(&sha), bytes, None).await?;
        artifacts.insert(path, sha);
    }
    let record = VersionRecord {
        number,
        config: version.config,
        artifacts,
        source: version.source,
        created_ms: now_ms,
    };
    let previous = read_u64(store, &layout.current()).await?;
    let rollout = record_for(number, previous, options, defaults, now_ms);
    let when = vec![
        Compare::ModRevision(layout.rollout(), revision),
        Compare::ModRevision(layout.version(number), 0),
    ];
    let then = vec![
        TxnOp::Put(layout.version(number), encode(&record)),
        TxnOp::Put(layout.rollout(), encode(&rollout)),
        TxnOp::Delete(layout.intent()),
        TxnOp::DeletePrefix(layout.targets()),
    ];
    if !store.txn(when, then).await? {
        return Err(FleetError::Conflict(layout.rollout()));
    }
    Ok(number)
}

/// `rollback --to VERSION`: a staged rollout of a version stored before.
pub async fn rollback_to(
    store: &dyn FleetStore,
    layout: &Layout,
    number: u64,
    options: &StartOptions,
    defaults: &RolloutDefaults,
    now_ms: u64,
) -> Result<(), FleetError> {
    let (running, revision) = rollout(store, layout).await?;
    refuse_if_running(running.as_ref())?;
    if store.get(&layout.version(number)).await?.is_none() {
        return Err(FleetError::Refused(format!(
            "--to {number}: no such version (see `holdfast rollout history`)"
        )));
    }
    let previous = read_u64(store, &layout.current()).await?;
    if previous == Some(number) {
        return Err(FleetError::Refused(format!(
            "--to {number}: the fleet already runs version {number}"
        )));
    }
    let rollout = record_for(number, previous, options, defaults, now_ms);
    let when = vec![Compare::ModRevision(layout.rollout(), revision)];
    let then = vec![
        TxnOp::Put(layout.rollout(), encode(&rollout)),
        TxnOp::Delete(layout.intent()),
        TxnOp::DeletePrefix(layout.targets()),
    ];
    if !store.txn(when, then).await? {
        return Err(FleetError::Conflict(layout.rollout()));
    }
    Ok(())
}

/// Ask the controller to pause, resume or abort the rollout in progress.
pub async fn intent(
    store: &dyn FleetStore,
    layout: &Layout,
    intent: Intent,
) -> Result<RolloutRecord, FleetError> {
    let (record, _) = rollout(store, layout).await?;
    let Some(record) = record else {
        return Err(FleetError::Refused("no rollout has been started".into()));
    };
    let fits = match intent {
        Intent::Pause => record.state == RolloutState::Rolling,
        Intent::Resume => record.state == RolloutState::Paused,
        Intent::Abort => !record.state.finished(),
    };
    if !fits {
        return Err(FleetError::Refused(format!(
            "the rollout of version {} is {}: nothing to {}",
            record.version,
            record.state.label(),
            match intent {
                Intent::Pause => "pause",
                Intent::Resume => "resume",
                Intent::Abort => "abort",
            }
        )));
    }
    store.put(&layout.intent(), encode(&intent), None).await?;
    Ok(record)
}

/// The fleet as `rollout status` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    pub rollout: Option<RolloutRecord>,
    pub current: Option<u64>,
    pub instances: BTreeMap<String, InstanceReport>,
    /// Per-instance targets (instance -> version) while a rollout is in progress.
    pub targets: BTreeMap<String, u64>,
    pub leader: Option<String>,
}

pub async fn status(store: &dyn FleetStore, layout: &Layout) -> Result<Status, FleetError> {
    let (rollout, _) = rollout(store, layout).await?;
    let current = read_u64(store, &layout.current()).await?;
    let instances = crate::driver::instances(store, layout).await?;
    let mut targets = BTreeMap::new();
    for kv in store.get_prefix(&layout.targets()).await? {
        if let Some(id) = layout.id_in(&kv.key) {
            targets.insert(id.to_string(), decode(&kv.key, &kv.value)?);
        }
    }
    let leader = store.leader(&layout.election()).await?;
    Ok(Status {
        rollout,
        current,
        instances,
        targets,
        leader,
    })
}

pub async fn history(
    store: &dyn FleetStore,
    layout: &Layout,
) -> Result<Vec<HistoryEntry>, FleetError> {
    let mut out = Vec::new();
    for kv in store.get_prefix(&layout.histories()).await? {
        out.push(decode(&kv.key, &kv.value)?);
    }
    Ok(out)
}

/// A stored version and its artifacts' bytes (path as written -> bytes).
pub async fn fetch_version(
    store: &dyn FleetStore,
    layout: &Layout,
    number: u64,
) -> Result<(VersionRecord, BTreeMap<String, Vec<u8>>), FleetError> {
    let key = layout.version(number);
    let Some(kv) = store.get(&key).await? else {
        return Err(FleetError::Refused(format!("{key}: no such version")));
    };
    let record: VersionRecord = decode(&key, &kv.value)?;
    let mut blobs = BTreeMap::new();
    for (path, sha) in &record.artifacts {
        let blob = layout.blob(sha);
        let Some(kv) = store.get(&blob).await? else {
            return Err(FleetError::Refused(format!(
                "{blob}: the artifact {path:?} of version {number} is missing"
            )));
        };
        blobs.insert(path.clone(), kv.value);
    }
    Ok((record, blobs))
}

/// The rollout defaults the elected controller published (`[fleet.rollout]`), else the
/// built-in ones.
pub async fn defaults(
    store: &dyn FleetStore,
    layout: &Layout,
) -> Result<RolloutDefaults, FleetError> {
    match store.get(&layout.defaults()).await? {
        Some(kv) => decode(&layout.defaults(), &kv.value),
        None => Ok(RolloutDefaults::default()),
    }
}

/// The version an instance should run: its target if it has one, else `current`.
pub async fn wanted_version(
    store: &dyn FleetStore,
    layout: &Layout,
    id: &str,
) -> Result<Option<u64>, FleetError> {
    if let Some(v) = read_u64(store, &layout.target(id)).await? {
        return Ok(Some(v));
    }
    read_u64(store, &layout.current()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    fn fake_digest(b: &[u8]) -> String {
        format!("len{}", b.len())
    }

    fn version(text: &str) -> NewVersion {
        NewVersion {
            config: text.into(),
            artifacts: BTreeMap::from([("rules.txt".to_string(), b"abc".to_vec())]),
            source: "edge.toml".into(),
        }
    }

    #[tokio::test]
    async fn start_numbers_versions_and_refuses_a_second_while_one_rolls() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        let d = RolloutDefaults::default();
        let o = StartOptions::default();
        let n = start(&store, &layout, version("a"), fake_digest, &o, &d, 0).await;
        assert_eq!(n.ok(), Some(1));
        let before = store.dump();
        let second = start(&store, &layout, version("b"), fake_digest, &o, &d, 0).await;
        let Err(FleetError::Refused(msg)) = second else {
            unreachable!("a second start was not refused: {second:?}")
        };
        assert!(msg.contains("version 1 is being rolled out"), "{msg}");
        assert_eq!(store.dump(), before);
        let (v, blobs) = fetch_version(&store, &layout, 1)
            .await
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            v.artifacts.get("rules.txt").map(String::as_str),
            Some("len3")
        );
        assert_eq!(blobs.get("rules.txt").map(Vec::as_slice), Some(&b"abc"[..]));
    }

    #[tokio::test]
    async fn start_with_etcd_down_fails_and_writes_nothing() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        for n in 0..4 {
            store.fail_after(n);
            let r = start(
                &store,
                &layout,
                version("a"),
                fake_digest,
                &StartOptions::default(),
                &RolloutDefaults::default(),
                0,
            )
            .await;
            assert!(matches!(r, Err(FleetError::Store(_))), "{r:?}");
            store.heal();
            assert!(store.get(&layout.rollout()).await.ok().flatten().is_none());
        }
    }

    #[tokio::test]
    async fn intents_fit_the_state() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        assert!(matches!(
            intent(&store, &layout, Intent::Pause).await,
            Err(FleetError::Refused(_))
        ));
        let _ = start(
            &store,
            &layout,
            version("a"),
            fake_digest,
            &StartOptions::default(),
            &RolloutDefaults::default(),
            0,
        )
        .await;
        let resume = intent(&store, &layout, Intent::Resume).await;
        assert!(
            matches!(&resume, Err(FleetError::Refused(m)) if m.contains("nothing to resume")),
            "{resume:?}"
        );
        assert!(intent(&store, &layout, Intent::Abort).await.is_ok());
        assert!(store.get(&layout.intent()).await.ok().flatten().is_some());
    }

    #[tokio::test]
    async fn the_fast_lane_keeps_the_stages_and_bakes_in_seconds() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        let d = RolloutDefaults::default();
        let fast = StartOptions {
            fast: true,
            ..StartOptions::default()
        };
        let n = start(&store, &layout, version("a"), fake_digest, &fast, &d, 0).await;
        assert_eq!(n.ok(), Some(1));
        let (r, _) = rollout(&store, &layout).await.unwrap_or((None, 0));
        let r = r.unwrap_or_else(|| unreachable!("no rollout record"));
        assert_eq!((r.bake_ms, r.fast), (10_000, true));
        assert_eq!(r.stages, d.stages, "no everywhere-at-once: the same stages");
    }

    #[tokio::test]
    async fn rollback_to_needs_a_stored_version() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        let r = rollback_to(
            &store,
            &layout,
            9,
            &StartOptions::default(),
            &RolloutDefaults::default(),
            0,
        )
        .await;
        assert!(
            matches!(&r, Err(FleetError::Refused(m)) if m.contains("no such version")),
            "{r:?}"
        );
    }
}
