//! The health gate as pure arithmetic: a stage's instances against the baseline (the live
//! instances still on the previous version) over the bake window. A rate signal fails when
//! the stage's rate exceeds the baseline's by more than the absolute margin *and* by more
//! than the relative margin. Too few requests is never a pass.

use crate::record::HealthCounters;
use serde::{Deserialize, Serialize};

/// How far a stage's rate may exceed the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Margin {
    /// In rate units: 0.01 is one percentage point.
    pub abs: f64,
    /// As a fraction of the baseline's rate: 0.5 is 50% more.
    pub rel: f64,
}

/// The margins of the three rate signals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Margins {
    pub edge_5xx: Margin,
    pub shield_denied: Margin,
    pub module_failures: Margin,
}

/// The default margin of every rate signal: more than one percentage point *and* more than
/// 50% above the baseline.
pub const DEFAULT_MARGIN: Margin = Margin {
    abs: 0.01,
    rel: 0.5,
};

impl Default for Margins {
    fn default() -> Self {
        Margins::uniform(DEFAULT_MARGIN)
    }
}

impl Margins {
    /// The same margin for the three rate signals.
    pub fn uniform(m: Margin) -> Margins {
        Margins {
            edge_5xx: m,
            shield_denied: m,
            module_failures: m,
        }
    }
}

/// The five signals of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Share of responses with status >= 500.
    #[serde(rename = "edge_5xx")]
    Edge5xx,
    /// Share of requests the shield denied.
    ShieldDenied,
    /// Module failures per request.
    ModuleFailures,
    /// An instance's local pipeline refused the version.
    Rejected,
    /// An instance that took the version stopped heartbeating.
    LostHeartbeat,
}

impl Signal {
    pub const ALL: [Signal; 5] = [
        Signal::Edge5xx,
        Signal::ShieldDenied,
        Signal::ModuleFailures,
        Signal::Rejected,
        Signal::LostHeartbeat,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Signal::Edge5xx => "edge_5xx",
            Signal::ShieldDenied => "shield_denied",
            Signal::ModuleFailures => "module_failures",
            Signal::Rejected => "rejected",
            Signal::LostHeartbeat => "lost_heartbeat",
        }
    }
}

/// One rate signal's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub signal: Signal,
    pub stage_rate: f64,
    pub baseline_rate: f64,
    pub failed: bool,
}

/// What the gate saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub stage_requests: u64,
    pub baseline_requests: u64,
    pub figures: Vec<Figure>,
}

impl GateReport {
    /// `edge_5xx 0.400 vs 0.000 (stage 120 requests, baseline 300)` for the failed ones.
    pub fn describe_failures(&self) -> String {
        let failed: Vec<String> = self
            .figures
            .iter()
            .filter(|f| f.failed)
            .map(|f| {
                format!(
                    "{} {:.4} vs baseline {:.4}",
                    f.signal.label(),
                    f.stage_rate,
                    f.baseline_rate
                )
            })
            .collect();
        format!(
            "{} (stage {} requests, baseline {})",
            failed.join(", "),
            self.stage_requests,
            self.baseline_requests
        )
    }
}

/// The gate's answer for the rate signals.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    Pass(GateReport),
    /// The first failing signal, and every figure.
    Fail(Signal, GateReport),
    /// The stage answered fewer than `needed` requests in the window.
    NotEnoughData {
        requests: u64,
        needed: u64,
    },
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    // Counts stay far below 2^52 in a bake window: exact enough as f64.
    part as f64 / whole as f64
}

/// Whether `stage` exceeds `baseline` by more than both margins.
pub fn exceeds(stage: f64, baseline: f64, m: Margin) -> bool {
    stage - baseline > m.abs && stage > baseline * (1.0 + m.rel)
}

