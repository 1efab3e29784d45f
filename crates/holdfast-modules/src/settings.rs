//! Per-module settings (from `[modules.<name>]`), the operator override and the module state.

use std::time::Duration;

use serde::Serialize;

use crate::FailPolicy;

/// When a module's circuit breaker trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Trip when failures reach this share (1–100 %) of the calls in the window.
    pub error_percent: u32,
    /// ...and the window has seen at least this many calls.
    pub min_requests: u32,
    /// Length of the counting window; counts start again after it.
    pub window: Duration,
    /// How long a tripped module is not called; doubles after each failed probe, up to
    /// `MAX_COOLDOWN_FACTOR` times this value.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            error_percent: 50,
            min_requests: 20,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }
}

/// Everything the runner needs to know about one module; replaced whole on config reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSettings {
    /// The config kill switch; an operator `Override` wins over it.
    pub enabled: bool,
    pub fail_policy: FailPolicy,
    /// A call that takes longer is a failure of kind `timeout` (its result is discarded).
    pub time_budget: Duration,
    pub breaker: BreakerSettings,
    /// At most one log line per (module, failure kind) per interval.
    pub report_interval: Duration,
}

impl Default for ModuleSettings {
    fn default() -> Self {
        ModuleSettings {
            enabled: true,
            fail_policy: FailPolicy::Open,
            time_budget: Duration::from_millis(10),
            breaker: BreakerSettings::default(),
            report_interval: Duration::from_secs(10),
        }
    }
}

/// The operator's override from the admin plane; wins over `ModuleSettings::enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Override {
    /// The config decides.
    #[default]
    None,
    Disabled,
    Enabled,
}

impl Override {
    pub fn as_str(self) -> &'static str {
        match self {
            Override::None => "none",
            Override::Disabled => "disabled",
            Override::Enabled => "enabled",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Override::None => 0,
            Override::Disabled => 1,
            Override::Enabled => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Override::Disabled,
            2 => Override::Enabled,
            _ => Override::None,
        }
    }

    /// Whether the module runs, given the config's `enabled`.
    pub fn applied_to(self, enabled: bool) -> bool {
        match self {
            Override::None => enabled,
            Override::Disabled => false,
            Override::Enabled => true,
        }
    }
}

/// What `holdfast_module_state{module}` and `/status` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleState {
    /// Called on every request.
    Ok,
    /// The breaker is open (in cool-down, or waiting for its half-open probe to succeed): the
    /// fail policy applies without calling the module.
    Tripped,
    /// Switched off by config or override: every request gets `Verdict::Unknown`.
    Disabled,
}

impl ModuleState {
    /// The gauge value: 0 ok, 1 tripped, 2 disabled.
    pub fn gauge(self) -> i64 {
        match self {
            ModuleState::Ok => 0,
            ModuleState::Tripped => 1,
            ModuleState::Disabled => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Ok => "ok",
            ModuleState::Tripped => "tripped",
            ModuleState::Disabled => "disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_wins_over_config() {
        assert!(Override::None.applied_to(true));
        assert!(!Override::None.applied_to(false));
        assert!(!Override::Disabled.applied_to(true));
        assert!(Override::Enabled.applied_to(false));
        for o in [Override::None, Override::Disabled, Override::Enabled] {
            assert_eq!(Override::from_u8(o.to_u8()), o);
        }
    }

    #[test]
    fn defaults() {
        let s = ModuleSettings::default();
        assert!(s.enabled);
        assert_eq!(s.fail_policy, FailPolicy::Open);
        assert_eq!(s.time_budget, Duration::from_millis(10));
        assert_eq!(s.report_interval, Duration::from_secs(10));
        assert_eq!(s.breaker.error_percent, 50);
        assert_eq!(s.breaker.min_requests, 20);
        assert_eq!(s.breaker.window, Duration::from_secs(10));
        assert_eq!(s.breaker.cooldown, Duration::from_secs(5));
    }
}
