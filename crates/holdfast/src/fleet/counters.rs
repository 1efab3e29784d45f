//! The health counters an instance reports at each heartbeat, read from its own metrics
//! registry (by metric name, so the modules that count them stay unaware of the fleet).

use holdfast_fleet::HealthCounters;
use prometheus::Registry;

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Totals since start: requests answered, of which 5xx; shield denials (rule blocks, rate
/// limits, challenges served); module failures.
pub(super) fn read(registry: &Registry) -> HealthCounters {
    let mut c = HealthCounters::default();
    for family in registry.gather() {
        for m in family.get_metric() {
            // HealthCounters are whole numbers kept as f64.
            let v = m.get_counter().get_value().max(0.0) as u64;
            match family.name() {
                "holdfast_http_requests_total" => {
                    c.requests += v;
                    if label(m, "status_class") == "5xx" {
                        c.edge_5xx += v;
                    }
                }
                "holdfast_rule_hits_total"
                    if label(m, "action") == "block" && label(m, "mode") == "enforce" =>
                {
                    c.shield_denied += v;
                }
                "holdfast_ratelimit_decisions_total" if label(m, "result") == "limited" => {
                    c.shield_denied += v;
                }
                "holdfast_challenge_issued_total" => c.shield_denied += v,
                "holdfast_module_errors_total" => c.module_failures += v,
                _ => {}
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    fn vec(r: &Registry, name: &str, labels: &[&str]) -> IntCounterVec {
        let v = IntCounterVec::new(Opts::new(name, "test"), labels)
            .unwrap_or_else(|e| unreachable!("{e}"));
        r.register(Box::new(v.clone()))
            .unwrap_or_else(|e| unreachable!("{e}"));
        v
    }

    #[test]
    fn the_gates_counters_come_from_the_metrics_by_name() {
        let r = Registry::new();
        let http = vec(
            &r,
            "holdfast_http_requests_total",
            &["route", "status_class"],
        );
        http.with_label_values(&["a", "2xx"]).inc_by(90);
        http.with_label_values(&["a", "5xx"]).inc_by(7);
        http.with_label_values(&["b", "4xx"]).inc_by(3);
        let rules = vec(&r, "holdfast_rule_hits_total", &["rule", "action", "mode"]);
        rules
            .with_label_values(&["x", "block", "enforce"])
            .inc_by(2);
        rules.with_label_values(&["x", "block", "log"]).inc_by(50);
        rules
            .with_label_values(&["y", "allow", "enforce"])
            .inc_by(50);
        let limits = vec(
            &r,
            "holdfast_ratelimit_decisions_total",
            &["limit", "result"],
        );
        limits.with_label_values(&["l", "limited"]).inc_by(1);
        limits.with_label_values(&["l", "allowed"]).inc_by(99);
        vec(&r, "holdfast_module_errors_total", &["module", "kind"])
            .with_label_values(&["bot", "panic"])
            .inc_by(4);
        assert_eq!(
            read(&r),
            HealthCounters {
                requests: 100,
                edge_5xx: 7,
                shield_denied: 3,
                module_failures: 4
            }
        );
    }
}
