//! The controller's tick: read the rollout record, the operator's intent and the live
//! instances from the store, let `rollout::advance` decide, and write the whole step (record,
//! targets, history, the intent consumed) in one compare-and-swap transaction on the record's
//! revision. A store error at any point leaves the stored state as it was.

use crate::error::{decode, encode, FleetError};
use crate::gate::Signal;
use crate::layout::Layout;
use crate::record::{HistoryEntry, InstanceReport, Intent, RolloutRecord};
use crate::rollout::{advance, Targets};
use crate::store::{Compare, FleetStore, TxnOp};
use std::collections::BTreeMap;

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub enum TickOutcome {
    /// No rollout record at all.
    Idle,
    /// Nothing to write (waiting for the bake, paused, or finished).
    Unchanged(RolloutRecord),
    /// The step was written.
    Wrote {
        record: RolloutRecord,
        /// The gate signal that ended the rollout.
        failed_signal: Option<Signal>,
        finished: Option<HistoryEntry>,
    },
}

/// Read every live instance's report (undecodable ones are skipped and logged).
pub async fn instances(
    store: &dyn FleetStore,
    layout: &Layout,
) -> Result<BTreeMap<String, InstanceReport>, FleetError> {
    let mut alive = BTreeMap::new();
    for kv in store.get_prefix(&layout.instances()).await? {
        match decode::<InstanceReport>(&kv.key, &kv.value) {
            Ok(report) => {
                alive.insert(report.id.clone(), report);
            }
            Err(e) => tracing::warn!(error = %e, "skipping an instance report"),
        }
    }
    Ok(alive)
}

