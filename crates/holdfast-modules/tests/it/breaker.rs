//! The circuit breaker through the runner: trip after the threshold, the policy without
//! calling during the cool-down, then exactly one half-open probe.

use std::time::Duration;

use holdfast_modules::{BreakerSettings, FailPolicy, ModuleSettings, ModuleState, Verdict};

use crate::support::{Behave, Harness};

fn settings(policy: FailPolicy) -> ModuleSettings {
    ModuleSettings {
        fail_policy: policy,
        ..ModuleSettings::default()
    }
}

/// Trips `h` with errors; on a fresh slot that takes 20 (the default `min_requests`).
fn trip(h: &Harness) {
    h.set(Behave::Fail("broken"));
    for _ in 0..20 {
        if h.slot.state() == ModuleState::Tripped {
            break;
        }
        h.run(None);
    }
    assert_eq!(h.slot.state(), ModuleState::Tripped);
}

#[test]
fn trips_after_the_threshold_and_is_not_called_while_tripped() {
    for (policy, answer) in [
        (FailPolicy::Open, Verdict::Unknown),
        (FailPolicy::Closed, Verdict::Deny),
        (FailPolicy::Stale, Verdict::Unknown),
    ] {
        let h = Harness::new(settings(policy));
        trip(&h);
        assert_eq!(h.state_gauge(), 1.0);
        h.set(Behave::Decide(1));
        for _ in 0..1000 {
            assert_eq!(h.run(None), answer);
        }
        h.clock.advance(Duration::from_millis(4999));
        assert_eq!(h.run(None), answer);
        assert_eq!(h.module().calls(), 20, "{policy:?}");
        assert_eq!(h.errors("broken"), 20.0);
        assert!(h.slot.status().tripped_until.is_some());
    }
}

#[test]
fn tripped_stale_serves_the_last_decisions() {
    let h = Harness::new(settings(FailPolicy::Stale));
    h.set(Behave::Decide(9));
    h.run(Some(5));
    trip(&h);
    h.set(Behave::Decide(1));
    assert_eq!(h.run(Some(5)), Verdict::Stale(9));
    assert_eq!(h.run(Some(6)), Verdict::Unknown);
    // One success, then 19 failures reach 20 calls at 95 %.
    assert_eq!(h.module().calls(), 20);
}

#[test]
fn under_the_threshold_does_not_trip() {
    let h = Harness::new(ModuleSettings::default());
    // A third failing, 1000 calls.
    for i in 0..1000 {
        h.set(if i % 3 == 0 {
            Behave::Fail("flaky")
        } else {
            Behave::Decide(1)
        });
        h.run(None);
    }
    assert_eq!(h.slot.state(), ModuleState::Ok);
    assert_eq!(h.module().calls(), 1000);
}

#[test]
fn failures_spread_over_windows_do_not_trip() {
    let h = Harness::new(ModuleSettings::default());
    h.set(Behave::Fail("broken"));
    for _ in 0..10 {
        for _ in 0..19 {
            h.run(None);
        }
        h.clock.advance(Duration::from_secs(10));
    }
    assert_eq!(h.slot.state(), ModuleState::Ok);
    assert_eq!(h.module().calls(), 190);
}

#[test]
fn probe_success_closes() {
    let h = Harness::new(ModuleSettings::default());
    trip(&h);
    h.clock.advance(Duration::from_secs(5));
    h.set(Behave::Decide(3));
    assert_eq!(h.run(None), Verdict::Decided(3));
    assert_eq!(h.module().calls(), 21);
    assert_eq!(h.slot.state(), ModuleState::Ok);
    assert_eq!(h.state_gauge(), 0.0);
    assert_eq!(h.slot.status().tripped_until, None);
    for _ in 0..100 {
        assert_eq!(h.run(None), Verdict::Decided(3));
    }
    assert_eq!(h.module().calls(), 121);
}

#[test]
fn probe_failure_trips_again_for_longer() {
    let h = Harness::new(settings(FailPolicy::Closed));
    trip(&h);
    h.clock.advance(Duration::from_secs(5));
    // The probe fails: one call, tripped again, now for 10 s.
    assert_eq!(h.run(None), Verdict::Deny);
    assert_eq!(h.module().calls(), 21);
    assert_eq!(h.slot.state(), ModuleState::Tripped);
    assert_eq!(h.state_gauge(), 1.0);
    h.set(Behave::Decide(1));
    h.clock.advance(Duration::from_millis(9999));
    assert_eq!(h.run(None), Verdict::Deny);
    assert_eq!(h.module().calls(), 21);
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(h.run(None), Verdict::Decided(1));
    assert_eq!(h.module().calls(), 22);
    assert_eq!(h.slot.state(), ModuleState::Ok);
}

#[test]
fn a_panicking_probe_trips_again() {
    let h = Harness::new(ModuleSettings::default());
    trip(&h);
    h.set(Behave::Panic);
    h.clock.advance(Duration::from_secs(5));
    assert_eq!(h.run(None), Verdict::Unknown);
    assert_eq!(h.slot.state(), ModuleState::Tripped);
    assert_eq!(h.errors("panic"), 1.0);
}

#[test]
fn breaker_settings_apply_on_reload() {
    let h = Harness::new(ModuleSettings::default());
    h.slot.set_settings(ModuleSettings {
        breaker: BreakerSettings {
            error_percent: 100,
            min_requests: 3,
            ..BreakerSettings::default()
        },
        ..ModuleSettings::default()
    });
    h.set(Behave::Fail("broken"));
    h.run(None);
    h.run(None);
    assert_eq!(h.slot.state(), ModuleState::Ok);
    h.run(None);
    assert_eq!(h.slot.state(), ModuleState::Tripped);
}

#[test]
fn slow_calls_trip_too() {
    let h = Harness::new(ModuleSettings::default());
    h.set(Behave::Slow(Duration::from_millis(50)));
    for _ in 0..100 {
        assert_eq!(h.run(None), Verdict::Unknown);
    }
    assert_eq!(h.module().calls(), 20);
    assert_eq!(h.errors("timeout"), 20.0);
    assert_eq!(h.slot.state(), ModuleState::Tripped);
}

#[test]
fn no_data_never_trips_and_the_first_data_is_used_at_once() {
    // A module waiting for its first data (no feature file yet) is not broken: the breaker
    // stays closed, so the data is used on the next call after it arrives.
    let h = Harness::new(settings(FailPolicy::Closed));
    h.set(Behave::NoData);
    for _ in 0..1000 {
        assert_eq!(h.run(None), Verdict::Deny);
    }
    assert_eq!(h.slot.state(), ModuleState::Ok);
    assert_eq!(h.errors("no_data"), 1000.0);
    h.set(Behave::Decide(7));
    assert_eq!(h.run(None), Verdict::Decided(7));
}
