//! What is stored under the fleet's keys, as serde types (JSON values in etcd): versions,
//! instance reports, the rollout record, operator intents and history entries.

use crate::gate::{GateReport, Margins};
use crate::stages::RolloutStage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// `versions/N`: one version of the fleet-owned configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub number: u64,
    /// The configuration text (fleet-owned keys only), as the operator wrote it.
    pub config: String,
    /// Every artifact the configuration names: path as written -> SHA-256 of its bytes
    /// (stored at `blobs/SHA`).
    pub artifacts: BTreeMap<String, String>,
    /// Where it came from (the file given to `rollout start`).
    pub source: String,
    pub created_ms: u64,
}

/// Health counters an instance reports: totals since it started (the gate uses differences).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounters {
    /// Responses the edge answered.
    pub requests: u64,
    /// Of which with status >= 500.
    pub edge_5xx: u64,
    /// Requests the shield denied (rules, limits, challenge).
    pub shield_denied: u64,
    /// Module failures (errors, timeouts, panics caught).
    pub module_failures: u64,
}

impl HealthCounters {
    /// What happened since `earlier`; a counter that went down (the instance restarted)
    /// counts from zero.
    pub fn since(&self, earlier: &HealthCounters) -> HealthCounters {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        HealthCounters {
            requests: d(self.requests, earlier.requests),
            edge_5xx: d(self.edge_5xx, earlier.edge_5xx),
            shield_denied: d(self.shield_denied, earlier.shield_denied),
            module_failures: d(self.module_failures, earlier.module_failures),
        }
    }

    pub fn add(&mut self, other: &HealthCounters) {
        self.requests = self.requests.saturating_add(other.requests);
        self.edge_5xx = self.edge_5xx.saturating_add(other.edge_5xx);
        self.shield_denied = self.shield_denied.saturating_add(other.shield_denied);
        self.module_failures = self.module_failures.saturating_add(other.module_failures);
    }
}

/// A version an instance's local pipeline refused, with every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRejection {
    pub version: u64,
    pub errors: Vec<String>,
    /// The rollout it happened in (its `started_ms`): a later rollout of the same version
    /// is not failed by an old rejection. `None`: any rollout of that version.
    #[serde(default)]
    pub rollout: Option<u64>,
}

/// `instances/ID`: what an instance runs and how it is doing (written at every heartbeat,
/// under its lease: the key disappears when the heartbeats stop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub id: String,
    pub group: Option<String>,
    /// The fleet version it serves; `None` before its first.
    pub version: Option<u64>,
    /// When it started serving that version (unix ms).
    pub since_ms: u64,
    pub rejected: Option<VersionRejection>,
    pub counters: HealthCounters,
    pub at_ms: u64,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Rolling,
    Paused,
    Done,
    RolledBack,
    Failed,
}

impl RolloutState {
    pub fn label(self) -> &'static str {
        match self {
            RolloutState::Rolling => "rolling",
            RolloutState::Paused => "paused",
            RolloutState::Done => "done",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Failed => "failed",
        }
    }

    /// Done, rolled back or failed: nothing more will happen to it.
    pub fn finished(self) -> bool {
        matches!(
            self,
            RolloutState::Done | RolloutState::RolledBack | RolloutState::Failed
        )
    }
}

/// Within a rolling stage: not yet handed to its instances, or baking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The stage's instances are chosen at the next tick.
    Pending,
    /// The stage's instances were handed the version; the bake starts once they all run it
    /// (what they answered before is not the version's doing).
    Applying {
        since_ms: u64,
        stage: BTreeSet<String>,
    },
    Baking {
        since_ms: u64,
        /// The instances this stage handed the version to.
        stage: BTreeSet<String>,
        /// Every live instance's counters when the bake began.
        snapshot: BTreeMap<String, HealthCounters>,
    },
}

/// `rollout`: the one rollout record. The CLI creates it (`start`); from then on only the
/// controller holding the election writes it, so another controller can take over from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub version: u64,
    /// The version instances go back to (`current` when it started); `None` on a new fleet.
    pub previous: Option<u64>,
    pub state: RolloutState,
    pub stages: Vec<RolloutStage>,
    /// Index into `stages` of the current stage.
    pub stage: usize,
    pub phase: Phase,
    pub bake_ms: u64,
    /// Requests the stage's instances must answer in the bake window for the gate to judge.
    pub min_requests: u64,
    /// How long past the bake the stage waits for enough requests before pausing.
    pub data_wait_ms: u64,
    pub margins: Margins,
    pub fast: bool,
    /// Every instance handed the version so far.
    pub taken: BTreeSet<String>,
    /// Why it is paused, rolled back or failed (empty while all is well).
    pub reason: String,
    /// The last gate's figures.
    pub gate: Option<GateReport>,
    /// A rejecting instance's errors (state `failed`).
    pub rejected: Option<(String, Vec<String>)>,
    pub started_ms: u64,
    pub updated_ms: u64,
}

impl RolloutRecord {
    /// The current stage's label (`canary`, `10%`), or `-` once finished past the last.
    pub fn stage_label(&self) -> String {
        self.stages
            .get(self.stage)
            .map_or_else(|| "-".to_string(), RolloutStage::label)
    }
}

/// `intent`: what an operator asked for; the controller applies it at its next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Pause,
    Resume,
    Abort,
}

/// `history/N`: a finished rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub previous: Option<u64>,
    pub result: RolloutState,
    pub reason: String,
    pub stages: Vec<String>,
    pub started_ms: u64,
    pub finished_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_went_down_counts_from_zero() {
        let before = HealthCounters {
            requests: 100,
            edge_5xx: 5,
            shield_denied: 0,
            module_failures: 1,
        };
        let after = HealthCounters {
            requests: 30,
            edge_5xx: 7,
            shield_denied: 2,
            module_failures: 1,
        };
        let d = after.since(&before);
        assert_eq!(
            (d.requests, d.edge_5xx, d.shield_denied, d.module_failures),
            (30, 2, 2, 0)
        );
    }
}
