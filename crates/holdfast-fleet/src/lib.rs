//! Holdfast's fleet layer on etcd v3: where fleet state lives (`layout`), what is stored there
//! (`record`), the few etcd operations used (`store`: the `FleetStore` trait, `EtcdStore`, and
//! the in-memory `MemoryStore` for tests), the health gate as pure arithmetic (`gate`), the
//! stages of a rollout (`stages`), the rollout state machine (`rollout`: pure decisions), the
//! controller's tick that reads the store, decides and writes in one transaction (`driver`),
//! and the operator's intents that `holdfast rollout` writes (`ops`). Nothing here is on the
//! request path: instances apply versions through the binary's reload pipeline.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the fleet layer on etcd v3 (docs/fleet.md). `layout` (every key
//! under the prefix: `versions/N`, `blobs/SHA256`, `instances/ID` under each instance's lease,
//! `current`, `target/ID`, `rollout`, `intent`, `history/N`, `defaults`, `election`,
//! `tls/ticket_keys`, `acme/certs/SET`, `acme/challenges/SET`), `tickets` (the
//! session-ticket key ring the controller rotates: pure `plan`, one-transaction `rotate`),
//! `record` (the JSON values), `store` (`FleetStore`: get, put, a compare-and-swap `txn`,
//! watch, leases, election; `EtcdStore` over `etcd-client` with every call bounded by a timeout; `MemoryStore`,
//! the fake with fault injection the state machine's tests run on), `gate` (the health gate as
//! pure arithmetic: absolute and relative margins, never a pass on no data), `stages`,
//! `rollout` (the rollout state machine, pure: record + live instances + intent + time → next
//! record and target changes), `driver` (`tick`: read, `rollout::advance`, write the whole step
//! in one transaction conditioned on the record's revision) and `ops` (what `holdfast rollout`
//! writes: versions, the new rollout, intents).
//!
//! **Invariant:** fleet state lives only in etcd and in each instance's `state_dir/fleet/`;
//! after `rollout start` creates a rollout, only the controller holding the etcd election writes
//! it, one transaction per step, so a controller that dies mid-rollout leaves a record the next
//! one continues.
//!
//! **Invariant:** no etcd call is on the request path. An instance applies a fleet version
//! through the same reload pipeline as a file (`Controller::apply_source`), on the agent's own
//! thread; the data path only ever sees the `State` that reload swapped in, so etcd slow or
//! down changes nothing that is served.

mod driver;
mod error;
mod etcd;
pub mod gate;
mod layout;
mod memory;
pub mod ops;
mod record;
pub mod rollout;
#[cfg(test)]
mod rollout_sim;
pub mod stages;
mod store;
pub mod tickets;

pub use driver::{tick, TickOutcome};
pub use error::{FleetError, StoreError};
pub use etcd::EtcdStore;
pub use gate::{Margin, Margins, Signal};
pub use layout::Layout;
pub use memory::MemoryStore;
pub use record::{
    HealthCounters, HistoryEntry, InstanceReport, Intent, Phase, RolloutRecord, RolloutState,
    VersionRecord, VersionRejection,
};
pub use rollout::RolloutDefaults;
pub use stages::RolloutStage;
pub use store::{Compare, FleetStore, Kv, TxnOp};
pub use tickets::{TicketKeyRecord, TicketKeyRing};
