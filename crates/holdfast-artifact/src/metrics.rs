//! The artifact families, shared by every artifact of the process (one label per kind).

use crate::kind::Reason;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// `holdfast_artifact_version{artifact}`, `holdfast_artifact_loads_total{artifact,result}`,
/// `holdfast_artifact_rejected_total{artifact,reason}`.
#[derive(Debug, Clone)]
pub struct ArtifactMetrics {
    version: IntGaugeVec,
    on_lkg: IntGaugeVec,
    loads: IntCounterVec,
    rejected: IntCounterVec,
}

/// Every rejection reason, so each artifact's series exist (at 0) from the start.
pub(crate) const REASONS: [Reason; 14] = [
    Reason::TooLarge,
    Reason::Io,
    Reason::NotUtf8,
    Reason::Parse,
    Reason::Schema,
    Reason::Capacity,
    Reason::Duplicate,
    Reason::Unknown,
    Reason::Range,
    Reason::Empty,
    Reason::Shrink,
    Reason::NotNewer,
    Reason::Signature,
    Reason::Invalid,
];

/// A new `Reason` variant stops this from compiling: add it to `REASONS` above as well.
const _: fn(Reason) = |r| match r {
    Reason::TooLarge
    | Reason::Io
    | Reason::NotUtf8
    | Reason::Parse
    | Reason::Schema
    | Reason::Capacity
    | Reason::Duplicate
    | Reason::Unknown
    | Reason::Range
    | Reason::Empty
    | Reason::Shrink
    | Reason::NotNewer
    | Reason::Signature
    | Reason::Invalid => {}
};

/// The `result` label of `holdfast_artifact_loads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadResult {
    Applied,
    Unchanged,
    Rejected,
}

impl LoadResult {
    fn label(self) -> &'static str {
        match self {
            LoadResult::Applied => "applied",
            LoadResult::Unchanged => "unchanged",
            LoadResult::Rejected => "rejected",
        }
    }
}

impl ArtifactMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let version = IntGaugeVec::new(
            Opts::new(
                "holdfast_artifact_version",
                "Version of the active artifact (0: none active).",
            ),
            &["artifact"],
        )?;
        let on_lkg = IntGaugeVec::new(
            Opts::new(
                "holdfast_artifact_on_lkg",
                "1 while the active artifact is the last-known-good copy from state_dir (the file \
                 was rejected or missing at start), 0 while it comes from the file.",
            ),
            &["artifact"],
        )?;
        let loads = IntCounterVec::new(
            Opts::new(
                "holdfast_artifact_loads_total",
                "Artifact loads (start, file change, reload) by result: applied, unchanged, rejected.",
            ),
            &["artifact", "result"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "holdfast_artifact_rejected_total",
                "Rejected artifact files by reason; the active version stays.",
            ),
            &["artifact", "reason"],
        )?;
        registry.register(Box::new(version.clone()))?;
        registry.register(Box::new(on_lkg.clone()))?;
        registry.register(Box::new(loads.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(ArtifactMetrics {
            version,
            on_lkg,
            loads,
            rejected,
        })
    }

    /// Create every series of `artifact` at 0.
    pub(crate) fn init(&self, artifact: &str) {
        self.version.with_label_values(&[artifact]);
        self.on_lkg.with_label_values(&[artifact]);
        for r in [
            LoadResult::Applied,
            LoadResult::Unchanged,
            LoadResult::Rejected,
        ] {
            self.loads.with_label_values(&[artifact, r.label()]);
        }
        for reason in REASONS {
            self.rejected.with_label_values(&[artifact, reason.label()]);
        }
    }

    pub(crate) fn set_version(&self, artifact: &str, version: u64) {
        self.version
            .with_label_values(&[artifact])
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// Whether the active value is the last-known-good copy.
    pub(crate) fn set_on_lkg(&self, artifact: &str, on_lkg: bool) {
        self.on_lkg
            .with_label_values(&[artifact])
            .set(i64::from(on_lkg));
    }

    /// `holdfast_artifact_on_lkg{artifact}` as exported.
    pub fn on_lkg(&self, artifact: &str) -> i64 {
        self.on_lkg.with_label_values(&[artifact]).get()
    }

    pub(crate) fn load(&self, artifact: &str, result: LoadResult) {
        self.loads
            .with_label_values(&[artifact, result.label()])
            .inc();
    }

    pub(crate) fn reject(&self, artifact: &str, reason: Reason) {
        self.rejected
            .with_label_values(&[artifact, reason.label()])
            .inc();
    }

    /// The active version as exported (for tests and `/status` cross-checks).
    pub fn version(&self, artifact: &str) -> i64 {
        self.version.with_label_values(&[artifact]).get()
    }

    /// `holdfast_artifact_loads_total{artifact, result}`; `result` is `applied`, `unchanged`
    /// or `rejected`.
    pub fn loads(&self, artifact: &str, result: &str) -> u64 {
        self.loads.with_label_values(&[artifact, result]).get()
    }

    /// `holdfast_artifact_rejected_total{artifact, reason}`.
    pub fn rejected(&self, artifact: &str, reason: Reason) -> u64 {
        self.rejected
            .with_label_values(&[artifact, reason.label()])
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_series_exist_at_zero() {
        let mut labels: Vec<_> = REASONS.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), REASONS.len());

        let registry = Registry::new();
        let m = ArtifactMetrics::new(&registry).unwrap();
        m.init("t");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains(r#"holdfast_artifact_version{artifact="t"} 0"#));
        assert!(
            text.contains(r#"holdfast_artifact_loads_total{artifact="t",result="unchanged"} 0"#)
        );
        assert!(
            text.contains(r#"holdfast_artifact_rejected_total{artifact="t",reason="signature"} 0"#)
        );
        assert!(ArtifactMetrics::new(&registry).is_err(), "registered twice");
    }
}
