//! Session resumption shared by every TLS configuration of the edge and kept across
//! reloads: the session-ticket keys (`edge.session_tickets`) and the TLS 1.2 session-ID
//! cache. Ticket keys rotate on a schedule: a key issues tickets for one `rotate` period and
//! decrypts them for one more, then is forgotten; a key is never written anywhere.
//!
//! In a fleet (`FleetTicketKeys`), the ring the elected controller keeps in etcd is installed
//! here by the fleet agent, and every instance issues and opens tickets with the same keys.
//! While no ring has arrived, or once the installed one has no key issuing now (etcd gone
//! for a whole period), the local keys serve as without a fleet; tickets made with them still
//! open here.
//!
//! Tickets are sealed with ChaCha20-Poly1305 under a random 256-bit key (*ring*), a random
//! nonce per ticket, and the key's id as associated data: `id (4) ‖ nonce (12) ‖ sealed`.

use arc_swap::ArcSwapOption;
use holdfast_config::SessionTickets;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_rustls::rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};
use tokio_rustls::rustls::ServerConfig;

/// TLS 1.2 sessions remembered by ID (clients that do not take tickets).
const SESSION_CACHE_ENTRIES: usize = 4096;
const ID_LEN: usize = 4;
/// Larger tickets than this are not ours: refused before any work.
const MAX_TICKET_BYTES: usize = 8 << 10;

/// What every TLS configuration of the edge shares for resumption.
#[derive(Clone)]
pub(crate) struct Resumption {
    settings: SessionTickets,
    ticketer: Option<Arc<RotatingTicketer>>,
    sessions: Arc<dyn StoresServerSessions>,
    fleet: Option<Arc<FleetTicketKeys>>,
}

impl Resumption {
    /// Keep `previous` when its settings are the same (a reload keeps tickets valid), else
    /// start anew. `None` if the system's random source fails.
    /// `fleet`: the ring a fleet shares (`None` without `[fleet]`).
    pub(crate) fn new(
        settings: SessionTickets,
        previous: Option<&Resumption>,
        fleet: Option<&Arc<FleetTicketKeys>>,
    ) -> Option<Self> {
        let same_fleet = |p: &Resumption| match (&p.fleet, fleet) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if let Some(p) = previous.filter(|p| p.settings == settings && same_fleet(p)) {
            return Some(p.clone());
        }
        if !settings.enabled {
            return Some(Resumption {
                settings,
                ticketer: None,
                sessions: Arc::new(NoServerSessionStorage {}),
                fleet: fleet.cloned(),
            });
        }
        let rotate = u32::try_from(settings.rotate.as_secs()).unwrap_or(u32::MAX);
        let mut ticketer = RotatingTicketer::new(rotate, now())?;
        ticketer.fleet = fleet.cloned();
        Some(Resumption {
            settings,
            ticketer: Some(Arc::new(ticketer)),
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
            fleet: fleet.cloned(),
        })
    }

    /// Set `config` up to resume sessions (or not, when disabled).
    pub(crate) fn apply(&self, config: &mut ServerConfig) {
        config.session_storage = Arc::clone(&self.sessions);
        match &self.ticketer {
            Some(t) => config.ticketer = Arc::clone(t) as Arc<dyn ProducesTickets>,
            None => config.send_tls13_tickets = 0,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct TicketKey {
    id: [u8; ID_LEN],
    key: LessSafeKey,
}

impl TicketKey {
    fn generate(rng: &SystemRandom) -> Option<TicketKey> {
        let mut id = [0u8; ID_LEN];
        let mut secret = [0u8; 32];
        rng.fill(&mut id).ok()?;
        rng.fill(&mut secret).ok()?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &secret).ok()?;
        Some(TicketKey {
            id,
            key: LessSafeKey::new(key),
        })
    }

    fn from_parts(id: [u8; ID_LEN], secret: &[u8; 32]) -> Option<TicketKey> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, secret).ok()?;
        Some(TicketKey {
            id,
            key: LessSafeKey::new(key),
        })
    }

    /// `id ‖ nonce ‖ sealed`.
    fn seal(&self, plain: &[u8], rng: &SystemRandom) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.id),
                &mut sealed,
            )
            .ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn open(&self, nonce: [u8; NONCE_LEN], sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.id),
                &mut buf,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

