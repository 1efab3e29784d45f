//! `holdfast check`: the same loading, validation and runtime build as a reload (TLS files
//! read, names resolved), offline, with nothing started.

use crate::controller::{load, ConfigSource};
use holdfast_proxy::{Metrics, State, StateInputs};
use std::path::Path;
use std::sync::Arc;

/// Validate one file; every problem is returned as `FILE: key.path: message (hint)`.
pub fn check_file(path: &Path) -> Result<(), Vec<String>> {
    let source = ConfigSource::File(path.to_path_buf());
    let loaded = load(&source)?;
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).map_err(|e| vec![format!("internal: {e}")])?;
    State::build(StateInputs {
        config: loaded.config,
        generation: 0,
        metrics: Arc::new(metrics),
        access_log: None,
        workers: 1,
        modules: Vec::new(),
        previous: None,
    })
    .map(|_| ())
    .map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {e}", source.label()))
            .collect()
    })
}
