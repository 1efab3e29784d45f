//! The key table: governor's `StateStore` over two generations of `DashMap`s (see the module
//! docs for the design).

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;

/// How many new keys past its cap a generation takes while a sweep is due but not done
/// (another thread is sweeping). Beyond that, new keys are judged without being stored.
pub const SWEEP_SLACK: usize = 1024;

/// Keys are already keyed SipHash values: the maps use them as their hash as they are.
#[derive(Default, Clone, Copy)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    // Only `u64` keys are hashed here; anything else still gets a usable (FNV-1a) hash.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type Map = DashMap<u64, Tat, BuildHasherDefault<PreHashed>>;

fn new_map() -> Arc<Map> {
    Arc::new(Map::default())
}

/// A key's GCRA state: its theoretical arrival time in nanoseconds since the limiter's start,
/// 0 for none — as governor's `InMemoryState`, whose update is not public.
pub(crate) struct Tat(AtomicU64);

impl Tat {
    fn new(tat: u64) -> Tat {
        Tat(AtomicU64::new(tat))
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Governor's decision `f` on the current value; a positive one is stored if nobody
    /// changed the value meanwhile, else `f` runs again on the new value.
    fn measure_and_replace<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let seen = |v: u64| (v != 0).then(|| Nanos::from(v));
        let mut prev = self.get();
        loop {
            let (result, next) = f(seen(prev))?;
            match self.0.compare_exchange_weak(
                prev,
                next.as_u64(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(result),
                Err(now) => prev = now,
            }
        }
    }
}

struct Gens {
    current: Arc<Map>,
    previous: Arc<Map>,
}

/// The two generations and the count of new keys the current one may still take.
pub(crate) struct Generations {
    gens: ArcSwap<Gens>,
    /// Keys per generation.
    cap: usize,
    /// New keys the current generation may take before a sweep is due (≤ 0: due).
    budget: AtomicI64,
}

impl Generations {
    /// Two empty generations of `cap` keys each (at least 1).
    pub(crate) fn new(cap: usize) -> Generations {
        let cap = cap.max(1);
        Generations {
            gens: ArcSwap::from_pointee(Gens {
                current: new_map(),
                previous: new_map(),
            }),
            cap,
            budget: AtomicI64::new(i64::try_from(cap).unwrap_or(i64::MAX)),
        }
    }

    pub(crate) fn sweep_due(&self) -> bool {
        self.budget.load(Ordering::Relaxed) <= 0
    }

    /// Whether the current generation is still fuller than three quarters of its cap.
    pub(crate) fn too_full(&self) -> bool {
        self.gens.load().current.len() > self.cap - self.cap.div_ceil(4)
    }

    /// The current generation becomes the previous one; the old previous one is dropped.
    pub(crate) fn rotate(&self) {
        let old = self.gens.load_full();
        self.gens.store(Arc::new(Gens {
            current: new_map(),
            previous: Arc::clone(&old.current),
        }));
    }

