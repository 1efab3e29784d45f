//! What a limit says about one request.

use std::time::Duration;

use super::ceil_secs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Within the limit: `remaining` more requests may follow at once; after `reset` the
    /// key's full burst is available again (an upper bound, within one emission interval).
    Allow { remaining: u32, reset: Duration },
    /// Over the limit: the next request can pass after `retry_after` (exact here;
    /// [`LimitDecision::retry_after_header`] rounds it up to whole seconds, at least 1); the
    /// full burst is back after `reset`.
    Deny {
        retry_after: Duration,
        reset: Duration,
    },
    /// Would be denied, but the limit is in shadow mode: counted, not enforced.
    Shadow,
    /// The request has no key under this limit (e.g. the header is missing): not limited.
    NoKey,
}

impl LimitDecision {
    /// Whether the request must be refused (429). `Shadow` is not.
    pub fn is_deny(&self) -> bool {
        matches!(self, LimitDecision::Deny { .. })
    }

    /// `Retry-After` in seconds for a denial: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            LimitDecision::Deny { retry_after, .. } => Some(ceil_secs(*retry_after).max(1)),
            _ => None,
        }
    }

    /// The `Retry-After` header value for a denial.
    pub fn retry_after_header(&self) -> Option<http::HeaderValue> {
        self.retry_after_secs().map(http::HeaderValue::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_a_second() {
        let deny = |ms| LimitDecision::Deny {
            retry_after: Duration::from_millis(ms),
            reset: Duration::from_secs(9),
        };
        assert_eq!(deny(0).retry_after_secs(), Some(1));
        assert_eq!(deny(1).retry_after_secs(), Some(1));
        assert_eq!(deny(1000).retry_after_secs(), Some(1));
        assert_eq!(deny(1001).retry_after_secs(), Some(2));
        assert_eq!(deny(59_500).retry_after_header().unwrap(), "60");
        assert!(deny(1).is_deny());
        for d in [
            LimitDecision::Shadow,
            LimitDecision::NoKey,
            LimitDecision::Allow {
                remaining: 0,
                reset: Duration::from_secs(1),
            },
        ] {
            assert!(!d.is_deny());
            assert_eq!(d.retry_after_header(), None);
        }
    }
}
