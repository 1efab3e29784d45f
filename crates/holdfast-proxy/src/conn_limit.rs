//! `edge.max_connections`: how many client connections the edge holds open at once, all
//! listeners and workers together. At the cap an accept loop stops accepting (as nginx does
//! when `worker_connections` run out) until a connection closes: new clients wait in the
//! kernel's listen backlog instead of costing memory and descriptors here. The cap is read
//! from the current generation at each accept, so a reload changes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Longest an accept loop waits at the cap before looking again (a reload may have raised it).
const RECHECK: Duration = Duration::from_millis(250);

/// The open-connection count shared by every accept loop of one edge.
#[derive(Debug, Default)]
pub(crate) struct ConnLimit {
    open: AtomicUsize,
    freed: Notify,
}

/// One open connection; dropping it frees its place.
pub(crate) struct ConnSlot(Arc<ConnLimit>);

impl ConnLimit {
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits while `cap` connections are open; `on_full` runs once if it had to wait.
    pub(crate) async fn wait_below(&self, cap: impl Fn() -> usize, on_full: impl FnOnce()) {
        if self.open() < cap() {
            return;
        }
        on_full();
        while self.open() >= cap() {
            let _ = tokio::time::timeout(RECHECK, self.freed.notified()).await;
        }
    }

    /// Waits until no connection is open.
    pub(crate) async fn all_closed(&self) {
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before the count is read: a close in between still wakes it.
            freed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            freed.await;
        }
    }

    /// Counts a connection just accepted.
    pub(crate) fn enter(self: &Arc<Self>) -> ConnSlot {
        self.open.fetch_add(1, Ordering::Relaxed);
        ConnSlot(Arc::clone(self))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_edge_waits_until_a_connection_closes() {
        let limit = Arc::new(ConnLimit::default());
        let a = limit.enter();
        let b = limit.enter();
        assert_eq!(limit.open(), 2);
        let mut waited = false;
        limit.wait_below(|| 3, || waited = true).await;
        assert!(!waited, "below the cap: no wait");
        let waiter = {
            let limit = Arc::clone(&limit);
            tokio::spawn(async move {
                let mut full = false;
                limit.wait_below(|| 2, || full = true).await;
                full
            })
        };
        // One runtime thread: yielding runs the waiter until it waits.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "at the cap: it waits");
        drop(a);
        assert!(waiter.await.unwrap_or(false), "it waited, then went on");
        assert_eq!(limit.open(), 1);
        let closed = {
            let limit = Arc::clone(&limit);
            tokio::spawn(async move { limit.all_closed().await })
        };
        tokio::task::yield_now().await;
        assert!(!closed.is_finished(), "one is still open");
        drop(b);
        tokio::time::timeout(Duration::from_secs(60), closed)
            .await
            .expect("the last close ends the wait")
            .expect("no panic");
        assert_eq!(limit.open(), 0);
    }
}
