//! Holdfast's fleet layer on etcd v3: where fleet state lives (`layout`), what is stored there
//! (`record`), the few etcd operations used (`store`: the `FleetStore` trait, `EtcdStore`, and
//! the in-memory `MemoryStore` for tests), the health gate as pure arithmetic (`gate`), the
//! stages of a rollout (`stages`), the rollout state machine (`rollout`: pure decisions), the
//! controller's tick that reads the store, decides and writes in one transaction (`driver`),
//! and the operator's intents that `holdfast rollout` writes (`ops`). Nothing here is on the
//! request path: instances apply versions through the binary's reload pipeline.

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

pub use driver::{tick, TickOutcome};
pub use error::{FleetError, StoreError};
pub use etcd::EtcdStore;
pub use gate::{Margin, Margins, Signal};
pub use layout::Layout;
pub use memory::MemoryStore;
pub use record::{
    Counters, HistoryEntry, InstanceReport, Intent, Phase, Rejection, RolloutRecord, RolloutState,
    VersionRecord,
};
pub use rollout::RolloutDefaults;
pub use stages::Stage;
pub use store::{Compare, FleetStore, Kv, TxnOp};
