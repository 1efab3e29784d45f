//! Module metrics. A slot resolves its own series when it is built, so a request touches only
//! atomics; per-kind error series are resolved the first time the kind occurs.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The module families, registered once per registry and shared by every slot.
#[derive(Clone, Debug)]
pub struct ModuleMetrics {
    errors: IntCounterVec,
    state: IntGaugeVec,
    suppressed: IntCounterVec,
    calls: IntCounterVec,
}

impl ModuleMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ModuleMetrics {
            errors: IntCounterVec::new(
                Opts::new(
                    "holdfast_module_errors_total",
                    "Module failures (error, timeout, panic) by module and kind.",
                ),
                &["module", "kind"],
            )?,
            state: IntGaugeVec::new(
                Opts::new(
                    "holdfast_module_state",
                    "Module state: 0 ok, 1 tripped (breaker open), 2 disabled.",
                ),
                &["module"],
            )?,
            suppressed: IntCounterVec::new(
                Opts::new(
                    "holdfast_module_reports_suppressed_total",
                    "Module failure log lines left out by the per-kind rate limit.",
                ),
                &["module"],
            )?,
            calls: IntCounterVec::new(
                Opts::new(
                    "holdfast_module_calls_total",
                    "Module invocations (not counting requests answered while disabled or tripped).",
                ),
                &["module"],
            )?,
        };
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.state.clone()))?;
        registry.register(Box::new(m.suppressed.clone()))?;
        registry.register(Box::new(m.calls.clone()))?;
        Ok(m)
    }

    pub(crate) fn errors(&self, module: &str, kind: &str) -> IntCounter {
        self.errors.with_label_values(&[module, kind])
    }

    pub(crate) fn state(&self, module: &str) -> IntGauge {
        self.state.with_label_values(&[module])
    }

    pub(crate) fn suppressed(&self, module: &str) -> IntCounter {
        self.suppressed.with_label_values(&[module])
    }

    pub(crate) fn calls(&self, module: &str) -> IntCounter {
        self.calls.with_label_values(&[module])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let reg = Registry::new();
        let m = ModuleMetrics::new(&reg).unwrap();
        assert!(ModuleMetrics::new(&reg).is_err());
        m.errors("bot", "panic").inc();
        m.state("bot").set(1);
        let names: Vec<_> = reg.gather().iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(
            names,
            ["holdfast_module_errors_total", "holdfast_module_state"]
        );
    }
}
