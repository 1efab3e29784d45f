//! `CertStore`: what the data path reads, lock-free — the certificate serving each ACME name
//! (issued, stored or a placeholder), the `http-01` key authorizations by token and the
//! `tls-alpn-01` challenge certificates by name. Written only by the manager (rarely: an
//! issuance, a challenge published or withdrawn); every write replaces a whole table. In a
//! fleet, the challenges the elected instance published in etcd are a second pair of tables
//! (`set_fleet_challenges`), answered after this instance's own.

use arc_swap::ArcSwap;
use holdfast_common::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls::sign::CertifiedKey;

/// The ALPN protocol of the `tls-alpn-01` challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The path prefix of the `http-01` challenge (RFC 8555 §8.3).
pub const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// One name set's certificate as served.
#[derive(Clone)]
struct Served {
    domains: Vec<String>,
    key: Arc<CertifiedKey>,
}

#[derive(Default)]
struct Live {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// The first name set's certificate: for clients that send no (or an unknown) name.
    first: Option<Arc<CertifiedKey>>,
}

/// Shared between the manager (writer) and every `State`'s certificate resolver (readers).
#[derive(Default)]
pub struct CertStore {
    live: ArcSwap<Live>,
    http: ArcSwap<HashMap<String, Arc<str>>>,
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// The fleet's pending challenges, from etcd (replaced whole at each read).
    fleet_http: ArcSwap<HashMap<String, Arc<str>>>,
    fleet_alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// The writers' view: set key → what it serves, and the sets' order in the
    /// configuration (`live` is rebuilt from both).
    sets: Mutex<(BTreeMap<String, Served>, Vec<String>)>,
    challenges: Mutex<()>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("names", &self.live.load().by_name.len())
            .finish()
    }
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The certificate for `name` (lower-case ASCII), if an ACME name set holds it.
    pub fn certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.live.load().by_name.get(name).cloned()
    }

    /// The first name set's certificate, for a client that sent no known name.
    pub fn default_certificate(&self) -> Option<Arc<CertifiedKey>> {
        self.live.load().first.clone()
    }

    /// The `tls-alpn-01` challenge certificate for `name`, while an order waits for it.
    pub fn alpn_challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        self.alpn
            .load()
            .get(&name)
            .cloned()
            .or_else(|| self.fleet_alpn.load().get(&name).cloned())
    }

    /// The key authorization to answer `GET /.well-known/acme-challenge/<token>` with.
    pub fn http_challenge(&self, token: &str) -> Option<Arc<str>> {
        self.http
            .load()
            .get(token)
            .cloned()
            .or_else(|| self.fleet_http.load().get(token).cloned())
    }

    /// The challenges a fleet's elected instance published (replacing the previous ones).
    pub(crate) fn set_fleet_challenges(
        &self,
        http: HashMap<String, Arc<str>>,
        alpn: HashMap<String, Arc<CertifiedKey>>,
    ) {
        self.fleet_http.store(Arc::new(http));
        self.fleet_alpn.store(Arc::new(alpn));
    }

    /// Serve `key` for the names of the set `set` (replacing what it served).
    pub(crate) fn serve(&self, set: &str, domains: &[String], key: Arc<CertifiedKey>) {
        let mut sets = lock(&self.sets);
        sets.0.insert(
            set.to_string(),
            Served {
                domains: domains.to_vec(),
                key,
            },
        );
        self.publish(&sets);
    }

    /// Stop serving the set `set` (removed from the configuration).
    pub(crate) fn withdraw(&self, set: &str) {
        let mut sets = lock(&self.sets);
        if sets.0.remove(set).is_some() {
            self.publish(&sets);
        }
    }

    /// The sets in configuration order: the first one's certificate is the default.
    pub(crate) fn set_order(&self, keys: &[String]) {
        let mut sets = lock(&self.sets);
        sets.1 = keys.to_vec();
        self.publish(&sets);
    }

    fn publish(&self, (sets, order): &(BTreeMap<String, Served>, Vec<String>)) {
        let mut live = Live::default();
        let ordered = order.iter().filter_map(|k| sets.get(k));
        let rest = sets
            .iter()
            .filter(|(k, _)| !order.contains(k))
            .map(|(_, s)| s);
        for s in ordered.chain(rest) {
            live.first.get_or_insert_with(|| Arc::clone(&s.key));
            for d in &s.domains {
                live.by_name.insert(d.clone(), Arc::clone(&s.key));
            }
        }
        self.live.store(Arc::new(live));
    }

    pub(crate) fn put_http(&self, token: &str, key_authorization: &str) {
        let _w = lock(&self.challenges);
        let mut next = HashMap::clone(&self.http.load());
        next.insert(token.to_string(), Arc::from(key_authorization));
        self.http.store(Arc::new(next));
    }

    pub(crate) fn remove_http(&self, token: &str) {
        let _w = lock(&self.challenges);
        let mut next = HashMap::clone(&self.http.load());
        if next.remove(token).is_some() {
            self.http.store(Arc::new(next));
        }
    }

    pub(crate) fn put_alpn(&self, name: &str, key: Arc<CertifiedKey>) {
        let _w = lock(&self.challenges);
        let mut next = HashMap::clone(&self.alpn.load());
        next.insert(name.to_string(), key);
        self.alpn.store(Arc::new(next));
    }

    pub(crate) fn remove_alpn(&self, name: &str) {
        let _w = lock(&self.challenges);
        let mut next = HashMap::clone(&self.alpn.load());
        if next.remove(name).is_some() {
            self.alpn.store(Arc::new(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        Arc::new(crate::cert::placeholder(&[name.to_string()]).unwrap())
    }

    #[test]
    fn names_map_to_their_set_and_the_first_set_is_the_default() {
        let store = CertStore::new();
        assert!(store.certificate("a.test").is_none());
        assert!(store.default_certificate().is_none());
        let a = key("a.test");
        let b = key("b.test");
        store.serve("b", &["b.test".into()], Arc::clone(&b));
        store.serve("a", &["a.test".into(), "www.a.test".into()], Arc::clone(&a));
        assert!(Arc::ptr_eq(&store.certificate("www.a.test").unwrap(), &a));
        assert!(Arc::ptr_eq(&store.certificate("b.test").unwrap(), &b));
        assert!(Arc::ptr_eq(&store.default_certificate().unwrap(), &a));
        store.set_order(&["b".into(), "a".into()]);
        assert!(Arc::ptr_eq(&store.default_certificate().unwrap(), &b));
        store.set_order(&["a".into(), "b".into()]);
        store.withdraw("a");
        assert!(store.certificate("a.test").is_none());
        assert!(Arc::ptr_eq(&store.default_certificate().unwrap(), &b));
    }

    #[test]
    fn challenges_are_published_and_withdrawn() {
        let store = CertStore::new();
        store.put_http("tok", "tok.thumb");
        assert_eq!(store.http_challenge("tok").as_deref(), Some("tok.thumb"));
        assert!(store.http_challenge("other").is_none());
        store.remove_http("tok");
        assert!(store.http_challenge("tok").is_none());
        store.put_alpn("a.test", key("a.test"));
        assert!(store.alpn_challenge("A.test").is_some());
        store.remove_alpn("a.test");
        assert!(store.alpn_challenge("a.test").is_none());
        // A fleet's challenges answer too, until replaced.
        store.set_fleet_challenges(
            HashMap::from([("ft".to_string(), Arc::from("ft.thumb"))]),
            HashMap::from([("b.test".to_string(), key("b.test"))]),
        );
        assert_eq!(store.http_challenge("ft").as_deref(), Some("ft.thumb"));
        assert!(store.alpn_challenge("B.test").is_some());
        store.set_fleet_challenges(HashMap::new(), HashMap::new());
        assert!(store.http_challenge("ft").is_none());
    }
}
