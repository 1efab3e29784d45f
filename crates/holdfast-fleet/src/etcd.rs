//! `EtcdStore`: `FleetStore` over `etcd-client` (etcd v3 API: KV, Watch, Lease, Election;
//! etcd 3.4 and later). Every call is bounded by a timeout, so an unreachable or partitioned
//! etcd is an error the caller retries, never a hang.

use crate::error::StoreError;
use crate::store::{Compare, FleetStore, Kv, TxnOp};
use etcd_client::{
    Client, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, WatchOptions,
};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// A client for one etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    timeout: Duration,
}

impl EtcdStore {
    /// Connect lazily: this succeeds while etcd is down, and calls fail until it is up.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<EtcdStore, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::new("connect", e.to_string()))?;
        Ok(EtcdStore { client, timeout })
    }

    async fn bounded<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::new(op, e.to_string())),
            Err(_) => Err(StoreError::new(
                op,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

fn kv(k: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: k.value().to_vec(),
        mod_revision: k.mod_revision(),
    }
}

#[async_trait::async_trait]
impl FleetStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Kv>, StoreError> {
        let mut c = self.client.clone();
        let resp = self.bounded("get", c.get(key, None)).await?;
        Ok(resp.kvs().first().map(kv))
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Vec<Kv>, StoreError> {
        let mut c = self.client.clone();
        let resp = self
            .bounded("get", c.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        Ok(resp.kvs().iter().map(kv).collect())
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), StoreError> {
        let mut c = self.client.clone();
        let options = lease.map(|l| PutOptions::new().with_lease(l));
        self.bounded("put", c.put(key, value, options)).await?;
        Ok(())
    }

    async fn txn(&self, when: Vec<Compare>, then: Vec<TxnOp>) -> Result<bool, StoreError> {
        let compares: Vec<etcd_client::Compare> = when
            .into_iter()
            .map(|c| match c {
                Compare::ModRevision(k, rev) => {
                    etcd_client::Compare::mod_revision(k, CompareOp::Equal, rev)
                }
            })
            .collect();
        let ops: Vec<etcd_client::TxnOp> = then
            .into_iter()
            .map(|op| match op {
                TxnOp::Put(k, v) => etcd_client::TxnOp::put(k, v, None),
                TxnOp::Delete(k) => etcd_client::TxnOp::delete(k, None),
                TxnOp::DeletePrefix(p) => {
                    etcd_client::TxnOp::delete(p, Some(DeleteOptions::new().with_prefix()))
                }
            })
            .collect();
        let mut c = self.client.clone();
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self.bounded("txn", c.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    async fn watch_prefix(&self, prefix: &str) -> Result<mpsc::Receiver<()>, StoreError> {
        let mut c = self.client.clone();
        let mut stream = self
            .bounded(
                "watch",
                c.watch(prefix, Some(WatchOptions::new().with_prefix())),
            )
            .await?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.message().await {
                if resp.canceled() {
                    break;
                }
                if matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(_))) {
                    break;
                }
            }
        });
        Ok(rx)
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        let mut c = self.client.clone();
        let resp = self
            .bounded("lease grant", c.lease_grant(ttl_secs, None))
            .await?;
        Ok(resp.id())
    }

    async fn lease_keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let mut c = self.client.clone();
        let alive = async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            let resp = stream.message().await?;
            Ok(resp.is_some_and(|r| r.ttl() > 0))
        };
        self.bounded("lease keep-alive", alive).await
    }

    async fn lease_revoke(&self, lease: i64) -> Result<(), StoreError> {
        let mut c = self.client.clone();
        self.bounded("lease revoke", c.lease_revoke(lease)).await?;
        Ok(())
    }

    async fn campaign(&self, election: &str, value: &str, lease: i64) -> Result<(), StoreError> {
        // Unbounded on purpose: a campaign waits for the current leader to go.
        let mut c = self.client.clone();
        c.campaign(election, value, lease)
            .await
            .map_err(|e| StoreError::new("campaign", e.to_string()))?;
        Ok(())
    }

    async fn leader(&self, election: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.client.clone();
        match self.bounded("leader", c.leader(election)).await {
            Ok(resp) => Ok(resp
                .kv()
                .map(|k| String::from_utf8_lossy(k.value()).into_owned())),
            // etcd answers "election: no leader" as an error.
            Err(e) if e.detail.contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
