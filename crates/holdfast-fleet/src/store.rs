//! `FleetStore`: the few etcd operations the fleet uses (get, put, a compare-and-swap
//! transaction, watch, leases, election). `EtcdStore` implements it over `etcd-client`;
//! `MemoryStore` is the in-memory fake the state machine's tests run on.

use crate::error::StoreError;
use tokio::sync::mpsc;

/// A stored key, its value and the revision that last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A transaction's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key was last changed at this revision (0: the key does not exist).
    ModRevision(String, i64),
}

/// A transaction's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put(String, Vec<u8>),
    Delete(String),
    DeletePrefix(String),
}

#[async_trait::async_trait]
pub trait FleetStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Kv>, StoreError>;
    /// Every key under `prefix`, in key order.
    async fn get_prefix(&self, prefix: &str) -> Result<Vec<Kv>, StoreError>;
    /// Put, under `lease` if given (the key disappears when the lease expires).
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), StoreError>;
    /// All of `then` if every `when` holds; `Ok(false)` (nothing written) otherwise.
    async fn txn(&self, when: Vec<Compare>, then: Vec<TxnOp>) -> Result<bool, StoreError>;
    /// A message for each change under `prefix`, until the watch breaks (the channel closes).
    async fn watch_prefix(&self, prefix: &str) -> Result<mpsc::Receiver<()>, StoreError>;
    async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, StoreError>;
    /// One keep-alive; `Ok(false)` if the lease has expired.
    async fn lease_keep_alive(&self, lease: i64) -> Result<bool, StoreError>;
    async fn lease_revoke(&self, lease: i64) -> Result<(), StoreError>;
    /// Wait until elected leader of `election` (leadership lasts while `lease` lives).
    async fn campaign(&self, election: &str, value: &str, lease: i64) -> Result<(), StoreError>;
    /// The current leader's value, if any.
    async fn leader(&self, election: &str) -> Result<Option<String>, StoreError>;
}
