//! A flood of unique keys cannot grow the table past its cap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use holdfast_shield::limit::{LimitKey, Limiter, LimiterSettings, DEFAULT_MAX_KEYS, SWEEP_SLACK};

use crate::Req;

/// Table bytes for `keys` at hashbrown's worst load (just after doubling: ~7/16 full):
/// 16-byte entries plus a control byte per bucket.
fn worst_bytes(keys: usize) -> usize {
    keys * 17 * 16 / 7
}

#[test]
fn a_million_distinct_client_ips_stay_within_max_keys() {
    let clock = FakeRelativeClock::default();
    let spec = LimiterSettings::new("per-ip", LimitKey::ClientIp, 5, Duration::from_secs(1));
    assert_eq!(spec.max_keys, DEFAULT_MAX_KEYS);
    let l = Limiter::with_clock(spec, clock.clone());
    let mut req = Req::from("0.0.0.0");
    let mut max_keys = 0;
    let mut max_bytes = 0;
    for i in 0..1_000_000u32 {
        // Distinct addresses, half IPv4 and half IPv6, 1 µs apart: a key goes stale after
        // 400 ms, by which time 400 000 more have come, so the table must rotate.
        req.ip = if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
        } else {
            IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64 | 1))
        };
        assert!(
            !l.check(&req.view(), "r").is_deny(),
            "a new address gets its burst"
        );
        clock.advance(Duration::from_micros(1));
        if i % 1000 == 0 {
            max_keys = max_keys.max(l.keys());
            max_bytes = max_bytes.max(l.memory_bytes());
        }
    }
    max_keys = max_keys.max(l.keys());
    max_bytes = max_bytes.max(l.memory_bytes());
    // One thread: no slack at all.
    assert!(max_keys <= DEFAULT_MAX_KEYS, "{max_keys}");
    assert!(
        max_keys >= DEFAULT_MAX_KEYS * 3 / 4,
        "the cap is used: {max_keys}"
    );
    assert!(
        max_bytes <= worst_bytes(DEFAULT_MAX_KEYS),
        "{max_bytes} bytes"
    );
    println!(
        "1M client IPs: at most {max_keys} keys, {max_bytes} table bytes, {} rotations",
        l.rotations()
    );
    assert!(l.rotations() >= 1_000_000 / (DEFAULT_MAX_KEYS as u64 / 2) - 1);
}

#[test]
fn concurrent_floods_stay_within_max_keys_plus_slack() {
    let clock = FakeRelativeClock::default();
    let mut spec =
        LimiterSettings::new("per-ip", LimitKey::ClientPrefix, 5, Duration::from_secs(1));
    spec.max_keys = 10_000;
    let l = Arc::new(Limiter::with_clock(spec, clock));
    let threads: Vec<_> = (0..4u128)
        .map(|t| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                let mut req = Req::from("::");
                let mut max = 0;
                for i in 0..100_000u128 {
                    // Distinct /64s per thread and request.
                    req.ip = IpAddr::V6(Ipv6Addr::from((t << 96 | i) << 64));
                    assert!(!l.check(&req.view(), "r").is_deny());
                    if i % 100 == 0 {
                        max = usize::max(max, l.keys());
                    }
                }
                max
            })
        })
        .collect();
    let max = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    assert!(max <= 10_000 + 2 * SWEEP_SLACK, "{max}");
    assert!(l.keys() <= 10_000 + 2 * SWEEP_SLACK);
    assert!(l.memory_bytes() <= worst_bytes(10_000 + 2 * SWEEP_SLACK));
}

#[test]
fn a_known_client_keeps_its_count_while_the_table_turns_over() {
    let clock = FakeRelativeClock::default();
    let mut spec = LimiterSettings::new("per-ip", LimitKey::ClientIp, 5, Duration::from_secs(1));
    spec.max_keys = 2_000;
    let l = Limiter::with_clock(spec, clock);
    let abuser = Req::from("198.51.100.66");
    for _ in 0..5 {
        assert!(!l.check(&abuser.view(), "r").is_deny());
    }
    let mut req = Req::from("0.0.0.0");
    for i in 0..50_000u32 {
        req.ip = IpAddr::V4(Ipv4Addr::from(i));
        l.check(&req.view(), "r");
        if i % 500 == 0 {
            assert!(l.check(&abuser.view(), "r").is_deny(), "after {i} new keys");
        }
    }
    assert!(l.rotations() > 40);
}
