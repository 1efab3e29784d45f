//! `/status` and the metrics of a slot.

use std::time::{Duration, SystemTime};

use holdfast_modules::{FailPolicy, ModuleSettings, ModuleState, Override};
use serde_json::json;

use crate::support::{Behave, Harness};

#[test]
fn status_of_a_healthy_module() {
    let h = Harness::new(ModuleSettings::default());
    h.run(None);
    let v = serde_json::to_value(h.slot.status()).unwrap();
    assert_eq!(
        v,
        json!({
            "name": "test",
            "state": "ok",
            "enabled": true,
            "override": "none",
            "fail_policy": "open",
            "tripped_until": null,
            "calls": 1,
            "errors": {"panic": 0, "timeout": 0},
            "suppressed_reports": 0,
            "last_error": null,
        })
    );
}

#[test]
fn status_of_a_tripped_module() {
    let h = Harness::new(ModuleSettings {
        fail_policy: FailPolicy::Closed,
        ..ModuleSettings::default()
    });
    h.slot.set_override(Override::Enabled);
    h.set(Behave::Fail("broken"));
    let before = SystemTime::now();
    for _ in 0..25 {
        h.run(None);
    }
    let s = h.slot.status();
    assert_eq!(s.state, ModuleState::Tripped);
    assert_eq!(s.calls, 20);
    assert_eq!(s.errors["broken"], 20);
    assert_eq!(s.suppressed_reports, 19);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["state"], "tripped");
    assert_eq!(v["override"], "enabled");
    assert_eq!(v["fail_policy"], "closed");
    assert_eq!(v["last_error"]["kind"], "broken");
    assert_eq!(v["last_error"]["detail"], "told to fail with broken");
    // The cool-down ends about 5 s from now (seconds precision).
    let until = humantime::parse_rfc3339(v["tripped_until"].as_str().unwrap()).unwrap();
    assert!(until >= before + Duration::from_secs(3), "{until:?}");
    assert!(
        until <= SystemTime::now() + Duration::from_secs(6),
        "{until:?}"
    );
}

#[test]
fn metrics_follow_the_slot() {
    let h = Harness::new(ModuleSettings::default());
    assert_eq!(h.state_gauge(), 0.0);
    assert_eq!(h.errors("panic"), 0.0);
    for _ in 0..5 {
        h.run(None);
    }
    assert_eq!(
        h.metric("holdfast_module_calls_total", &[("module", "test")]),
        5.0
    );
    h.set(Behave::Panic);
    for _ in 0..30 {
        h.run(None);
    }
    // 5 successes then 15 panics reach 20 calls at 75 %: tripped at the 20th call.
    assert_eq!(h.errors("panic"), 15.0);
    assert_eq!(
        h.metric("holdfast_module_calls_total", &[("module", "test")]),
        20.0
    );
    assert_eq!(h.state_gauge(), 1.0);
    assert_eq!(
        h.metric(
            "holdfast_module_reports_suppressed_total",
            &[("module", "test")]
        ),
        14.0
    );
    h.slot.set_override(Override::Disabled);
    assert_eq!(h.state_gauge(), 2.0);
    h.slot.set_override(Override::None);
    assert_eq!(h.state_gauge(), 1.0);
    h.set(Behave::Decide(1));
    h.clock.advance(Duration::from_secs(5));
    h.run(None);
    assert_eq!(h.state_gauge(), 0.0);
}
