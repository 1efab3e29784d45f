//! Admission bookkeeping of the HTTP/3 listeners: the handshakes in flight on an endpoint
//! (above a threshold, attempts must validate their address first) and the connections each
//! client address holds (`edge.h3.max_connections_per_ip`). Both are counts held by guards, so
//! a connection gives its places back however it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A connection in its handshake, counted until it is dropped or `done`.
pub(super) struct Handshaking(Option<Arc<AtomicUsize>>);

impl Handshaking {
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Handshaking(Some(Arc::clone(count)))
    }

    pub(super) fn done(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.done();
    }
}

/// Connections per client address (open or in their handshake).
#[derive(Default, Clone)]
pub(super) struct PerIp(Arc<Mutex<HashMap<IpAddr, u32>>>);

/// One connection's place in its address's count, given back on drop.
pub(super) struct IpSlot {
    table: PerIp,
    ip: IpAddr,
}

impl PerIp {
    pub(super) fn take(&self, ip: IpAddr, limit: u32) -> Option<IpSlot> {
        let mut table = holdfast_common::lock(&self.0);
        let n = table.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut table = holdfast_common::lock(&self.table.0);
        if let Some(n) = table.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_capped_and_given_back() {
        let table = PerIp::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = table.take(ip, 2).unwrap();
        let _b = table.take(ip, 2).unwrap();
        assert!(table.take(ip, 2).is_none());
        let _c = table.take(other, 2).unwrap();
        drop(a);
        assert!(table.take(ip, 2).is_some());
    }

    #[test]
    fn handshake_count_is_given_back_once() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut h = Handshaking::enter(&count);
        let _g = Handshaking::enter(&count);
        assert_eq!(count.load(Ordering::Relaxed), 2);
        h.done();
        drop(h);
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }
}
