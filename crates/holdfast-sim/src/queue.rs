//! `Sim`: a virtual clock (nanoseconds from 0) and a queue of timed events, popped in time
//! order and, at equal times, in the order they were scheduled, so a run is repeatable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A virtual clock and its event queue.
#[derive(Debug)]
pub struct Sim<E> {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Slot<E>)>>,
}

/// An event in the heap; ordered by (time, sequence) only.
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for Sim<E> {
    fn default() -> Self {
        Sim::new()
    }
}

impl<E> Sim<E> {
    pub fn new() -> Sim<E> {
        Sim {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
        }
    }

    /// The virtual time, in nanoseconds since the start of the run.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Schedule `event` `after` from now.
    pub fn after(&mut self, after: Duration, event: E) {
        let at = self
            .now
            .saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX));
        self.at(at, event);
    }

    /// Schedule `event` at `at` (not before now).
    pub fn at(&mut self, at: u64, event: E) {
        self.seq += 1;
        self.queue
            .push(Reverse((at.max(self.now), self.seq, Slot(event))));
    }

    /// Move the clock forward by `by` (a clock jump): events due in between come next, all
    /// at once, in their order.
    pub fn jump(&mut self, by: Duration) {
        self.now = self
            .now
            .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The next event, the clock moved to its time; `None` when the queue is empty.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<E> {
        let Reverse((at, _, Slot(event))) = self.queue.pop()?;
        self.now = self.now.max(at);
        Some(event)
    }

    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_in_time_order_then_in_scheduling_order() {
        let mut sim = Sim::new();
        sim.after(Duration::from_nanos(20), "c");
        sim.after(Duration::from_nanos(10), "a");
        sim.after(Duration::from_nanos(10), "b");
        assert_eq!(sim.next(), Some("a"));
        assert_eq!(sim.now(), 10);
        assert_eq!(sim.next(), Some("b"));
        sim.jump(Duration::from_nanos(100));
        assert_eq!(sim.next(), Some("c"));
        assert_eq!(sim.now(), 110, "a jump never moves the clock back");
        assert_eq!(sim.next(), None);
    }
}