/// One key of a fleet's ring, as the agent hands it over.
#[derive(Clone)]
pub struct SharedTicketKey {
    pub id: [u8; ID_LEN],
    pub secret: [u8; 32],
    /// When it starts issuing (Unix seconds).
    pub from: u64,
}

/// Why a ring was not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("the ring's period is 0")]
    NoPeriod,
    #[error("the ring holds {0} keys (1 to {MAX_RING_KEYS} expected)")]
    Size(usize),
    #[error("two keys of the ring share an id")]
    DuplicateId,
    #[error("a key of the ring cannot be used")]
    BadKey,
}

/// A new key's id and secret from the system's random source (for a fleet's ring).
pub fn fresh_ticket_key() -> Option<([u8; ID_LEN], [u8; 32])> {
    let rng = SystemRandom::new();
    let mut id = [0u8; ID_LEN];
    let mut secret = [0u8; 32];
    rng.fill(&mut id).ok()?;
    rng.fill(&mut secret).ok()?;
    Some((id, secret))
}

/// At most this many keys in an installed ring.
pub const MAX_RING_KEYS: usize = 8;

struct Ring {
    period: u64,
    /// Oldest first.
    keys: Vec<(u64, TicketKey)>,
}

impl Ring {
    /// The key issuing at `now`: the newest one started, if its period has not ended.
    fn issuing(&self, now: u64) -> Option<&TicketKey> {
        self.keys
            .iter()
            .filter(|(from, _)| *from <= now)
            .max_by_key(|(from, _)| *from)
            .filter(|(from, _)| now < from.saturating_add(self.period))
            .map(|(_, k)| k)
    }

    /// The key with `id`, if it opens tickets at `now`: from one period before it issues
    /// (a peer whose clock runs ahead) to two periods after.
    fn opening(&self, id: &[u8; ID_LEN], now: u64) -> Option<&TicketKey> {
        self.keys
            .iter()
            .find(|(from, k)| {
                k.id == *id
                    && from.saturating_sub(self.period) <= now
                    && now < from.saturating_add(self.period.saturating_mul(2))
            })
            .map(|(_, k)| k)
    }
}

/// The key ring a fleet shares, installed by the fleet agent (its own thread) and read at
/// each handshake: one atomic load, no lock.
#[derive(Default)]
pub struct FleetTicketKeys {
    ring: ArcSwapOption<Ring>,
}

impl std::fmt::Debug for FleetTicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTicketKeys")
            .field("installed", &self.ring.load().is_some())
            .finish()
    }
}

impl FleetTicketKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the ring; a ring that fails a check changes nothing.
    pub fn install(&self, period: u64, keys: &[SharedTicketKey]) -> Result<(), RingError> {
        if period == 0 {
            return Err(RingError::NoPeriod);
        }
        if keys.is_empty() || keys.len() > MAX_RING_KEYS {
            return Err(RingError::Size(keys.len()));
        }
        let mut ring = Vec::with_capacity(keys.len());
        for k in keys {
            if ring.iter().any(|(_, r): &(u64, TicketKey)| r.id == k.id) {
                return Err(RingError::DuplicateId);
            }
            let key = TicketKey::from_parts(k.id, &k.secret).ok_or(RingError::BadKey)?;
            ring.push((k.from, key));
        }
        ring.sort_by_key(|(from, _)| *from);
        self.ring.store(Some(Arc::new(Ring { period, keys: ring })));
        Ok(())
    }

    /// Whether the fleet's ring issues tickets at `now` (else the local keys do).
    pub fn in_use_at(&self, now: u64) -> bool {
        self.ring
            .load()
            .as_ref()
            .is_some_and(|r| r.issuing(now).is_some())
    }

    /// Whether a ring was ever installed.
    pub fn installed(&self) -> bool {
        self.ring.load().is_some()
    }
}

struct Keys {
    current: TicketKey,
    previous: Option<TicketKey>,
    /// When `current` stops issuing (Unix seconds).
    next_rotation: u64,
}

/// Session-ticket keys that rotate every `period` seconds, checked at each use (no timer:
/// an idle edge rotates at its next handshake, and forgets keys older than two periods).
/// The mutex is held for one seal or open, never across `.await`.
pub(crate) struct RotatingTicketer {
    period: u32,
    rng: SystemRandom,
    keys: Mutex<Keys>,
    /// A fleet's shared ring, preferred over the local keys while it issues.
    fleet: Option<Arc<FleetTicketKeys>>,
}

