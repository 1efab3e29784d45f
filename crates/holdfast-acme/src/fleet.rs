//! One certificate per name set for a whole fleet (`[fleet]` with `[[edge.acme]]`), through
//! etcd. Only the instance holding the fleet election orders; it stores each set's chain and
//! key at `acme/certs/SET` and, while an order waits for the CA, its challenges at
//! `acme/challenges/SET` (under a lease of their own, revoked when the order ends), because
//! the CA's validation may reach any instance behind a load balancer. Every instance (the
//! elected one too) reads both: a certificate goes through the same checks as one read from
//! `state_dir` (parses, names every domain, not expired, not older than the one serving)
//! before it is stored in `state_dir` and served; the challenges are answered from the
//! `CertStore`'s fleet tables, and acknowledged at `acme/seen/ID` so the elected instance
//! tells the CA only once every live instance can answer (or after `ACK_WAIT`).
//!
//! Nothing here is on the request path: it runs on the manager's runtime, and the data path
//! reads only the `CertStore`. **Invariant:** a value in etcd that fails a check never
//! replaces a certificate that serves; it is counted and logged once per revision.

use crate::cert::{self, Issued};
use crate::manager::{key_of, Shared};
use crate::storage::set_id;
use crate::AcmeError;
use holdfast_common::lock;
use holdfast_fleet::{FleetStore, Layout, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_rustls::rustls::sign::CertifiedKey;

/// A pending order's challenges live at most this long in etcd (longer than the CA's poll).
const CHALLENGE_TTL_SECS: i64 = 300;
/// How long the elected instance waits for every live instance to hold a challenge before
/// telling the CA to validate anyway.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// A connection to the fleet's etcd, made on the manager's own runtime.
pub type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<Arc<dyn FleetStore>, StoreError>> + Send>>;

/// How the manager takes part in a fleet; given by the binary when `[fleet]` is set.
#[derive(Clone)]
pub struct AcmeFleet {
    pub connect: Arc<dyn Fn() -> ConnectFuture + Send + Sync>,
    pub layout: Layout,
    /// This instance's id (`instances/ID`).
    pub instance: String,
    /// Whether this instance holds the fleet election (the fleet agent's controller sets it).
    pub leading: watch::Receiver<bool>,
    /// How often etcd is read again besides its watch (the fleet's heartbeat).
    pub resync: Duration,
}

/// `acme/challenges/SET`: the pending order's key authorizations, by token (`http-01`) and
/// by name (`tls-alpn-01`; each instance makes its own answer certificate from it).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChallengeRecord {
    #[serde(default)]
    pub http: BTreeMap<String, String>,
    #[serde(default)]
    pub alpn: BTreeMap<String, String>,
}

/// The manager's fleet side.
pub(crate) struct FleetSide {
    pub link: AcmeFleet,
    store: tokio::sync::Mutex<Option<Arc<dyn FleetStore>>>,
    /// Each certificate key's revision last judged (a bad value is counted once).
    judged: Mutex<HashMap<String, i64>>,
    /// `tls-alpn-01` answers made from etcd's records: name -> (key authorization, answer).
    alpn: Mutex<HashMap<String, (String, Arc<CertifiedKey>)>>,
    /// The challenges' revision this instance last acknowledged.
    acked: Mutex<i64>,
    /// Wakes the sets' tasks when a certificate from etcd moved their renewal.
    pub changed: Notify,
}

impl FleetSide {
    pub fn new(link: AcmeFleet) -> FleetSide {
        FleetSide {
            link,
            store: tokio::sync::Mutex::new(None),
            judged: Mutex::new(HashMap::new()),
            alpn: Mutex::new(HashMap::new()),
            acked: Mutex::new(0),
            changed: Notify::new(),
        }
    }

    pub fn leading(&self) -> bool {
        *self.link.leading.borrow()
    }

