//! The worker's park: where released connections wait for their client's next byte.
//!
//! A released connection's wait needs a deadline (the idle or head limit) and to end when the
//! edge stops. A `tokio::time::Sleep` and a `watch::Receiver::wait_for` future of its own
//! were 344 bytes per connection (boxed, so that they did not size every connection's task).
//! Here each wait is [`NextByte`]: the socket's own read and a slot number. The thread's
//! [`Park`] keeps every waiting connection's deadline and waker (~40 bytes a slot, plus its
//! place in the deadline order) and one task, [`run`], with one timer for the earliest
//! deadline: it rings a slot when its deadline passes, or all of them when the edge stops.
//!
//! A connection's task runs on its worker's current-thread runtime and never moves, so the
//! park is a thread-local and a wait holds only its slot's number. Each worker starts its
//! park ([`start`]) before it accepts.
//!
//! The park also sees when its worker's connections go quiet: a release frees a connection's
//! buffers, a rung deadline closes it. [`TRIM_AFTER`] later the runner calls the allocator's
//! trim, if the edge was given one, which gives the worker's free pages back to the system:
//! after a burst nothing allocates, and an allocator purges on its own only when it is next
//! entered.

use crate::rewind::Rewind;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a released connection's wait for its client's next byte ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Byte(u8),
    /// The idle limit, or the head's, passed.
    TimedOut,
    /// The client closed, or the edge stops.
    Closed,
}

/// How the edge's stop ends the waits: `quiet` more for each (a request may be on its way)
/// while `draining()` says the stop is a binary upgrade's drain, else none.
#[derive(Clone, Copy)]
pub(crate) struct StopRule {
    pub(crate) draining: fn() -> bool,
    pub(crate) quiet: Duration,
}

/// How long after a connection's release (or a rung deadline) the worker's free memory is
/// given back: a burst's releases are taken in one go, and the trim runs at most this often.
pub(crate) const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Start the calling thread's park, whose waits end as `rule` says when `shutdown` turns
/// true, and which calls `trim` [`TRIM_AFTER`] after connections go quiet: each worker does
/// this on its runtime before it accepts.
pub(crate) fn start(shutdown: watch::Receiver<bool>, rule: StopRule, trim: Option<fn()>) {
    let park = Park {
        trim,
        ..Park::default()
    };
    PARK.with(|p| *p.borrow_mut() = Some(park));
    tokio::spawn(run(shutdown, rule, Unpark));
}

/// Wait for `stream`'s next byte (not counting bytes it would replay) until `deadline`, or
/// until the edge stops. On a thread without a park (`start`) the wait ends at once, closed.
pub(crate) fn next_byte<S>(stream: &mut Rewind<S>, deadline: Instant) -> NextByte<'_, S> {
    let slot = with_park(|park| park.enter(deadline)).unwrap_or(SlotId::NONE);
    NextByte { stream, slot }
}

/// A released connection's wait: see [`next_byte`]. Leaves the park when dropped.
pub(crate) struct NextByte<'a, S> {
    stream: &'a mut Rewind<S>,
    slot: SlotId,
}

impl<S: AsyncRead + Unpin> Future for NextByte<'_, S> {
    type Output = Next;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Next> {
        let this = self.get_mut();
        // The byte first: one that came as the deadline passed is served.
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match Pin::new(this.stream.inner_mut()).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                return Poll::Ready(match buf.filled().first() {
                    Some(b) => Next::Byte(*b),
                    None => Next::Closed,
                })
            }
            Poll::Ready(Err(_)) => return Poll::Ready(Next::Closed),
            Poll::Pending => {}
        }
        let rung = PARK.with(|p| match p.borrow_mut().as_mut() {
            Some(park) => park.watch(this.slot, cx.waker()),
            // A thread without a park (never started, or its runtime ended).
            None => Some(Ring::Stop),
        });
        match rung {
            Some(Ring::Deadline) => Poll::Ready(Next::TimedOut),
            Some(Ring::Stop) => Poll::Ready(Next::Closed),
            None => Poll::Pending,
        }
    }
}

impl<S> Drop for NextByte<'_, S> {
    fn drop(&mut self) {
        // `try_with`: a wait dropped as its thread ends finds no park, and has nothing to do.
        let _ = PARK.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if let Some(park) = p.as_mut() {
                    park.leave(self.slot);
                }
            }
        });
    }
}

thread_local! {
    static PARK: RefCell<Option<Park>> = const { RefCell::new(None) };
}

/// Why a slot's wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    Deadline,
    Stop,
}

