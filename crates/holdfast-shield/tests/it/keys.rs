//! Each key kind: what is counted together, what apart, and what is not limited.

use holdfast_shield::limit::{LimitDecision, LimitKey};

use crate::{limiter, Req};

/// Whether `b` is denied right after `a` used up a limit of 1: they share a key.
fn same_key(key: LimitKey, a: &Req, b: &Req, route_a: &str, route_b: &str) -> bool {
    let (l, _) = limiter(key, 1);
    assert!(matches!(
        l.check(&a.view(), route_a),
        LimitDecision::Allow { .. }
    ));
    assert!(l.check(&a.view(), route_a).is_deny());
    l.check(&b.view(), route_b).is_deny()
}

#[test]
fn client_ip() {
    let a = Req::from("192.0.2.1");
    assert!(same_key(
        LimitKey::ClientIp,
        &a,
        &Req::from("192.0.2.1"),
        "r",
        "other"
    ));
    assert!(same_key(
        LimitKey::ClientIp,
        &a,
        &Req::from("::ffff:192.0.2.1"),
        "r",
        "r"
    ));
    assert!(!same_key(
        LimitKey::ClientIp,
        &a,
        &Req::from("192.0.2.2"),
        "r",
        "r"
    ));
    let v6 = Req::from("2001:db8::1");
    assert!(!same_key(
        LimitKey::ClientIp,
        &v6,
        &Req::from("2001:db8::2"),
        "r",
        "r"
    ));
}

#[test]
fn client_prefix_groups_an_ipv6_64_and_not_ipv4() {
    let k = || LimitKey::ClientPrefix;
    let a = Req::from("2001:db8:aa:1::1");
    assert!(same_key(
        k(),
        &a,
        &Req::from("2001:db8:aa:1:ffff:ffff:ffff:ffff"),
        "r",
        "r"
    ));
    assert!(!same_key(k(), &a, &Req::from("2001:db8:aa:2::1"), "r", "r"));
    assert!(!same_key(k(), &a, &Req::from("2001:db9:aa:1::1"), "r", "r"));
    let v4 = Req::from("198.51.100.7");
    assert!(same_key(k(), &v4, &Req::from("198.51.100.7"), "r", "r"));
    assert!(!same_key(k(), &v4, &Req::from("198.51.100.8"), "r", "r"));
    // IPv4 keys are the same under client_ip and client_prefix.
    let (ip, _) = limiter(LimitKey::ClientIp, 1);
    let (prefix, _) = limiter(LimitKey::ClientPrefix, 1);
    assert_eq!(ip.key(&v4.view(), "r"), prefix.key(&v4.view(), "r"));
}

#[test]
fn header_values() {
    let k = || LimitKey::Header(http::HeaderName::from_static("x-api-key"));
    let a = Req::from("192.0.2.1").header("x-api-key", "alpha");
    // Same value from another address: same key.
    let a2 = Req::from("203.0.113.9").header("x-api-key", "alpha");
    assert!(same_key(k(), &a, &a2, "r", "r"));
    // Values are compared exactly (case matters).
    assert!(!same_key(
        k(),
        &a,
        &Req::from("192.0.2.1").header("x-api-key", "Alpha"),
        "r",
        "r"
    ));
    // Only the first value counts.
    let two = Req::from("192.0.2.1")
        .header("x-api-key", "alpha")
        .header("x-api-key", "beta");
    assert!(same_key(k(), &a, &two, "r", "r"));
    // Absent or empty: no key, never limited.
    let (l, _) = limiter(k(), 1);
    for req in [
        Req::from("192.0.2.1"),
        Req::from("192.0.2.1").header("x-api-key", ""),
    ] {
        assert_eq!(l.key(&req.view(), "r"), None);
        for _ in 0..3 {
            assert_eq!(l.check(&req.view(), "r"), LimitDecision::NoKey);
        }
    }
    assert_eq!(l.keys(), 0);
}

#[test]
fn cookie_values() {
    let k = || LimitKey::Cookie("sid".into());
    let a = Req::from("192.0.2.1").header("cookie", "theme=dark; sid=s1");
    let same = Req::from("192.0.2.99").header("cookie", "sid=s1");
    let quoted = Req::from("192.0.2.99").header("cookie", "sid=\"s1\"");
    let split = Req::from("192.0.2.99")
        .header("cookie", "theme=light")
        .header("cookie", "sid=s1");
    let other = Req::from("192.0.2.1").header("cookie", "sid=s2; theme=dark");
    assert!(same_key(k(), &a, &same, "r", "r"));
    assert!(same_key(k(), &a, &quoted, "r", "r"));
    assert!(same_key(k(), &a, &split, "r", "r"));
    assert!(!same_key(k(), &a, &other, "r", "r"));
    let (l, _) = limiter(k(), 1);
    for req in [
        Req::from("192.0.2.1"),
        Req::from("192.0.2.1").header("cookie", "theme=dark"),
        Req::from("192.0.2.1").header("cookie", "sid="),
        Req::from("192.0.2.1").header("cookie", "SID=s1; xsid=s1; sidx=s1"),
        Req::from("192.0.2.1").header("x-sid", "s1"),
    ] {
        assert_eq!(l.check(&req.view(), "r"), LimitDecision::NoKey);
    }
}

#[test]
fn route() {
    let a = Req::from("192.0.2.1");
    let b = Req::from("203.0.113.5");
    assert!(same_key(LimitKey::Route, &a, &b, "api", "api"));
    assert!(!same_key(LimitKey::Route, &a, &a, "api", "static"));
}

#[test]
fn retry_after_and_recovery_through_check() {
    let (l, clock) = limiter(LimitKey::ClientIp, 5);
    let req = Req::from("192.0.2.1");
    for _ in 0..5 {
        assert!(!l.check(&req.view(), "r").is_deny());
    }
    let d = l.check(&req.view(), "r");
    assert_eq!(
        d,
        LimitDecision::Deny {
            retry_after: std::time::Duration::from_millis(200),
            reset: std::time::Duration::from_secs(1),
        }
    );
    assert_eq!(d.retry_after_header().unwrap(), "1");
    clock.advance(std::time::Duration::from_millis(200));
    assert!(!l.check(&req.view(), "r").is_deny());
    assert_eq!(l.keys(), 1);
}