    pub async fn store(&self) -> Result<Arc<dyn FleetStore>, StoreError> {
        let mut slot = self.store.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        let s = (self.link.connect)().await?;
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }
}

/// Follow etcd for as long as the manager runs: read at every change and every `resync`.
pub(crate) async fn follow(shared: Arc<Shared>, side: Arc<FleetSide>) {
    let resync = side.link.resync.max(Duration::from_millis(100));
    let mut watches: Option<(mpsc::Receiver<()>, mpsc::Receiver<()>)> = None;
    let mut leading = side.link.leading.clone();
    // Logged when etcd stops answering, not at every read while it is down.
    let mut reachable = true;
    loop {
        let read = match side.store().await {
            Ok(store) => {
                if watches.is_none() {
                    let layout = &side.link.layout;
                    let certs = store.watch_prefix(&layout.acme_certs()).await;
                    let challenges = store.watch_prefix(&layout.acme_challenges_all()).await;
                    watches = certs.ok().zip(challenges.ok());
                }
                sync(&shared, &side, store.as_ref()).await
            }
            Err(e) => Err(e),
        };
        match read {
            Ok(()) => reachable = true,
            Err(e) if reachable => {
                reachable = false;
                tracing::warn!(error = %e, "ACME: cannot read the fleet's certificates from etcd; serving what this instance has, reading again at every heartbeat");
            }
            Err(_) => {}
        }
        let woke = async {
            match watches.as_mut() {
                Some((a, b)) => tokio::select! {
                    r = a.recv() => r.is_some(),
                    r = b.recv() => r.is_some(),
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = woke => if !alive { watches = None },
            _ = tokio::time::sleep(resync) => {}
            r = leading.changed() => if r.is_err() { return },
        }
    }
}

/// One read of what etcd holds: certificates judged and installed, challenges answered and
/// acknowledged; the elected instance publishes a certificate it has that etcd lacks.
pub(crate) async fn sync(
    shared: &Shared,
    side: &FleetSide,
    store: &dyn FleetStore,
) -> Result<(), StoreError> {
    let layout = &side.link.layout;
    let stored: HashMap<String, (Vec<u8>, i64)> = store
        .get_prefix(&layout.acme_certs())
        .await?
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
        .collect();
    for set in shared.sets() {
        let key = layout.acme_cert(&set_id(&set.domains));
        let entry = stored.get(&key);
        if let Some((value, revision)) = entry {
            let fresh = lock(&side.judged).insert(key.clone(), *revision) != Some(*revision);
            if fresh {
                match shared.install_shared(&set, value) {
                    Ok(true) => {
                        shared.metrics.count_fleet("installed");
                        side.changed.notify_waiters();
                    }
                    Ok(false) => {}
                    Err(why) => {
                        shared.metrics.count_fleet("rejected");
                        tracing::error!(key = %key, names = %key_of(&set), error = %why, "ACME: the fleet's certificate in etcd is refused; the one serving stays (the elected instance replaces it)");
                    }
                }
            }
        }
        if side.leading() {
            publish_if_newer(shared, side, store, &set, entry.map(|(v, _)| v.as_slice())).await;
        }
    }
    let challenges = store.get_prefix(&layout.acme_challenges_all()).await?;
    let revision = challenges.iter().map(|kv| kv.mod_revision).max();
    let mut record = ChallengeRecord::default();
    for kv in challenges {
        match serde_json::from_slice::<ChallengeRecord>(&kv.value) {
            Ok(r) => {
                record.http.extend(r.http);
                record.alpn.extend(r.alpn);
            }
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "ACME: a fleet challenge in etcd does not decode; ignored")
            }
        }
    }
    install_challenges(shared, side, &record);
    if let Some(rev) = revision.filter(|r| *lock(&side.acked) < *r) {
        store
            .put(
                &layout.acme_seen(&side.link.instance),
                rev.to_string().into_bytes(),
                None,
            )
            .await?;
        *lock(&side.acked) = rev;
    }
    Ok(())
}

