//! Which server of a pool takes a request: smooth weighted round robin, least requests in
//! flight (power of two random choices), or rendezvous hashing on a request key. Every mode
//! skips the servers already tried for the request while others remain (retries).

use holdfast_config::{Balance, HashKey};
use std::cell::Cell;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest precomputed round-robin order; weights summing to more are scaled down.
const MAX_ORDER: u64 = 10_000;

/// A server as the balancer sees it.
pub(crate) trait Candidate {
    fn weight(&self) -> u32;
    /// Requests in flight to it now.
    fn in_flight(&self) -> usize;
    /// `stable_hash` of its label, for rendezvous hashing.
    fn hash_id(&self) -> u64;
}

impl<C: Candidate + ?Sized> Candidate for Arc<C> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn in_flight(&self) -> usize {
        (**self).in_flight()
    }
    fn hash_id(&self) -> u64 {
        (**self).hash_id()
    }
}

pub(crate) enum Balancer {
    RoundRobin {
        /// One full cycle of nginx's smooth weighted round robin, as server indices.
        order: Box<[usize]>,
        next: AtomicUsize,
    },
    LeastRequest,
    Hash(HashKey),
}

impl Balancer {
    pub fn new(balance: &Balance, weights: &[u32]) -> Self {
        match balance {
            Balance::RoundRobin => Balancer::RoundRobin {
                order: smooth_order(weights).into_boxed_slice(),
                next: AtomicUsize::new(0),
            },
            Balance::LeastRequest => Balancer::LeastRequest,
            Balance::Hash(key) => Balancer::Hash(key.clone()),
        }
    }

    /// The hash key this balancer needs from a request, if any.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            Balancer::Hash(k) => Some(k),
            _ => None,
        }
    }

    pub fn pick(&self, servers: &[impl Candidate], tried: &[usize], key: u64) -> Option<usize> {
        let untried = |i: &usize| !tried.contains(i);
        if servers.is_empty() {
            return None;
        }
        if tried.len() >= servers.len() {
            // Everyone was tried: fall back to the plain choice.
            return self.pick(servers, &[], key);
        }
        match self {
            Balancer::RoundRobin { order, next } => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..order.len())
                    .filter_map(|step| order.get((start + step) % order.len()).copied())
                    .find(|i| untried(i) && *i < servers.len())
            }
            Balancer::LeastRequest => {
                let candidates: Vec<usize> = (0..servers.len()).filter(untried).collect();
                let n = candidates.len();
                let a = candidates.get(random() as usize % n.max(1)).copied()?;
                if n == 1 {
                    return Some(a);
                }
                let offset = 1 + random() as usize % (n - 1);
                let pos_a = candidates.iter().position(|c| *c == a).unwrap_or(0);
                let b = candidates.get((pos_a + offset) % n).copied()?;
                let load = |i: usize| {
                    servers.get(i).map_or((u64::MAX, 1), |s| {
                        (s.in_flight() as u64, u64::from(s.weight().max(1)))
                    })
                };
                let ((la, wa), (lb, wb)) = (load(a), load(b));
                // la/wa <= lb/wb without division.
                Some(if la.saturating_mul(wb) <= lb.saturating_mul(wa) {
                    a
                } else {
                    b
                })
            }
            Balancer::Hash(_) => (0..servers.len())
                .filter(untried)
                .filter_map(|i| servers.get(i).map(|s| (i, rendezvous_score(key, s))))
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .map(|(i, _)| i),
        }
    }
}

/// Weighted rendezvous (highest random weight) score: the same key picks the same server
/// while it is in the pool, and removing a server moves only the keys it had.
fn rendezvous_score(key: u64, server: &impl Candidate) -> f64 {
    let h = mix(key ^ server.hash_id());
    // A uniform value in (0, 1); never 0 or 1, so the logarithm is finite and negative.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(server.weight().max(1)) / -u.ln()
}

/// SplitMix64's finaliser: spreads close inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable hash of bytes (the same in every process, so the mapping survives restarts).
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(
        std::collections::hash_map::RandomState::new().build_hasher().finish() | 1,
    );
}

/// A cheap per-thread random number (xorshift64*), for the two random choices.
fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// One cycle of smooth weighted round robin (nginx's): each step adds every weight to its
/// server's current value, picks the largest and takes the total off it.
fn smooth_order(weights: &[u32]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w.max(&1))).sum();
    let scale = total.div_ceil(MAX_ORDER).max(1);
    let weights: Vec<i64> = weights
        .iter()
        .map(|w| (u64::from(*w.max(&1)) / scale).max(1) as i64)
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .map_or(0, |(i, _)| i);
        if let Some(c) = current.get_mut(best) {
            *c -= total;
        }
        order.push(best);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::smooth_order;

    #[test]
    fn smooth_round_robin_interleaves_by_weight() {
        assert_eq!(smooth_order(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_order(&[1, 1]), vec![0, 1]);
        assert_eq!(smooth_order(&[1, 3]), vec![1, 0, 1, 1]);
    }

    #[test]
    fn huge_weights_are_scaled_to_a_bounded_cycle() {
        let order = smooth_order(&[1000; 200]);
        assert!(order.len() <= 10_000 + 200);
        assert!(!order.is_empty());
    }
}
