//! Holdfast's authoritative DNS server (`[dns]`): zones from RFC 1035 zone files taken in
//! through the artifact pipeline (`zone`), names steered over health-checked pools
//! (`steer`) that never answer empty, health votes shared with peers (`quorum`), a hickory-server `RequestHandler` that answers steered
//! names itself and everything else from hickory's catalog (`handler`), and the listener
//! thread with its own runtime (`server`). It never runs on a data-path worker.

#![forbid(unsafe_code)]

mod error;
pub mod fuzzing;
mod handler;
mod metrics;
mod overrides;
mod quorum;
mod server;
mod steer;
#[cfg(test)]
mod steer_sim;
mod zone;

pub use error::DnsError;
pub use metrics::DnsMetrics;
pub use overrides::Force;
pub use quorum::{PeerStatus, PeerView, QuorumHealth, TargetVote, VoteStatus};
pub use server::{DnsHandle, DnsStatus, QuorumStatus, SteeredStatus};
pub use steer::{HealthSource, TargetStatus};
pub use zone::{serial_newer, Zone, ZoneFile, MAX_ZONE_BYTES};
