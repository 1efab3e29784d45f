//! Session resumption shared by every TLS configuration of the edge and kept across
//! reloads: the session-ticket keys (`edge.session_tickets`) and the TLS 1.2 session-ID
//! cache. Ticket keys rotate on a schedule: a key issues tickets for one `rotate` period and
//! decrypts them for one more, then is forgotten; a key is never written anywhere.
//!
//! Tickets are sealed with ChaCha20-Poly1305 under a random 256-bit key (*ring*), a random
//! nonce per ticket, and the key's id as associated data: `id (4) ‖ nonce (12) ‖ sealed`.

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
}

impl Resumption {
    /// Keep `previous` when its settings are the same (a reload keeps tickets valid), else
    /// start anew. `None` if the system's random source fails.
    pub(crate) fn new(settings: SessionTickets, previous: Option<&Resumption>) -> Option<Self> {
        if let Some(p) = previous.filter(|p| p.settings == settings) {
            return Some(p.clone());
        }
        if !settings.enabled {
            return Some(Resumption {
                settings,
                ticketer: None,
                sessions: Arc::new(NoServerSessionStorage {}),
            });
        }
        let rotate = u32::try_from(settings.rotate.as_secs()).unwrap_or(u32::MAX);
        Some(Resumption {
            settings,
            ticketer: Some(Arc::new(RotatingTicketer::new(rotate, now())?)),
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
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
        self.rotate_if_due(now);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let keys = holdfast_common::lock(&self.keys);
        let mut sealed = plain.to_vec();
        keys.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(keys.current.id),
                &mut sealed,
            )
            .ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&keys.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_BYTES {
            return None;
        }
        self.rotate_if_due(now);
        let (id, rest) = ticket.split_first_chunk::<ID_LEN>()?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let keys = holdfast_common::lock(&self.keys);
        let key = [Some(&keys.current), keys.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == *id)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(*id),
                &mut buf,
            )
            .ok()?;
        Some(plain.to_vec())
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
        let first = Resumption::new(settings, None).unwrap();
        let ticket = first.ticketer.as_ref().unwrap().encrypt(b"s").unwrap();
        let kept = Resumption::new(settings, Some(&first)).unwrap();
        assert_eq!(
            kept.ticketer.as_ref().unwrap().decrypt(&ticket).unwrap(),
            b"s"
        );
        let changed = SessionTickets {
            rotate: Duration::from_secs(7200),
            ..settings
        };
        let fresh = Resumption::new(changed, Some(&first)).unwrap();
        assert_eq!(fresh.ticketer.as_ref().unwrap().decrypt(&ticket), None);
        let off = SessionTickets {
            enabled: false,
            ..settings
        };
        assert!(Resumption::new(off, Some(&first))
            .unwrap()
            .ticketer
            .is_none());
    }
}