/// A slot's index and the generation it was handed out in (a stale id finds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotId {
    index: u32,
    generation: u32,
}

impl SlotId {
    /// No slot's id (generations start at 1).
    const NONE: SlotId = SlotId {
        index: u32::MAX,
        generation: 0,
    };
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    used: bool,
    deadline: Instant,
    rung: Option<Ring>,
    waker: Option<Waker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Draining: waits end at this instant (or their deadline, if sooner).
    Quiet(Instant),
    Stopped,
}

/// One thread's waiting connections (see the module's comment).
#[derive(Debug)]
struct Park {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Unrung slots by deadline.
    due: BTreeSet<(Instant, u32)>,
    stop: Stop,
    /// The generation of the slot handed out last.
    generation: u32,
    /// What the runner's timer is set to; `None` when it has fired or is not set.
    armed: Option<Instant>,
    /// The runner, to wake when a wait's deadline comes before `armed`.
    runner: Option<Waker>,
    rearm: bool,
    /// The allocator's trim, and when it is due (`None`: nothing went quiet since the last).
    trim: Option<fn()>,
    trim_at: Option<Instant>,
}

impl Default for Park {
    fn default() -> Self {
        Park {
            slots: Vec::new(),
            free: Vec::new(),
            due: BTreeSet::new(),
            stop: Stop::Running,
            generation: 0,
            armed: None,
            runner: None,
            rearm: false,
            trim: None,
            trim_at: None,
        }
    }
}

impl Park {
    fn enter(&mut self, deadline: Instant) -> SlotId {
        let rung = (self.stop == Stop::Stopped).then_some(Ring::Stop);
        self.generation = self.generation.wrapping_add(1).max(1);
        let slot = Slot {
            generation: self.generation,
            used: true,
            deadline,
            rung,
            waker: None,
        };
        let index = match self.free.pop() {
            Some(index) => {
                if let Some(free) = self.slots.get_mut(index as usize) {
                    *free = slot;
                }
                index
            }
            None => {
                // More than u32::MAX waits on one thread cannot be open (each is a socket).
                let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(slot);
                index
            }
        };
        if rung.is_none() {
            self.due.insert((deadline, index));
            self.alarm_at(deadline);
        }
        self.went_quiet(Instant::now);
        SlotId {
            index,
            generation: self.generation,
        }
    }

    fn slot(&mut self, id: SlotId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.used && s.generation == id.generation)
    }

    /// How `id`'s wait ended, or `None` with `waker` kept to wake when it does.
    fn watch(&mut self, id: SlotId, waker: &Waker) -> Option<Ring> {
        let Some(slot) = self.slot(id) else {
            return Some(Ring::Stop);
        };
        if slot.rung.is_none() {
            match &mut slot.waker {
                Some(w) if w.will_wake(waker) => {}
                w => *w = Some(waker.clone()),
            }
        }
        slot.rung
    }

    fn leave(&mut self, id: SlotId) {
        let Some(slot) = self.slot(id) else {
            return;
        };
        slot.used = false;
        slot.waker = None;
        let (deadline, rung) = (slot.deadline, slot.rung);
        if rung.is_none() {
            self.due.remove(&(deadline, id.index));
        }
        self.free.push(id.index);
    }

    /// Wake the runner to set its timer again if `at` comes before it.
    fn alarm_at(&mut self, at: Instant) {
        if self.armed.is_none_or(|armed| at < armed) {
            self.rearm = true;
            if let Some(runner) = &self.runner {
                runner.wake_by_ref();
            }
        }
    }

    /// A connection was released or closed: trim [`TRIM_AFTER`] from `now`, unless a trim is
    /// already due (it will cover this one).
    fn went_quiet(&mut self, now: impl FnOnce() -> Instant) {
        if self.trim.is_some() && self.trim_at.is_none() {
            let at = now() + TRIM_AFTER;
            self.trim_at = Some(at);
            self.alarm_at(at);
        }
    }

    /// The trim, if it is due at `now`.
    fn take_trim(&mut self, now: Instant) -> Option<fn()> {
        match self.trim_at {
            Some(at) if at <= now => {
                self.trim_at = None;
                self.trim
            }
            _ => None,
        }
    }

    /// When the runner should next look: the earliest deadline, the drain's end or the trim.
    fn next_alarm(&self) -> Option<Instant> {
        let first = self.due.first().map(|(at, _)| *at);
        let drain_end = match self.stop {
            Stop::Quiet(until) => Some(until),
            _ => None,
        };
        [first, drain_end, self.trim_at].into_iter().flatten().min()
    }

    fn ring(&mut self, index: u32, ring: Ring) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            slot.rung = Some(ring);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// Ring every wait whose deadline is past; all of them once a drain's quiet time ends.
    fn ring_due(&mut self, now: Instant) {
        if matches!(self.stop, Stop::Quiet(until) if until <= now) {
            return self.ring_all();
        }
        let mut rung = false;
        while let Some(&(at, index)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            self.ring(index, Ring::Deadline);
            rung = true;
        }
        if rung {
            self.went_quiet(|| now);
        }
    }

    fn ring_all(&mut self) {
        self.stop = Stop::Stopped;
        while let Some((_, index)) = self.due.pop_first() {
            self.ring(index, Ring::Stop);
        }
    }

    fn stop(&mut self, now: Instant, rule: StopRule) {
        if (rule.draining)() {
            self.stop = Stop::Quiet(now + rule.quiet);
        } else {
            self.ring_all();
        }
    }
}

