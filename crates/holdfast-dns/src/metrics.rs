//! The DNS server's Prometheus families, registered once on the caller's registry.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct DnsMetrics {
    /// `holdfast_dns_queries_total{qtype, rcode}`.
    pub queries: IntCounterVec,
    /// `holdfast_dns_steering_changes_total{name}`: the answer set of a steered name changed.
    pub steering_changes: IntCounterVec,
    /// `holdfast_dns_empty_answer_prevented_total{name}`: every target went down and the
    /// fallback set was answered instead of nothing (once per outage). Alert on any increase.
    pub empty_answer_prevented: IntCounterVec,
    /// `holdfast_dns_target_healthy{name, pool, target}`: 1 healthy, 0 down, as steering sees
    /// it (after the quorum and any operator override).
    pub target_healthy: IntGaugeVec,
    /// `holdfast_dns_answer_size{name}`: addresses in the current answer.
    pub answer_size: IntGaugeVec,
    /// `holdfast_dns_vantage_target_down{vantage, pool, target}`: 1 when that vantage point
    /// (`self`, or a peer's URL) sees the target down.
    pub vantage_down: IntGaugeVec,
    /// `holdfast_dns_answer_cache_total{result}`: zone answers from the per-catalog answer
    /// cache (`hit`) or looked up (`miss`).
    pub cache: IntCounterVec,
}

impl DnsMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let queries = IntCounterVec::new(
            Opts::new(
                "holdfast_dns_queries_total",
                "DNS queries answered, by query type and response code",
            ),
            &["qtype", "rcode"],
        )?;
        let steering_changes = IntCounterVec::new(
            Opts::new(
                "holdfast_dns_steering_changes_total",
                "Changes of a steered name's answer set",
            ),
            &["name"],
        )?;
        let empty_answer_prevented = IntCounterVec::new(
            Opts::new(
                "holdfast_dns_empty_answer_prevented_total",
                "Times every target of a steered name went down and a fallback set was answered instead of an empty one",
            ),
            &["name"],
        )?;
        let target_healthy = IntGaugeVec::new(
            Opts::new(
                "holdfast_dns_target_healthy",
                "Health of a steered name's target as steering uses it, after quorum and overrides (1 up, 0 down)",
            ),
            &["name", "pool", "target"],
        )?;
        let answer_size = IntGaugeVec::new(
            Opts::new(
                "holdfast_dns_answer_size",
                "Addresses in a steered name's current answer",
            ),
            &["name"],
        )?;
        let vantage_down = IntGaugeVec::new(
            Opts::new(
                "holdfast_dns_vantage_target_down",
                "1 when a vantage point (self, or a peer by URL) sees a steered target down",
            ),
            &["vantage", "pool", "target"],
        )?;
        registry.register(Box::new(vantage_down.clone()))?;
        let cache = IntCounterVec::new(
            Opts::new(
                "holdfast_dns_answer_cache_total",
                "Zone answers served from the answer cache (hit) or looked up in the zone (miss)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(queries.clone()))?;
        registry.register(Box::new(steering_changes.clone()))?;
        registry.register(Box::new(empty_answer_prevented.clone()))?;
        registry.register(Box::new(target_healthy.clone()))?;
        registry.register(Box::new(answer_size.clone()))?;
        Ok(DnsMetrics {
            queries,
            steering_changes,
            empty_answer_prevented,
            target_healthy,
            answer_size,
            vantage_down,
            cache,
        })
    }
}
