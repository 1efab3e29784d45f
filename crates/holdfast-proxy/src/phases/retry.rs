//! The retry policy of one request, as the chain it walks. `RetryPlan` starts at the pool the
//! chain chose and hands out one `Attempt` at a time (a server of the current pool, by its
//! balancer, its in-flight count taken); after each attempt `judge` records the outcome for
//! outlier detection and says whether to stop or retry: on *another* healthy server of the
//! pool, else on the next pool of the chain that is not down, after a jittered back-off — at
//! most `attempts` times, only for the failures `[pools.retry] on` lists, only for methods
//! that may be sent again, and only while the first pool's retry budget allows. The first
//! pool's policy and budget govern the whole walk. It holds no request: what is sent, and
//! whether it can be sent again, is the caller's.

use super::exchange::{closed_without_answer, Exchanged};
use crate::error::{ProxyError, Side};
use crate::upstream::{Chain, InFlight, Picked, Pool, RetryBudget, Server};
use holdfast_config::{RetryOn, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct RetryPlan<'r> {
    chain: &'r Chain,
    /// The first pool's policy and budget.
    policy: &'r RetryPolicy,
    budget: &'r RetryBudget,
    /// The chain index and pool of the next attempt.
    at: usize,
    pool: &'r Arc<Pool>,
    /// Servers of `pool` already tried for this request.
    tried: Vec<usize>,
    retries: u32,
    /// The method may be sent again: idempotent, or the policy allows any.
    may_resend: bool,
}

/// One attempt: a server of the plan's current pool, with its in-flight count taken.
pub(crate) struct Attempt<'r> {
    pub pool: &'r Arc<Pool>,
    index: usize,
    pub server: &'r Arc<Server>,
    pub in_flight: InFlight,
}

/// What to do after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Keep this attempt's result.
    Done,
    /// Send again, after `backoff`: to another server of the same pool, or (`moved`) to the
    /// plan's new pool, which sets its own `Host`.
    Retry {
        moved: bool,
        backoff: Option<Duration>,
    },
}

/// Why an attempt failed in a way a retry may fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retryable {
    /// Nothing was sent: safe for any method.
    Connect,
    Reset,
    Timeout,
    Status,
}

/// Where a retry goes.
enum RetryTarget {
    /// Another server of the same pool.
    SamePool,
    /// The pool at this index of the chain.
    ChainPool(usize),
}

impl<'r> RetryPlan<'r> {
    /// The walk of a request that starts at chain pool `first`; counts the request in that
    /// pool's budget.
    pub fn new(chain: &'r Chain, first: usize, method: &http::Method) -> Option<Self> {
        let pool = chain.pools.get(first)?;
        pool.budget.record_request();
        Some(RetryPlan {
            chain,
            policy: &pool.retry,
            budget: &pool.budget,
            at: first,
            pool,
            tried: Vec::new(),
            retries: 0,
            may_resend: pool.retry.non_idempotent || method.is_idempotent(),
        })
    }

    /// The pool the next attempt goes to.
    pub fn pool(&self) -> &'r Arc<Pool> {
        self.pool
    }

    /// Whether the method may be sent again after a failure that consumed the request.
    pub fn may_resend(&self) -> bool {
        self.may_resend
    }

    /// The server for the next attempt (`key` for a hashing balancer). A pool whose servers
    /// are all at `max_connections` is the edge's 503.
    pub fn attempt(&self, key: u64) -> Result<Attempt<'r>, ProxyError> {
        match self.pool.pick(&self.tried, key) {
            Picked::Server(index, server, in_flight) => Ok(Attempt {
                pool: self.pool,
                index,
                server,
                in_flight,
            }),
            Picked::Full => {
                self.pool.metrics.overload_rejected.inc();
                Err(ProxyError::Overloaded {
                    retry_after: self.pool.retry_after.clone(),
                })
            }
            Picked::Empty => Err(no_servers()),
        }
    }

    /// Record an attempt's outcome and decide: `unsent` says the request came back unsent
    /// (a connect failure), `resendable` that it, or a copy, can be sent again.
    pub fn judge(
        &mut self,
        attempt: &Attempt<'r>,
        result: &Result<Exchanged, ProxyError>,
        unsent: bool,
        resendable: bool,
    ) -> Judgement {
        let pool = attempt.pool;
        pool.record_outcome(attempt.server, origin_failed(result));
        let why = retryable(result, unsent, &self.policy.on);
        if self.retries > 0 {
            // Each retry counts once: did this attempt bring back a usable answer?
            match (result, why) {
                (Ok(_), None) => pool.metrics.retry_succeeded.inc(),
                _ => pool.metrics.retry_failed.inc(),
            }
        }
        let allowed = why.is_some_and(|w| w == Retryable::Connect || self.may_resend);
        if self.retries >= self.policy.attempts || !allowed || !resendable {
            return Judgement::Done;
        }
        // Retries go to another server only: hammering the one that just failed helps no one.
        let Some(target) = self.next_target(attempt.index) else {
            return Judgement::Done;
        };
        if !self.budget.try_retry() {
            pool.metrics.budget_exhausted.inc();
            return Judgement::Done;
        }
        self.retries += 1;
        let moved = match target {
            RetryTarget::SamePool => {
                self.tried.push(attempt.index);
                false
            }
            RetryTarget::ChainPool(j) => {
                let Some(next) = self.chain.pools.get(j) else {
                    return Judgement::Done;
                };
                self.at = j;
                self.pool = next;
                self.tried.clear();
                true
            }
        };
        // Nothing was sent on a connect failure: another server is tried at once (as nginx
        // does); after a reset, timeout or status, back off first.
        let backoff =
            (why != Some(Retryable::Connect)).then(|| backoff(self.policy.backoff, self.retries));
        Judgement::Retry { moved, backoff }
    }

    /// Where the retry after a failure on server `index` goes: another healthy server of
    /// the pool; else the next pool of the chain that is not down; else any server of the
    /// pool not yet tried.
    fn next_target(&self, index: usize) -> Option<RetryTarget> {
        let mut tried_now = self.tried.clone();
        tried_now.push(index);
        if self.pool.has_untried_usable(&tried_now) {
            return Some(RetryTarget::SamePool);
        }
        if let Some(j) = self.chain.next_up(self.at) {
            return Some(RetryTarget::ChainPool(j));
        }
        (tried_now.len() < self.pool.servers.len()).then_some(RetryTarget::SamePool)
    }
}

