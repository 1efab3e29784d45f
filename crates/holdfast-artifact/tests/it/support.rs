//! The test kind and a scratch folder with an artifact in it.

use holdfast_artifact::{
    parse_json, Artifact, ArtifactKind, ArtifactMetrics, ArtifactOptions, LoadOutcome, Reason,
    Rejection,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// The reader's room: a file with more items is rejected.
pub const CAPACITY: usize = 8;

pub struct List;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    version: u64,
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    name: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ListValue {
    pub version: u64,
    pub names: Vec<String>,
}

impl ArtifactKind for List {
    type Value = ListValue;
    const NAME: &'static str = "test-list";
    const MAX_BYTES: u64 = 4096;

    fn load(bytes: &[u8]) -> Result<ListValue, Rejection> {
        let file: ListFile = parse_json(bytes)?;
        let v = file.version;
        if file.items.len() > CAPACITY {
            return Err(Rejection::new(
                Reason::Capacity,
                format!("{} items, room for {CAPACITY}", file.items.len()),
            )
            .with_version(v));
        }
        if file.items.is_empty() {
            return Err(Rejection::new(Reason::Empty, "no items").with_version(v));
        }
        let mut seen = HashSet::new();
        for item in &file.items {
            if !seen.insert(item.name.as_str()) {
                return Err(
                    Rejection::new(Reason::Duplicate, format!("{} twice", item.name))
                        .with_version(v),
                );
            }
        }
        Ok(ListValue {
            version: v,
            names: file.items.into_iter().map(|i| i.name).collect(),
        })
    }

    fn version(value: &ListValue) -> u64 {
        value.version
    }

    fn entries(value: &ListValue) -> usize {
        value.names.len()
    }
}

/// A kind whose loader panics on `boom` (a consumer's bug).
pub struct Panicky;

impl ArtifactKind for Panicky {
    type Value = u64;
    const NAME: &'static str = "panicky";
    const MAX_BYTES: u64 = 64;

    fn load(bytes: &[u8]) -> Result<u64, Rejection> {
        if bytes == b"boom" {
            panic!("index out of range");
        }
        Ok(bytes.len() as u64)
    }
    fn version(value: &u64) -> u64 {
        *value
    }
    fn entries(_: &u64) -> usize {
        1
    }
}

/// `{"version": V, "items": [{"name": "i0"}, ... n items]}`.
pub fn list(version: u64, n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!(r#"{{"name": "i{i}"}}"#)).collect();
    format!(
        r#"{{"version": {version}, "items": [{}]}}"#,
        items.join(", ")
    )
}

/// A scratch folder with `list.json` in it, a state folder, and a fresh registry.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub state: PathBuf,
    pub registry: prometheus::Registry,
    pub metrics: Arc<ArtifactMetrics>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.json");
        let state = dir.path().join("state");
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(ArtifactMetrics::new(&registry).unwrap());
        Env {
            dir,
            path,
            state,
            registry,
            metrics,
        }
    }

    /// Options with a state folder and the default shrink guard.
    pub fn options(&self) -> ArtifactOptions {
        ArtifactOptions {
            state_dir: Some(self.state.clone()),
            ..ArtifactOptions::new(&self.path)
        }
    }

    pub fn artifact(&self) -> Artifact<List> {
        Artifact::new(self.options(), self.metrics.clone())
    }

    pub fn write(&self, bytes: impl AsRef<[u8]>) {
        std::fs::write(&self.path, bytes).unwrap();
    }

    pub fn lkg(&self) -> PathBuf {
        holdfast_artifact::lkg_path(&self.state, List::NAME)
    }

    pub fn rejected(&self, reason: Reason) -> u64 {
        self.metrics.rejected(List::NAME, reason)
    }

    pub fn loads(&self, result: &str) -> u64 {
        self.metrics.loads(List::NAME, result)
    }
}

/// The reason of a rejected outcome (fails on any other outcome).
#[track_caller]
pub fn reason(outcome: LoadOutcome) -> Reason {
    match outcome {
        LoadOutcome::Rejected(r) => r.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The active version of `a` (fails when none).
#[track_caller]
pub fn active_version<K: ArtifactKind>(a: &Artifact<K>) -> u64 {
    a.current().as_ref().expect("an active value").version
}
