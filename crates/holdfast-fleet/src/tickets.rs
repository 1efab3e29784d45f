//! The fleet's session-ticket key ring (`PREFIX/tls/ticket_keys`): what the controller holding
//! the election keeps there, and how it rotates it. Pure planning (`plan`) plus the one
//! transaction that writes it (`rotate`); the keys' bytes come from the caller, so this crate
//! needs no random source. The data path never reads etcd: each instance's agent installs the
//! ring into its ticketer.
//!
//! Key `k` issues tickets from `k.from` for one period and decrypts them for one more. The
//! ring always holds the key issuing now and the next one, published one period ahead, so
//! an instance whose clock runs ahead, or whose watch lags, already holds the key a peer
//! starts issuing with; the previous key stays while its tickets are still accepted.

use crate::error::{decode, encode, FleetError};
use crate::layout::Layout;
use crate::store::{Compare, FleetStore, TxnOp};
use serde::{Deserialize, Serialize};

/// At most this many keys in a ring (previous, current, next, and room for a change of
/// period); a larger stored ring is refused by the instances.
pub const MAX_RING_KEYS: usize = 8;

/// One key: a 4-byte id and a 256-bit secret, both hex, and when it starts issuing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKeyRecord {
    pub id: String,
    pub secret: String,
    /// Unix seconds.
    pub from: u64,
}

/// `tls/ticket_keys`: the ring, oldest key first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKeyRing {
    pub period_secs: u64,
    pub keys: Vec<TicketKeyRecord>,
}

/// Fresh key material: an id and a secret.
pub type FreshKey = ([u8; 4], [u8; 32]);

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string of exactly `N` bytes.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        *slot = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

impl TicketKeyRing {
    /// Whether some key issues at `now`.
    fn issues_at(&self, now: u64) -> bool {
        let p = self.period_secs;
        self.keys
            .iter()
            .any(|k| k.from <= now && now < k.from.saturating_add(p))
    }
}

/// The ring the controller should store at `now`, or `None` if `existing` is right as it is.
/// A missing ring, one of another period, or one with no key issuing now (the fleet had no
/// controller for a period) starts anew: a key from now and the next one.
pub fn plan(
    existing: Option<&TicketKeyRing>,
    period: u64,
    now: u64,
    fresh: &mut (dyn FnMut() -> Option<FreshKey> + Send),
) -> Option<TicketKeyRing> {
    let period = period.max(1);
    let mut key = |from: u64| {
        fresh().map(|(id, secret)| TicketKeyRecord {
            id: hex(&id),
            secret: hex(&secret),
            from,
        })
    };
    let usable = existing.filter(|r| r.period_secs == period && r.issues_at(now));
    let Some(ring) = usable else {
        return Some(TicketKeyRing {
            period_secs: period,
            keys: vec![key(now)?, key(now.saturating_add(period))?],
        });
    };
    let mut keys: Vec<TicketKeyRecord> = ring
        .keys
        .iter()
        .filter(|k| k.from.saturating_add(period.saturating_mul(2)) > now)
        .cloned()
        .collect();
    let newest = keys.iter().map(|k| k.from).max().unwrap_or(now);
    if newest <= now {
        keys.push(key(newest.saturating_add(period))?);
    }
    // Oldest first; never more than the instances accept.
    keys.sort_by_key(|k| k.from);
    while keys.len() > MAX_RING_KEYS {
        keys.remove(0);
    }
    let next = TicketKeyRing {
        period_secs: period,
        keys,
    };
    (next != *ring).then_some(next)
}

