//! `AcmeManager`: the ACME side of the edge, on a thread and runtime of its own. At start it
//! loads every name set's stored certificate (bounded reads) or makes a placeholder, before
//! the first handshake; then one task per name set orders, renews and retries, so there is
//! at most one order at a time per name set. A failed order changes nothing that serves: the
//! old certificate (or the placeholder) stays, and the failure is logged, counted and kept
//! for `/status`. `follow` takes a reloaded configuration: new sets start, removed ones stop,
//! changed ones restart. In a fleet (`fleet.rs`), a set's task orders only while this
//! instance holds the fleet election, and reads what etcd holds before it does.

use crate::cert::{self, Issued};
use crate::fleet::{self, AcmeFleet, FleetSide, Pending};
use crate::order;
use crate::schedule;
use crate::storage::Storage;
use crate::store::CertStore;
use crate::AcmeError;
use holdfast_common::lock;
use holdfast_config::AcmeCert;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};

/// `/status`'s view of one name set.
#[derive(Debug, Clone, Serialize)]
pub struct SetStatus {
    pub domains: Vec<String>,
    pub challenge: &'static str,
    pub directory: String,
    /// `placeholder` (self-signed, until the first issuance) or `issued`.
    pub certificate: &'static str,
    pub not_after: Option<String>,
    pub days_left: Option<f64>,
    /// When the next order is due (renewal, or a retry after a failure).
    pub next_order_at: Option<String>,
    pub ordering: bool,
    pub last_issued_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Failed orders in a row (0 after a success).
    pub failures: u32,
    /// In a fleet: `orders` (this instance holds the election) or `follows` (it installs
    /// what the elected one stores in etcd); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<&'static str>,
}