    /// After a sweep: the current generation may take new keys up to its cap.
    pub(crate) fn reset_budget(&self) {
        let room = self.cap.saturating_sub(self.gens.load().current.len());
        self.budget
            .store(i64::try_from(room).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Keys in both generations.
    pub(crate) fn len(&self) -> usize {
        let g = self.gens.load();
        g.current.len() + g.previous.len()
    }

    /// Bytes the two tables hold (entries and control bytes at their allocated capacity;
    /// hashbrown keeps at most 7/8 of its buckets full), not counting the shard array.
    pub(crate) fn memory_bytes(&self) -> usize {
        let g = self.gens.load();
        let per_bucket = std::mem::size_of::<(u64, Tat)>() + 1;
        (g.current.capacity() + g.previous.capacity()) * per_bucket * 8 / 7
    }
}

/// The store governor's `RateLimiter` owns; the `Limiter` keeps another handle on the same
/// generations to sweep them.
#[derive(Clone)]
pub(crate) struct GenStore(pub(crate) Arc<Generations>);

impl StateStore for GenStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let g = self.0.gens.load();
        if let Some(tat) = g.current.get(key) {
            return tat.measure_and_replace(f);
        }
        // New to this generation: start from the previous generation's state, if any.
        let seed = g.previous.get(key).map_or(0, |t| t.get());
        let decision = match g.current.entry(*key) {
            Entry::Occupied(e) => e.get().measure_and_replace(f),
            Entry::Vacant(v) => {
                let left = self.0.budget.fetch_sub(1, Ordering::Relaxed) - 1;
                if left < -(SWEEP_SLACK as i64) {
                    // The sweep lags behind a flood: judge without storing.
                    self.0.budget.fetch_add(1, Ordering::Relaxed);
                    drop(v);
                    return Tat::new(seed).measure_and_replace(f);
                }
                v.insert(Tat::new(seed)).measure_and_replace(f)
            }
        };
        decision
    }
}

impl ShrinkableKeyedStateStore<u64> for GenStore {
    /// Drops the keys of both generations whose state is no different from a fresh one.
    fn retain_recent(&self, drop_below: Nanos) {
        let g = self.0.gens.load();
        let keep = |_: &u64, t: &mut Tat| t.get() > drop_below.as_u64();
        g.current.retain(keep);
        g.previous.retain(keep);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(tat: Option<Nanos>) -> Result<((), Nanos), ()> {
        Ok(((), Nanos::from(tat.map_or(0, |t| t.as_u64()) + 10)))
    }

    fn tat_of(s: &GenStore, key: u64) -> Option<u64> {
        let g = s.0.gens.load();
        let t = g.current.get(&key).map(|t| t.get());
        t.or_else(|| g.previous.get(&key).map(|t| t.get()))
    }

    #[test]
    fn a_key_carries_over_one_rotation_and_not_two() {
        let s = GenStore(Arc::new(Generations::new(100)));
        s.measure_and_replace(&7, allow).unwrap();
        s.measure_and_replace(&7, allow).unwrap();
        assert_eq!(tat_of(&s, 7), Some(20));
        s.0.rotate();
        assert_eq!(s.0.len(), 1, "in the previous generation");
        s.measure_and_replace(&7, allow).unwrap();
        assert_eq!(
            tat_of(&s, 7),
            Some(30),
            "seeded from the previous generation"
        );
        assert_eq!(s.0.len(), 2, "in both until the next rotation");
        s.0.rotate();
        s.0.rotate();
        assert_eq!(s.0.len(), 0);
        s.measure_and_replace(&7, allow).unwrap();
        assert_eq!(
            tat_of(&s, 7),
            Some(10),
            "forgotten after a whole idle generation"
        );
    }

    #[test]
    fn a_denial_keeps_the_state() {
        let s = GenStore(Arc::new(Generations::new(100)));
        s.measure_and_replace(&1, allow).unwrap();
        let deny = |_: Option<Nanos>| -> Result<((), Nanos), ()> { Err(()) };
        assert_eq!(s.measure_and_replace(&1, deny), Err(()));
        assert_eq!(tat_of(&s, 1), Some(10));
    }

    #[test]
    fn budget_counts_new_keys_only_and_the_slack_is_hard() {
        let s = GenStore(Arc::new(Generations::new(4)));
        for k in 0..4 {
            s.measure_and_replace(&k, allow).unwrap();
            s.measure_and_replace(&k, allow).unwrap();
        }
        assert!(s.0.sweep_due());
        // Nobody sweeps: the generation takes SWEEP_SLACK more keys, then stores no more.
        for k in 100..100 + 2 * SWEEP_SLACK as u64 {
            s.measure_and_replace(&k, allow).unwrap();
        }
        assert_eq!(s.0.len(), 4 + SWEEP_SLACK);
        assert_eq!(tat_of(&s, 100 + 2 * SWEEP_SLACK as u64 - 1), None);
        s.0.rotate();
        s.0.reset_budget();
        assert!(!s.0.sweep_due());
    }

    #[test]
    fn retain_recent_drops_stale_keys_in_both_generations() {
        let s = GenStore(Arc::new(Generations::new(100)));
        s.measure_and_replace(&1, allow).unwrap(); // tat 10
        s.0.rotate();
        s.measure_and_replace(&2, allow).unwrap(); // tat 10
        s.measure_and_replace(&3, allow).unwrap();
        s.measure_and_replace(&3, allow).unwrap(); // tat 20
        s.retain_recent(Nanos::from(10));
        assert_eq!((tat_of(&s, 1), tat_of(&s, 2)), (None, None));
        assert_eq!(tat_of(&s, 3), Some(20));
        assert_eq!(ShrinkableKeyedStateStore::len(&s), 1);
    }

    #[test]
    fn prehashed_is_the_identity_on_u64() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<PreHashed>::default();
        assert_eq!(b.hash_one(0xdead_beef_u64), 0xdead_beef);
        assert_ne!(b.hash_one("ab"), b.hash_one("ba"));
    }
}
