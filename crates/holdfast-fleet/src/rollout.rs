//! The rollout state machine, pure: from the stored record, the live instances' reports, an
//! operator's intent and the time, decide the next record and what to do with the targets.
//! No I/O here; `driver` reads the store, calls `advance` and writes the step in one
//! transaction, so a controller that dies between ticks leaves a record another one continues.

use crate::gate::{self, GateVerdict, Margins, Signal};
use crate::record::{
    HealthCounters, HistoryEntry, InstanceReport, Intent, Phase, RolloutRecord, RolloutState,
};
use crate::stages;
use std::collections::BTreeMap;

/// The settings a rollout takes when `rollout start` does not give them (`[fleet.rollout]`
/// of the elected controller, published at `defaults`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutDefaults {
    pub stages: Vec<stages::RolloutStage>,
    pub bake_ms: u64,
    /// Bake of `start --fast`.
    pub fast_bake_ms: u64,
    pub min_requests: u64,
    pub data_wait_ms: u64,
    pub margins: Margins,
}

impl Default for RolloutDefaults {
    fn default() -> Self {
        RolloutDefaults {
            stages: vec![
                stages::RolloutStage::Group("canary".into()),
                stages::RolloutStage::Percent(10),
                stages::RolloutStage::Percent(50),
                stages::RolloutStage::Percent(100),
            ],
            bake_ms: 60_000,
            fast_bake_ms: 10_000,
            min_requests: 100,
            data_wait_ms: 300_000,
            margins: Margins::default(),
        }
    }
}

/// What to do with the per-instance targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Keep,
    /// Hand the version to these instances (`target/ID`).
    Add(Vec<String>),
    /// Everyone back to `current` (the previous version): delete every target.
    Clear,
    /// The version becomes `current`; delete every target.
    Complete,
}

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStep {
    pub record: RolloutRecord,
    pub targets: Targets,
    /// The record changed and must be written.
    pub changed: bool,
    /// The rollout finished: its history entry.
    pub finished: Option<HistoryEntry>,
    /// The gate signal that ended it, if one did.
    pub failed_signal: Option<Signal>,
}

/// Decide the next step. `alive` holds the reports of the instances whose lease is alive.
pub fn advance(
    record: &RolloutRecord,
    alive: &BTreeMap<String, InstanceReport>,
    intent: Option<Intent>,
    now_ms: u64,
) -> RolloutStep {
    let mut m = Machine {
        r: record.clone(),
        targets: Targets::Keep,
        changed: false,
        signal: None,
        alive,
        now_ms,
    };
    m.run(intent);
    let finished = (m.changed && m.r.state.finished()).then(|| history(&m.r));
    if m.changed {
        m.r.updated_ms = now_ms;
    }
    RolloutStep {
        record: m.r,
        targets: m.targets,
        changed: m.changed,
        finished,
        failed_signal: m.signal,
    }
}

fn history(r: &RolloutRecord) -> HistoryEntry {
    HistoryEntry {
        version: r.version,
        previous: r.previous,
        result: r.state,
        reason: r.reason.clone(),
        stages: r.stages.iter().map(stages::RolloutStage::label).collect(),
        started_ms: r.started_ms,
        finished_ms: r.updated_ms,
    }
}

struct Machine<'a> {
    r: RolloutRecord,
    targets: Targets,
    changed: bool,
    signal: Option<Signal>,
    alive: &'a BTreeMap<String, InstanceReport>,
    now_ms: u64,
}

