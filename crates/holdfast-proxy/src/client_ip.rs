//! Who the client is: the socket's peer, unless the peer is a trusted proxy
//! (`edge.trusted_proxies`: a load balancer, another CDN in front), whose `X-Forwarded-For`
//! is then believed — up to the first address, from the right, that is not itself trusted.
//! Anything a client wrote further left is ignored, so a client cannot pick its own address.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address for modules (rate-limit keys, bot features).
pub(crate) fn client_ip(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Later headers (and later entries) were added by nearer hops: walk from the right.
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse(entry.trim()) else {
                // Garbage from a trusted hop's upstream: stop at the last address we trust.
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

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, ip("203.0.113.9"), &xff(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(&[], ip("10.0.0.1"), &xff(&["198.51.100.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, ip("10.0.0.1"), &xff(&["198.51.100.1"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn what_the_client_wrote_left_of_the_first_untrusted_hop_is_ignored() {
        let t = nets(&["10.0.0.0/8"]);
        let h = xff(&["6.6.6.6, 198.51.100.1, 10.1.1.1"]);
        assert_eq!(client_ip(&t, ip("10.0.0.1"), &h), ip("198.51.100.1"));
        // The same across several headers: the last header is the nearest hop.
        let h = xff(&["6.6.6.6", "198.51.100.1", "10.1.1.1"]);
        assert_eq!(client_ip(&t, ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn only_trusted_hops_or_garbage_stop_at_the_last_trusted_address() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, ip("10.0.0.1"), &xff(&["10.2.2.2"])),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_ip(&t, ip("10.0.0.1"), &xff(&["6.6.6.6, nonsense, 10.2.2.2"])),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_ip(&t, ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ports_and_brackets() {
        let t = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(
            client_ip(&t, ip("10.0.0.1"), &xff(&["[2001:db9::5]:443"])),
            ip("2001:db9::5")
        );
        assert_eq!(
            client_ip(&t, ip("2001:db8::1"), &xff(&["192.0.2.4:80"])),
            ip("192.0.2.4")
        );
    }
}
