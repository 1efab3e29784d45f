//! The instance agent, on a thread of its own: registers the instance under a lease, follows
//! the version it should run (its `target/ID`, else `current`), applies it through the reload
//! pipeline, and reports what it runs and its health counters at every heartbeat. etcd down
//! changes nothing that is served: the agent keeps the version it has and retries with
//! back-off. It also runs the controller (`leader`) on the same lease.

use super::metrics::FleetMetrics;
use super::start::MemberPlan;
use super::{counters, leader, now_ms, versions};
use crate::app::StartError;
use crate::controller::{ConfigSource, Controller};
use holdfast_admin::ReloadOutcome;
use holdfast_common::lock;
use holdfast_fleet::{
    ops, EtcdStore, FleetStore, InstanceReport, Layout, RolloutRecord, VersionRejection,
};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait between two attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What `/status` shows under `fleet`.
#[derive(Default)]
pub(super) struct Seen {
    pub running: Option<u64>,
    pub since_ms: u64,
    pub wanted: Option<u64>,
    pub rejected: Option<VersionRejection>,
    /// The rollout (its start, unix ms) under which `rejected` happened: a later rollout of
    /// the same version is tried again.
    pub rejected_in: Option<u64>,
    pub etcd_up: bool,
    pub etcd_error: Option<String>,
    pub leader: bool,
    pub rollout: Option<RolloutRecord>,
    pub started_on_lkg: bool,
    /// The ticket ring's revision last read from etcd.
    pub ring_revision: i64,
    /// Why the last ring read was refused, if it was.
    pub ring_refused: Option<String>,
    /// The fallback to local ticket keys was logged (once until the ring issues again).
    pub ring_warned: bool,
    pub agent_started_ms: u64,
}

pub(super) struct Shared {
    pub plan: MemberPlan,
    pub layout: Layout,
    pub controller: Arc<Controller>,
    pub metrics: FleetMetrics,
    pub seen: Mutex<Seen>,
}

impl Shared {
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        lock(&self.seen)
    }

    /// `fleet` (the fleet's ring issues this instance's tickets), `local` (its own keys do:
    /// no ring yet, or none issuing now) or `off` (`edge.session_tickets` disabled).
    fn ticket_keys(&self, s: &mut Seen) -> &'static str {
        let enabled = self
            .controller
            .states
            .load()
            .config
            .edge
            .session_tickets
            .enabled;
        let Some(keys) = self.controller.ticket_keys.as_ref().filter(|_| enabled) else {
            return "off";
        };
        let now = now_ms();
        if keys.in_use_at(now / 1000) {
            s.ring_warned = false;
            return "fleet";
        }
        // A controller writes the ring within a lease TTL and a heartbeat of being elected.
        let grace = self.plan.fleet.lease_ttl + self.plan.fleet.heartbeat * 2;
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        if !s.ring_warned && now.saturating_sub(s.agent_started_ms) > grace_ms {
            s.ring_warned = true;
            tracing::warn!(
                installed = keys.installed(),
                refused = ?s.ring_refused,
                "FLEET: no session-ticket key ring from etcd issues now; this instance issues tickets with its own keys (other instances cannot resume them)"
            );
        }
        "local"
    }

    /// Copy what was seen to `/status` and the gauges.
    pub fn publish(&self) {
        let mut s = self.seen();
        let ticket_keys = self.ticket_keys(&mut s);
        self.metrics
            .ticket_ring
            .set(i64::from(ticket_keys == "fleet"));
        self.metrics.version.set(
            s.running
                .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)),
        );
        self.metrics.etcd_up.set(i64::from(s.etcd_up));
        let stage = s
            .rollout
            .as_ref()
            .filter(|r| !r.state.finished())
            .map_or(0, |r| {
                i64::try_from(r.stage).unwrap_or(i64::MAX).saturating_add(1)
            });
        self.metrics.rollout_stage.set(stage);
        let rollout = s.rollout.as_ref().map(|r| {
            json!({
                "version": r.version,
                "previous": r.previous,
                "state": r.state.label(),
                "stage": r.stage_label(),
                "reason": r.reason,
            })
        });
        let value = json!({
            "instance": self.plan.id,
            "group": self.plan.fleet.group,
            "version": s.running,
            "since": s.running.map(|_| humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(s.since_ms)).to_string()),
            "started_on_lkg": s.started_on_lkg,
            "wanted": s.wanted,
            "rejected": s.rejected.as_ref().map(|r| json!({"version": r.version, "errors": r.errors})),
            "etcd": { "endpoints": self.plan.fleet.etcd, "reachable": s.etcd_up, "error": s.etcd_error },
            "controller": s.leader,
            "rollout": rollout,
            "ticket_keys": { "source": ticket_keys, "revision": s.ring_revision, "refused": s.ring_refused },
        });
        drop(s);
        *lock(&self.controller.fleet_status) = value;
    }
}