/// The controller's step: read the ring, plan, and write it in one transaction conditioned
/// on what was read (two controllers during a hand-over cannot both write). Returns the ring
/// written, if any. A stored value that does not decode is replaced.
pub async fn rotate(
    store: &dyn FleetStore,
    layout: &Layout,
    period: u64,
    now: u64,
    fresh: &mut (dyn FnMut() -> Option<FreshKey> + Send),
) -> Result<Option<TicketKeyRing>, FleetError> {
    let key = layout.ticket_keys();
    let stored = store.get(&key).await?;
    let revision = stored.as_ref().map_or(0, |kv| kv.mod_revision);
    let existing = stored.and_then(|kv| {
        decode::<TicketKeyRing>(&key, &kv.value)
            .map_err(
                |e| tracing::warn!(error = %e, "fleet: the stored ticket key ring is replaced"),
            )
            .ok()
    });
    let Some(next) = plan(existing.as_ref(), period, now, fresh) else {
        return Ok(None);
    };
    let written = store
        .txn(
            vec![Compare::ModRevision(key.clone(), revision)],
            vec![TxnOp::Put(key.clone(), encode(&next))],
        )
        .await?;
    if !written {
        return Err(FleetError::Conflict(key));
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    const T0: u64 = 1_800_000_000;
    const P: u64 = 3600;

    fn counter() -> impl FnMut() -> Option<FreshKey> {
        let mut n = 0u8;
        move || {
            n += 1;
            Some(([n; 4], [n; 32]))
        }
    }

    fn froms(r: &TicketKeyRing) -> Vec<u64> {
        r.keys.iter().map(|k| k.from).collect()
    }

    #[test]
    fn a_new_ring_has_the_current_key_and_the_next_one_a_period_ahead() {
        let mut fresh = counter();
        let r = plan(None, P, T0, &mut fresh).unwrap();
        assert_eq!(froms(&r), [T0, T0 + P]);
        assert_eq!(r.keys[0].id, "01010101");
        assert_eq!(unhex::<32>(&r.keys[1].secret), Some([2u8; 32]));
        assert_eq!(plan(Some(&r), P, T0 + 10, &mut fresh), None, "nothing due");
    }

    #[test]
    fn rotation_keeps_previous_current_next_and_forgets_keys_after_two_periods() {
        let mut fresh = counter();
        let r = plan(None, P, T0, &mut fresh).unwrap();
        // The next key starts issuing: a new next is published, the first stays (decrypts).
        let r = plan(Some(&r), P, T0 + P, &mut fresh).unwrap();
        assert_eq!(froms(&r), [T0, T0 + P, T0 + 2 * P]);
        let r = plan(Some(&r), P, T0 + 2 * P, &mut fresh).unwrap();
        assert_eq!(froms(&r), [T0 + P, T0 + 2 * P, T0 + 3 * P]);
        let ids: Vec<&str> = r.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["02020202", "03030303", "04040404"]);
    }

    #[test]
    fn a_stale_ring_or_a_new_period_starts_anew() {
        let mut fresh = counter();
        let r = plan(None, P, T0, &mut fresh).unwrap();
        let stale = plan(Some(&r), P, T0 + 5 * P, &mut fresh).unwrap();
        assert_eq!(froms(&stale), [T0 + 5 * P, T0 + 6 * P]);
        let other = plan(Some(&r), 60, T0 + 1, &mut fresh).unwrap();
        assert_eq!(other.period_secs, 60);
        assert_eq!(froms(&other), [T0 + 1, T0 + 61]);
        assert_eq!(
            plan(None, P, T0, &mut || None),
            None,
            "no random bytes: no ring"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_the_wrong_length_or_digits() {
        assert_eq!(unhex::<2>(&hex(&[0xab, 0x01])), Some([0xab, 0x01]));
        assert_eq!(unhex::<2>("abc"), None);
        assert_eq!(unhex::<2>("zz00"), None);
    }

    #[tokio::test]
    async fn the_controller_writes_the_ring_in_one_conditioned_transaction() {
        let store = MemoryStore::new();
        let layout = Layout::new("/hf");
        let mut fresh = counter();
        let first = rotate(&store, &layout, P, T0, &mut fresh).await.unwrap();
        assert!(first.is_some());
        assert_eq!(
            rotate(&store, &layout, P, T0 + 1, &mut fresh)
                .await
                .unwrap(),
            None
        );
        let rotated = rotate(&store, &layout, P, T0 + P, &mut fresh)
            .await
            .unwrap()
            .unwrap();
        let stored = store.dump();
        let value = stored.get("/hf/tls/ticket_keys").unwrap();
        assert_eq!(
            serde_json::from_slice::<TicketKeyRing>(value).unwrap(),
            rotated
        );
        // Garbage in etcd is replaced by a fresh ring.
        store
            .put("/hf/tls/ticket_keys", b"garbage".to_vec(), None)
            .await
            .unwrap();
        let fresh_ring = rotate(&store, &layout, P, T0 + P, &mut fresh)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(froms(&fresh_ring), [T0 + P, T0 + 2 * P]);
        // etcd down: an error, nothing written.
        store.fail("*");
        assert!(rotate(&store, &layout, P, T0 + 9 * P, &mut fresh)
            .await
            .is_err());
    }
}
