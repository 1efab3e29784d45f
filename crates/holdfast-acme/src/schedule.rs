//! When to order next, as pure functions of the clock and a random draw (tested without
//! waiting): at two thirds of a certificate's lifetime (or at a random point of the CA's
//! ACME Renewal Information window), less a jitter of up to a twentieth of the lifetime so
//! a fleet's or a restart's renewals spread; after a failure, exponential back-off, longer
//! when the CA said `rateLimited`.

use std::time::{Duration, SystemTime};

/// First retry after a failed order; doubled on each failure up to `MAX_BACKOFF`.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(60);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// After a `rateLimited` answer: at least this long, doubled up to a day.
pub(crate) const RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(3 * 3600);
pub(crate) const MAX_RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// The renewal time of a certificate valid from `not_before` to `not_after`; `draw` is a
/// uniform random number in [0, 1). Never sooner than a tenth of the lifetime from `now`, so
/// a CA that issues oddly short certificates cannot make the edge order in a loop.
pub(crate) fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    draw: f64,
) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let jitter = lifetime.div_f64(20.0).mul_f64(draw.clamp(0.0, 1.0));
    let at = not_before + lifetime.mul_f64(2.0 / 3.0) - jitter;
    at.max(now + lifetime / 10)
}

/// A random point of the CA's suggested window (RFC 9773 §4.2); at once if it has begun
/// passing.
pub(crate) fn in_window(
    start: SystemTime,
    end: SystemTime,
    now: SystemTime,
    draw: f64,
) -> SystemTime {
    let width = end.duration_since(start).unwrap_or(Duration::ZERO);
    (start + width.mul_f64(draw.clamp(0.0, 1.0))).max(now)
}

/// How long to wait after the `failures`-th failure in a row (1 = the first).
pub(crate) fn backoff(failures: u32, rate_limited: bool, draw: f64) -> Duration {
    let (first, max) = if rate_limited {
        (RATE_LIMITED_BACKOFF, MAX_RATE_LIMITED_BACKOFF)
    } else {
        (FIRST_BACKOFF, MAX_BACKOFF)
    };
    let doubled = first.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let wait = doubled.min(max);
    // Up to a tenth more, so instances that failed together do not retry together.
    wait + wait.div_f64(10.0).mul_f64(draw.clamp(0.0, 1.0))
}

/// A uniform draw in [0, 1) from the OS generator (0.5 if it is unavailable).
pub(crate) fn draw() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * days as u32 + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn renewal_comes_at_two_thirds_of_the_lifetime_less_a_bounded_jitter() {
        let (nb, na) = (t(0), t(90));
        assert_eq!(renew_at(nb, na, t(1), 0.0), t(60));
        let latest_jitter = renew_at(nb, na, t(1), 0.999_999);
        assert!(latest_jitter < t(60) && latest_jitter > t(60) - DAY * 9 / 2);
    }

    #[test]
    fn renewal_of_an_old_certificate_is_due_but_not_in_a_loop() {
        // Restarted long after the renewal time: due within a tenth of the lifetime.
        let at = renew_at(t(0), t(90), t(80), 0.3);
        assert_eq!(at, t(89));
        // A CA handing out certificates that are already two thirds old cannot make a loop.
        let short = renew_at(
            t(0),
            t(0) + Duration::from_secs(30),
            t(0) + Duration::from_secs(25),
            0.0,
        );
        assert_eq!(short, t(0) + Duration::from_secs(28));
    }

    #[test]
    fn a_renewal_information_window_is_used_at_a_random_point() {
        assert_eq!(in_window(t(50), t(52), t(1), 0.5), t(51));
        assert_eq!(in_window(t(50), t(52), t(60), 0.5), t(60));
    }

    #[test]
    fn back_off_doubles_to_a_cap_and_rate_limits_wait_longer() {
        assert_eq!(backoff(1, false, 0.0), FIRST_BACKOFF);
        assert_eq!(backoff(2, false, 0.0), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40, false, 0.0), MAX_BACKOFF);
        assert!(backoff(1, false, 0.99) < FIRST_BACKOFF * 11 / 10 + Duration::from_millis(1));
        assert_eq!(backoff(1, true, 0.0), RATE_LIMITED_BACKOFF);
        assert_eq!(backoff(9, true, 0.0), MAX_RATE_LIMITED_BACKOFF);
    }

    #[test]
    fn draws_are_in_range() {
        for _ in 0..100 {
            let d = draw();
            assert!((0.0..1.0).contains(&d));
        }
    }
}