pub(crate) fn no_servers() -> ProxyError {
    ProxyError::Connect(std::io::Error::other("pool has no servers"))
}

/// Whether an attempt counts as the server's failure for outlier detection: the origin side
/// failed, or answered 502, 503 or 504.
fn origin_failed(result: &Result<Exchanged, ProxyError>) -> bool {
    match result {
        Ok((resp, _)) => matches!(resp.status().as_u16(), 502..=504),
        Err(e) => e.side() == Side::Origin,
    }
}

fn retryable(
    result: &Result<Exchanged, ProxyError>,
    unsent: bool,
    on: &RetryOn,
) -> Option<Retryable> {
    let why = match result {
        Ok((resp, _)) => on
            .statuses
            .contains(&resp.status().as_u16())
            .then_some(Retryable::Status)?,
        Err(_) if unsent => Retryable::Connect,
        Err(ProxyError::Timeout) => Retryable::Timeout,
        Err(ProxyError::Upstream(e)) if closed_without_answer(e) => Retryable::Reset,
        Err(_) => return None,
    };
    let enabled = match why {
        Retryable::Connect => on.connect,
        Retryable::Reset => on.reset,
        Retryable::Timeout => on.timeout,
        Retryable::Status => true,
    };
    enabled.then_some(why)
}

