//! Who the client is: the socket's peer (or, with `edge.proxy_protocol`, the address a
//! trusted load balancer's PROXY header gave), unless that peer is a trusted proxy
//! (`edge.trusted_proxies`: a load balancer, another CDN in front), whose `X-Forwarded-For`
//! — or RFC 7239 `Forwarded`, with `edge.client_ip_header = "forwarded"` — is then believed,
//! up to the first address, from the right, that is not itself trusted. Anything a client
//! wrote further left is ignored, so a client cannot pick its own address.

use holdfast_config::ClientIpHeader;
use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED: &str = "forwarded";

/// The client's address for modules (rate-limit keys, bot features, rules, the challenge),
/// as this edge's config says to find it.
pub(crate) fn of_request(
    edge: &holdfast_config::Edge,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    client_ip(&edge.trusted_proxies, edge.client_ip_header, peer, headers)
}

pub(crate) fn client_ip(
    trusted: &[IpNet],
    which: ClientIpHeader,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let (name, entry): (&str, fn(&str) -> Option<IpAddr>) = match which {
        ClientIpHeader::XForwardedFor => (X_FORWARDED_FOR, |e| parse(e.trim())),
        ClientIpHeader::Forwarded => (FORWARDED, forwarded_for),
    };
    let mut client = peer;
    // Later headers (and later entries) were added by nearer hops: walk from the right.
    for value in headers.get_all(name).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for element in text.rsplit(',') {
            let Some(ip) = entry(element) else {
                // Garbage, or an obfuscated `for=_hidden`/`unknown` from a trusted hop's
                // upstream: stop at the last address we trust.
                return client;
            };
            if !is_trusted(&ip) {
                return ip;
            }
            client = ip;
        }
    }
    client
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`,
/// `For="[2001:db8:cafe::17]:4711"`). Parameter names are case-insensitive; values may be
/// quoted. (A quoted value holding a comma would split the element: such values are not
/// addresses, so the walk stops there, as for any garbage.)
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse(value)
    })
}

/// `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    entry
        .rsplit_once(':')
        .and_then(|(host, port)| port.parse::<u16>().ok().and(host.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const XFF: ClientIpHeader = ClientIpHeader::XForwardedFor;
    const FWD: ClientIpHeader = ClientIpHeader::Forwarded;

    fn fwd(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, XFF, ip("203.0.113.9"), &xff(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(&[], XFF, ip("10.0.0.1"), &xff(&["198.51.100.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, XFF, ip("10.0.0.1"), &xff(&["198.51.100.1"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn what_the_client_wrote_left_of_the_first_untrusted_hop_is_ignored() {
        let t = nets(&["10.0.0.0/8"]);
        let h = xff(&["6.6.6.6, 198.51.100.1, 10.1.1.1"]);
        assert_eq!(client_ip(&t, XFF, ip("10.0.0.1"), &h), ip("198.51.100.1"));
        // The same across several headers: the last header is the nearest hop.
        let h = xff(&["6.6.6.6", "198.51.100.1", "10.1.1.1"]);
        assert_eq!(client_ip(&t, XFF, ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn only_trusted_hops_or_garbage_stop_at_the_last_trusted_address() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, XFF, ip("10.0.0.1"), &xff(&["10.2.2.2"])),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_ip(
                &t,
                XFF,
                ip("10.0.0.1"),
                &xff(&["6.6.6.6, nonsense, 10.2.2.2"])
            ),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_ip(&t, XFF, ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ports_and_brackets() {
        let t = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(
            client_ip(&t, XFF, ip("10.0.0.1"), &xff(&["[2001:db9::5]:443"])),
            ip("2001:db9::5")
        );
        assert_eq!(
            client_ip(&t, XFF, ip("2001:db8::1"), &xff(&["192.0.2.4:80"])),
            ip("192.0.2.4")
        );
    }

    #[test]
    fn forwarded_names_the_client_from_the_right() {
        let t = nets(&["10.0.0.0/8"]);
        let h = fwd(&["for=6.6.6.6, for=198.51.100.1;proto=https, for=10.1.1.1;by=10.0.0.1"]);
        assert_eq!(client_ip(&t, FWD, ip("10.0.0.1"), &h), ip("198.51.100.1"));
        let h = fwd(&["For=\"[2001:db8:cafe::17]:4711\""]);
        assert_eq!(
            client_ip(&t, FWD, ip("10.0.0.1"), &h),
            ip("2001:db8:cafe::17")
        );
        let h = fwd(&["proto=http;for=192.0.2.60:8080"]);
        assert_eq!(client_ip(&t, FWD, ip("10.0.0.1"), &h), ip("192.0.2.60"));
    }

    #[test]
    fn forwarded_is_ignored_unless_chosen_and_xff_unless_chosen() {
        let t = nets(&["10.0.0.0/8"]);
        let mut h = fwd(&["for=198.51.100.1"]);
        h.append(X_FORWARDED_FOR, "203.0.113.5".parse().unwrap());
        assert_eq!(client_ip(&t, XFF, ip("10.0.0.1"), &h), ip("203.0.113.5"));
        assert_eq!(client_ip(&t, FWD, ip("10.0.0.1"), &h), ip("198.51.100.1"));
        // From an untrusted peer neither counts.
        assert_eq!(client_ip(&t, FWD, ip("192.0.2.1"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn obfuscated_or_missing_for_stops_at_the_last_trusted_hop() {
        let t = nets(&["10.0.0.0/8"]);
        for value in [
            "for=_hidden, for=10.2.2.2",
            "for=unknown, for=10.2.2.2",
            "by=1.2.3.4, for=10.2.2.2",
        ] {
            assert_eq!(
                client_ip(&t, FWD, ip("10.0.0.1"), &fwd(&[value])),
                ip("10.2.2.2"),
                "{value}"
            );
        }
    }
}