/// The park's task: rings waits as their deadlines pass and when the edge stops. Runs with
/// its thread's runtime.
async fn run(mut shutdown: watch::Receiver<bool>, rule: StopRule, _unpark: Unpark) {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let timer = tokio::time::sleep_until(far);
    let mut timer = std::pin::pin!(timer);
    let mut stop_seen = false;
    loop {
        // Set the timer to the earliest alarm (it is at `far` when nothing is due).
        let Some(change) = with_park(|p| {
            p.rearm = false;
            let next = p.next_alarm();
            let changed = next != p.armed;
            p.armed = next;
            changed.then_some(next)
        }) else {
            return;
        };
        if let Some(next) = change {
            timer.as_mut().reset(next.unwrap_or(far));
        }
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop), if !stop_seen => {
                stop_seen = true;
                with_park(|p| p.stop(Instant::now(), rule));
            }
            () = &mut timer => {
                timer.as_mut().reset(far);
                let trim = with_park(|p| {
                    p.armed = None;
                    let now = Instant::now();
                    p.ring_due(now);
                    p.take_trim(now)
                });
                // Outside the park's borrow: the allocator does not need it.
                if let Some(trim) = trim.flatten() {
                    trim();
                }
            }
            () = rearmed() => {}
        }
    }
}

/// Ready when a wait with a deadline before the timer's entered the park.
fn rearmed() -> impl Future<Output = ()> {
    std::future::poll_fn(|cx| {
        let rearm = with_park(|p| {
            if !p.rearm {
                p.runner = Some(cx.waker().clone());
            }
            p.rearm
        });
        // No park (its thread's runtime is ending): nothing to wait for.
        match rearm {
            Some(false) => Poll::Pending,
            _ => Poll::Ready(()),
        }
    })
}

/// Clears the thread's park when its runner is dropped (with its runtime): a wait made on the
/// thread afterwards starts a new one.
struct Unpark;

impl Drop for Unpark {
    fn drop(&mut self) {
        let _ = PARK.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.take();
            }
        });
    }
}

