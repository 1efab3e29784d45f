//! The `stale` policy's table through the runner.

use holdfast_modules::{FailPolicy, ModuleSettings, Verdict, STALE_SLOTS};

use crate::support::{no_breaker, Behave, Harness};

fn stale() -> ModuleSettings {
    ModuleSettings {
        fail_policy: FailPolicy::Stale,
        ..no_breaker()
    }
}

#[test]
fn unseen_key_is_unknown() {
    let h = Harness::new(stale());
    h.set(Behave::Fail("broken"));
    assert_eq!(h.run(Some(1)), Verdict::Unknown);
    assert_eq!(h.run(None), Verdict::Unknown);
}

#[test]
fn decisions_are_kept_only_under_stale() {
    let h = Harness::new(ModuleSettings {
        fail_policy: FailPolicy::Open,
        ..no_breaker()
    });
    h.run(Some(1));
    h.slot.set_settings(stale());
    h.set(Behave::Fail("broken"));
    assert_eq!(h.run(Some(1)), Verdict::Unknown);
    h.set(Behave::Decide(8));
    h.run(Some(1));
    h.set(Behave::Fail("broken"));
    assert_eq!(h.run(Some(1)), Verdict::Stale(8));
}

#[test]
fn many_keys_stay_bounded_and_correct() {
    let h = Harness::new(stale());
    let n = 4 * STALE_SLOTS as u64;
    for k in 0..n {
        h.set(Behave::Decide(u32::try_from(k).unwrap()));
        h.run(Some(k));
    }
    h.set(Behave::NoData);
    let mut stale = 0;
    for k in 0..n {
        match h.run(Some(k)) {
            Verdict::Stale(v) => {
                assert_eq!(u64::from(v), k);
                stale += 1;
            }
            Verdict::Unknown => {}
            v => panic!("{v:?}"),
        }
    }
    // At most one key per slot survives; the rest read as nothing to reuse.
    assert!(stale <= STALE_SLOTS, "{stale}");
    assert!(stale > STALE_SLOTS / 2, "{stale}");
}
