//! The operator's module overrides (the kill switch), kept in `state_dir` so they survive a
//! restart: `module-overrides.json`, a map of module name to `disabled` / `enabled`.

use crate::Override;
use std::collections::BTreeMap;
use std::path::Path;

/// The file in `state_dir` that keeps the operator's module overrides.
pub const OVERRIDES_FILE: &str = "module-overrides.json";

/// The operator's overrides, by module name.
pub(crate) type Overrides = BTreeMap<String, Override>;

/// Overrides by module name; a missing or unreadable file means none (and says so).
pub(crate) fn read(state_dir: Option<&Path>) -> Overrides {
    let Some(dir) = state_dir else {
        return BTreeMap::new();
    };
    let path = dir.join(OVERRIDES_FILE);
    let text = match holdfast_artifact::read_bounded_text(&path, 64 << 10) {
        Ok(source) => source.content,
        Err(holdfast_artifact::ReadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return BTreeMap::new()
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "module overrides not read");
            return BTreeMap::new();
        }
    };
    let parsed: Result<BTreeMap<String, String>, _> = serde_json::from_str(&text);
    match parsed {
        Ok(map) => map
            .into_iter()
            .filter_map(|(name, state)| {
                let o = match state.as_str() {
                    "disabled" => Override::Disabled,
                    "enabled" => Override::Enabled,
                    _ => return None,
                };
                Some((name, o))
            })
            .collect(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "module overrides not read");
            BTreeMap::new()
        }
    }
}

/// Write atomically: a temporary file, then rename over the old one.
pub(crate) fn write(dir: &Path, all: &Overrides) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let map: BTreeMap<&str, &str> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let text = serde_json::to_string_pretty(&map).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{OVERRIDES_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(OVERRIDES_FILE))
}
