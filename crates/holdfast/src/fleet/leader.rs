//! The controller: every instance campaigns in the fleet's etcd election on its own lease;
//! the one elected ticks the rollout state machine at every heartbeat for as long as that
//! lease lives, and keeps the fleet's session-ticket key ring rotating. While elected, the
//! instance's ACME manager orders the fleet's certificates (`fleet_leading`). Another
//! instance takes over within a lease TTL of its death and continues from the record, the
//! ring and the certificates in etcd.

use super::agent::Shared;
use super::now_ms;
use holdfast_fleet::{EtcdStore, FleetStore, TickOutcome};
use std::sync::Arc;
use tokio::sync::watch;

pub(super) async fn run(
    shared: Arc<Shared>,
    store: EtcdStore,
    mut lease: watch::Receiver<Option<i64>>,
    mut stopped: watch::Receiver<bool>,
) {
    let heartbeat = shared.plan.fleet.heartbeat;
    loop {
        let Some(id) = wait_for_lease(&mut lease, &mut stopped).await else {
            return;
        };
        let election = shared.layout.election();
        let campaign = store.campaign(&election, &shared.plan.id, id);
        let elected = tokio::select! {
            r = campaign => r,
            _ = lease_changed(&mut lease, id) => continue,
            _ = stopped.changed() => return,
        };
        if let Err(e) = elected {
            tracing::warn!(error = %e, "fleet controller: campaign failed; trying again");
            tokio::time::sleep(heartbeat).await;
            continue;
        }
        tracing::info!(instance = %shared.plan.id, "fleet controller: elected; this instance now runs rollouts");
        publish_defaults(&shared, &store).await;
        shared.seen().leader = true;
        shared.controller.fleet_leading.send_replace(true);
        shared.publish();
        while *lease.borrow() == Some(id) && !*stopped.borrow() {
            tick(&shared, &store).await;
            let config = std::sync::Arc::clone(&shared.controller.states.load().config);
            super::tls::rotate_ring(&store, &shared.layout, &config).await;
            tokio::select! {
                _ = tokio::time::sleep(heartbeat) => {}
                _ = lease.changed() => {}
                _ = stopped.changed() => {}
            }
        }
        tracing::warn!(instance = %shared.plan.id, "fleet controller: leadership lost (lease gone)");
        shared.controller.fleet_leading.send_replace(false);
        shared.seen().leader = false;
        shared.publish();
    }
}

async fn wait_for_lease(
    lease: &mut watch::Receiver<Option<i64>>,
    stopped: &mut watch::Receiver<bool>,
) -> Option<i64> {
    loop {
        if *stopped.borrow() {
            return None;
        }
        if let Some(id) = *lease.borrow() {
            return Some(id);
        }
        tokio::select! {
            r = lease.changed() => if r.is_err() { return None },
            _ = stopped.changed() => return None,
        }
    }
}

async fn lease_changed(lease: &mut watch::Receiver<Option<i64>>, id: i64) {
    while *lease.borrow() == Some(id) {
        if lease.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `[fleet.rollout]` of the elected controller: what `rollout start` uses when not told.
async fn publish_defaults(shared: &Shared, store: &EtcdStore) {
    let defaults = super::rollout_defaults(&shared.plan.fleet.rollout);
    let value = serde_json::to_vec(&defaults).unwrap_or_default();
    if let Err(e) = store.put(&shared.layout.defaults(), value, None).await {
        tracing::warn!(error = %e, "fleet controller: cannot publish the rollout defaults");
    }
}

async fn tick(shared: &Shared, store: &EtcdStore) {
    match holdfast_fleet::tick(store, &shared.layout, now_ms()).await {
        Ok(TickOutcome::Wrote {
            record,
            failed_signal,
            finished,
        }) => {
            if let Some(signal) = failed_signal {
                shared
                    .metrics
                    .gate_failures
                    .with_label_values(&[signal.label()])
                    .inc();
            }
            if finished.is_some() {
                shared
                    .metrics
                    .rollouts
                    .with_label_values(&[record.state.label()])
                    .inc();
                if record.state == holdfast_fleet::RolloutState::Done {
                    tracing::info!(version = record.version, "fleet rollout done");
                } else {
                    tracing::error!(version = record.version, state = record.state.label(), reason = %record.reason, "FLEET ROLLOUT ENDED");
                }
            } else {
                tracing::info!(version = record.version, state = record.state.label(), stage = %record.stage_label(), reason = %record.reason, "fleet rollout step");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "fleet controller: tick failed; retrying at the next heartbeat")
        }
    }
}
