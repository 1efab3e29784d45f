//! The `stale` policy's memory: the last good decision per key, in a fixed table of
//! `STALE_SLOTS` entries allocated once (on the first decision kept). Keys are spread over the
//! slots by a multiplicative hash; two keys on one slot replace each other, and a look-up
//! checks the key, so a lost entry reads as "nothing to reuse", never as someone else's
//! decision. Writes use `try_lock` (a busy slot skips the write: it is a cache); no
//! allocation per request beyond the decision's own `Clone`.

use holdfast_common::lock;
use std::sync::{Mutex, TryLockError};

/// Entries in a module's stale table.
pub const STALE_SLOTS: usize = 4096;
const SHIFT: u32 = 64 - STALE_SLOTS.trailing_zeros();

/// One entry: the key and its last decision.
type Slot<T> = Mutex<Option<(u64, T)>>;

pub(crate) struct StaleTable<T> {
    slots: Box<[Slot<T>]>,
}

impl<T: Clone> StaleTable<T> {
    pub(crate) fn new() -> Self {
        StaleTable {
            slots: (0..STALE_SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, key: u64) -> Option<&Slot<T>> {
        let i = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> SHIFT;
        self.slots.get(usize::try_from(i).unwrap_or(0))
    }

    pub(crate) fn put(&self, key: u64, value: &T) {
        let Some(slot) = self.slot(key) else { return };
        let mut entry = match slot.try_lock() {
            Ok(e) => e,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        *entry = Some((key, value.clone()));
    }

    pub(crate) fn get(&self, key: u64) -> Option<T> {
        let slot = self.slot(key)?;
        let entry = lock(slot);
        match &*entry {
            Some((k, v)) if *k == key => Some(v.clone()),
            _ => None,
        }
    }

    #[cfg(test)]
    fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| lock(s).is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_decision_per_key() {
        let t = StaleTable::new();
        assert_eq!(t.get(1), None);
        t.put(1, &10u32);
        t.put(2, &20);
        t.put(1, &11);
        assert_eq!(t.get(1), Some(11));
        assert_eq!(t.get(2), Some(20));
        assert_eq!(t.get(3), None);
    }

    #[test]
    fn bounded_and_never_returns_another_keys_decision() {
        let t = StaleTable::new();
        for k in 0..100_000u64 {
            t.put(k, &k);
        }
        assert!(t.occupied() <= STALE_SLOTS);
        assert!(
            t.occupied() > STALE_SLOTS / 2,
            "keys spread: {}",
            t.occupied()
        );
        let mut found = 0;
        for k in 0..100_000u64 {
            if let Some(v) = t.get(k) {
                assert_eq!(v, k);
                found += 1;
            }
        }
        assert_eq!(found, t.occupied());
        assert_eq!(t.slots.len(), STALE_SLOTS);
    }
}
