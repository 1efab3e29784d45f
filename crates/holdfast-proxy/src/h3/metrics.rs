//! The `holdfast_quic_*` families: QUIC connections and their handshakes, request streams,
//! refused and retried connection attempts, lost packets.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub(crate) struct QuicMetrics {
    pub(crate) connections: IntCounter,
    pub(crate) connections_active: IntGauge,
    pub(crate) handshakes: IntCounter,
    pub(crate) handshake_errors: IntCounter,
    pub(crate) streams: IntCounter,
    pub(crate) retries: IntCounter,
    refused: IntCounterVec,
    pub(crate) lost_packets: IntCounter,
    pub(crate) early_data_rejected: IntCounter,
}

impl QuicMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = QuicMetrics {
            connections: IntCounter::new(
                "holdfast_quic_connections_total",
                "QUIC connection attempts accepted by the HTTP/3 listeners (handshake started).",
            )?,
            connections_active: IntGauge::new(
                "holdfast_quic_connections_active",
                "QUIC connections open now (including those in their handshake).",
            )?,
            handshakes: IntCounter::new(
                "holdfast_quic_handshakes_total",
                "QUIC handshakes completed (with edge.h3.zero_rtt, counted when the connection becomes usable).",
            )?,
            handshake_errors: IntCounter::new(
                "holdfast_quic_handshake_errors_total",
                "QUIC handshakes that failed or timed out (including HTTP/3 set-up).",
            )?,
            streams: IntCounter::new(
                "holdfast_quic_streams_total",
                "HTTP/3 request streams accepted.",
            )?,
            retries: IntCounter::new(
                "holdfast_quic_retries_total",
                "Connection attempts answered with a Retry (address validation under load).",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "holdfast_quic_refused_total",
                    "Connection attempts refused, by reason (per_ip: the address holds \
                     edge.h3.max_connections_per_ip; shutting_down; no_certificate).",
                ),
                &["reason"],
            )?,
            lost_packets: IntCounter::new(
                "holdfast_quic_lost_packets_total",
                "Packets QUIC connections declared lost (counted when a connection ends).",
            )?,
            early_data_rejected: IntCounter::new(
                "holdfast_quic_early_data_rejected_total",
                "Requests in 0-RTT early data answered 425 Too Early (unsafe methods).",
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.connections_active.clone()))?;
        registry.register(Box::new(m.handshakes.clone()))?;
        registry.register(Box::new(m.handshake_errors.clone()))?;
        registry.register(Box::new(m.streams.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.lost_packets.clone()))?;
        registry.register(Box::new(m.early_data_rejected.clone()))?;
        Ok(m)
    }

    pub(crate) fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }
}
