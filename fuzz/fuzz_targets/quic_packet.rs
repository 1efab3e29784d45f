//! Malformed QUIC packets against the HTTP/3 listener's QUIC server configuration
//! (`holdfast_proxy::fuzzing::quic_server_config`: TLS 1.3, ALPN `h3`, the `edge.h3` stream
//! limits and idle timeout), driven through `quinn-proto`'s endpoint as the listener's
//! `quinn` endpoint drives it. The input is a flags byte, then datagrams, each a 2-byte
//! big-endian length and its bytes, all from one client address. Each connection attempt is
//! answered as the listener's admission may answer it (accept, Retry, refuse; chosen by the
//! flags); every connection is then driven (timers too, on a clock that moves 50 ms per
//! datagram) until it has nothing more to send. Never a panic; no connection outlives the
//! input's idle timeout by more than the clock's steps.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quinn_proto::{ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, ServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const MAX_DATAGRAMS: usize = 64;

fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["example.com".to_string()]).unwrap();
        let h3 = holdfast_config::H3 {
            max_streams: 100,
            idle_timeout: Duration::from_secs(30),
            zero_rtt: true,
            max_connections_per_ip: 256,
        };
        let config = holdfast_proxy::fuzzing::quic_server_config(
            vec![cert.cert.der().to_vec()],
            cert.signing_key.serialize_der(),
            &h3,
        )
        .unwrap();
        Arc::new(config)
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = server_config();
    let mut endpoint = Endpoint::new(
        Arc::new(EndpointConfig::default()),
        Some(Arc::clone(&config)),
        true,
        Some([7; 32]),
    );
    let client: SocketAddr = "192.0.2.1:4433".parse().unwrap();
    let start = Instant::now();
    let mut conns: HashMap<ConnectionHandle, quinn_proto::Connection> = HashMap::new();
    let mut buf = Vec::new();
    let mut attempt = 0u32;
    for i in 0..MAX_DATAGRAMS {
        let [hi, lo, after @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(after.len());
        let (datagram, after) = after.split_at(len);
        rest = after;
        let now = start + Duration::from_millis(50 * i as u64);
        buf.clear();
        let event = endpoint.handle(now, client, None, None, BytesMut::from(datagram), &mut buf);
        match event {
            Some(DatagramEvent::NewConnection(incoming)) => {
                // The listener's admission: accept, Retry (only while unvalidated), refuse.
                let choice = (flags >> (2 * (attempt % 4))) & 3;
                attempt += 1;
                buf.clear();
                if choice == 1 && incoming.may_retry() {
                    let _ = endpoint.retry(incoming, &mut buf);
                } else if choice == 2 {
                    endpoint.refuse(incoming, &mut buf);
                } else if choice == 3 {
                    endpoint.ignore(incoming);
                } else if let Ok((handle, conn)) =
                    endpoint.accept(incoming, now, &mut buf, Some(Arc::clone(&config)))
                {
                    conns.insert(handle, conn);
                }
            }
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(conn) = conns.get_mut(&handle) {
                    conn.handle_event(event);
                }
            }
            Some(DatagramEvent::Response(_)) | None => {}
        }
        drive(&mut endpoint, &mut conns, now, &mut buf);
    }
    // Let every connection's timers run out: each must end within its idle timeout.
    let end = start + Duration::from_millis(50 * MAX_DATAGRAMS as u64) + Duration::from_secs(120);
    drive(&mut endpoint, &mut conns, end, &mut buf);
    drive(
        &mut endpoint,
        &mut conns,
        end + Duration::from_secs(120),
        &mut buf,
    );
    for conn in conns.values() {
        assert!(conn.is_drained(), "a connection outlived its timeouts");
    }
});

/// Everything the connections want to do at `now`: fire due timers, send, exchange
/// endpoint events, read application events; drop the drained ones.
fn drive(
    endpoint: &mut Endpoint,
    conns: &mut HashMap<ConnectionHandle, quinn_proto::Connection>,
    now: Instant,
    buf: &mut Vec<u8>,
) {
    for (handle, conn) in conns.iter_mut() {
        for _ in 0..64 {
            let mut busy = false;
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
                busy = true;
            }
            buf.clear();
            while conn.poll_transmit(now, 1, buf).is_some() {
                buf.clear();
                busy = true;
            }
            while let Some(event) = conn.poll_endpoint_events() {
                if let Some(back) = endpoint.handle_event(*handle, event) {
                    conn.handle_event(back);
                }
                busy = true;
            }
            while conn.poll().is_some() {
                busy = true;
            }
            if !busy {
                break;
            }
        }
    }
    conns.retain(|_, c| !c.is_drained());
}