impl std::fmt::Debug for RotatingTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingTicketer")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl RotatingTicketer {
    fn new(period: u32, now: u64) -> Option<Self> {
        let rng = SystemRandom::new();
        let current = TicketKey::generate(&rng)?;
        Some(RotatingTicketer {
            period,
            keys: Mutex::new(Keys {
                current,
                previous: None,
                next_rotation: now.saturating_add(u64::from(period)),
            }),
            rng,
            fleet: None,
        })
    }

    /// Rotate if `now` is past the current key's period. A failed key generation keeps the
    /// current key (tickets keep working) and tries again at the next use.
    fn rotate_if_due(&self, now: u64) {
        let mut keys = holdfast_common::lock(&self.keys);
        if keys.next_rotation > now {
            return;
        }
        let Some(fresh) = TicketKey::generate(&self.rng) else {
            tracing::warn!("session ticket key rotation failed: no random bytes");
            return;
        };
        let period = u64::from(self.period);
        // Idle for more than a whole period: the old key is past its second period too.
        let stale = keys.next_rotation.saturating_add(period) <= now;
        let old = std::mem::replace(&mut keys.current, fresh);
        keys.previous = if stale { None } else { Some(old) };
        keys.next_rotation = now.saturating_add(period);
    }

    fn encrypt_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        if let Some(ring) = self.fleet.as_ref().and_then(|f| f.ring.load_full()) {
            if let Some(key) = ring.issuing(now) {
                return key.seal(plain, &self.rng);
            }
        }
        self.rotate_if_due(now);
        let keys = holdfast_common::lock(&self.keys);
        keys.current.seal(plain, &self.rng)
    }

    fn decrypt_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_BYTES {
            return None;
        }
        self.rotate_if_due(now);
        let (id, rest) = ticket.split_first_chunk::<ID_LEN>()?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        if let Some(ring) = self.fleet.as_ref().and_then(|f| f.ring.load_full()) {
            if let Some(key) = ring.opening(id, now) {
                return key.open(*nonce, sealed);
            }
        }
        let keys = holdfast_common::lock(&self.keys);
        let key = [Some(&keys.current), keys.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == *id)?;
        key.open(*nonce, sealed)
    }
}