/// One tick of the controller (call it only while holding the election).
pub async fn tick(
    store: &dyn FleetStore,
    layout: &Layout,
    now_ms: u64,
) -> Result<TickOutcome, FleetError> {
    let rollout_key = layout.rollout();
    let Some(stored) = store.get(&rollout_key).await? else {
        return Ok(TickOutcome::Idle);
    };
    let record: RolloutRecord = decode(&rollout_key, &stored.value)?;
    if record.state.finished() {
        return Ok(TickOutcome::Unchanged(record));
    }
    let intent_key = layout.intent();
    let intent_kv = store.get(&intent_key).await?;
    let intent = match &intent_kv {
        Some(kv) => match decode::<Intent>(&intent_key, &kv.value) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an undecodable intent");
                None
            }
        },
        None => None,
    };
    let alive = instances(store, layout).await?;
    let step = advance(&record, &alive, intent, now_ms);
    if !step.changed && intent_kv.is_none() {
        return Ok(TickOutcome::Unchanged(step.record));
    }
    let mut when = vec![Compare::ModRevision(
        rollout_key.clone(),
        stored.mod_revision,
    )];
    let mut then = vec![TxnOp::Put(rollout_key.clone(), encode(&step.record))];
    if let Some(kv) = &intent_kv {
        when.push(Compare::ModRevision(intent_key.clone(), kv.mod_revision));
        then.push(TxnOp::Delete(intent_key));
    }
    match &step.targets {
        Targets::Keep => {}
        Targets::Add(ids) => {
            let version = encode(&step.record.version);
            for id in ids {
                then.push(TxnOp::Put(layout.target(id), version.clone()));
            }
        }
        Targets::Clear => then.push(TxnOp::DeletePrefix(layout.targets())),
        Targets::Complete => {
            then.push(TxnOp::Put(layout.current(), encode(&step.record.version)));
            then.push(TxnOp::DeletePrefix(layout.targets()));
        }
    }
    if let Some(h) = &step.finished {
        then.push(TxnOp::Put(layout.history(h.started_ms), encode(h)));
    }
    if !store.txn(when, then).await? {
        return Err(FleetError::Conflict(rollout_key));
    }
    if step.changed {
        Ok(TickOutcome::Wrote {
            record: step.record,
            failed_signal: step.failed_signal,
            finished: step.finished,
        })
    } else {
        Ok(TickOutcome::Unchanged(step.record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::record::RolloutState;
    use crate::rollout::tests::{fleet, record};

    async fn seed(store: &MemoryStore, layout: &Layout, n: usize) -> RolloutRecord {
        for (id, rep) in fleet(n) {
            let lease = store.lease_grant(5).await.unwrap_or_default();
            let _ = store
                .put(&layout.instance(&id), encode(&rep), Some(lease))
                .await;
        }
        let _ = store.put(&layout.current(), encode(&1u64), None).await;
        let r = record("canary,50%,100%", 10);
        let _ = store.put(&layout.rollout(), encode(&r), None).await;
        r
    }

    async fn serve(store: &MemoryStore, layout: &Layout, requests: u64, denied_on_new: u64) {
        let targets: Vec<String> = store
            .get_prefix(&layout.targets())
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| layout.id_in(&kv.key).map(str::to_string))
            .collect();
        for (id, mut rep) in instances(store, layout).await.unwrap_or_default() {
            rep.version = Some(if targets.contains(&id) { 2 } else { 1 });
            rep.counters.requests += requests;
            if rep.version == Some(2) {
                rep.counters.shield_denied += denied_on_new;
            }
            let _ = store
                .txn(vec![], vec![TxnOp::Put(layout.instance(&id), encode(&rep))])
                .await;
        }
    }

    async fn run_to_end(store: &MemoryStore, layout: &Layout, denied: u64) -> RolloutRecord {
        let mut now = 0;
        for _ in 0..20 {
            let out = tick(store, layout, now).await;
            serve(store, layout, 200, denied).await;
            now += 10;
            if let Ok(TickOutcome::Unchanged(r)) = &out {
                if r.state.finished() {
                    return r.clone();
                }
            }
        }
        let kv = store.get(&layout.rollout()).await.ok().flatten();
        kv.and_then(|kv| decode(&layout.rollout(), &kv.value).ok())
            .unwrap_or_else(|| record("100%", 0))
    }

    #[tokio::test]
    async fn a_good_rollout_makes_the_version_current_and_writes_history() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        seed(&store, &layout, 4).await;
        let r = run_to_end(&store, &layout, 0).await;
        assert_eq!(r.state, RolloutState::Done, "{}", r.reason);
        let dump = store.dump();
        assert_eq!(dump.get("/hf/current").map(Vec::as_slice), Some(&b"2"[..]));
        assert!(!dump.keys().any(|k| k.starts_with("/hf/target/")));
        assert_eq!(
            dump.keys()
                .filter(|k| k.starts_with("/hf/history/"))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_harmful_rollout_clears_the_targets_and_current_stays() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        seed(&store, &layout, 4).await;
        let r = run_to_end(&store, &layout, 200).await;
        assert_eq!(r.state, RolloutState::RolledBack);
        let dump = store.dump();
        assert_eq!(dump.get("/hf/current").map(Vec::as_slice), Some(&b"1"[..]));
        assert!(!dump.keys().any(|k| k.starts_with("/hf/target/")));
    }

    #[tokio::test]
    async fn a_store_error_at_any_step_leaves_the_state_as_it_was() {
        // Fail the n-th store operation of a tick, for every n a tick makes: the tick
        // returns the error and nothing stored changes; healed, the same tick succeeds.
        // A tick makes four: get rollout, get intent, list instances, the transaction.
        for n in 0..=4 {
            let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
            seed(&store, &layout, 4).await;
            let _ = store
                .put(&layout.intent(), encode(&Intent::Pause), None)
                .await;
            let before = store.dump();
            store.fail_after(n);
            let out = tick(&store, &layout, 0).await;
            if n == 4 {
                assert!(
                    matches!(out, Ok(TickOutcome::Wrote { .. })),
                    "four operations suffice: {out:?}"
                );
                continue;
            }
            assert!(matches!(out, Err(FleetError::Store(_))), "op {n}: {out:?}");
            assert_eq!(store.dump(), before, "op {n} changed the store");
            store.heal();
            let out = tick(&store, &layout, 0).await;
            assert!(matches!(out, Ok(TickOutcome::Wrote { .. })), "{out:?}");
        }
    }

    #[tokio::test]
    async fn a_tick_that_fails_mid_rollout_is_retried_and_the_rollout_finishes() {
        let (store, layout) = (MemoryStore::new(), Layout::new("/hf"));
        seed(&store, &layout, 4).await;
        let mut now = 0;
        let mut last = None;
        for i in 0..40 {
            if i % 3 == 1 {
                store.fail("txn");
            }
            let out = tick(&store, &layout, now).await;
            store.heal();
            serve(&store, &layout, 200, 0).await;
            now += 10;
            if let Ok(TickOutcome::Unchanged(r)) = out {
                if r.state.finished() {
                    last = Some(r.state);
                    break;
                }
            }
        }
        assert_eq!(last, Some(RolloutState::Done));
    }
}