struct SetState {
    set: AcmeCert,
    issued: Option<Issued>,
    next: Option<SystemTime>,
    ordering: bool,
    last_issued_at: Option<SystemTime>,
    last_error: Option<(SystemTime, String)>,
    failures: u32,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl SetState {
    fn status(&self, now: SystemTime, fleet: Option<&'static str>) -> SetStatus {
        let not_after = self.issued.as_ref().map(|i| i.not_after);
        SetStatus {
            domains: self.set.domains.clone(),
            challenge: self.set.challenge.as_str(),
            directory: self.set.directory.clone(),
            certificate: if self.issued.is_some() {
                "issued"
            } else {
                "placeholder"
            },
            not_after: not_after.map(rfc3339),
            days_left: not_after.map(|t| days_between(now, t)),
            next_order_at: self.next.map(rfc3339),
            ordering: self.ordering,
            last_issued_at: self.last_issued_at.map(rfc3339),
            last_error: self.last_error.as_ref().map(|(_, e)| e.clone()),
            last_error_at: self.last_error.as_ref().map(|(t, _)| rfc3339(*t)),
            failures: self.failures,
            fleet,
        }
    }
}

/// Signed days from `now` to `t`, to two decimals.
fn days_between(now: SystemTime, t: SystemTime) -> f64 {
    let secs = match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    (secs / 86_400.0 * 100.0).round() / 100.0
}

/// The set's key: its names as written.
pub(crate) fn key_of(set: &AcmeCert) -> String {
    set.domains.join(",")
}

/// `holdfast_acme_orders_total{result}` and `holdfast_tls_certificate_expiry_seconds{names}`
/// (every certificate the edge serves, from a file or from ACME): registered whether or not
/// ACME is configured, so a dashboard and an alert always find them.
#[derive(Clone)]
pub struct AcmeMetrics {
    orders: IntCounterVec,
    expiry: GaugeVec,
    fleet: IntCounterVec,
}

impl AcmeMetrics {
    pub fn new(registry: &Registry) -> Result<AcmeMetrics, prometheus::Error> {
        let orders = IntCounterVec::new(
            Opts::new(
                "holdfast_acme_orders_total",
                "ACME orders by result: issued, failed, rate_limited (the CA said rateLimited).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(orders.clone()))?;
        for r in ["issued", "failed", "rate_limited"] {
            orders.with_label_values(&[r]);
        }
        let expiry = GaugeVec::new(
            Opts::new(
                "holdfast_tls_certificate_expiry_seconds",
                "Seconds until each served certificate's notAfter (negative: expired), by its names.",
            ),
            &["names"],
        )?;
        registry.register(Box::new(expiry.clone()))?;
        let fleet = IntCounterVec::new(
            Opts::new(
                "holdfast_acme_fleet_certificates_total",
                "Certificates shared through the fleet's etcd, by result: installed (taken from etcd), rejected (a value in etcd that failed a check; the serving one stayed), published (written to etcd by the elected instance).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(fleet.clone()))?;
        for r in ["installed", "rejected", "published"] {
            fleet.with_label_values(&[r]);
        }
        Ok(AcmeMetrics {
            orders,
            expiry,
            fleet,
        })
    }

    /// Set the expiry gauges to `certs` (names, notAfter) as of now; others are dropped.
    pub fn refresh_expiry(&self, certs: &[(String, SystemTime)]) {
        let now = SystemTime::now();
        self.expiry.reset();
        for (names, not_after) in certs {
            let secs = match not_after.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            self.expiry.with_label_values(&[names]).set(secs.round());
        }
    }

    fn count(&self, result: &str) {
        self.orders.with_label_values(&[result]).inc();
    }

    pub(crate) fn count_fleet(&self, result: &str) {
        self.fleet.with_label_values(&[result]).inc();
    }
}

pub(crate) struct Shared {
    pub(crate) store: Arc<CertStore>,
    storage: Storage,
    sets: Mutex<BTreeMap<String, SetState>>,
    pub(crate) metrics: AcmeMetrics,
    /// With `[fleet]`: the etcd side (ordering gated on the election).
    fleet: Option<Arc<FleetSide>>,
    /// One account creation at a time (two sets may share a directory).
    accounts: tokio::sync::Mutex<()>,
    /// Test hook: order every set now.
    renew_now: Notify,
}

/// The running ACME side; dropping it without `stop` leaves its thread running until exit.
pub struct AcmeManager {
    shared: Arc<Shared>,
    config: watch::Sender<Vec<AcmeCert>>,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AcmeManager {
    /// Load what is stored (or make placeholders) for `sets`, then start ordering (in a
    /// fleet, only while this instance holds the election).
    pub fn start(
        sets: &[AcmeCert],
        state_dir: &Path,
        metrics: AcmeMetrics,
        fleet: Option<AcmeFleet>,
    ) -> Result<AcmeManager, AcmeError> {
        let shared = Arc::new(Shared {
            store: Arc::new(CertStore::new()),
            storage: Storage::new(state_dir),
            sets: Mutex::new(BTreeMap::new()),
            metrics,
            fleet: fleet.map(|f| Arc::new(FleetSide::new(f))),
            accounts: tokio::sync::Mutex::new(()),
            renew_now: Notify::new(),
        });
        shared.load(sets)?;
        let (config, config_rx) = watch::channel(sets.to_vec());
        let (stop, stop_rx) = watch::channel(false);
        let runner = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("holdfast-acme".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "ACME: cannot start its runtime");
                        return;
                    }
                };
                rt.block_on(supervise(runner, config_rx, stop_rx));
            })
            .map_err(|source| AcmeError::Io {
                path: PathBuf::from("(thread)"),
                source,
            })?;
        Ok(AcmeManager {
            shared,
            config,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// What the data path reads (certificates, challenges).
    pub fn store(&self) -> Arc<CertStore> {
        Arc::clone(&self.shared.store)
    }

    /// Take a reloaded configuration's `[[edge.acme]]` tables.
    pub fn follow(&self, sets: &[AcmeCert]) {
        if *self.config.borrow() == sets {
            return;
        }
        if let Err(e) = self.shared.load(sets) {
            tracing::error!(error = %e, "ACME: cannot load the stored certificates of the new configuration");
        }
        let _ = self.config.send(sets.to_vec());
    }

    /// Every name set, for `/status`.
    pub fn status(&self) -> Vec<SetStatus> {
        let now = SystemTime::now();
        let role = self
            .shared
            .fleet
            .as_ref()
            .map(|f| if f.leading() { "orders" } else { "follows" });
        lock(&self.shared.sets)
            .values()
            .map(|s| s.status(now, role))
            .collect()
    }

    /// Each issued certificate's names (comma-separated) and `notAfter`, for the expiry metric.
    pub fn expiries(&self) -> Vec<(String, SystemTime)> {
        lock(&self.shared.sets)
            .values()
            .filter_map(|s| Some((s.set.domains.join(","), s.issued.as_ref()?.not_after)))
            .collect()
    }

    /// Order every name set now, whatever its schedule (tests; an operator's forced renewal).
    #[doc(hidden)]
    pub fn renew_now(&self) {
        self.shared.renew_now.notify_waiters();
    }

    /// Stop ordering (an order in flight is abandoned; what serves stays).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for AcmeManager {
    fn drop(&mut self) {
        // Without `stop`: the thread ends on its own at its next turn.
        let _ = self.stop.send(true);
    }
}

impl Shared {
    /// Serve each set's stored certificate, or a placeholder; forget sets no longer listed.
    fn load(&self, sets: &[AcmeCert]) -> Result<(), AcmeError> {
        let now = SystemTime::now();
        let keys: Vec<String> = sets.iter().map(key_of).collect();
        let mut states = lock(&self.sets);
        states.retain(|k, s| {
            let keep = keys.contains(k) && sets.iter().any(|n| n.same_order(&s.set));
            if !keep {
                self.store.withdraw(k);
            }
            keep
        });
        for set in sets {
            let key = key_of(set);
            if states.contains_key(&key) {
                continue;
            }
            let stored = self.stored(set);
            let (issued, next) = match stored {
                Some(issued) => {
                    let next = schedule::renew_at(
                        issued.not_before,
                        issued.not_after,
                        now,
                        schedule::draw(),
                    );
                    self.store
                        .serve(&key, &set.domains, Arc::clone(&issued.key));
                    tracing::info!(names = %key, not_after = %rfc3339(issued.not_after), "ACME: serving the stored certificate");
                    (Some(issued), next)
                }
                None => {
                    let placeholder = Arc::new(cert::placeholder(&set.domains)?);
                    self.store.serve(&key, &set.domains, placeholder);
                    (None, now)
                }
            };
            states.insert(
                key,
                SetState {
                    set: set.clone(),
                    issued,
                    next: Some(next),
                    ordering: false,
                    last_issued_at: None,
                    last_error: None,
                    failures: 0,
                },
            );
        }
        self.store.set_order(&keys);
        Ok(())
    }

    /// The stored certificate of `set`, if there is a readable one naming all its domains.
    fn stored(&self, set: &AcmeCert) -> Option<Issued> {
        let path = self.storage.cert_path(&set.domains);
        let bytes = match self.storage.read(&path) {
            Ok(b) => b?,
            Err(e) => {
                tracing::error!(error = %e, "ACME: cannot read the stored certificate; a new one is ordered");
                return None;
            }
        };
        match Issued::from_pem(&bytes) {
            Ok(i) if i.covers(&set.domains) => Some(i),
            Ok(i) => {
                tracing::warn!(file = %path.display(), names = ?i.names, "ACME: the stored certificate does not name every domain; a new one is ordered");
                None
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "ACME: the stored certificate is unusable; a new one is ordered");
                None
            }
        }
    }

    fn update<T>(&self, key: &str, f: impl FnOnce(&mut SetState) -> T) -> Option<T> {
        lock(&self.sets).get_mut(key).map(f)
    }

    /// The configured sets.
    pub(crate) fn sets(&self) -> Vec<AcmeCert> {
        lock(&self.sets).values().map(|s| s.set.clone()).collect()
    }

    /// The `notAfter` of the set's issued certificate (none for a placeholder).
    pub(crate) fn issued_not_after(&self, set: &AcmeCert) -> Option<SystemTime> {
        self.update(&key_of(set), |s| s.issued.as_ref().map(|i| i.not_after))
            .flatten()
    }

    /// The set's file in `state_dir` (chain, then key), if readable.
    pub(crate) fn stored_pem(&self, set: &AcmeCert) -> Option<Vec<u8>> {
        self.storage
            .read(&self.storage.cert_path(&set.domains))
            .ok()
            .flatten()
    }

    /// A certificate from the fleet's etcd: the checks a stored one passes (parses, names
    /// every domain) and more (not expired, not older than the one serving), then stored in
    /// `state_dir` and served. `Ok(false)`: it is the one serving, or older; `Err`: refused.
    pub(crate) fn install_shared(&self, set: &AcmeCert, pem: &[u8]) -> Result<bool, String> {
        let issued = Issued::from_pem(pem).map_err(|e| e.to_string())?;
        if !issued.covers(&set.domains) {
            return Err(format!(
                "it names {:?}, not every domain of the set",
                issued.names
            ));
        }
        let now = SystemTime::now();
        if issued.not_after <= now {
            return Err(format!("it expired at {}", rfc3339(issued.not_after)));
        }
        let key = key_of(set);
        let serving = self
            .update(&key, |s| {
                s.issued.as_ref().map(|i| (i.leaf.clone(), i.not_after))
            })
            .ok_or_else(|| "the set is no longer configured".to_string())?;
        if let Some((leaf, not_after)) = serving {
            if leaf == issued.leaf || not_after > issued.not_after {
                return Ok(false);
            }
        }
        // Kept before it serves: a restart with etcd down serves it too.
        if let Err(e) = self
            .storage
            .write_private(&self.storage.cert_path(&set.domains), pem)
        {
            tracing::error!(error = %e, "ACME: cannot keep the fleet's certificate in state_dir; serving it anyway");
        }
        self.store
            .serve(&key, &set.domains, Arc::clone(&issued.key));
        let next = schedule::renew_at(issued.not_before, issued.not_after, now, schedule::draw());
        tracing::info!(names = %key, not_after = %rfc3339(issued.not_after), "ACME: serving the fleet's certificate from etcd");
        self.update(&key, |s| {
            s.issued = Some(issued);
            s.next = Some(next);
            s.failures = 0;
        });
        Ok(true)
    }
}

/// Runs one task per name set; restarts them when the configuration changes.
async fn supervise(
    shared: Arc<Shared>,
    mut config: watch::Receiver<Vec<AcmeCert>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks: BTreeMap<String, (AcmeCert, tokio::task::JoinHandle<()>)> = BTreeMap::new();
    let follower = shared
        .fleet
        .as_ref()
        .map(|side| tokio::spawn(fleet::follow(Arc::clone(&shared), Arc::clone(side))));
    loop {
        let sets = config.borrow_and_update().clone();
        tasks.retain(|k, (set, task)| {
            let keep = sets.iter().any(|n| n.same_order(set));
            if !keep {
                tracing::info!(names = %k, "ACME: name set removed or changed; its task stops");
                task.abort();
            }
            keep
        });
        for set in sets {
            let key = key_of(&set);
            if tasks.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(run_set(Arc::clone(&shared), set.clone()));
            tasks.insert(key, (set, task));
        }
        tokio::select! {
            changed = config.changed() => if changed.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, (_, task)) in tasks {
        task.abort();
    }
    if let Some(f) = follower {
        f.abort();
    }
}

/// Wakes when a certificate from the fleet moved a set's renewal (never without a fleet).
async fn fleet_changed(shared: &Shared) {
    match &shared.fleet {
        Some(side) => side.changed.notified().await,
        None => std::future::pending().await,
    }
}

/// In a fleet: wait until this instance holds the election, then read what etcd holds (a
/// new controller takes the fleet's certificate rather than ordering again). `false` when
/// the manager is going away.
async fn fleet_turn(side: &FleetSide, shared: &Shared) -> bool {
    let mut leading = side.link.leading.clone();
    if leading.wait_for(|l| *l).await.is_err() {
        return false;
    }
    match side.store().await {
        Ok(store) => {
            if let Err(e) = fleet::sync(shared, side, store.as_ref()).await {
                tracing::warn!(error = %e, "ACME: cannot read the fleet's certificates before ordering");
            }
        }
        Err(e) => tracing::warn!(error = %e, "ACME: cannot reach the fleet's etcd before ordering"),
    }
    true
}

/// One name set's life: wait for the next due time (or a forced renewal), order, repeat.
async fn run_set(shared: Arc<Shared>, set: AcmeCert) {
    let key = key_of(&set);
    let mut account = None;
    loop {
        let Some(next) = shared.update(&key, |s| s.next).flatten() else {
            return;
        };
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let forced = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = shared.renew_now.notified() => true,
            _ = fleet_changed(&shared) => continue,
        };
        if let Some(side) = &shared.fleet {
            if !fleet_turn(side, &shared).await {
                return;
            }
            let due = shared
                .update(&key, |s| s.next)
                .flatten()
                .is_some_and(|n| n <= SystemTime::now());
            if !forced && !due {
                continue;
            }
        }
        shared.update(&key, |s| s.ordering = true);
        let result = attempt(&shared, &set, &mut account).await;
        let now = SystemTime::now();
        match result {
            Ok(issued) => {
                shared.metrics.count("issued");
                tracing::info!(names = %key, not_after = %rfc3339(issued.not_after), "ACME: certificate issued");
                let next = next_renewal(&account, &issued, now).await;
                shared.update(&key, |s| {
                    s.issued = Some(issued);
                    s.next = Some(next);
                    s.last_issued_at = Some(now);
                    s.failures = 0;
                    s.ordering = false;
                });
            }
            Err(e) => {
                let rate_limited = e.is_rate_limited();
                shared.metrics.count(if rate_limited {
                    "rate_limited"
                } else {
                    "failed"
                });
                if matches!(&e, AcmeError::Ca(p) if p.r#type.as_deref().is_some_and(|t| t.ends_with(":accountDoesNotExist")))
                {
                    // The CA forgot the account (a test CA restarted): make a new one next time.
                    account = None;
                    let _ = std::fs::remove_file(shared.storage.account_path(&set.directory));
                }
                if matches!(e, AcmeError::Client(_)) {
                    account = None;
                }
                let failures = shared.update(&key, |s| s.failures + 1).unwrap_or(1);
                let wait = schedule::backoff(failures, rate_limited, schedule::draw());
                let serving = shared.update(&key, |s| {
                    s.failures = failures;
                    s.last_error = Some((now, e.to_string()));
                    s.next = Some(now + wait);
                    s.ordering = false;
                    s.issued.as_ref().map(|i| days_between(now, i.not_after))
                });
                tracing::error!(
                    names = %key,
                    error = %e,
                    failures,
                    retry_in = ?wait,
                    days_left = ?serving.flatten(),
                    "ACME: order failed; the current certificate keeps serving"
                );
            }
        }
    }
}

async fn attempt(
    shared: &Shared,
    set: &AcmeCert,
    account: &mut Option<instant_acme::Account>,
) -> Result<Issued, AcmeError> {
    let acct = match account {
        Some(a) => a.clone(),
        None => {
            let _one = shared.accounts.lock().await;
            let a = order::account(set, &shared.storage).await?;
            *account = Some(a.clone());
            a
        }
    };
    let mut pending = match &shared.fleet {
        Some(side) => Some(Pending::begin(side, &set.domains).await?),
        None => None,
    };
    let result = order::issue(&acct, set, &shared.store, pending.as_mut()).await;
    if let Some(p) = pending {
        p.end().await;
    }
    let (issued, pem) = result?;
    // Stored before it serves: a restart serves what the clients already saw.
    shared
        .storage
        .write_private(&shared.storage.cert_path(&set.domains), pem.as_bytes())?;
    shared
        .store
        .serve(&key_of(set), &set.domains, Arc::clone(&issued.key));
    if let Some(side) = &shared.fleet {
        publish(side, &shared.metrics, set, pem.into_bytes()).await;
    }
    Ok(issued)
}

/// Store a new certificate in the fleet's etcd; on failure the follower's next read does it
/// (`fleet::sync` publishes a newer certificate etcd lacks).
async fn publish(side: &FleetSide, metrics: &AcmeMetrics, set: &AcmeCert, pem: Vec<u8>) {
    let key = side
        .link
        .layout
        .acme_cert(&crate::storage::set_id(&set.domains));
    let stored = match side.store().await {
        Ok(store) => store.put(&key, pem, None).await,
        Err(e) => Err(e),
    };
    match stored {
        Ok(()) => metrics.count_fleet("published"),
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "ACME: cannot publish the certificate to the fleet; trying again at the next read")
        }
    }
}

/// The CA's renewal window where it offers one (ARI), else two thirds of the lifetime.
async fn next_renewal(
    account: &Option<instant_acme::Account>,
    issued: &Issued,
    now: SystemTime,
) -> SystemTime {
    let fallback = schedule::renew_at(issued.not_before, issued.not_after, now, schedule::draw());
    let Some(account) = account else {
        return fallback;
    };
    let Ok(id) = instant_acme::CertificateIdentifier::try_from(&issued.leaf) else {
        return fallback;
    };
    match account.renewal_info(&id).await {
        Ok((info, _)) => {
            let w = info.suggested_window;
            schedule::in_window(w.start.into(), w.end.into(), now, schedule::draw())
        }
        Err(instant_acme::Error::Unsupported(_)) => fallback,
        Err(e) => {
            tracing::debug!(error = %e, "ACME: no renewal information; renewing at two thirds");
            fallback
        }
    }
}