fn with_park<T>(f: impl FnOnce(&mut Park) -> T) -> Option<T> {
    PARK.with(|p| p.borrow_mut().as_mut().map(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const RULE: StopRule = StopRule {
        draining: || false,
        quiet: Duration::from_secs(2),
    };

    fn pair() -> (Rewind<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(64);
        (Rewind::new(Vec::new(), a), b)
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_ends_the_wait_and_the_slot_is_given_back() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, None);
        let (mut stream, mut client) = pair();
        let deadline = Instant::now() + Duration::from_secs(60);
        let wait = next_byte(&mut stream, deadline);
        client.write_all(b"G").await.unwrap();
        assert_eq!(wait.await, Next::Byte(b'G'));
        let open = with_park(|p| p.due.len()).unwrap();
        assert_eq!(open, 0, "a finished wait leaves no deadline behind");
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_times_out_at_its_own_deadline() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, None);
        let (mut late, _c1) = pair();
        let (mut soon, _c2) = pair();
        let start = Instant::now();
        let late = next_byte(&mut late, start + Duration::from_secs(30));
        let soon = next_byte(&mut soon, start + Duration::from_secs(10));
        assert_eq!(soon.await, Next::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(late.await, Next::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_client_ends_the_wait() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, None);
        let (mut stream, client) = pair();
        let wait = next_byte(&mut stream, Instant::now() + Duration::from_secs(60));
        drop(client);
        assert_eq!(wait.await, Next::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_closes_every_wait_and_any_after_it() {
        let (tx, rx) = watch::channel(false);
        start(rx, RULE, None);
        let (mut a, _ca) = pair();
        let (mut b, _cb) = pair();
        let far = Instant::now() + Duration::from_secs(600);
        let wait_a = next_byte(&mut a, far);
        let wait_b = next_byte(&mut b, far);
        let start = Instant::now();
        tx.send(true).unwrap();
        assert_eq!(wait_a.await, Next::Closed);
        assert_eq!(wait_b.await, Next::Closed);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "no quiet time unless draining"
        );
        let (mut c, _cc) = pair();
        assert_eq!(next_byte(&mut c, far).await, Next::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_gives_each_wait_its_quiet_time_then_closes_it() {
        let rule = StopRule {
            draining: || true,
            quiet: Duration::from_secs(2),
        };
        let (tx, rx) = watch::channel(false);
        start(rx, rule, None);
        let (mut quiet, _c1) = pair();
        let (mut talks, mut client) = pair();
        let (mut soon, _c3) = pair();
        let start = Instant::now();
        let far = start + Duration::from_secs(600);
        let quiet = next_byte(&mut quiet, far);
        let talks = next_byte(&mut talks, far);
        let soon = next_byte(&mut soon, start + Duration::from_secs(1));
        tx.send(true).unwrap();
        client.write_all(b"P").await.unwrap();
        assert_eq!(
            talks.await,
            Next::Byte(b'P'),
            "a request on its way is served"
        );
        assert_eq!(
            soon.await,
            Next::TimedOut,
            "a deadline before the drain's end holds"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(quiet.await, Next::Closed);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_reused_and_a_stale_id_finds_nothing() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, None);
        let (mut a, mut ca) = pair();
        let far = Instant::now() + Duration::from_secs(600);
        let first = next_byte(&mut a, far);
        let old = first.slot;
        ca.write_all(b"x").await.unwrap();
        assert_eq!(first.await, Next::Byte(b'x'));
        let (mut b, _cb) = pair();
        let second = next_byte(&mut b, far);
        assert_eq!(second.slot.index, old.index, "the slot is reused");
        assert_ne!(second.slot.generation, old.generation);
        let stale = with_park(|p| p.watch(old, futures_util::task::noop_waker_ref())).unwrap();
        assert_eq!(stale, Some(Ring::Stop));
        drop(second);
        assert_eq!(with_park(|p| p.due.len()), Some(0));
    }

    thread_local! {
        static TRIMS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn count_trim() {
        TRIMS.with(|t| t.set(t.get() + 1));
    }

    fn trims() -> u32 {
        TRIMS.with(|t| t.get())
    }

    async fn sleep_to(start: Instant, secs_tenths: u64) {
        tokio::time::sleep_until(start + Duration::from_millis(secs_tenths * 100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_trim_runs_a_second_after_connections_go_idle_once_for_a_burst() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, Some(count_trim));
        let start = Instant::now();
        let far = start + Duration::from_secs(600);
        let (mut a, _ca) = pair();
        let (mut b, _cb) = pair();
        let (mut c, _cc) = pair();
        let _wait_a = next_byte(&mut a, far);
        sleep_to(start, 3).await;
        let _wait_b = next_byte(&mut b, far);
        let _wait_c = next_byte(&mut c, far);
        sleep_to(start, 9).await;
        assert_eq!(trims(), 0, "not before a second has passed");
        sleep_to(start, 11).await;
        assert_eq!(trims(), 1, "one trim for the three releases");
        sleep_to(start, 100).await;
        assert_eq!(trims(), 1, "nothing went idle since: no trim");
        let (mut d, _cd) = pair();
        let _wait_d = next_byte(&mut d, far);
        sleep_to(start, 111).await;
        assert_eq!(trims(), 2, "a later release trims again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_wait_is_followed_by_a_trim() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, Some(count_trim));
        let start = Instant::now();
        let (mut a, _ca) = pair();
        let wait = next_byte(&mut a, start + Duration::from_secs(5));
        sleep_to(start, 20).await;
        assert_eq!(trims(), 1, "the release's trim");
        assert_eq!(wait.await, Next::TimedOut);
        sleep_to(start, 59).await;
        assert_eq!(trims(), 1);
        sleep_to(start, 61).await;
        assert_eq!(
            trims(),
            2,
            "the timed-out connection closes; its memory is trimmed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_park_without_a_trim_sets_no_alarm_for_it() {
        let (_tx, rx) = watch::channel(false);
        start(rx, RULE, None);
        let (mut a, _ca) = pair();
        let _wait = next_byte(&mut a, Instant::now() + Duration::from_secs(600));
        assert_eq!(with_park(|p| p.trim_at), Some(None));
    }
}
