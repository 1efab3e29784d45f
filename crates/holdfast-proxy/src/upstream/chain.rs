//! A route's failover chain: its pools in order of preference and an optional fallback
//! response. Requests go to the first pool that is not down (`Pool::is_down`); with every
//! pool down, to the fallback if there is one, else to the first pool anyway (its panic mode).
//! A change of the pool a route sends to is counted in `holdfast_pool_failover_total`.

use super::pool::Pool;
use bytes::Bytes;
use prometheus::IntCounterVec;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The fixed response a route serves when its chain is down.
pub(crate) struct FallbackRt {
    pub status: http::StatusCode,
    pub body: Bytes,
    pub content_type: http::HeaderValue,
    pub retry_after: Option<http::HeaderValue>,
}

pub(crate) struct Chain {
    pub route: Arc<str>,
    pub pools: Box<[Arc<Pool>]>,
    pub fallback: Option<FallbackRt>,
    /// Where the route sends now: an index into `pools`, or `pools.len()` for the fallback.
    active: AtomicUsize,
    failovers: IntCounterVec,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Pool(usize),
    Fallback,
}

impl Chain {
    pub fn new(
        route: Arc<str>,
        pools: Box<[Arc<Pool>]>,
        fallback: Option<FallbackRt>,
        active: usize,
        failovers: IntCounterVec,
    ) -> Self {
        Chain {
            route,
            pools,
            fallback,
            active: AtomicUsize::new(active),
            failovers,
        }
    }

    /// The first pool of the chain that is not down. A single pool without a fallback has no
    /// choice to make and costs nothing here.
    pub fn choose(&self) -> Target {
        if self.pools.len() == 1 && self.fallback.is_none() {
            return Target::Pool(0);
        }
        let target = match self.pools.iter().position(|p| !p.is_down()) {
            Some(i) => Target::Pool(i),
            None if self.fallback.is_some() => Target::Fallback,
            None => Target::Pool(0),
        };
        let index = match target {
            Target::Pool(i) => i,
            Target::Fallback => self.pools.len(),
        };
        // Read first: a write on every request would bounce this line between workers.
        if self.active.load(Ordering::Relaxed) == index {
            return target;
        }
        let before = self.active.swap(index, Ordering::Relaxed);
        if before != index {
            let (from, to) = (self.label(before), self.label(index));
            self.failovers
                .with_label_values(&[&*self.route, from, to])
                .inc();
            tracing::warn!(route = %self.route, from, to, "failover: route now sends to {to}");
        }
        target
    }

    /// The next pool after `index` that is not down, for a retry that leaves its pool.
    pub fn next_up(&self, index: usize) -> Option<usize> {
        self.pools
            .iter()
            .enumerate()
            .skip(index + 1)
            .find(|(_, p)| !p.is_down())
            .map(|(i, _)| i)
    }

    /// Where the route sends now, by name (`fallback` for the fallback response).
    pub fn active(&self) -> &str {
        self.label(self.active.load(Ordering::Relaxed))
    }

    /// The raw index of `active`, carried over a reload that keeps the chain.
    pub fn active_index(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    fn label(&self, index: usize) -> &str {
        self.pools.get(index).map_or("fallback", |p| &*p.name)
    }
}