fn install_challenges(shared: &Shared, side: &FleetSide, record: &ChallengeRecord) {
    let http = record
        .http
        .iter()
        .map(|(t, k)| (t.clone(), Arc::from(k.as_str())))
        .collect();
    let mut made = lock(&side.alpn);
    made.retain(|name, (ka, _)| record.alpn.get(name) == Some(ka));
    for (name, ka) in &record.alpn {
        if made.contains_key(name) {
            continue;
        }
        let digest = Sha256::digest(ka.as_bytes());
        match cert::alpn_challenge(name, digest.as_slice()) {
            Ok(answer) => {
                made.insert(name.clone(), (ka.clone(), Arc::new(answer)));
            }
            Err(e) => {
                tracing::warn!(name = %name, error = %e, "ACME: cannot make the tls-alpn-01 answer")
            }
        }
    }
    let alpn = made
        .iter()
        .map(|(n, (_, c))| (n.clone(), Arc::clone(c)))
        .collect();
    shared.store.set_fleet_challenges(http, alpn);
}

/// The elected instance's repair: etcd lacks the set's certificate, or holds an older or
/// unusable one, while this instance has a newer one (issued here, or kept in `state_dir`).
async fn publish_if_newer(
    shared: &Shared,
    side: &FleetSide,
    store: &dyn FleetStore,
    set: &holdfast_config::AcmeCert,
    in_etcd: Option<&[u8]>,
) {
    let Some(local) = shared.issued_not_after(set) else {
        return;
    };
    let etcd_not_after = in_etcd
        .and_then(|v| Issued::from_pem(v).ok())
        .filter(|i| i.covers(&set.domains))
        .map(|i| i.not_after);
    if etcd_not_after.is_some_and(|t| t >= local) {
        return;
    }
    let Some(pem) = shared.stored_pem(set) else {
        return;
    };
    let key = side.link.layout.acme_cert(&set_id(&set.domains));
    match store.put(&key, pem, None).await {
        Ok(()) => {
            shared.metrics.count_fleet("published");
            tracing::info!(key = %key, names = %key_of(set), "ACME: certificate published to the fleet");
        }
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "ACME: cannot publish the certificate to the fleet; trying again at the next read")
        }
    }
}

/// A pending order's challenges in etcd, under a lease of their own.
pub(crate) struct Pending {
    store: Arc<dyn FleetStore>,
    layout: Layout,
    key: String,
    lease: i64,
    record: ChallengeRecord,
}

impl Pending {
    pub async fn begin(side: &FleetSide, domains: &[String]) -> Result<Pending, AcmeError> {
        let fleet = |e: StoreError| AcmeError::Fleet(e.to_string());
        let store = side.store().await.map_err(fleet)?;
        let lease = store.lease_grant(CHALLENGE_TTL_SECS).await.map_err(fleet)?;
        Ok(Pending {
            key: side.link.layout.acme_challenges(&set_id(domains)),
            layout: side.link.layout.clone(),
            store,
            lease,
            record: ChallengeRecord::default(),
        })
    }

