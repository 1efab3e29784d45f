//! Operator overrides of steered targets (`POST /dns/targets/IP/up|down|drain|clear` on the
//! admin plane): force a target up or down whatever the checks say, or drain it (answered
//! only when no other target is). Kept in `state_dir/dns-overrides.json` (written
//! atomically) so a restart keeps them; without a state folder they last until restart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The overrides file is small; anything larger is ignored (and logged).
const MAX_OVERRIDES_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Force {
    /// Healthy, whatever the checks say.
    Up,
    /// Down, whatever the checks say.
    Down,
    /// Left out of answers while any other target can be answered.
    Drain,
}

pub struct Overrides {
    path: Option<PathBuf>,
    map: Mutex<BTreeMap<IpAddr, Force>>,
}

impl Overrides {
    /// The overrides saved in `state_dir`, if any.
    pub fn load(state_dir: Option<&Path>) -> Overrides {
        let path = state_dir.map(|d| d.join("dns-overrides.json"));
        let map = path
            .as_deref()
            .filter(|p| p.exists())
            .and_then(|p| match holdfast_artifact::read_bounded(p, MAX_OVERRIDES_BYTES) {
                Ok(src) => serde_json::from_slice(&src.content)
                    .map_err(|e| tracing::error!(path = %p.display(), error = %e, "dns: the overrides file is invalid; starting without overrides"))
                    .ok(),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "dns: cannot read the overrides file; starting without overrides");
                    None
                }
            })
            .unwrap_or_default();
        Overrides {
            path,
            map: Mutex::new(map),
        }
    }

    pub fn snapshot(&self) -> BTreeMap<IpAddr, Force> {
        holdfast_common::lock(&self.map).clone()
    }

    /// Set (or with `None` clear) the override of `ip`, and save. On a save failure the
    /// override still applies until restart; the error says so.
    pub fn set(&self, ip: IpAddr, force: Option<Force>) -> Result<(), String> {
        let mut map = holdfast_common::lock(&self.map);
        match force {
            Some(f) => map.insert(ip, f),
            None => map.remove(&ip),
        };
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&*map).map_err(|e| e.to_string())?;
        holdfast_artifact::write_atomic(path, &bytes).map_err(|e| {
            format!(
                "applied, but not saved to {} ({e}): it will be lost on restart",
                path.display()
            )
        })
    }
}
