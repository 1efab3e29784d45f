//! The fleet's metrics: the version this instance runs, whether etcd answers, the stage of
//! the rollout in progress, and (on the controller that ran them) rollouts by result and
//! gate failures by signal; whether the fleet's session-ticket ring issues this instance's
//! tickets, and rings refused.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub(super) struct FleetMetrics {
    pub version: IntGauge,
    pub etcd_up: IntGauge,
    pub rollout_stage: IntGauge,
    pub rollouts: IntCounterVec,
    pub gate_failures: IntCounterVec,
    pub ticket_ring: IntGauge,
    pub ticket_ring_refused: prometheus::IntCounter,
}

impl FleetMetrics {
    pub fn new(registry: &Registry) -> Result<FleetMetrics, prometheus::Error> {
        let m = FleetMetrics {
            version: IntGauge::new(
                "holdfast_fleet_version",
                "The fleet version this instance serves (0: none yet).",
            )?,
            etcd_up: IntGauge::new(
                "holdfast_fleet_etcd_up",
                "1 while etcd answered the last heartbeat, 0 otherwise.",
            )?,
            rollout_stage: IntGauge::new(
                "holdfast_rollout_stage",
                "RolloutStage (1-based) of the rollout in progress; 0 when none is.",
            )?,
            rollouts: IntCounterVec::new(
                Opts::new(
                    "holdfast_rollout_total",
                    "Rollouts this instance's controller finished, by result (done, rolled_back, failed).",
                ),
                &["result"],
            )?,
            gate_failures: IntCounterVec::new(
                Opts::new(
                    "holdfast_rollout_gate_failures_total",
                    "Rollouts this instance's controller ended on a gate signal, by signal.",
                ),
                &["signal"],
            )?,
            ticket_ring: IntGauge::new(
                "holdfast_fleet_ticket_keys_shared",
                "1 while the fleet's session-ticket key ring (from etcd) issues this instance's tickets; 0 while its local keys do (no ring yet, or none for a whole period).",
            )?,
            ticket_ring_refused: prometheus::IntCounter::new(
                "holdfast_fleet_ticket_rings_refused_total",
                "Session-ticket key rings read from etcd that failed a check (the keys in use stayed).",
            )?,
        };
        registry.register(Box::new(m.ticket_ring.clone()))?;
        registry.register(Box::new(m.ticket_ring_refused.clone()))?;
        registry.register(Box::new(m.version.clone()))?;
        registry.register(Box::new(m.etcd_up.clone()))?;
        registry.register(Box::new(m.rollout_stage.clone()))?;
        registry.register(Box::new(m.rollouts.clone()))?;
        registry.register(Box::new(m.gate_failures.clone()))?;
        for r in ["done", "rolled_back", "failed"] {
            m.rollouts.with_label_values(&[r]);
        }
        for s in holdfast_fleet::Signal::ALL {
            m.gate_failures.with_label_values(&[s.label()]);
        }
        Ok(m)
    }
}
