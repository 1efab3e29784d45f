//! Admission: a pool's optional concurrency limit (`[pools.overload]`). A request takes a
//! slot before its first attempt and holds it until its response body ends (the permit
//! travels in the body); over the limit it waits in a bounded queue, and with the queue full
//! (or its wait over) the edge answers 503 with `Retry-After` without contacting the origin.
//! A pool without limits has no `Admission` and pays nothing per request.

use holdfast_config::Overload;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots for requests in flight to a pool, and a bounded queue for a free slot.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    /// `Retry-After` for the 503, in seconds.
    pub retry_after: http::HeaderValue,
}

/// Leaves the queue when dropped, also when the waiting request is cancelled.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limits: &Overload) -> Self {
        let secs = limits.retry_after.as_secs().max(1);
        Admission {
            slots: Arc::new(Semaphore::new(
                limits.max_concurrent.min(Semaphore::MAX_PERMITS),
            )),
            queued: AtomicUsize::new(0),
            max_queued: limits.max_queued,
            retry_after: http::HeaderValue::from(secs),
        }
    }

    /// A slot now, or after waiting in the queue until `deadline`; `None` means answer 503.
    pub async fn admit(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _in_queue = Queued(&self.queued);
        let wait = Arc::clone(&self.slots).acquire_owned();
        tokio::time::timeout_at(deadline.into(), wait)
            .await
            .ok()?
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admission(max_concurrent: usize, max_queued: usize) -> Admission {
        Admission::new(&Overload {
            max_concurrent,
            max_queued,
            retry_after: Duration::from_secs(7),
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn slots_up_to_the_limit_then_503_with_an_empty_queue() {
        let a = admission(2, 0);
        let first = a.admit(soon()).await;
        let second = a.admit(soon()).await;
        assert!(first.is_some() && second.is_some());
        assert!(
            a.admit(soon()).await.is_none(),
            "third request over the limit"
        );
        assert_eq!(a.retry_after, "7");
        drop(first);
        assert!(a.admit(soon()).await.is_some(), "a freed slot is reused");
    }

    #[tokio::test]
    async fn a_queued_request_gets_the_slot_freed_by_a_body_that_ended() {
        let a = Arc::new(admission(1, 1));
        let held = a.admit(soon()).await;
        assert!(held.is_some());
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.admit(soon()).await.is_some() })
        };
        // Bounded polling until the waiter is in the queue.
        for _ in 0..1000 {
            if a.queued.load(Ordering::Acquire) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(a.queued.load(Ordering::Acquire), 1);
        assert!(a.admit(soon()).await.is_none(), "the queue holds one");
        drop(held);
        assert!(waiter.await.unwrap(), "the queued request got the slot");
        assert_eq!(a.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_is_a_503_and_leaves_the_queue() {
        let a = admission(1, 4);
        let _held = a.admit(soon()).await;
        assert!(a.admit(Instant::now()).await.is_none());
        assert_eq!(a.queued.load(Ordering::Acquire), 0);
    }
}
