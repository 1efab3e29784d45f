//! Rate-limited failure reports: one per (module, kind) per interval, the rest counted.

use std::time::Duration;

use holdfast_modules::{ModuleSettings, Verdict};

use crate::support::{no_breaker, Behave, Harness};

fn suppressed(h: &Harness) -> f64 {
    h.metric(
        "holdfast_module_reports_suppressed_total",
        &[("module", "test")],
    )
}

#[test]
fn one_report_per_kind_per_interval() {
    let h = Harness::new(no_breaker());
    h.set(Behave::Fail("broken"));
    for _ in 0..100 {
        assert_eq!(h.run(None), Verdict::Unknown);
    }
    // The first was reported, 99 suppressed.
    assert_eq!(suppressed(&h), 99.0);
    assert_eq!(h.slot.status().suppressed_reports, 99);
    assert_eq!(h.errors("broken"), 100.0);

    // Another kind has its own limit: its first is reported.
    h.set(Behave::Panic);
    h.run(None);
    assert_eq!(suppressed(&h), 99.0);
    h.run(None);
    assert_eq!(suppressed(&h), 100.0);

    // After the interval, one more report each.
    h.clock.advance(Duration::from_secs(10));
    h.run(None);
    h.set(Behave::Fail("broken"));
    h.run(None);
    h.run(None);
    assert_eq!(suppressed(&h), 101.0);
}

#[test]
fn the_interval_comes_from_the_settings() {
    let h = Harness::new(ModuleSettings {
        report_interval: Duration::from_secs(1),
        ..no_breaker()
    });
    h.set(Behave::NoData);
    for _ in 0..10 {
        h.run(None);
        h.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(suppressed(&h), 0.0);
    assert_eq!(h.errors("no_data"), 10.0);
}

#[test]
fn last_error_keeps_the_latest() {
    let h = Harness::new(no_breaker());
    assert!(h.slot.status().last_error.is_none());
    h.set(Behave::Fail("first"));
    h.run(None);
    h.set(Behave::Panic);
    h.run(None);
    let last = h.slot.status().last_error.unwrap();
    assert_eq!(last.kind, "panic");
    assert_eq!(last.detail, crate::support::PANIC_MESSAGE);
    humantime::parse_rfc3339(&last.at).unwrap();
}