    pub fn add_http(&mut self, token: &str, key_authorization: &str) {
        self.record
            .http
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn add_alpn(&mut self, name: &str, key_authorization: &str) {
        self.record
            .alpn
            .insert(name.to_string(), key_authorization.to_string());
    }

    /// Store the challenges and wait (at most `ACK_WAIT`) until every live instance holds
    /// them. An instance that did not acknowledge in time is logged; the order goes on.
    pub async fn publish(&self) -> Result<(), AcmeError> {
        let fleet = |e: StoreError| AcmeError::Fleet(e.to_string());
        let value = serde_json::to_vec(&self.record).unwrap_or_default();
        self.store
            .put(&self.key, value, Some(self.lease))
            .await
            .map_err(fleet)?;
        let revision = self
            .store
            .get(&self.key)
            .await
            .map_err(fleet)?
            .map_or(0, |kv| kv.mod_revision);
        let until = tokio::time::Instant::now() + ACK_WAIT;
        loop {
            let missing = self.unacknowledged(revision).await.map_err(fleet)?;
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                tracing::warn!(instances = ?missing, "ACME: instances did not acknowledge the challenge in time; the CA is asked to validate anyway");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Live instances that have not yet read the challenges at `revision`.
    async fn unacknowledged(&self, revision: i64) -> Result<Vec<String>, StoreError> {
        let acks: HashMap<String, i64> = self
            .store
            .get_prefix(&self.layout.acme_seens())
            .await?
            .into_iter()
            .filter_map(|kv| {
                let id = self.layout.id_in(&kv.key)?.to_string();
                let rev = std::str::from_utf8(&kv.value).ok()?.parse().ok()?;
                Some((id, rev))
            })
            .collect();
        let live = self.store.get_prefix(&self.layout.instances()).await?;
        Ok(live
            .iter()
            .filter_map(|kv| self.layout.id_in(&kv.key))
            .filter(|id| acks.get(*id).is_none_or(|r| *r < revision))
            .map(str::to_string)
            .collect())
    }

    /// Withdraw the challenges (the order ended, however it ended).
    pub async fn end(self) {
        if let Err(e) = self.store.lease_revoke(self.lease).await {
            tracing::debug!(error = %e, "ACME: the challenges' lease is left to expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AcmeManager, AcmeMetrics};
    use holdfast_config::{AcmeCert, AcmeChallenge};
    use holdfast_fleet::MemoryStore;
    use rcgen::{CertificateParams, KeyPair};
    use std::time::{Instant, SystemTime};

    fn set() -> AcmeCert {
        AcmeCert {
            domains: vec!["a.test".into(), "www.a.test".into()],
            contact: None,
            // Nothing answers there: an order would fail (and be counted).
            directory: "https://127.0.0.1:9/dir".into(),
            challenge: AcmeChallenge::Http01,
            ca_file: None,
            client_auth: None,
            policy: Default::default(),
        }
    }

    fn pem_for(names: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    fn metric(registry: &prometheus::Registry, name: &str, result: &str) -> u64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let line = format!("{name}{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn serving_der(m: &AcmeManager, name: &str) -> Vec<u8> {
        m.store().certificate(name).unwrap().cert[0]
            .as_ref()
            .to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_installs_the_fleets_certificate_refuses_garbage_and_answers_challenges() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Arc::new(MemoryStore::new());
        let layout = Layout::new("/hf");
        let connect_to = Arc::clone(&etcd);
        let (_leading, leading_rx) = watch::channel(false);
        let link = AcmeFleet {
            connect: Arc::new(move || -> ConnectFuture {
                let s = Arc::clone(&connect_to) as Arc<dyn FleetStore>;
                Box::pin(async move { Ok(s) })
            }),
            layout: layout.clone(),
            instance: "edge-b".into(),
            leading: leading_rx,
            resync: Duration::from_millis(50),
        };
        let registry = prometheus::Registry::new();
        let metrics = AcmeMetrics::new(&registry).unwrap();
        let m = AcmeManager::start(&[set()], dir.path(), metrics, Some(link)).unwrap();
        let placeholder = serving_der(&m, "a.test");
        let key = layout.acme_cert(&set_id(&set().domains));

        // A good certificate from the elected instance: installed, kept in state_dir.
        let good = pem_for(&["a.test", "www.a.test"]);
        etcd.put(&key, good.clone().into_bytes(), None)
            .await
            .unwrap();
        until("the fleet's certificate is served", || {
            serving_der(&m, "www.a.test") != placeholder
        })
        .await;
        let served = serving_der(&m, "a.test");
        let leaf = Issued::from_pem(good.as_bytes()).unwrap().leaf;
        assert_eq!(served, leaf.as_ref());
        let kept =
            std::fs::read(crate::storage::Storage::new(dir.path()).cert_path(&set().domains));
        assert_eq!(kept.unwrap(), good.as_bytes());
        assert_eq!(
            metric(
                &registry,
                "holdfast_acme_fleet_certificates_total",
                "installed"
            ),
            1
        );

        // Garbage, then a certificate for other names: refused, counted once each.
        etcd.put(&key, b"garbage".to_vec(), None).await.unwrap();
        until("garbage is refused", || {
            metric(
                &registry,
                "holdfast_acme_fleet_certificates_total",
                "rejected",
            ) == 1
        })
        .await;
        etcd.put(&key, pem_for(&["b.test"]).into_bytes(), None)
            .await
            .unwrap();
        until("other names are refused", || {
            metric(
                &registry,
                "holdfast_acme_fleet_certificates_total",
                "rejected",
            ) == 2
        })
        .await;
        assert_eq!(serving_der(&m, "a.test"), served, "the good one stays");
        assert_eq!(m.status()[0].fleet, Some("follows"));

        // The elected instance's pending challenge: answered here, and acknowledged.
        let record = ChallengeRecord {
            http: BTreeMap::from([("tok".to_string(), "tok.thumb".to_string())]),
            alpn: BTreeMap::from([("a.test".to_string(), "ka".to_string())]),
        };
        let lease = etcd.lease_grant(60).await.unwrap();
        let challenge_key = layout.acme_challenges(&set_id(&set().domains));
        etcd.put(
            &challenge_key,
            serde_json::to_vec(&record).unwrap(),
            Some(lease),
        )
        .await
        .unwrap();
        let store = m.store();
        until("the challenge is answered", || {
            store.http_challenge("tok").as_deref() == Some("tok.thumb")
                && store.alpn_challenge("a.test").is_some()
        })
        .await;
        until("the challenge is acknowledged", || {
            etcd.dump().contains_key(&layout.acme_seen("edge-b"))
        })
        .await;
        // The order ends (its lease revoked): no longer answered.
        etcd.lease_revoke(lease).await.unwrap();
        until("the challenge is withdrawn", || {
            store.http_challenge("tok").is_none()
        })
        .await;
        // Never elected: never ordered.
        assert_eq!(metric(&registry, "holdfast_acme_orders_total", "failed"), 0);
        m.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_elected_instance_takes_a_fresh_certificate_from_etcd_instead_of_ordering() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Arc::new(MemoryStore::new());
        let layout = Layout::new("/hf");
        let key = layout.acme_cert(&set_id(&set().domains));
        let good = pem_for(&["a.test", "www.a.test"]);
        etcd.put(&key, good.clone().into_bytes(), None)
            .await
            .unwrap();
        let connect_to = Arc::clone(&etcd);
        let (leading, leading_rx) = watch::channel(false);
        let link = AcmeFleet {
            connect: Arc::new(move || -> ConnectFuture {
                let s = Arc::clone(&connect_to) as Arc<dyn FleetStore>;
                Box::pin(async move { Ok(s) })
            }),
            layout: layout.clone(),
            instance: "edge-a".into(),
            leading: leading_rx,
            resync: Duration::from_millis(50),
        };
        let registry = prometheus::Registry::new();
        let metrics = AcmeMetrics::new(&registry).unwrap();
        let m = AcmeManager::start(&[set()], dir.path(), metrics, Some(link)).unwrap();
        leading.send_replace(true);
        until("the stored certificate is served", || {
            m.status()[0].certificate == "issued"
        })
        .await;
        assert_eq!(m.status()[0].fleet, Some("orders"));
        // Fresh: the next order is months away, and none was tried.
        let next = m.status()[0].next_order_at.clone().unwrap();
        let next = humantime::parse_rfc3339(&next).unwrap();
        assert!(
            next > SystemTime::now() + Duration::from_secs(86_400),
            "{next:?}"
        );
        assert_eq!(metric(&registry, "holdfast_acme_orders_total", "failed"), 0);
        m.stop();
    }
}
