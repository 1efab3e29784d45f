//! Requests per client address over a fixed window, in bounded memory.
//!
//! A fixed table of [`RATE_SLOTS`] atomic words, allocated once. An address hashes (keyed
//! SipHash, a random key per table, so clients cannot aim at each other's slots) to one slot;
//! the slot packs the window number (high 32 bits) and the count in that window (low 32
//! bits). [`RateTable::observe`] is one compare-and-swap loop: no lock, no allocation, and a
//! flood of unique addresses cannot grow memory — it only shares slots (addresses that share
//! a slot share a count, which over-states their rate; with 4096 slots that needs thousands of
//! active clients per window).
//!
//! Windows are fixed (not sliding): counts start again at 1 in each new window.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Number of slots (a power of two). 32 KiB.
pub const RATE_SLOTS: usize = 4096;
/// The window `client_rate` counts over by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

pub struct RateTable {
    slots: Box<[AtomicU64]>,
    start: Instant,
    window_ms: u64,
    hasher: RandomState,
}

impl RateTable {
    /// A table counting over `window` (at least 1 ms).
    pub fn new(window: Duration) -> RateTable {
        RateTable {
            slots: (0..RATE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            start: Instant::now(),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1),
            hasher: RandomState::new(),
        }
    }

    /// Count one request of `ip` at `now`; the number of requests of its slot in the current
    /// window, this one included (≥ 1).
    pub fn observe(&self, ip: IpAddr, now: Instant) -> u32 {
        let Some(slot) = self.slot(ip) else {
            return 1;
        };
        let window = self.window_of(now);
        let step = |word: u64| -> u64 {
            let (w, count) = unpack(word);
            // A caller with an older clock than the last writer counts in the newer window.
            if w >= window {
                pack(w, count.saturating_add(1))
            } else {
                pack(window, 1)
            }
        };
        match slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(step(v))) {
            Ok(prev) | Err(prev) => unpack(step(prev)).1,
        }
    }

    /// The count of `ip`'s slot in the window of `now`, without counting.
    pub fn peek(&self, ip: IpAddr, now: Instant) -> u32 {
        let Some(slot) = self.slot(ip) else {
            return 0;
        };
        let (w, count) = unpack(slot.load(Ordering::Relaxed));
        if w >= self.window_of(now) {
            count
        } else {
            0
        }
    }

    /// Bytes the table holds; fixed for its life.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    fn slot(&self, ip: IpAddr) -> Option<&AtomicU64> {
        let h = self.hasher.hash_one(ip);
        // RATE_SLOTS is a power of two: the mask keeps the index in range.
        let i = usize::try_from(h).unwrap_or(0) & (RATE_SLOTS - 1);
        self.slots.get(i)
    }

    fn window_of(&self, now: Instant) -> u32 {
        let ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        u32::try_from(ms / self.window_ms).unwrap_or(u32::MAX)
    }
}

impl Default for RateTable {
    fn default() -> Self {
        RateTable::new(DEFAULT_WINDOW)
    }
}

impl std::fmt::Debug for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("slots", &self.slots.len())
            .field("window_ms", &self.window_ms)
            .finish_non_exhaustive()
    }
}

fn pack(window: u32, count: u32) -> u64 {
    (u64::from(window) << 32) | u64::from(count)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn counts_within_a_window_and_restarts() {
        let t = RateTable::new(Duration::from_secs(10));
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let t0 = t.start;
        for n in 1..=5 {
            assert_eq!(t.observe(ip, t0 + Duration::from_secs(1)), n);
        }
        assert_eq!(t.peek(ip, t0 + Duration::from_secs(9)), 5);
        // Next window: starts again.
        assert_eq!(t.peek(ip, t0 + Duration::from_secs(10)), 0);
        assert_eq!(t.observe(ip, t0 + Duration::from_secs(10)), 1);
        // A late caller with an older clock counts in the newer window.
        assert_eq!(t.observe(ip, t0 + Duration::from_secs(2)), 2);
    }

    #[test]
    fn clients_are_counted_apart() {
        let t = RateTable::default();
        let now = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let b = IpAddr::V6(Ipv6Addr::LOCALHOST);
        for _ in 0..10 {
            t.observe(a, now);
        }
        // b shares a's slot only if they collide; make sure the counts we see are sane.
        let b_count = t.observe(b, now);
        assert!(b_count == 1 || b_count == 11);
        assert!(t.peek(a, now) >= 10);
    }

    #[test]
    fn a_flood_of_unique_addresses_stays_bounded() {
        let t = RateTable::default();
        let before = t.memory_bytes();
        assert_eq!(before, RATE_SLOTS * 8);
        let now = Instant::now();
        let mut total = 0u64;
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            total += u64::from(t.observe(ip, now));
        }
        assert_eq!(t.memory_bytes(), before);
        // Every request was counted in some slot: the slot counts add up to the requests.
        let sum: u64 = t
            .slots
            .iter()
            .map(|s| u64::from(unpack(s.load(Ordering::Relaxed)).1))
            .sum();
        assert_eq!(sum, 100_000);
        assert!(total >= 100_000);
    }

    #[test]
    fn counts_saturate() {
        let t = RateTable::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let slot = t.slot(ip).unwrap();
        slot.store(pack(0, u32::MAX - 1), Ordering::Relaxed);
        assert_eq!(t.observe(ip, t.start), u32::MAX);
        assert_eq!(t.observe(ip, t.start), u32::MAX);
    }

    #[test]
    fn concurrent_observers_lose_no_count() {
        let t = std::sync::Arc::new(RateTable::default());
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let now = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        t.observe(ip, now);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.peek(ip, now), 4000);
    }
}