/// Jittered exponential back-off: `base × 2^(retry-1)`, scaled by a random 0.5–1.5.
fn backoff(base: Duration, retry: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let scaled = base.saturating_mul(1 << retry.saturating_sub(1).min(10));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.5 + (random % 1000) as f64 / 1000.0;
    scaled.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{test_pool, test_retry};
    use http::Method;
    use prometheus::{IntCounterVec, Opts};

    /// A route's chain of pools, each `(name, servers, retries)`.
    fn chain(pools: &[(&str, usize, u32)]) -> Chain {
        let pools: Vec<Arc<Pool>> = pools
            .iter()
            .map(|(name, n, attempts)| Arc::new(test_pool(name, *n, None, test_retry(*attempts))))
            .collect();
        let failovers =
            IntCounterVec::new(Opts::new("failovers", "test"), &["route", "from", "to"]).unwrap();
        Chain::new(Arc::from("r"), pools.into(), None, 0, failovers)
    }

    fn timeout() -> Result<Exchanged, ProxyError> {
        Err(ProxyError::Timeout)
    }

    /// One attempt that times out (sent, can be re-sent): the plan's step and the server.
    fn time_out(plan: &mut RetryPlan<'_>) -> (Judgement, String) {
        let attempt = plan.attempt(0).unwrap();
        let server = attempt.server.label.to_string();
        (plan.judge(&attempt, &timeout(), false, true), server)
    }

    #[test]
    fn a_retry_goes_to_another_server_then_the_next_pool_then_stops() {
        let chain = chain(&[("a", 2, 3), ("b", 1, 0)]);
        let mut plan = RetryPlan::new(&chain, 0, &Method::GET).unwrap();
        let (step, first) = time_out(&mut plan);
        assert!(matches!(
            step,
            Judgement::Retry {
                moved: false,
                backoff: Some(_)
            }
        ));
        let (step, second) = time_out(&mut plan);
        assert_ne!(
            first, second,
            "a retry never goes back to the server that failed"
        );
        assert!(
            matches!(step, Judgement::Retry { moved: true, .. }),
            "{step:?}"
        );
        assert_eq!(&*plan.pool().name, "b");
        // The first pool's policy still governs: one retry left, but nowhere to go.
        assert_eq!(time_out(&mut plan).0, Judgement::Done);
        assert_eq!(chain.pools[0].metrics.retry_failed.get(), 1);
        assert_eq!(chain.pools[1].metrics.retry_failed.get(), 1);
    }

    #[test]
    fn no_more_retries_than_attempts() {
        let chain = chain(&[("a", 5, 2)]);
        let mut plan = RetryPlan::new(&chain, 0, &Method::GET).unwrap();
        let steps: Vec<Judgement> = (0..3).map(|_| time_out(&mut plan).0).collect();
        assert!(matches!(steps[0], Judgement::Retry { .. }));
        assert!(matches!(steps[1], Judgement::Retry { .. }));
        assert_eq!(steps[2], Judgement::Done);
    }

    #[test]
    fn a_sent_post_is_not_retried_but_an_unsent_one_is_at_once() {
        let chain = chain(&[("a", 3, 3)]);
        let mut plan = RetryPlan::new(&chain, 0, &Method::POST).unwrap();
        let attempt = plan.attempt(0).unwrap();
        let step = plan.judge(&attempt, &timeout(), true, true);
        assert_eq!(
            step,
            Judgement::Retry {
                moved: false,
                backoff: None
            },
            "nothing was sent: any method, no back-off"
        );
        let attempt = plan.attempt(0).unwrap();
        assert_eq!(
            plan.judge(&attempt, &timeout(), false, true),
            Judgement::Done
        );
    }

    #[test]
    fn nothing_to_send_again_means_done() {
        let chain = chain(&[("a", 3, 3)]);
        let mut plan = RetryPlan::new(&chain, 0, &Method::GET).unwrap();
        let attempt = plan.attempt(0).unwrap();
        assert_eq!(
            plan.judge(&attempt, &timeout(), false, false),
            Judgement::Done
        );
    }

    #[test]
    fn an_empty_budget_refuses_the_retry_and_counts_it() {
        let mut retry = test_retry(3);
        retry.min_per_second = 0;
        retry.budget_percent = 0;
        let pools = vec![Arc::new(test_pool("a", 3, None, retry))];
        let failovers =
            IntCounterVec::new(Opts::new("failovers", "test"), &["route", "from", "to"]).unwrap();
        let chain = Chain::new(Arc::from("r"), pools.into(), None, 0, failovers);
        let mut plan = RetryPlan::new(&chain, 0, &Method::GET).unwrap();
        assert_eq!(time_out(&mut plan).0, Judgement::Done);
        assert_eq!(chain.pools[0].metrics.budget_exhausted.get(), 1);
    }

    #[test]
    fn a_pool_at_max_connections_is_the_edges_503() {
        let pools = vec![Arc::new(test_pool("a", 1, Some(1), test_retry(1)))];
        let failovers =
            IntCounterVec::new(Opts::new("failovers", "test"), &["route", "from", "to"]).unwrap();
        let chain = Chain::new(Arc::from("r"), pools.into(), None, 0, failovers);
        let plan = RetryPlan::new(&chain, 0, &Method::GET).unwrap();
        let _held = plan.attempt(0).unwrap();
        assert!(matches!(
            plan.attempt(0).map(|_| ()),
            Err(ProxyError::Overloaded { .. })
        ));
    }

    fn on(connect: bool, reset: bool, timeout: bool) -> RetryOn {
        RetryOn {
            connect,
            reset,
            timeout,
            statuses: vec![503],
        }
    }

    #[test]
    fn an_unsent_request_is_a_connect_failure_whatever_the_error() {
        let timeout: Result<Exchanged, ProxyError> = Err(ProxyError::Timeout);
        assert_eq!(
            retryable(&timeout, true, &on(true, false, false)),
            Some(Retryable::Connect)
        );
        assert_eq!(retryable(&timeout, true, &on(false, true, true)), None);
    }

    #[test]
    fn a_timeout_is_retried_only_when_listed() {
        let timeout: Result<Exchanged, ProxyError> = Err(ProxyError::Timeout);
        assert_eq!(
            retryable(&timeout, false, &on(true, true, true)),
            Some(Retryable::Timeout)
        );
        assert_eq!(retryable(&timeout, false, &on(true, true, false)), None);
    }

    #[test]
    fn a_client_side_failure_is_never_retried() {
        let client: Result<Exchanged, ProxyError> = Err(ProxyError::BodyTooLarge);
        assert_eq!(retryable(&client, false, &on(true, true, true)), None);
        assert!(!origin_failed(&client), "not held against the server");
        assert!(origin_failed(&Err(ProxyError::Timeout)));
    }

    #[test]
    fn backoff_doubles_per_retry_with_jitter_and_a_ceiling() {
        let base = Duration::from_millis(100);
        for _ in 0..50 {
            let first = backoff(base, 1);
            assert!(first >= base / 2 && first <= base * 3 / 2, "{first:?}");
            let third = backoff(base, 3);
            assert!(third >= base * 2 && third <= base * 6, "{third:?}");
            let late = backoff(base, 40);
            assert!(late <= base * 1024 * 3 / 2, "{late:?}");
        }
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }
}
