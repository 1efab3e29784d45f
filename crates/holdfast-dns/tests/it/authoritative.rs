//! Authoritative answers from a zone file: every served type, negative answers with the SOA
//! in the authority section, REFUSED outside our zones, truncation and TCP fallback, EDNS(0).

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[test]
fn every_served_record_type_is_answered_authoritatively() {
    let env = Env::start(ZONE, vec![]);
    for (name, rtype) in [
        ("mail.example.test.", RecordType::A),
        ("mail.example.test.", RecordType::AAAA),
        ("example.test.", RecordType::MX),
        ("txt.example.test.", RecordType::TXT),
        ("example.test.", RecordType::NS),
        ("example.test.", RecordType::SOA),
        ("example.test.", RecordType::CAA),
        ("_sip._tcp.example.test.", RecordType::SRV),
        ("alias.example.test.", RecordType::CNAME),
    ] {
        let m = udp(env.addr(), name, rtype, None);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{name} {rtype}"
        );
        assert!(m.metadata.authoritative, "{name} {rtype}");
        assert!(
            m.answers.iter().any(|r| r.record_type() == rtype),
            "{name} {rtype}: {:?}",
            m.answers
        );
    }
    assert!(
        env.metric(
            "holdfast_dns_queries_total",
            &[("qtype", "SRV"), ("rcode", "NOERROR")]
        ) >= 1.0
            || env.metric("holdfast_dns_queries_total", &[("qtype", "SRV")]) >= 1.0
    );
}

#[test]
fn a_cname_is_followed_inside_the_zone() {
    let env = Env::start(ZONE, vec![]);
    let m = udp(env.addr(), "alias.example.test.", RecordType::A, None);
    assert_eq!(
        m.answers.first().map(|r| r.record_type()),
        Some(RecordType::CNAME)
    );
    assert_eq!(ips(&m), ["192.0.2.25".parse::<std::net::IpAddr>().unwrap()]);
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let env = Env::start(ZONE, vec![]);
    let nx = udp(env.addr(), "nope.example.test.", RecordType::A, None);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());
    assert!(nx
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA));

    let nodata = udp(env.addr(), "mail.example.test.", RecordType::TXT, None);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert!(nodata
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA));
}

#[test]
fn names_outside_our_zones_are_refused() {
    let env = Env::start(ZONE, vec![]);
    let m = udp(env.addr(), "www.other.test.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

fn big_zone() -> String {
    let mut z = ZONE.to_string();
    for i in 0..40 {
        z.push_str(&format!("big IN TXT \"{i:03}-{}\"\n", "x".repeat(100)));
    }
    z
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let env = Env::start(&big_zone(), vec![]);
    let small = udp(env.addr(), "big.example.test.", RecordType::TXT, None);
    assert!(small.metadata.truncation, "no EDNS: 512 bytes, TC set");
    let edns = udp(env.addr(), "big.example.test.", RecordType::TXT, Some(1232));
    assert!(
        edns.metadata.truncation,
        "4 KiB of TXT do not fit 1232 bytes"
    );
    assert!(edns.edns.is_some(), "an EDNS query gets an EDNS answer");
    let whole = tcp(env.addr(), "big.example.test.", RecordType::TXT);
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 40);
}

#[test]
fn edns_lets_a_larger_answer_through_udp() {
    let env = Env::start(&big_zone(), vec![]);
    let m = udp(env.addr(), "big.example.test.", RecordType::TXT, Some(8192));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
}

#[test]
fn a_repeated_question_gets_the_same_answer_from_the_cache() {
    let env = Env::start(&big_zone(), vec![]);
    for (name, rtype) in [
        ("alias.example.test.", RecordType::A),
        ("mail.example.test.", RecordType::TXT),
        ("example.test.", RecordType::MX),
        ("big.example.test.", RecordType::TXT),
    ] {
        let first = tcp(env.addr(), name, rtype);
        let again = tcp(env.addr(), name, rtype);
        assert_eq!(first.answers, again.answers, "{name} {rtype}");
        assert_eq!(first.authorities, again.authorities, "{name} {rtype}");
        assert_eq!(first.additionals, again.additionals, "{name} {rtype}");
        assert_eq!(first.metadata.authoritative, again.metadata.authoritative);
    }
    assert!(env.metric("holdfast_dns_answer_cache_total", &[("result", "hit")]) >= 4.0);
    // Cached whole over TCP, still truncated over UDP.
    let small = udp(env.addr(), "big.example.test.", RecordType::TXT, None);
    assert!(small.metadata.truncation);
    // The question is echoed as asked.
    let m = udp(env.addr(), "MAIL.example.TEST.", RecordType::A, None);
    assert_eq!(m.queries[0].name().to_string(), "MAIL.example.TEST.");
    assert_eq!(ips(&m), ["192.0.2.25".parse::<std::net::IpAddr>().unwrap()]);
}
