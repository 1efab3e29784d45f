//! A process-wide panic hook that keeps a panic storm cheap (R8): a module that panics on
//! every request is caught at the module boundary, but the hook runs before the unwinding for
//! every one of them, and the default hook writes a message (and with `RUST_BACKTRACE` a
//! backtrace) each time. This hook lets the previous hook handle the first panic of the
//! process as before, then writes at most one line per `PANIC_REPORT_INTERVAL`
//! (`tracing::error!`: message, location and how many panics were left out since the last
//! line), and only counts the rest. It applies to every panic of the process, not just the
//! modules'.

use std::any::Any;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// At most one panic report per interval (after the first).
pub const PANIC_REPORT_INTERVAL: Duration = Duration::from_secs(1);

const NEVER: u64 = u64::MAX;

static INSTALL: Once = Once::new();
static LIMITER: PanicLimiter = PanicLimiter::new();
static ANCHOR: OnceLock<Instant> = OnceLock::new();

/// What to do with one panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicReport {
    /// The first panic: the previous hook handles it in full.
    Full,
    /// Write one line, saying how many panics were suppressed since the last one.
    Line { suppressed: u64 },
    /// Count it, write nothing.
    Suppressed,
}

/// Totals since the hook was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicHookStats {
    /// Panics reported (in full or as a line).
    pub reported: u64,
    /// Panics only counted.
    pub suppressed: u64,
}

/// The limiter behind the hook; time is passed in (milliseconds on any monotonic line).
#[derive(Debug)]
pub struct PanicLimiter {
    last: AtomicU64,
    since_last: AtomicU64,
    reported: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for PanicLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl PanicLimiter {
    pub const fn new() -> Self {
        PanicLimiter {
            last: AtomicU64::new(NEVER),
            since_last: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    pub fn decide(&self, now_ms: u64) -> PanicReport {
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(PANIC_REPORT_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let due = last == NEVER || now_ms.saturating_sub(last) >= interval;
        if due
            && self
                .last
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.reported.fetch_add(1, Ordering::Relaxed);
            let suppressed = self.since_last.swap(0, Ordering::Relaxed);
            return if last == NEVER {
                PanicReport::Full
            } else {
                PanicReport::Line { suppressed }
            };
        }
        self.since_last.fetch_add(1, Ordering::Relaxed);
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        PanicReport::Suppressed
    }

    pub fn stats(&self) -> PanicHookStats {
        PanicHookStats {
            reported: self.reported.load(Ordering::Relaxed),
            suppressed: self.suppressed.load(Ordering::Relaxed),
        }
    }
}

/// Installs the rate-limited hook in front of the current one. Only the first call installs;
/// later calls do nothing, so it is safe to call from several places.
pub fn install_rate_limited_panic_hook() {
    INSTALL.call_once(|| {
        let _ = ANCHOR.get_or_init(Instant::now);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match LIMITER.decide(now_ms()) {
            PanicReport::Full => previous(info),
            PanicReport::Line { suppressed } => report(info, suppressed),
            PanicReport::Suppressed => {}
        }));
    });
}

/// Counts of the installed hook (zero before it is installed).
pub fn panic_hook_stats() -> PanicHookStats {
    LIMITER.stats()
}

fn now_ms() -> u64 {
    let anchor = ANCHOR.get_or_init(Instant::now);
    u64::try_from(anchor.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn report(info: &PanicHookInfo<'_>, suppressed: u64) {
    let thread = std::thread::current();
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    tracing::error!(
        panic = payload_str(info.payload()),
        location,
        thread = thread.name().unwrap_or("<unnamed>"),
        suppressed_since_last = suppressed,
        "panic (rate-limited: at most one report per second)"
    );
}

/// The panic message, when the payload is a string (as `panic!` makes it).
pub(crate) fn payload_str(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_full_then_one_line_per_second() {
        let l = PanicLimiter::new();
        assert_eq!(l.decide(5), PanicReport::Full);
        for t in 5..1004 {
            assert_eq!(l.decide(t), PanicReport::Suppressed);
        }
        assert_eq!(l.decide(1005), PanicReport::Line { suppressed: 999 });
        assert_eq!(l.decide(1005), PanicReport::Suppressed);
        assert_eq!(l.decide(9000), PanicReport::Line { suppressed: 1 });
        assert_eq!(
            l.stats(),
            PanicHookStats {
                reported: 3,
                suppressed: 1000
            }
        );
    }

    #[test]
    fn ten_thousand_panics_in_a_second_make_one_report() {
        let l = PanicLimiter::new();
        let reports = (0..10_000u64)
            .map(|i| l.decide(i / 10))
            .filter(|r| *r != PanicReport::Suppressed)
            .count();
        assert_eq!(reports, 1);
    }

    #[test]
    fn payloads() {
        let a: Box<dyn Any + Send> = Box::new("static");
        let b: Box<dyn Any + Send> = Box::new(String::from("owned"));
        let c: Box<dyn Any + Send> = Box::new(7u8);
        assert_eq!(payload_str(&*a), "static");
        assert_eq!(payload_str(&*b), "owned");
        assert_eq!(payload_str(&*c), "(non-string panic payload)");
    }
}
