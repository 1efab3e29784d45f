//! The health counters an instance reports at each heartbeat, read from its own metrics
//! registry (by metric name, so the modules that count them stay unaware of the fleet).

use holdfast_fleet::Counters;
use prometheus::Registry;

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Totals since start: requests answered, of which 5xx; shield denials (rule blocks, rate
/// limits, challenges served); module failures.
pub(super) fn read(registry: &Registry) -> Counters {
    let mut c = Counters::default();
    for family in registry.gather() {
        for m in family.get_metric() {
            // Counters are whole numbers kept as f64.
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
