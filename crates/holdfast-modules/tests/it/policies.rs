//! Every fail policy against every failure kind: one failure at a time (breaker off).

use std::time::Duration;

use holdfast_modules::{FailPolicy, ModuleSettings, Verdict};

use std::sync::Arc;

use crate::support::{no_breaker, run, Behave, Harness, TestModule};

/// The failure kinds and the `kind` label each must produce.
fn failures() -> Vec<(Behave, &'static str)> {
    vec![
        (Behave::Fail("bad_input"), "bad_input"),
        (Behave::NoData, "no_data"),
        (Behave::Panic, "panic"),
        (Behave::Slow(Duration::from_millis(11)), "timeout"),
    ]
}

fn with_policy(policy: FailPolicy) -> ModuleSettings {
    ModuleSettings {
        fail_policy: policy,
        ..no_breaker()
    }
}

#[test]
fn success_is_decided() {
    for policy in [FailPolicy::Open, FailPolicy::Closed, FailPolicy::Stale] {
        let h = Harness::new(with_policy(policy));
        h.set(Behave::Decide(7));
        assert_eq!(h.run(Some(1)), Verdict::Decided(7));
        assert_eq!(h.run(None), Verdict::Decided(7));
        assert_eq!(h.module().calls(), 2);
    }
}

#[test]
fn open_policy_answers_unknown() {
    for (behave, kind) in failures() {
        let h = Harness::new(with_policy(FailPolicy::Open));
        h.run(Some(1));
        h.set(behave);
        assert_eq!(h.run(Some(1)), Verdict::Unknown, "{kind}");
        assert_eq!(h.errors(kind), 1.0, "{kind}");
        assert_eq!(h.slot.status().errors[kind], 1, "{kind}");
    }
}

#[test]
fn closed_policy_denies() {
    for (behave, kind) in failures() {
        let h = Harness::new(with_policy(FailPolicy::Closed));
        h.run(Some(1));
        h.set(behave);
        assert_eq!(h.run(Some(1)), Verdict::Deny, "{kind}");
        assert_eq!(h.errors(kind), 1.0, "{kind}");
    }
}

#[test]
fn stale_policy_reuses_the_last_decision_for_the_key() {
    for (behave, kind) in failures() {
        let h = Harness::new(with_policy(FailPolicy::Stale));
        h.set(Behave::Decide(10));
        h.run(Some(1));
        h.set(Behave::Decide(11));
        h.run(Some(1));
        h.set(Behave::Decide(20));
        h.run(Some(2));
        h.set(behave);
        assert_eq!(h.run(Some(1)), Verdict::Stale(11), "{kind}");
        assert_eq!(h.run(Some(2)), Verdict::Stale(20), "{kind}");
        // A key never decided, and a request without a key: nothing to reuse.
        assert_eq!(h.run(Some(3)), Verdict::Unknown, "{kind}");
        assert_eq!(h.run(None), Verdict::Unknown, "{kind}");
        assert_eq!(h.errors(kind), 4.0, "{kind}");
    }
}

#[test]
fn a_slow_result_is_discarded_even_when_it_succeeded() {
    let h = Harness::new(with_policy(FailPolicy::Closed));
    h.set(Behave::Slow(Duration::from_millis(10)));
    // Exactly at the budget: fine.
    assert_eq!(h.run(None), Verdict::Decided(1));
    h.set(Behave::Slow(Duration::from_micros(10001)));
    assert_eq!(h.run(None), Verdict::Deny);
    assert_eq!(h.errors("timeout"), 1.0);
    let last = h.slot.status().last_error.unwrap();
    assert_eq!(last.kind, "timeout");
    assert!(last.detail.contains("budget"), "{}", last.detail);
}

#[test]
fn timeout_on_the_real_clock() {
    // The one test on the system clock: a 5 ms sleep always takes more than a 1 ms budget.
    use holdfast_modules::{ManualClock, ModuleMetrics, ModuleSlot};
    let registry = prometheus::Registry::new();
    let metrics = ModuleMetrics::new(&registry).unwrap();
    let module = TestModule::new(Arc::new(ManualClock::new()));
    module.set(Behave::Sleep(Duration::from_millis(5)));
    let slot = ModuleSlot::new(
        module,
        ModuleSettings {
            time_budget: Duration::from_millis(1),
            ..no_breaker()
        },
        &metrics,
    );
    assert_eq!(run(&slot, None), Verdict::Unknown);
    assert_eq!(slot.status().errors["timeout"], 1);
    slot.module().set(Behave::Decide(3));
    assert_eq!(run(&slot, None), Verdict::Decided(3));
}
