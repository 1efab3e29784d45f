//! The instance's side of the fleet (issue 14): where it starts from (`start`: the last fleet
//! version kept in `state_dir`, or a 503-only configuration before the first), the agent that
//! registers under a lease, follows its target version and reports (`agent`), the controller
//! that runs rollouts while holding the etcd election (`leader`), the versions written to
//! `state_dir` and applied through the reload pipeline (`versions`), the health counters read
//! from the metrics registry (`counters`), what the fleet shares for TLS (`tls`: the ACME
//! manager's link to etcd and the election, the session-ticket key ring), and `holdfast
//! rollout` (`cli`). Nothing here is on
//! the request path: the data path only ever sees the `State` a reload swapped in.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the instance's side: `start` (a local file with `[fleet]`
//! starts on the last version applied, kept in `state_dir/fleet/vN/`, or before the first on a
//! configuration that answers 503), `agent` (thread "holdfast-fleet": lease, watch of
//! `target/ID` and `current`, fetch + write + `apply_source`, a report with the health counters
//! at every heartbeat, back-off while etcd is down), `leader` (campaigns on the agent's lease;
//! while elected, `holdfast_fleet::tick` every heartbeat), `versions` (the version folders),
//! `counters` (the gate's counters read from the metrics registry by name), `metrics`, `cli`
//! (`holdfast rollout`: `start` checks offline with `check::check_text` before touching etcd).

mod agent;
pub mod cli;
mod counters;
mod leader;
mod metrics;
mod start;
pub(crate) mod tls;
mod versions;

pub(crate) use agent::Agent;
pub(crate) use start::{prepare, waiting_text};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `[fleet.rollout]` as the fleet crate's defaults.
fn rollout_defaults(r: &holdfast_config::FleetRollout) -> holdfast_fleet::RolloutDefaults {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    holdfast_fleet::RolloutDefaults {
        stages: holdfast_fleet::stages::parse(&r.stages.join(","))
            .unwrap_or_else(|_| holdfast_fleet::RolloutDefaults::default().stages),
        bake_ms: ms(r.bake),
        fast_bake_ms: ms(r.fast_bake),
        min_requests: r.min_requests,
        data_wait_ms: ms(r.data_wait),
        margins: holdfast_fleet::Margins::uniform(holdfast_fleet::Margin {
            abs: r.abs_margin,
            rel: r.rel_margin,
        }),
    }
}
