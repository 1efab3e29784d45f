//! The PROXY protocol header (v1 text, v2 binary) at the start of a connection. Never a
//! panic; a rejection says why; what follows the header is handed on byte for byte (a
//! suffix of the input); an untrusted peer is the client whatever the header says. Inputs
//! starting with 0x00 are arbitrary bytes; others build a valid v1 or v2 header from the
//! input's addresses and follow it with the rest, which must come back exactly, with the
//! header's source as the client.
#![no_main]

use holdfast_proxy::fuzzing::proxy_header;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use ppp::v2;
use std::net::{IpAddr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let trusted_peer: SocketAddr = "10.1.1.1:40000".parse().unwrap();
    let untrusted_peer: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let [mode, input @ ..] = data else { return };
    if *mode == 0 {
        match proxy_header(input, trusted_peer, &trusted) {
            Err(e) => assert!(!e.is_empty()),
            Ok((_, rest)) => assert!(input.ends_with(&rest), "the rest is a suffix"),
        }
        if let Ok((client, rest)) = proxy_header(input, untrusted_peer, &trusted) {
            assert_eq!(client, untrusted_peer);
            assert!(input.ends_with(&rest));
        }
        return;
    }
    // A valid header from the input's addresses, then the rest.
    if input.len() < 40 {
        return;
    }
    let (addrs, rest) = input.split_at(40);
    let v6 = mode & 2 != 0;
    let port = |i: usize| u16::from_be_bytes([addrs[i], addrs[i + 1]]);
    let (src, dst) = if v6 {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&addrs[..16]);
        d.copy_from_slice(&addrs[16..32]);
        (
            SocketAddr::new(IpAddr::from(s), port(32)),
            SocketAddr::new(IpAddr::from(d), port(34)),
        )
    } else {
        (
            SocketAddr::new(
                IpAddr::from([addrs[0], addrs[1], addrs[2], addrs[3]]),
                port(32),
            ),
            SocketAddr::new(
                IpAddr::from([addrs[4], addrs[5], addrs[6], addrs[7]]),
                port(34),
            ),
        )
    };
    let header = if mode & 1 != 0 {
        let family = if v6 { "TCP6" } else { "TCP4" };
        format!(
            "PROXY {family} {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        )
        .into_bytes()
    } else {
        let addresses: v2::Addresses = (src, dst).into();
        match v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            addresses,
        )
        .build()
        {
            Ok(h) => h,
            Err(_) => return,
        }
    };
    let mut stream = header;
    stream.extend_from_slice(rest);
    let (client, after) = proxy_header(&stream, trusted_peer, &trusted)
        .unwrap_or_else(|e| panic!("a valid header was refused: {e}"));
    assert_eq!(client, src);
    assert_eq!(after, rest);
    let (client, after) = proxy_header(&stream, untrusted_peer, &trusted).expect("valid");
    assert_eq!(client, untrusted_peer);
    assert_eq!(after, rest);
});