/// The running agent; `stop` ends it.
pub(crate) struct Agent {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    pub(crate) fn start(
        plan: MemberPlan,
        controller: Arc<Controller>,
    ) -> Result<Agent, StartError> {
        let metrics = FleetMetrics::new(&controller.registry).map_err(StartError::metrics)?;
        let seen = Seen {
            running: plan.started_on,
            since_ms: now_ms(),
            agent_started_ms: now_ms(),
            started_on_lkg: plan.started_on.is_some(),
            ..Seen::default()
        };
        let shared = Arc::new(Shared {
            layout: Layout::new(&plan.fleet.prefix),
            plan,
            controller,
            metrics,
            seen: Mutex::new(seen),
        });
        shared.publish();
        let (stop, stopped) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Io("fleet agent: cannot start its runtime".into(), e))?;
        let thread = std::thread::Builder::new()
            .name("holdfast-fleet".into())
            .spawn(move || rt.block_on(run(shared, stopped)))
            .map_err(|e| StartError::Io("fleet agent: cannot start its thread".into(), e))?;
        Ok(Agent {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop heartbeating (the lease then expires: the instance leaves the fleet).
    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let fleet = &shared.plan.fleet;
    let timeout = fleet
        .heartbeat
        .clamp(Duration::from_millis(500), Duration::from_secs(5));
    let store = loop {
        match EtcdStore::connect(&fleet.etcd, timeout).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::error!(error = %e, "fleet: cannot set up the etcd client; retrying");
                if sleep_or_stop(&mut stopped, MAX_BACKOFF).await {
                    return;
                }
            }
        }
    };
    let (lease_tx, lease_rx) = watch::channel(None::<i64>);
    let leader = tokio::spawn(leader::run(
        Arc::clone(&shared),
        store.clone(),
        lease_rx,
        stopped.clone(),
    ));
    let mut backoff = fleet.heartbeat;
    loop {
        let result = session(&shared, &store, &lease_tx, &mut stopped, &mut backoff).await;
        let _ = lease_tx.send(None);
        match result {
            Ok(()) => break,
            Err(e) => {
                {
                    let mut s = shared.seen();
                    if s.etcd_up || s.etcd_error.is_none() {
                        tracing::error!(error = %e, version = ?s.running, "FLEET: cannot reach etcd (or read the fleet's state): serving the version this instance has, retrying with back-off");
                    }
                    s.etcd_up = false;
                    s.leader = false;
                    s.etcd_error = Some(e);
                }
                shared.publish();
                if sleep_or_stop(&mut stopped, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    leader.abort();
}

/// `true` if asked to stop during the wait.
async fn sleep_or_stop(stopped: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

/// One lease's life: `Ok` when asked to stop, `Err` when etcd stopped answering.
async fn session(
    shared: &Shared,
    store: &EtcdStore,
    lease_tx: &watch::Sender<Option<i64>>,
    stopped: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let fleet = &shared.plan.fleet;
    let ttl = i64::try_from(fleet.lease_ttl.as_secs().max(2)).unwrap_or(10);
    let lease = store.lease_grant(ttl).await.map_err(|e| e.to_string())?;
    // Watches only wake the loop early; it polls at every heartbeat anyway.
    let layout = &shared.layout;
    let mut target = store
        .watch_prefix(&layout.target(&shared.plan.id))
        .await
        .ok();
    let mut current = store.watch_prefix(&layout.current()).await.ok();
    let mut ring = store.watch_prefix(&layout.ticket_keys()).await.ok();
    let mut first = true;
    loop {
        sync(shared, store).await.map_err(|e| e.to_string())?;
        report(shared, store, lease)
            .await
            .map_err(|e| e.to_string())?;
        if first {
            let _ = lease_tx.send(Some(lease));
            *backoff = fleet.heartbeat;
            first = false;
        }
        tokio::select! {
            _ = tokio::time::sleep(fleet.heartbeat) => {}
            Some(()) = recv(&mut target) => {}
            Some(()) = recv(&mut current) => {}
            Some(()) = recv(&mut ring) => {}
            _ = stopped.changed() => {
                let _ = store.lease_revoke(lease).await;
                return Ok(());
            }
        }
        if !store
            .lease_keep_alive(lease)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err("the instance's lease expired".into());
        }
    }
}

async fn recv(rx: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Apply the version this instance should run, if it does not run it yet (and has not
/// rejected it in this same rollout).
async fn sync(shared: &Shared, store: &EtcdStore) -> Result<(), holdfast_fleet::FleetError> {
    let layout = &shared.layout;
    sync_ring(shared, store).await?;
    let wanted = ops::wanted_version(store, layout, &shared.plan.id).await?;
    let rollout = match store.get(&layout.rollout()).await? {
        Some(kv) => serde_json::from_slice::<RolloutRecord>(&kv.value).ok(),
        None => None,
    };
    let rollout_started = rollout.as_ref().map(|r| r.started_ms);
    let (running, rejected) = {
        let mut s = shared.seen();
        s.wanted = wanted;
        s.rollout = rollout;
        s.etcd_up = true;
        s.etcd_error = None;
        let this_rollout = s.rejected_in == rollout_started;
        (
            s.running,
            s.rejected
                .as_ref()
                .filter(|_| this_rollout)
                .map(|r| r.version),
        )
    };
    let Some(n) = wanted else {
        if running.is_some() {
            // The fleet's first version was rolled back: back to having none.
            back_to_none(shared);
        }
        shared.publish();
        return Ok(());
    };
    if Some(n) == running || Some(n) == rejected {
        shared.publish();
        return Ok(());
    }
    let outcome = match ops::fetch_version(store, layout, n).await {
        Ok((record, blobs)) => match versions::write(&shared.plan, n, &record.config, &blobs) {
            Ok(file) => shared.controller.apply_source(ConfigSource::File(file)),
            Err(errors) => ReloadOutcome::Rejected {
                generation: 0,
                errors,
            },
        },
        Err(holdfast_fleet::FleetError::Store(e)) => return Err(e.into()),
        // A version that cannot be read whole (a missing blob, a bad record) is rejected
        // like one that does not validate: reported, and the instance keeps what it has.
        Err(other) => ReloadOutcome::Rejected {
            generation: 0,
            errors: vec![other.to_string()],
        },
    };
    {
        let mut s = shared.seen();
        match outcome {
            ReloadOutcome::Applied { generation } => {
                tracing::info!(version = n, generation, "fleet: version applied");
                versions::mark_applied(&shared.plan, n);
                s.running = Some(n);
                s.since_ms = now_ms();
                s.rejected = None;
                s.started_on_lkg = false;
            }
            ReloadOutcome::Rejected { errors, .. } => {
                tracing::error!(
                    version = n,
                    ?errors,
                    "fleet: version rejected by the local pipeline; keeping the active one"
                );
                s.rejected = Some(VersionRejection {
                    version: n,
                    errors,
                    rollout: rollout_started,
                });
                s.rejected_in = rollout_started;
            }
        }
    }
    shared.publish();
    Ok(())
}

/// Install the fleet's session-ticket key ring when it changed.
async fn sync_ring(shared: &Shared, store: &EtcdStore) -> Result<(), holdfast_fleet::StoreError> {
    let Some(keys) = shared.controller.ticket_keys.as_ref() else {
        return Ok(());
    };
    let mut last = shared.seen().ring_revision;
    let read = super::tls::install_ring(store, &shared.layout, keys, &mut last).await?;
    let mut s = shared.seen();
    s.ring_revision = last;
    match read {
        super::tls::RingRead::Refused(why) => {
            if s.ring_refused.as_deref() != Some(why.as_str()) {
                shared.metrics.ticket_ring_refused.inc();
                tracing::error!(key = %shared.layout.ticket_keys(), error = %why, "FLEET: the session-ticket key ring in etcd is refused; the keys in use stay");
            }
            s.ring_refused = Some(why);
        }
        super::tls::RingRead::Installed | super::tls::RingRead::Absent => s.ring_refused = None,
    }
    Ok(())
}

/// Serve the 503-only configuration again (the first version was rolled back).
fn back_to_none(shared: &Shared) {
    let plan = &shared.plan;
    let file = match super::start::write_waiting(&plan.local_text, &plan.local_base, &plan.dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = ?e, "fleet: cannot write the no-version configuration");
            return;
        }
    };
    if let ReloadOutcome::Applied { .. } = shared.controller.apply_source(ConfigSource::File(file))
    {
        tracing::warn!(
            "fleet: the fleet has no version any more (its first was rolled back): answering 503"
        );
        versions::forget_applied(&shared.plan);
        let mut s = shared.seen();
        s.running = None;
        s.since_ms = now_ms();
    }
}

async fn report(
    shared: &Shared,
    store: &EtcdStore,
    lease: i64,
) -> Result<(), holdfast_fleet::StoreError> {
    let report = {
        let s = shared.seen();
        InstanceReport {
            id: shared.plan.id.clone(),
            group: shared.plan.fleet.group.clone(),
            version: s.running,
            since_ms: s.since_ms,
            rejected: s.rejected.clone(),
            counters: counters::read(&shared.controller.registry),
            at_ms: now_ms(),
        }
    };
    let value = serde_json::to_vec(&report).unwrap_or_default();
    store
        .put(&shared.layout.instance(&shared.plan.id), value, Some(lease))
        .await
}
