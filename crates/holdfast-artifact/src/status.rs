//! What `/status` shows for an artifact.

use serde::Serialize;
use std::time::SystemTime;

/// Where the active value came from: the configured file, or the last-known-good copy in
/// `state_dir` (the file was bad or missing at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    File,
    Lkg,
}

/// One artifact on `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactStatus {
    /// `ArtifactKind::NAME`.
    pub kind: &'static str,
    /// A named artifact's name (IP and rule lists); absent for single ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub path: String,
    /// `null` when nothing was ever applied (and no last-known-good was found at start).
    pub active: Option<ActiveStatus>,
    pub last_rejection: Option<RejectionStatus>,
    /// Files applied since start.
    pub loads: u64,
    /// Files rejected since start (a remembered rejection is not counted again).
    pub rejections: u64,
    /// An operator asked to apply the next file even if it shrinks sharply.
    pub force_next: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveStatus {
    pub version: u64,
    pub sha256: String,
    /// RFC 3339, UTC.
    pub loaded_at: String,
    pub source: SourceKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionStatus {
    /// The version the file declared, when it got that far.
    pub version: Option<u64>,
    /// `Reason::label()`, as in `holdfast_artifact_rejected_total`.
    pub reason: &'static str,
    pub detail: String,
    /// RFC 3339, UTC.
    pub at: String,
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_documented() {
        let s = ArtifactStatus {
            kind: "t",
            name: None,
            path: "/x".into(),
            active: Some(ActiveStatus {
                version: 3,
                sha256: "ab".into(),
                loaded_at: rfc3339(SystemTime::UNIX_EPOCH),
                source: SourceKind::Lkg,
            }),
            last_rejection: None,
            loads: 1,
            rejections: 0,
            force_next: false,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "t", "path": "/x",
                "active": {"version": 3, "sha256": "ab", "loaded_at": "1970-01-01T00:00:00Z", "source": "lkg"},
                "last_rejection": null, "loads": 1, "rejections": 0, "force_next": false
            })
        );
    }
}
