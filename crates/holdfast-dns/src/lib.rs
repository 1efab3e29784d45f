//! Holdfast's authoritative DNS server (`[dns]`): zones from RFC 1035 zone files taken in
//! through the artifact pipeline (`zone`), names steered over health-checked pools
//! (`steer`) that never answer empty, health votes shared with peers (`quorum`), UDP zone answers pre-encoded per zone load (`wire`), a hickory-server `RequestHandler` that answers steered
//! names itself and everything else from hickory's catalog (`handler`), and the listener
//! thread with its own runtime (`server`). It never runs on a data-path worker.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the authoritative DNS server (`[dns]`), on `hickory-server`:
//! `zone` (`ZoneFile`, the artifact kind of RFC 1035 zone files: hickory's parser with the
//! configured origin, then SOA/CNAME/empty/type checks; version = SOA serial compared with RFC
//! 1982 arithmetic through `ArtifactKind::is_newer`; the origin and steered names reach the
//! loader as `ArtifactOptions::context`), `steer` (`Steerer`: per steered name, the policy over
//! the targets' health, hold-down, shrink in steps, the never-empty fallback; publishes an
//! immutable `Answer`: addresses, or a CNAME to a provider's hostname for a pool given one), `quorum` (`QuorumHealth`: this instance's checks outvoted or not by its
//! peers'; `GET /dns/peer` serves the own view, a poller fetches the peers'), `overrides`
//! (operator up/down/drain, persisted), `handler` (hickory's `RequestHandler`: steered names
//! answered from the published `Answer`, the rest by hickory's `Catalog` of the active zones,
//! whose NOERROR answers are kept per catalog generation in an answer cache (`DashMap`, bounded,
//! emptied with every catalog swap) so a repeated question skips hickory's look-up;
//! non-IN classes refused; `Generation`: catalog + answer cache + pre-encoded map, built whole
//! on every zone load), `negative` (the zone handler the catalog uses: hickory's in-memory zone
//! whose negative answers carry the SOA with TTL = min(TTL, MINIMUM), RFC 2308 §3), `wire` (the
//! UDP fast path: `AnswerMap`, the catalog's own encoded answer per (lowercased name, type) of
//! every owner name, built once per generation; a plain query — one IN question, no EDNS or a
//! bare EDNS(0) OPT, fits the client's size — is answered by copying those bytes and patching
//! ID, RD/CD, question case and OPT; NXDOMAIN synthesised with the negative SOA for names the
//! zone does not hold; everything else returns `false`), `udp` (our UDP loop: the map first,
//! else hickory's decoding and the `Handler` in a task, FORMERR/drop as hickory's server does),
//! `server` (`DnsHandle`: UDP and TCP bound on one port, its own thread "holdfast-dns" and
//! current-thread runtime running the UDP loop, hickory's server for TCP and the 100 ms
//! steering tick; one `Artifact<ZoneFile>` per zone with its LKG under
//! `state_dir/dns/<origin>/`, watched; an applied zone rebuilds the catalog, swapped whole),
//! `fuzzing` (the packet path without sockets, for `fuzz/`).
//!
//! **Invariant:** a steered name never answers empty: with every target down it keeps the last
//! healthy set (or all targets) and counts `holdfast_dns_empty_answer_prevented_total`.
//!
//! **Invariant:** the DNS query path reads two `ArcSwap` snapshots (the catalog generation
//! with its answer cache and pre-encoded map, steered answers) and holds no lock across an `.await`; health, peers and zone loads
//! only change what the next snapshot holds.
//!
//! DNS steering reads the same health. Pools named by a `[[dns.steered]]` name get a TCP check
//! when they have no `[pools.health]` (added in `holdfast-config` validation), so the one
//! checker above judges them; `holdfast` hands `holdfast-dns` a `HealthSource` that reads
//! `State::pool_health` (server address, down or not) from whatever `State` is current. On the
//! DNS thread, every 100 ms tick: own verdicts → quorum → operator overrides → hold-down →
//! policy → never-empty fallback → published `Answer`.
//!
//! Quorum across vantage points (`holdfast-dns/src/quorum.rs`): each instance serves its own
//! checks' verdict per steered target on `GET /dns/peer` (admin plane, `Authorization: Bearer
//! <peer_token>`) and fetches every peer's every `peer_interval`. For each target, the voters
//! are this instance plus the peers heard from within 3 intervals that report the target; the
//! target is down when at least `min(quorum, voters)` of them see it down (`quorum` defaults to
//! a majority of all configured vantage points). So one instance's broken network cannot move a
//! name, and an instance cut off from its peers steers on its own checks; `/status` shows each
//! peer's reachability and each target's votes.
//!
//! **Invariant:** nothing a peer sends can take a target down alone (its vote is one of
//! `voters`), and an unreachable peer only lowers the count of voters.

#![forbid(unsafe_code)]

mod error;
pub mod fuzzing;
mod handler;
mod metrics;
mod negative;
mod overrides;
mod quorum;
mod server;
mod steer;
#[cfg(test)]
mod steer_sim;
mod udp;
mod wire;
mod zone;

pub use error::DnsError;
pub use metrics::DnsMetrics;
pub use overrides::Force;
pub use quorum::{PeerStatus, PeerView, QuorumHealth, TargetVote, VoteStatus};
pub use server::{bind as bind_udp_tcp, DnsHandle, DnsStatus, QuorumStatus, SteeredStatus};
pub use steer::{HealthSource, TargetStatus};
pub use zone::{serial_newer, Zone, ZoneFile, MAX_ZONE_BYTES};
