//! `MemoryStore`: an in-memory `FleetStore` with etcd's semantics where the fleet relies on
//! them (revisions, compare-and-swap, leases that drop their keys), plus fault injection so
//! tests can make any operation fail. For tests; never used by a running edge.

use crate::error::StoreError;
use crate::store::{Compare, FleetStore, Kv, TxnOp};
use holdfast_common::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

#[derive(Default)]
struct Inner {
    data: BTreeMap<String, (Vec<u8>, i64, Option<i64>)>,
    revision: i64,
    next_lease: i64,
    leases: HashMap<i64, bool>,
    leader: Option<(String, String, i64)>,
    /// Operation names that fail (all of them with "*").
    failing: Vec<&'static str>,
    /// Operations that fail once each, counted down.
    fail_after: Option<usize>,
    watchers: Vec<(String, mpsc::Sender<()>)>,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Make `op` (`get`, `get_prefix`, `put`, `txn`, ..., or `*`) fail until `heal`.
    pub fn fail(&self, op: &'static str) {
        self.lock().failing.push(op);
    }

    /// Let `n` more operations succeed, then fail every one until `heal`.
    pub fn fail_after(&self, n: usize) {
        self.lock().fail_after = Some(n);
    }

    pub fn heal(&self) {
        let mut i = self.lock();
        i.failing.clear();
        i.fail_after = None;
    }

    /// Expire a lease now, as etcd does when its keep-alives stop: its keys go.
    pub fn expire(&self, lease: i64) {
        let mut i = self.lock();
        i.leases.insert(lease, false);
        let gone: Vec<String> = i
            .data
            .iter()
            .filter(|(_, (_, _, l))| *l == Some(lease))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            i.data.remove(k);
        }
        if i.leader.as_ref().is_some_and(|(_, _, l)| *l == lease) {
            i.leader = None;
        }
        i.revision += 1;
        notify(&mut i, &gone);
    }

    /// A copy of every key and value (tests compare states before and after).
    pub fn dump(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock()
            .data
            .iter()
            .map(|(k, (v, _, _))| (k.clone(), v.clone()))
            .collect()
    }

    fn check(&self, op: &'static str) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let mut i = self.lock();
        if i.failing.iter().any(|f| *f == op || *f == "*") {
            return Err(StoreError::new(op, "injected failure (etcd unreachable)"));
        }
        if let Some(n) = i.fail_after.as_mut() {
            if *n == 0 {
                return Err(StoreError::new(op, "injected failure (etcd unreachable)"));
            }
            *n -= 1;
        }
        Ok(i)
    }
}

fn notify(i: &mut Inner, keys: &[String]) {
    i.watchers.retain(|(prefix, tx)| {
        if keys.iter().any(|k| k.starts_with(prefix.as_str())) {
            // A full channel already has a wake-up pending.
            !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(_)))
        } else {
            !tx.is_closed()
        }
    });
}

fn kv(key: &str, entry: &(Vec<u8>, i64, Option<i64>)) -> Kv {
    Kv {
        key: key.to_string(),
        value: entry.0.clone(),
        mod_revision: entry.1,
    }
}

#[async_trait::async_trait]
impl FleetStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Kv>, StoreError> {
        let i = self.check("get")?;
        Ok(i.data.get(key).map(|e| kv(key, e)))
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Vec<Kv>, StoreError> {
        let i = self.check("get_prefix")?;
        Ok(i.data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| kv(k, e))
            .collect())
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), StoreError> {
        let mut i = self.check("put")?;
        if let Some(l) = lease {
            if i.leases.get(&l) != Some(&true) {
                return Err(StoreError::new("put", "requested lease not found"));
            }
        }
        i.revision += 1;
        let rev = i.revision;
        i.data.insert(key.to_string(), (value, rev, lease));
        notify(&mut i, &[key.to_string()]);
        Ok(())
    }

    async fn txn(&self, when: Vec<Compare>, then: Vec<TxnOp>) -> Result<bool, StoreError> {
        let mut i = self.check("txn")?;
        let holds = when.iter().all(|c| match c {
            Compare::ModRevision(k, rev) => i.data.get(k).map_or(0, |e| e.1) == *rev,
        });
        if !holds {
            return Ok(false);
        }
        i.revision += 1;
        let rev = i.revision;
        let mut touched = Vec::new();
        for op in then {
            match op {
                TxnOp::Put(k, v) => {
                    i.data.insert(k.clone(), (v, rev, None));
                    touched.push(k);
                }
                TxnOp::Delete(k) => {
                    i.data.remove(&k);
                    touched.push(k);
                }
                TxnOp::DeletePrefix(p) => {
                    let gone: Vec<String> = i
                        .data
                        .keys()
                        .filter(|k| k.starts_with(&p))
                        .cloned()
                        .collect();
                    for k in gone {
                        i.data.remove(&k);
                        touched.push(k);
                    }
                }
            }
        }
        notify(&mut i, &touched);
        Ok(true)
    }

    async fn watch_prefix(&self, prefix: &str) -> Result<mpsc::Receiver<()>, StoreError> {
        let mut i = self.check("watch")?;
        let (tx, rx) = mpsc::channel(1);
        i.watchers.push((prefix.to_string(), tx));
        Ok(rx)
    }

    async fn lease_grant(&self, _ttl_secs: i64) -> Result<i64, StoreError> {
        let mut i = self.check("lease_grant")?;
        i.next_lease += 1;
        let id = i.next_lease;
        i.leases.insert(id, true);
        Ok(id)
    }

    async fn lease_keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let i = self.check("lease_keep_alive")?;
        Ok(i.leases.get(&lease) == Some(&true))
    }

    async fn lease_revoke(&self, lease: i64) -> Result<(), StoreError> {
        drop(self.check("lease_revoke")?);
        self.expire(lease);
        Ok(())
    }

    async fn campaign(&self, election: &str, value: &str, lease: i64) -> Result<(), StoreError> {
        loop {
            {
                let mut i = self.check("campaign")?;
                if i.leader.is_none() {
                    i.leader = Some((election.to_string(), value.to_string(), lease));
                    return Ok(());
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn leader(&self, election: &str) -> Result<Option<String>, StoreError> {
        let i = self.check("leader")?;
        Ok(i.leader
            .as_ref()
            .filter(|(e, _, _)| e == election)
            .map(|(_, v, _)| v.clone()))
    }
}