impl Machine<'_> {
    fn run(&mut self, intent: Option<Intent>) {
        if self.r.state.finished() {
            return;
        }
        self.apply_intent(intent);
        if self.r.state != RolloutState::Rolling {
            return;
        }
        if self.check_rejections() || self.check_heartbeats() {
            return;
        }
        // Each pass either waits (return) or moves to the next stage; bounded by the stages.
        for _ in 0..=self.r.stages.len() {
            let moved = match &self.r.phase {
                Phase::Pending => self.begin_stage(),
                Phase::Applying { .. } => self.start_bake(),
                Phase::Baking { .. } => self.judge_stage(),
            };
            if !moved || self.r.state != RolloutState::Rolling {
                return;
            }
        }
    }

    fn apply_intent(&mut self, intent: Option<Intent>) {
        match (intent, self.r.state) {
            (Some(Intent::Abort), _) => {
                self.end(
                    RolloutState::RolledBack,
                    "aborted by the operator".into(),
                    None,
                );
            }
            (Some(Intent::Pause), RolloutState::Rolling) => {
                self.r.state = RolloutState::Paused;
                self.r.reason = "paused by the operator".into();
                self.changed = true;
            }
            (Some(Intent::Resume), RolloutState::Paused) => {
                self.r.state = RolloutState::Rolling;
                self.r.reason.clear();
                // A bake (or a wait) that paused, for want of data or by hand, starts over.
                match &self.r.phase {
                    Phase::Baking { stage, .. } => {
                        let stage = stage.clone();
                        self.r.phase = Phase::Baking {
                            since_ms: self.now_ms,
                            stage,
                            snapshot: self.snapshot(),
                        };
                    }
                    Phase::Applying { stage, .. } => {
                        let stage = stage.clone();
                        self.r.phase = Phase::Applying {
                            since_ms: self.now_ms,
                            stage,
                        };
                    }
                    Phase::Pending => {}
                }
                self.changed = true;
            }
            _ => {}
        }
    }

    fn end(&mut self, state: RolloutState, reason: String, signal: Option<Signal>) {
        self.r.state = state;
        self.r.reason = reason;
        self.signal = signal;
        self.changed = true;
        self.targets = if state == RolloutState::Done {
            Targets::Complete
        } else {
            Targets::Clear
        };
    }

    /// Signal 4: an instance that took the version and whose pipeline refused it.
    fn check_rejections(&mut self) -> bool {
        let (version, started) = (self.r.version, self.r.started_ms);
        let found = self.r.taken.iter().find_map(|id| {
            let rejection = self.alive.get(id)?.rejected.as_ref()?;
            let this_rollout = rejection.rollout.is_none_or(|r| r == started);
            (rejection.version == version && this_rollout)
                .then(|| (id.clone(), rejection.errors.clone()))
        });
        let Some((id, errors)) = found else {
            return false;
        };
        let reason = format!(
            "rejected: instance {id} refused version {version} at stage {}: {}",
            self.r.stage_label(),
            errors.join("; ")
        );
        self.r.rejected = Some((id, errors));
        self.end(RolloutState::Failed, reason, Some(Signal::Rejected));
        true
    }

    /// Signal 5: an instance that took the version stopped heartbeating (crash-looping on it?).
    fn check_heartbeats(&mut self) -> bool {
        let lost: Vec<String> = self
            .r
            .taken
            .iter()
            .filter(|id| !self.alive.contains_key(*id))
            .cloned()
            .collect();
        if lost.is_empty() {
            return false;
        }
        let reason = format!(
            "lost_heartbeat: instance(s) {} stopped heartbeating after taking version {} at stage {}",
            lost.join(", "),
            self.r.version,
            self.r.stage_label()
        );
        self.end(
            RolloutState::RolledBack,
            reason,
            Some(Signal::LostHeartbeat),
        );
        true
    }

    fn snapshot(&self) -> BTreeMap<String, HealthCounters> {
        self.alive
            .iter()
            .map(|(id, rep)| (id.clone(), rep.counters))
            .collect()
    }

    fn complete(&mut self) {
        let reason = String::new();
        self.end(RolloutState::Done, reason, None);
    }

    /// Choose the stage's instances and hand them the version. `true` if it moved on
    /// without baking (an empty group stage).
    fn begin_stage(&mut self) -> bool {
        let Some(stage) = self.r.stages.get(self.r.stage).cloned() else {
            self.complete();
            return false;
        };
        let candidates: Vec<(String, Option<String>)> = self
            .alive
            .iter()
            .filter(|(id, _)| !self.r.taken.contains(*id))
            .map(|(id, rep)| (id.clone(), rep.group.clone()))
            .collect();
        if candidates.is_empty() {
            self.complete();
            return false;
        }
        let chosen = stages::select(&stage, &candidates);
        self.changed = true;
        if chosen.is_empty() {
            self.r.stage += 1;
            return true;
        }
        self.r.taken.extend(chosen.iter().cloned());
        self.r.phase = Phase::Applying {
            since_ms: self.now_ms,
            stage: chosen.iter().cloned().collect(),
        };
        self.targets = Targets::Add(chosen);
        false
    }

    /// Once every instance of the stage runs the version, the bake starts (with everyone's
    /// counters as they are now). Never `true`: the bake then has to run.
    fn start_bake(&mut self) -> bool {
        let Phase::Applying { since_ms, stage } = &self.r.phase else {
            return false;
        };
        let version = self.r.version;
        let behind: Vec<&str> = stage
            .iter()
            .filter(|id| self.alive.get(*id).and_then(|r| r.version) != Some(version))
            .map(String::as_str)
            .collect();
        if behind.is_empty() {
            let stage = stage.clone();
            self.r.phase = Phase::Baking {
                since_ms: self.now_ms,
                stage,
                snapshot: self.snapshot(),
            };
            self.changed = true;
            return false;
        }
        if self.now_ms > since_ms.saturating_add(self.r.data_wait_ms) {
            let reason = format!(
                "waiting: instance(s) {} have not applied version {version} at stage {}",
                behind.join(", "),
                self.r.stage_label()
            );
            self.pause(reason);
        }
        false
    }

    /// After the bake: the gate. `true` if the stage passed and the next one may begin.
    fn judge_stage(&mut self) -> bool {
        let Phase::Baking {
            since_ms,
            stage,
            snapshot,
        } = &self.r.phase
        else {
            return false;
        };
        let baked_at = since_ms.saturating_add(self.r.bake_ms);
        if self.now_ms < baked_at {
            return false;
        }
        let give_up = self.now_ms > baked_at.saturating_add(self.r.data_wait_ms);
        let sum = |ids: &mut dyn Iterator<Item = &String>| {
            let mut total = HealthCounters::default();
            for id in ids {
                if let Some(rep) = self.alive.get(id) {
                    let before = snapshot.get(id).copied().unwrap_or_default();
                    total.add(&rep.counters.since(&before));
                }
            }
            total
        };
        let stage_counters = sum(&mut stage.iter());
        // The baseline: live instances not handed the version, serving the previous one (an
        // instance with no version yet answers 503 to everything: no baseline).
        let previous = self.r.previous;
        let baseline_counters = sum(&mut self.alive.iter().filter_map(|(id, rep)| {
            let on_previous = rep.version.is_some() && rep.version == previous;
            (on_previous && !self.r.taken.contains(id)).then_some(id)
        }));
        match gate::judge(
            &stage_counters,
            &baseline_counters,
            &self.r.margins,
            self.r.min_requests,
        ) {
            GateVerdict::Pass(report) => {
                self.r.gate = Some(report);
                self.r.stage += 1;
                self.r.phase = Phase::Pending;
                self.changed = true;
                true
            }
            GateVerdict::Fail(signal, report) => {
                let reason = format!(
                    "{}: gate failed at stage {}: {}",
                    signal.label(),
                    self.r.stage_label(),
                    report.describe_failures()
                );
                self.r.gate = Some(report);
                self.end(RolloutState::RolledBack, reason, Some(signal));
                false
            }
            GateVerdict::NotEnoughData { requests, needed } => {
                if give_up {
                    let reason = format!(
                        "not enough data at stage {}: {requests} requests on the stage's instances, {needed} needed (send traffic, lower --min-requests, then `holdfast rollout resume`)",
                        self.r.stage_label()
                    );
                    self.pause(reason);
                }
                false
            }
        }
    }

    fn pause(&mut self, reason: String) {
        self.r.state = RolloutState::Paused;
        self.r.reason = reason;
        self.changed = true;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::VersionRejection;
    use crate::stages::RolloutStage;
    use std::collections::BTreeSet;

    pub(crate) fn record(stages: &str, bake_ms: u64) -> RolloutRecord {
        RolloutRecord {
            version: 2,
            previous: Some(1),
            state: RolloutState::Rolling,
            stages: stages::parse(stages).unwrap_or_default(),
            stage: 0,
            phase: Phase::Pending,
            bake_ms,
            min_requests: 100,
            data_wait_ms: 1_000,
            margins: Margins::default(),
            fast: false,
            taken: BTreeSet::new(),
            reason: String::new(),
            gate: None,
            rejected: None,
            started_ms: 0,
            updated_ms: 0,
        }
    }

    pub(crate) fn report(
        id: &str,
        group: Option<&str>,
        version: u64,
        c: HealthCounters,
    ) -> InstanceReport {
        InstanceReport {
            id: id.into(),
            group: group.map(str::to_string),
            version: Some(version),
            since_ms: 0,
            rejected: None,
            counters: c,
            at_ms: 0,
        }
    }

    pub(crate) fn fleet(n: usize) -> BTreeMap<String, InstanceReport> {
        (0..n)
            .map(|i| {
                let group = (i == 0).then_some("canary");
                let id = format!("edge-{i}");
                (id.clone(), report(&id, group, 1, HealthCounters::default()))
            })
            .collect()
    }

    /// Every instance answers `requests` more, `denied` of them denied if on version 2.
    fn traffic(f: &mut BTreeMap<String, InstanceReport>, requests: u64, denied_on_new: u64) {
        for rep in f.values_mut() {
            rep.counters.requests += requests;
            if rep.version == Some(2) {
                rep.counters.shield_denied += denied_on_new;
            }
        }
    }

    /// Instances do what their targets say.
    fn apply(f: &mut BTreeMap<String, InstanceReport>, step: &RolloutStep) {
        if let Targets::Add(ids) = &step.targets {
            for id in ids {
                if let Some(r) = f.get_mut(id) {
                    r.version = Some(2);
                }
            }
        }
    }

    #[test]
    fn a_good_version_goes_through_every_stage_then_done() {
        let mut f = fleet(4);
        let mut r = record("canary,50%,100%", 10);
        let mut now = 0;
        let mut stages_seen = Vec::new();
        for _ in 0..20 {
            let step = advance(&r, &f, None, now);
            apply(&mut f, &step);
            if let Targets::Add(ids) = &step.targets {
                stages_seen.push(ids.clone());
            }
            r = step.record;
            if r.state.finished() {
                assert_eq!(step.targets, Targets::Complete);
                assert!(step.finished.is_some());
                break;
            }
            traffic(&mut f, 200, 0);
            now += 10;
        }
        assert_eq!(r.state, RolloutState::Done, "{}", r.reason);
        assert_eq!(
            stages_seen,
            vec![
                vec!["edge-0".to_string()],
                vec!["edge-1".into(), "edge-2".into()],
                vec!["edge-3".into()]
            ]
        );
    }

    #[test]
    fn a_harmful_version_is_rolled_back_after_the_canary_with_the_figures() {
        let mut f = fleet(4);
        let r = record("canary,50%,100%", 10);
        let step = advance(&r, &f, None, 0);
        apply(&mut f, &step);
        // What the canary answered before it ran the version does not count.
        traffic(&mut f, 50, 0);
        if let Some(c) = f.get_mut("edge-0") {
            c.counters.edge_5xx += 50;
        }
        let step = advance(&step.record, &f, None, 5);
        assert!(matches!(
            step.record.phase,
            Phase::Baking { since_ms: 5, .. }
        ));
        traffic(&mut f, 200, 200);
        let step = advance(&step.record, &f, None, 15);
        assert_eq!(step.record.state, RolloutState::RolledBack);
        assert_eq!(step.targets, Targets::Clear);
        assert_eq!(step.failed_signal, Some(Signal::ShieldDenied));
        assert!(
            step.record
                .reason
                .contains("shield_denied: gate failed at stage canary"),
            "{}",
            step.record.reason
        );
        assert!(step.record.reason.contains("1.0000 vs baseline 0.0000"));
        assert_eq!(
            step.finished.map(|h| h.result),
            Some(RolloutState::RolledBack)
        );
    }

    #[test]
    fn no_data_waits_then_pauses_and_resume_starts_the_bake_over() {
        let mut f = fleet(2);
        let step = advance(&record("canary,100%", 10), &f, None, 0);
        apply(&mut f, &step);
        let step = advance(&step.record, &f, None, 0);
        assert!(matches!(step.record.phase, Phase::Baking { .. }));
        traffic(&mut f, 5, 0);
        let waiting = advance(&step.record, &f, None, 500);
        assert!(!waiting.changed, "waits for data within the deadline");
        let paused = advance(&step.record, &f, None, 1_011);
        assert_eq!(paused.record.state, RolloutState::Paused);
        assert!(
            paused
                .record
                .reason
                .contains("not enough data at stage canary: 5 requests"),
            "{}",
            paused.record.reason
        );
        assert_eq!(paused.targets, Targets::Keep);
        let resumed = advance(&paused.record, &f, Some(Intent::Resume), 2_000);
        assert_eq!(resumed.record.state, RolloutState::Rolling);
        assert!(matches!(
            resumed.record.phase,
            Phase::Baking {
                since_ms: 2_000,
                ..
            }
        ));
    }

    #[test]
    fn a_rejection_fails_the_rollout_with_the_instances_errors() {
        let mut f = fleet(3);
        let step = advance(&record("canary,100%", 10), &f, None, 0);
        if let Some(r) = f.get_mut("edge-0") {
            r.rejected = Some(VersionRejection {
                version: 2,
                errors: vec!["routes[0].pool: unknown pool".into()],
                rollout: Some(0),
            });
        }
        let step = advance(&step.record, &f, None, 1);
        assert_eq!(step.record.state, RolloutState::Failed);
        assert_eq!(step.targets, Targets::Clear);
        assert!(step
            .record
            .reason
            .contains("edge-0 refused version 2 at stage canary: routes[0].pool: unknown pool"));
        assert_eq!(step.failed_signal, Some(Signal::Rejected));
    }

    #[test]
    fn a_rejection_in_an_earlier_rollout_of_the_version_does_not_fail_a_new_one() {
        let mut f = fleet(3);
        let mut r = record("canary,100%", 10);
        r.started_ms = 500;
        let step = advance(&r, &f, None, 500);
        if let Some(rep) = f.get_mut("edge-0") {
            rep.rejected = Some(VersionRejection {
                version: 2,
                errors: vec!["old".into()],
                rollout: Some(0),
            });
        }
        let step = advance(&step.record, &f, None, 501);
        assert_eq!(step.record.state, RolloutState::Rolling);
    }

    #[test]
    fn a_lost_heartbeat_after_taking_the_version_rolls_back() {
        let mut f = fleet(3);
        let step = advance(&record("canary,100%", 10), &f, None, 0);
        f.remove("edge-0");
        let step = advance(&step.record, &f, None, 1);
        assert_eq!(step.record.state, RolloutState::RolledBack);
        assert_eq!(step.failed_signal, Some(Signal::LostHeartbeat));
        // An instance that never took it may come and go.
        let mut f = fleet(3);
        let step = advance(&record("canary,100%", 10), &f, None, 0);
        f.remove("edge-2");
        assert_eq!(
            advance(&step.record, &f, None, 1).record.state,
            RolloutState::Rolling
        );
    }

    #[test]
    fn pause_holds_abort_rolls_back_and_a_finished_rollout_ignores_intents() {
        let f = fleet(3);
        let step = advance(&record("canary,100%", 10), &f, None, 0);
        let paused = advance(&step.record, &f, Some(Intent::Pause), 100);
        assert_eq!(paused.record.state, RolloutState::Paused);
        let still = advance(&paused.record, &f, None, 10_000);
        assert!(!still.changed, "a paused rollout stays put");
        let aborted = advance(&paused.record, &f, Some(Intent::Abort), 10_001);
        assert_eq!(aborted.record.state, RolloutState::RolledBack);
        assert_eq!(aborted.targets, Targets::Clear);
        assert_eq!(aborted.record.reason, "aborted by the operator");
        let after = advance(&aborted.record, &f, Some(Intent::Resume), 10_002);
        assert!(!after.changed);
    }

    #[test]
    fn an_empty_group_stage_is_skipped() {
        let mut f = fleet(2);
        for r in f.values_mut() {
            r.group = None;
        }
        let step = advance(&record("canary,50%,100%", 10), &f, None, 0);
        assert_eq!(
            step.record.stages.get(step.record.stage),
            Some(&RolloutStage::Percent(50))
        );
        assert_eq!(step.targets, Targets::Add(vec!["edge-0".into()]));
    }

    #[test]
    fn an_instance_that_has_not_applied_yet_holds_the_gate() {
        let f = fleet(2);
        let step = advance(&record("canary,100%", 10), &f, None, 0);
        assert!(matches!(step.record.phase, Phase::Applying { .. }));
        // edge-0 never reports version 2: no bake, and no gate, on what it did not run.
        let held = advance(&step.record, &f, None, 20);
        assert!(!held.changed);
        let paused = advance(&step.record, &f, None, 1_001);
        assert_eq!(paused.record.state, RolloutState::Paused);
        assert!(paused.record.reason.contains("have not applied version 2"));
    }
}
