//! The IP-list loader: never a panic; a rejection always has a detail; a loaded list answers
//! every probe exactly as a linear scan over the entries it parsed does (the prefix tries
//! against the plain `IpNet::contains`), IPv4-mapped IPv6 probes looked up as IPv4, and an
//! IPv4 address matched by an entry that holds it in either form (`192.0.2.0/24` or
//! `::ffff:192.0.2.0/120`).
#![no_main]

use holdfast_artifact::ArtifactKind;
use holdfast_shield::ip_list::IpListKind;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    match IpListKind::load(data) {
        Err(r) => assert!(!r.detail.is_empty(), "a rejection says why"),
        Ok(set) => {
            assert!(IpListKind::version(&set) >= 1);
            let text = std::str::from_utf8(data).expect("a loaded list is UTF-8");
            let nets: Vec<IpNet> = text
                .lines()
                .filter_map(|l| {
                    let e = l.split('#').next().unwrap_or("").trim();
                    (!e.is_empty()).then(|| {
                        e.parse::<IpNet>()
                            .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                            .expect("every entry of a loaded list parses")
                    })
                })
                .collect();
            assert_eq!(nets.len(), set.entries());
            assert!(nets.len() >= 1);
            // Probes: each entry's first and last address, and the input's bytes as addresses.
            let mut probes: Vec<IpAddr> = nets
                .iter()
                .flat_map(|n| [n.network(), n.broadcast()])
                .collect();
            for c in data.chunks(16) {
                let mut b = [0u8; 16];
                b[..c.len()].copy_from_slice(c);
                probes.push(IpAddr::V6(Ipv6Addr::from(b)));
                probes.push(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])));
            }
            for ip in probes.into_iter().take(256) {
                let v4 = match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(v6) => v6.to_ipv4_mapped(),
                };
                let want = match v4 {
                    Some(v4) => nets.iter().any(|n| {
                        n.contains(&IpAddr::V4(v4)) || n.contains(&IpAddr::V6(v4.to_ipv6_mapped()))
                    }),
                    None => nets.iter().any(|n| n.contains(&ip)),
                };
                assert_eq!(set.contains(ip), want, "{ip} against {nets:?}");
            }
        }
    }
});
