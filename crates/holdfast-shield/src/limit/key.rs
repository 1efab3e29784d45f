//! Request → key hash, without allocating.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::OnceLock;

/// One SipHash key per process (std's `RandomState`: SipHash-1-3 with random keys).
static HASH_KEY: OnceLock<RandomState> = OnceLock::new();

// Domain tags: keys of different kinds never hash the same input.
const TAG_V4: u8 = 4;
const TAG_V6: u8 = 6;
const TAG_V6_PREFIX: u8 = 64;
const TAG_HEADER: u8 = b'h';
const TAG_COOKIE: u8 = b'c';
const TAG_ROUTE: u8 = b'r';

fn hasher(tag: u8) -> impl Hasher {
    let mut h = HASH_KEY.get_or_init(RandomState::new).build_hasher();
    h.write_u8(tag);
    h
}

/// The client address; an IPv4-mapped IPv6 address is its IPv4 address.
pub(crate) fn client_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut h = hasher(TAG_V4);
            h.write_u32(u32::from(v4));
            h.finish()
        }
        IpAddr::V6(v6) => {
            let mut h = hasher(TAG_V6);
            h.write_u128(u128::from(v6));
            h.finish()
        }
    }
}

/// IPv4: the whole address (the same hash as [`client_ip`]); IPv6: its /64.
pub(crate) fn client_prefix(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => client_ip(v4),
        IpAddr::V6(v6) => {
            let mut h = hasher(TAG_V6_PREFIX);
            h.write_u64((u128::from(v6) >> 64) as u64);
            h.finish()
        }
    }
}

pub(crate) fn header(value: &[u8]) -> u64 {
    bytes(TAG_HEADER, value)
}

pub(crate) fn cookie(value: &[u8]) -> u64 {
    bytes(TAG_COOKIE, value)
}

pub(crate) fn route(name: &str) -> u64 {
    bytes(TAG_ROUTE, name.as_bytes())
}

fn bytes(tag: u8, value: &[u8]) -> u64 {
    let mut h = hasher(tag);
    h.write(value);
    h.finish()
}

/// The value of cookie `name` in the request's `Cookie` headers (all of them, in order; the
/// first match wins), borrowed. Pairs are split on `;`, spaces and tabs around names and
/// values are ignored, names match exactly (case-sensitive, RFC 6265), and a value in double
/// quotes is returned without them. A pair without `=` has no name and never matches.
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (n, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
            (trim(n) == name).then(|| unquote(trim(v)))
        })
}

fn trim(b: &[u8]) -> &[u8] {
    let ows = |c: &u8| *c == b' ' || *c == b'\t';
    let start = b.iter().position(|c| !ows(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ows(c)).map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or_default()
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cookies(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::COOKIE, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookie_edge_cases() {
        let h = cookies(&["a=1; sid=abc; b=2"]);
        assert_eq!(cookie_value(&h, "sid"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie_value(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie_value(&h, "SID"), None, "names are case-sensitive");
        assert_eq!(cookie_value(&h, "si"), None, "no prefix match");
        assert_eq!(cookie_value(&h, "abc"), None, "a value is not a name");
        // Whitespace around names and values, no space after `;`, trailing `;`.
        let h = cookies(&[" \tsid \t= abc ;b=2;"]);
        assert_eq!(cookie_value(&h, "sid"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&h, "b"), Some(&b"2"[..]));
        // Quoted values; `=` inside a value; empty value; a pair without `=`.
        let h = cookies(&["q=\"x y\"; tok=a=b==; e=; lone; \"=\"; one=\""]);
        assert_eq!(cookie_value(&h, "q"), Some(&b"x y"[..]));
        assert_eq!(cookie_value(&h, "tok"), Some(&b"a=b=="[..]));
        assert_eq!(cookie_value(&h, "e"), Some(&b""[..]));
        assert_eq!(cookie_value(&h, "lone"), None);
        assert_eq!(
            cookie_value(&h, "one"),
            Some(&b"\""[..]),
            "a lone quote stays"
        );
        // Several Cookie headers: searched in order, first match wins.
        let h = cookies(&["a=1", "sid=first", "sid=second"]);
        assert_eq!(cookie_value(&h, "sid"), Some(&b"first"[..]));
        // No Cookie header at all, an empty one, only separators.
        assert_eq!(cookie_value(&HeaderMap::new(), "sid"), None);
        assert_eq!(cookie_value(&cookies(&["", ";;; ;"]), "sid"), None);
        // Non-UTF-8 bytes are fine.
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"sid=\xff\xfe").unwrap(),
        );
        assert_eq!(cookie_value(&h, "sid"), Some(&b"\xff\xfe"[..]));
    }

    #[test]
    fn trim_and_unquote() {
        assert_eq!(trim(b""), b"");
        assert_eq!(trim(b" \t "), b"");
        assert_eq!(trim(b" a b\t"), b"a b");
        assert_eq!(unquote(b"\"\""), b"");
        assert_eq!(unquote(b"\""), b"\"");
        assert_eq!(unquote(b"\"a"), b"\"a");
    }

    #[test]
    fn address_keys() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_ne!(client_ip(a), client_ip(b));
        assert_eq!(client_prefix(a), client_prefix(b), "same /64");
        assert_ne!(client_prefix(a), client_prefix(c), "another /64");
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(client_ip(v4), client_ip(mapped));
        assert_eq!(client_prefix(v4), client_ip(v4));
        assert_eq!(client_prefix(mapped), client_ip(v4));
        assert_ne!(
            client_prefix(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
            client_prefix(v4),
            "IPv4 is not grouped"
        );
        // The /64 of ::/64 is not the IPv4 address 0.0.0.0.
        assert_ne!(
            client_prefix(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 1, 0, 0, 1))),
            client_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
    }

    #[test]
    fn kinds_are_separate_and_hashes_are_stable() {
        assert_ne!(header(b"x"), cookie(b"x"));
        assert_ne!(header(b"x"), route("x"));
        assert_eq!(route("api"), route("api"));
        assert_ne!(route("api"), route("apj"));
    }
}
