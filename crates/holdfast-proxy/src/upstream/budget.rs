//! The retry budget of a pool (`[pools.retry]` `budget_percent`, `min_per_second`,
//! `budget_window`): tower's `TpsBudget`, so that retries stay a share of requests
//! (Finagle/Linkerd style) and never multiply the load on a failing origin. Requests deposit,
//! retries withdraw. It carries over a reload that keeps its settings.

use holdfast_config::RetryPolicy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};

/// Requests per deposit into the budget: depositing on every request would take the
/// budget's mutex and read the clock each time; the share per deposit is scaled to match.
const REQUESTS_PER_DEPOSIT: u64 = 16;

/// A pool's retry budget (tower's `TpsBudget`), fed once every `REQUESTS_PER_DEPOSIT`
/// requests with a share scaled by the same factor.
pub(crate) struct RetryBudget {
    budget: TpsBudget,
    requests: AtomicU64,
}

impl RetryBudget {
    /// The validated ranges are within `TpsBudget`'s; clamp anyway, it asserts on them.
    pub fn new(retry: &RetryPolicy) -> Self {
        let window = retry
            .budget_window
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let share = (retry.budget_percent.min(100) as f32) / 100.0;
        let per_deposit = share * REQUESTS_PER_DEPOSIT as f32;
        RetryBudget {
            budget: TpsBudget::new(window, retry.min_per_second.min(1_000_000), per_deposit),
            requests: AtomicU64::new(0),
        }
    }

    pub fn record_request(&self) {
        if self
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(REQUESTS_PER_DEPOSIT)
        {
            self.budget.deposit();
        }
    }

    pub fn try_retry(&self) -> bool {
        self.budget.withdraw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: u32, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(&RetryPolicy {
            attempts: 1,
            on: holdfast_config::RetryOn::default(),
            non_idempotent: false,
            budget_percent: percent,
            min_per_second,
            budget_window: Duration::from_secs(10),
            backoff: Duration::ZERO,
            buffer_body: 0,
        })
    }

    /// Retries granted in a row, up to `limit`.
    fn granted(b: &RetryBudget, limit: usize) -> usize {
        (0..limit).take_while(|_| b.try_retry()).count()
    }

    #[test]
    fn without_requests_only_the_floor_is_granted() {
        let b = budget(0, 3);
        let n = granted(&b, 1000);
        assert!(n > 0 && n < 1000, "the floor grants some, not all: {n}");
        assert!(!b.try_retry(), "then the budget is spent");
    }

    #[test]
    fn requests_buy_retries_in_proportion() {
        let b = budget(50, 0);
        assert_eq!(granted(&b, 10), 0, "no floor, no requests: no retries");
        for _ in 0..320 {
            b.record_request();
        }
        let n = granted(&b, 1000);
        // 320 requests at 50%: about 160 retries, never anywhere near all of them.
        assert!(
            (100..=200).contains(&n),
            "{n} retries for 320 requests at 50%"
        );
    }

    #[test]
    fn a_zero_percent_budget_without_floor_never_retries() {
        let b = budget(0, 0);
        for _ in 0..1000 {
            b.record_request();
        }
        assert_eq!(granted(&b, 10), 0);
    }
}