impl ProducesTickets for RotatingTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.period
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(cipher, now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_ticket_opens_for_two_periods_then_no_more() {
        let t = RotatingTicketer::new(3600, T0).unwrap();
        let ticket = t.encrypt_at(b"session state", T0).unwrap();
        assert_eq!(t.decrypt_at(&ticket, T0 + 10).unwrap(), b"session state");
        // One rotation: the key that made it is now the previous one.
        assert_eq!(t.decrypt_at(&ticket, T0 + 3600).unwrap(), b"session state");
        let newer = t.encrypt_at(b"newer", T0 + 3601).unwrap();
        assert_ne!(
            newer[..ID_LEN],
            ticket[..ID_LEN],
            "a new key issues after rotation"
        );
        // Two rotations: forgotten.
        assert_eq!(t.decrypt_at(&ticket, T0 + 7200), None);
        assert_eq!(t.decrypt_at(&newer, T0 + 7200).unwrap(), b"newer");
    }

    #[test]
    fn a_long_idle_edge_forgets_both_keys() {
        let t = RotatingTicketer::new(60, T0).unwrap();
        let ticket = t.encrypt_at(b"x", T0).unwrap();
        assert_eq!(t.decrypt_at(&ticket, T0 + 121), None);
    }

    #[test]
    fn tampered_foreign_and_short_tickets_are_refused() {
        let t = RotatingTicketer::new(3600, T0).unwrap();
        let other = RotatingTicketer::new(3600, T0).unwrap();
        let ticket = t.encrypt_at(b"state", T0).unwrap();
        let mut tampered = ticket.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(t.decrypt_at(&tampered, T0), None);
        assert_eq!(other.decrypt_at(&ticket, T0), None);
        assert_eq!(t.decrypt_at(&ticket[..10], T0), None);
        assert_eq!(t.decrypt_at(&[], T0), None);
        assert_eq!(t.decrypt_at(&vec![0; MAX_TICKET_BYTES + 1], T0), None);
    }

    #[test]
    fn a_reload_with_the_same_settings_keeps_the_keys() {
        let settings = SessionTickets {
            enabled: true,
            rotate: Duration::from_secs(3600),
        };
        let first = Resumption::new(settings, None, None).unwrap();
        let ticket = first.ticketer.as_ref().unwrap().encrypt(b"s").unwrap();
        let kept = Resumption::new(settings, Some(&first), None).unwrap();
        assert_eq!(
            kept.ticketer.as_ref().unwrap().decrypt(&ticket).unwrap(),
            b"s"
        );
        let changed = SessionTickets {
            rotate: Duration::from_secs(7200),
            ..settings
        };
        let fresh = Resumption::new(changed, Some(&first), None).unwrap();
        assert_eq!(fresh.ticketer.as_ref().unwrap().decrypt(&ticket), None);
        let off = SessionTickets {
            enabled: false,
            ..settings
        };
        assert!(Resumption::new(off, Some(&first), None)
            .unwrap()
            .ticketer
            .is_none());
    }

    fn shared(n: u8, from: u64) -> SharedTicketKey {
        SharedTicketKey {
            id: [n; ID_LEN],
            secret: [n; 32],
            from,
        }
    }

    fn in_fleet(keys: &Arc<FleetTicketKeys>) -> RotatingTicketer {
        let mut t = RotatingTicketer::new(3600, T0).unwrap();
        t.fleet = Some(Arc::clone(keys));
        t
    }

    #[test]
    fn two_instances_with_one_ring_open_each_others_tickets() {
        let ring = [shared(1, T0), shared(2, T0 + 3600)];
        let (ka, kb) = (
            Arc::new(FleetTicketKeys::new()),
            Arc::new(FleetTicketKeys::new()),
        );
        ka.install(3600, &ring).unwrap();
        kb.install(3600, &ring).unwrap();
        let (a, b) = (in_fleet(&ka), in_fleet(&kb));
        let ticket = a.encrypt_at(b"s", T0 + 5).unwrap();
        assert_eq!(ticket[..ID_LEN], [1; ID_LEN]);
        assert_eq!(b.decrypt_at(&ticket, T0 + 6).unwrap(), b"s");
        // B's clock runs ahead into the next key's period: A already holds that key.
        let ahead = b.encrypt_at(b"t", T0 + 3601).unwrap();
        assert_eq!(ahead[..ID_LEN], [2; ID_LEN]);
        assert_eq!(a.decrypt_at(&ahead, T0 + 3590).unwrap(), b"t");
        // The first key opens for a second period, not a third.
        assert_eq!(b.decrypt_at(&ticket, T0 + 7199).unwrap(), b"s");
        assert_eq!(b.decrypt_at(&ticket, T0 + 7200), None);
    }

    #[test]
    fn without_a_ring_or_with_a_stale_one_the_local_keys_issue_and_still_open() {
        let keys = Arc::new(FleetTicketKeys::new());
        let t = in_fleet(&keys);
        let local = t.encrypt_at(b"l", T0).unwrap();
        assert!(!keys.installed() && !keys.in_use_at(T0));
        keys.install(3600, &[shared(1, T0), shared(2, T0 + 3600)])
            .unwrap();
        assert!(keys.in_use_at(T0 + 1));
        let fleet = t.encrypt_at(b"f", T0 + 1).unwrap();
        assert_eq!(fleet[..ID_LEN], [1; ID_LEN]);
        assert_eq!(
            t.decrypt_at(&local, T0 + 2).unwrap(),
            b"l",
            "local tickets still open"
        );
        // Two periods with no new ring (etcd gone): the ring no longer issues.
        assert!(!keys.in_use_at(T0 + 7200));
        let after = t.encrypt_at(b"x", T0 + 7200).unwrap();
        assert_ne!(after[..ID_LEN], [1; ID_LEN]);
        assert_ne!(after[..ID_LEN], [2; ID_LEN]);
    }

    #[test]
    fn a_bad_ring_is_refused_and_changes_nothing() {
        let keys = FleetTicketKeys::new();
        assert_eq!(keys.install(0, &[shared(1, T0)]), Err(RingError::NoPeriod));
        assert_eq!(keys.install(60, &[]), Err(RingError::Size(0)));
        let many: Vec<_> = (0..9).map(|n| shared(n, T0)).collect();
        assert_eq!(keys.install(60, &many), Err(RingError::Size(9)));
        assert_eq!(
            keys.install(60, &[shared(1, T0), shared(1, T0 + 60)]),
            Err(RingError::DuplicateId)
        );
        assert!(!keys.installed());
    }
}