/// Judge a stage's counters (summed over its instances, over the bake window) against the
/// baseline's. A baseline with no requests (no instance left on the previous version)
/// counts as rate 0, so the absolute margin alone decides. `min_requests` below 1 is 1:
/// the gate never passes on no data.
pub fn judge(
    stage: &HealthCounters,
    baseline: &HealthCounters,
    margins: &Margins,
    min_requests: u64,
) -> GateVerdict {
    let needed = min_requests.max(1);
    if stage.requests < needed {
        return GateVerdict::NotEnoughData {
            requests: stage.requests,
            needed,
        };
    }
    let pairs = [
        (
            Signal::Edge5xx,
            stage.edge_5xx,
            baseline.edge_5xx,
            margins.edge_5xx,
        ),
        (
            Signal::ShieldDenied,
            stage.shield_denied,
            baseline.shield_denied,
            margins.shield_denied,
        ),
        (
            Signal::ModuleFailures,
            stage.module_failures,
            baseline.module_failures,
            margins.module_failures,
        ),
    ];
    let figures: Vec<Figure> = pairs
        .iter()
        .map(|&(signal, s, b, m)| {
            let stage_rate = rate(s, stage.requests);
            let baseline_rate = rate(b, baseline.requests);
            Figure {
                signal,
                stage_rate,
                baseline_rate,
                failed: exceeds(stage_rate, baseline_rate, m),
            }
        })
        .collect();
    let report = GateReport {
        stage_requests: stage.requests,
        baseline_requests: baseline.requests,
        figures,
    };
    match report.figures.iter().find(|f| f.failed) {
        Some(f) => GateVerdict::Fail(f.signal, report),
        None => GateVerdict::Pass(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(requests: u64, edge_5xx: u64, shield_denied: u64, module_failures: u64) -> HealthCounters {
        HealthCounters {
            requests,
            edge_5xx,
            shield_denied,
            module_failures,
        }
    }

    const M: Margins = Margins {
        edge_5xx: Margin {
            abs: 0.01,
            rel: 0.5,
        },
        shield_denied: Margin {
            abs: 0.02,
            rel: 0.5,
        },
        module_failures: Margin {
            abs: 0.005,
            rel: 0.5,
        },
    };

    fn failed(v: &GateVerdict) -> Option<Signal> {
        match v {
            GateVerdict::Fail(s, _) => Some(*s),
            _ => None,
        }
    }

    #[test]
    fn equal_rates_pass() {
        let v = judge(&c(1000, 10, 5, 0), &c(3000, 30, 15, 0), &M, 100);
        assert!(matches!(v, GateVerdict::Pass(_)), "{v:?}");
    }

    #[test]
    fn a_stage_that_blocks_everyone_fails_on_shield_denied() {
        let v = judge(&c(200, 0, 200, 0), &c(600, 0, 0, 0), &M, 100);
        assert_eq!(failed(&v), Some(Signal::ShieldDenied));
        let GateVerdict::Fail(_, report) = v else {
            return;
        };
        assert!(report
            .describe_failures()
            .contains("shield_denied 1.0000 vs baseline 0.0000"));
    }

    #[test]
    fn above_the_absolute_margin_but_within_the_relative_one_passes() {
        // Baseline 10% 5xx, stage 12%: +2 points (> 1) but only +20% (< 50%).
        let v = judge(&c(1000, 120, 0, 0), &c(1000, 100, 0, 0), &M, 100);
        assert!(matches!(v, GateVerdict::Pass(_)), "{v:?}");
        // RolloutStage 16%: +6 points and +60%: fails.
        let v = judge(&c(1000, 160, 0, 0), &c(1000, 100, 0, 0), &M, 100);
        assert_eq!(failed(&v), Some(Signal::Edge5xx));
    }

    #[test]
    fn above_the_relative_margin_but_within_the_absolute_one_passes() {
        // Baseline 0.1%, stage 0.5%: five times as many, but +0.4 points (< 1).
        let v = judge(&c(1000, 5, 0, 0), &c(1000, 1, 0, 0), &M, 100);
        assert!(matches!(v, GateVerdict::Pass(_)), "{v:?}");
    }

    #[test]
    fn no_baseline_is_rate_zero_and_the_absolute_margin_decides() {
        assert!(matches!(
            judge(&c(500, 4, 0, 0), &c(0, 0, 0, 0), &M, 100),
            GateVerdict::Pass(_)
        ));
        assert_eq!(
            failed(&judge(&c(500, 6, 0, 0), &c(0, 0, 0, 0), &M, 100)),
            Some(Signal::Edge5xx)
        );
    }

    #[test]
    fn module_failures_count_per_request() {
        let v = judge(&c(1000, 0, 0, 10), &c(1000, 0, 0, 0), &M, 100);
        assert_eq!(failed(&v), Some(Signal::ModuleFailures));
    }

    #[test]
    fn too_few_requests_is_never_a_pass() {
        assert_eq!(
            judge(&c(99, 0, 0, 0), &c(1000, 0, 0, 0), &M, 100),
            GateVerdict::NotEnoughData {
                requests: 99,
                needed: 100
            }
        );
        // Even a harmful small sample is "not enough data", not a verdict.
        assert!(matches!(
            judge(&c(3, 3, 0, 0), &c(1000, 0, 0, 0), &M, 100),
            GateVerdict::NotEnoughData { .. }
        ));
        // min_requests 0 still needs one request.
        assert_eq!(
            judge(&c(0, 0, 0, 0), &c(0, 0, 0, 0), &M, 0),
            GateVerdict::NotEnoughData {
                requests: 0,
                needed: 1
            }
        );
    }

    #[test]
    fn the_boundary_itself_passes() {
        // Exactly +1 point over a baseline of 0 with abs 0.01: not "more than".
        let v = judge(&c(100, 1, 0, 0), &c(100, 0, 0, 0), &M, 100);
        assert!(matches!(v, GateVerdict::Pass(_)), "{v:?}");
    }
}
