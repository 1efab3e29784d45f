//! The kill switches: `enabled = false` in config and the operator override. A disabled
//! module is never called and every request gets `Unknown`, whatever the fail policy.

use holdfast_modules::{FailPolicy, ModuleSettings, ModuleState, Override, Verdict};

use crate::support::{Behave, Harness};

fn disabled(policy: FailPolicy) -> ModuleSettings {
    ModuleSettings {
        enabled: false,
        fail_policy: policy,
        ..ModuleSettings::default()
    }
}

#[test]
fn disabled_by_config_is_not_called() {
    for policy in [FailPolicy::Open, FailPolicy::Closed, FailPolicy::Stale] {
        let h = Harness::new(disabled(policy));
        for _ in 0..100 {
            assert_eq!(h.run(Some(1)), Verdict::Unknown);
        }
        assert_eq!(h.module().calls(), 0);
        assert_eq!(h.slot.state(), ModuleState::Disabled);
        assert_eq!(h.state_gauge(), 2.0);
        assert_eq!(h.slot.status().calls, 0);
    }
}

#[test]
fn config_reload_switches_it_on_and_off() {
    let h = Harness::new(ModuleSettings::default());
    assert_eq!(h.run(None), Verdict::Decided(42));
    h.slot.set_settings(disabled(FailPolicy::Closed));
    assert_eq!(h.state_gauge(), 2.0);
    assert_eq!(h.run(None), Verdict::Unknown);
    h.slot.set_settings(ModuleSettings::default());
    assert_eq!(h.state_gauge(), 0.0);
    assert_eq!(h.run(None), Verdict::Decided(42));
    assert_eq!(h.module().calls(), 2);
}

#[test]
fn override_wins_over_config() {
    let h = Harness::new(ModuleSettings::default());
    h.slot.set_override(Override::Disabled);
    assert_eq!(h.slot.override_(), Override::Disabled);
    assert_eq!(h.slot.state(), ModuleState::Disabled);
    assert_eq!(h.state_gauge(), 2.0);
    // Even a panicking module is not called.
    h.set(Behave::Panic);
    for _ in 0..100 {
        assert_eq!(h.run(None), Verdict::Unknown);
    }
    assert_eq!(h.module().calls(), 0);
    assert_eq!(h.errors("panic"), 0.0);

    // A config reload does not undo the override.
    h.slot.set_settings(ModuleSettings::default());
    assert_eq!(h.run(None), Verdict::Unknown);
    assert_eq!(h.state_gauge(), 2.0);

    // Enabled wins over `enabled = false`.
    h.set(Behave::Decide(5));
    h.slot.set_settings(disabled(FailPolicy::Open));
    h.slot.set_override(Override::Enabled);
    assert_eq!(h.slot.state(), ModuleState::Ok);
    assert_eq!(h.state_gauge(), 0.0);
    assert_eq!(h.run(None), Verdict::Decided(5));

    // Back to the config.
    h.slot.set_override(Override::None);
    assert_eq!(h.slot.state(), ModuleState::Disabled);
    assert_eq!(h.state_gauge(), 2.0);
    assert_eq!(h.run(None), Verdict::Unknown);
    assert_eq!(h.module().calls(), 1);
}

#[test]
fn disabling_a_tripped_module_shows_disabled_and_enabling_shows_tripped() {
    let h = Harness::new(ModuleSettings::default());
    h.set(Behave::Panic);
    for _ in 0..20 {
        h.run(None);
    }
    assert_eq!(h.slot.state(), ModuleState::Tripped);
    h.slot.set_override(Override::Disabled);
    assert_eq!(h.slot.state(), ModuleState::Disabled);
    assert_eq!(h.state_gauge(), 2.0);
    h.slot.set_override(Override::None);
    assert_eq!(h.slot.state(), ModuleState::Tripped);
    assert_eq!(h.state_gauge(), 1.0);
}
