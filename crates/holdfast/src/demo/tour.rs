//! What the demo adds to an edge: its two origins (stopped and started from the operator
//! page), its files in a temporary folder (the bot feature file the replay overwrites, the
//! DNS zone, the fallback page, `state_dir`), and the admin plane's demo controls.

use super::origin::DemoOrigin;
use serde_json::json;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The bot feature file the demo starts with (the repository's example).
const FEATURES: &str = include_str!("../../../../examples/bot-features.json");
/// The zone the steered name lives in; `www` is answered by steering, not by this file.
const ZONE: &str = "$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 60
@    IN NS  ns1
ns1  IN A   127.0.0.1
";
/// The steered name, answered with the healthy origin's address.
pub const STEERED_NAME: &str = "www.demo.test.";
/// The page the site route serves while both origins are down.
const FALLBACK: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Down for maintenance</title></head><body><h1>Down for maintenance</h1>\
<p>Both demo origins are down, so the edge serves this page itself (the route's fallback). \
Start an origin again from the operator page.</p></body></html>\n";

/// One origin and whether it is serving now.
struct Origin {
    origin: DemoOrigin,
    running: AtomicBool,
}

pub struct Tour {
    dir: tempfile::TempDir,
    origins: Vec<Origin>,
    replays: AtomicU64,
}

/// Where origin b listens: a second loopback address, so its DNS answer differs from a's
/// (127.0.0.1); 127.0.0.1 where the system has only that one.
fn second_loopback() -> IpAddr {
    let two = IpAddr::from([127, 0, 0, 2]);
    match std::net::TcpListener::bind((two, 0)) {
        Ok(_) => two,
        Err(_) => IpAddr::from([127, 0, 0, 1]),
    }
}

impl Tour {
    /// Start origins a (127.0.0.1) and b (127.0.0.2), write the demo's files.
    pub fn start() -> std::io::Result<Tour> {
        let dir = tempfile::Builder::new()
            .prefix("holdfast-demo-")
            .tempdir()?;
        holdfast_artifact::write_atomic(
            &dir.path().join("bot-features.json"),
            FEATURES.as_bytes(),
        )?;
        holdfast_artifact::write_atomic(&dir.path().join("demo.test.zone"), ZONE.as_bytes())?;
        holdfast_artifact::write_atomic(&dir.path().join("maintenance.html"), FALLBACK.as_bytes())?;
        let a = DemoOrigin::start_on("a", IpAddr::from([127, 0, 0, 1]))?;
        let b = DemoOrigin::start_on("b", second_loopback())?;
        let origins = [a, b]
            .into_iter()
            .map(|origin| Origin {
                origin,
                running: AtomicBool::new(true),
            })
            .collect();
        Ok(Tour {
            dir,
            origins,
            replays: AtomicU64::new(0),
        })
    }

    /// The folder of the demo's files (removed when the demo stops).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bot feature file the edge watches and the replay overwrites.
    pub fn feature_file(&self) -> PathBuf {
        self.dir().join("bot-features.json")
    }

    /// The address of origin `name`.
    pub fn origin_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.find(name).map(|o| o.origin.addr)
    }

    fn find(&self, name: &str) -> Option<&Origin> {
        self.origins.iter().find(|o| o.origin.name == name)
    }

    /// `/status`'s `demo`: the origins and their state, the replay's file and count.
    pub fn status(&self) -> serde_json::Value {
        let origins: Vec<_> = self
            .origins
            .iter()
            .map(|o| {
                json!({
                    "name": o.origin.name,
                    "address": o.origin.addr,
                    "pool": format!("origin-{}", o.origin.name),
                    "running": o.running.load(Ordering::Relaxed),
                })
            })
            .collect();
        json!({
            "origins": origins,
            "feature_file": self.feature_file(),
            "replays": self.replays.load(Ordering::Relaxed),
            "steered_name": STEERED_NAME,
        })
    }

    /// `POST /demo/origins/NAME/stop|start`.
    pub fn origin(&self, name: &str, start: bool) -> Result<serde_json::Value, (u16, String)> {
        let o = self.find(name).ok_or_else(|| {
            let names: Vec<&str> = self
                .origins
                .iter()
                .map(|o| o.origin.name.as_str())
                .collect();
            (
                404,
                format!("no demo origin {name:?}; the origins are {names:?}"),
            )
        })?;
        let done = if start {
            o.origin.resume()
        } else {
            o.origin.stop()
        };
        done.map_err(|e| (500, format!("demo origin {name} ({}): {e}", o.origin.addr)))?;
        o.running.store(start, Ordering::Relaxed);
        tracing::info!(origin = name, running = start, "demo origin switched");
        Ok(json!({
            "origin": name,
            "address": o.origin.addr,
            "running": start,
        }))
    }

    /// `POST /demo/replay`: what the generator did on 18 Nov 2025. The feature file is
    /// rewritten with a newer version and every feature repeated until the list is over
    /// `MAX_FEATURES`; the edge must reject it, keep the last good one and keep serving.
    pub fn replay(&self) -> Result<serde_json::Value, (u16, String)> {
        let file = self.feature_file();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            (500, format!("{}: {what}: {e}", file.display()))
        };
        let on_disk = std::fs::read(&file).map_err(|e| fail("cannot read", &e))?;
        let base: serde_json::Value = serde_json::from_slice(&on_disk)
            .or_else(|_| serde_json::from_str(FEATURES))
            .map_err(|e| fail("not JSON", &e))?;
        let bad = oversized(&base);
        let entries = bad
            .get("features")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        let text = bad.to_string();
        holdfast_artifact::write_atomic(&file, text.as_bytes())
            .map_err(|e| fail("cannot write", &e))?;
        self.replays.fetch_add(1, Ordering::Relaxed);
        tracing::info!(file = %file.display(), entries, "demo replay: wrote an oversized feature file");
        Ok(json!({
            "wrote": file,
            "version": bad.get("version"),
            "entries": entries,
            "max_features": holdfast_bot::MAX_FEATURES,
            "bytes": text.len(),
        }))
    }
}

/// `file` with a newer version and its features repeated until there are more than
/// `MAX_FEATURES` (the 18 Nov 2025 file: every entry duplicated, past the reader's limit).
fn oversized(file: &serde_json::Value) -> serde_json::Value {
    let version = file
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1)
        .saturating_add(1);
    let one: Vec<serde_json::Value> = file
        .get("features")
        .and_then(serde_json::Value::as_array)
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!({"name": "header_count", "weight": 0.1})]);
    let mut all = Vec::new();
    while all.len() <= holdfast_bot::MAX_FEATURES {
        all.extend(one.iter().cloned());
    }
    let mut bad = file.as_object().cloned().unwrap_or_default();
    bad.insert("version".into(), version.into());
    bad.insert("features".into(), all.into());
    serde_json::Value::Object(bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_replayed_file_is_newer_and_over_capacity() {
        let good: serde_json::Value = serde_json::from_str(FEATURES).unwrap();
        let bad = oversized(&good);
        assert_eq!(bad["version"], good["version"].as_u64().unwrap() + 1);
        let n = bad["features"].as_array().unwrap().len();
        assert!(n > holdfast_bot::MAX_FEATURES, "{n}");
        type File = holdfast_bot::BotFeatures;
        let rejected = <File as holdfast_artifact::ArtifactKind>::load(bad.to_string().as_bytes())
            .unwrap_err();
        assert_eq!(
            rejected.reason,
            holdfast_artifact::Reason::Capacity,
            "{rejected}"
        );
        <File as holdfast_artifact::ArtifactKind>::load(FEATURES.as_bytes()).unwrap();
    }
}
