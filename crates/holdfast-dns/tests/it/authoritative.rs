//! Authoritative answers from a zone file: every served type, negative answers with the SOA
//! in the authority section, REFUSED outside our zones, truncation and TCP fallback, EDNS(0).

use crate::support::*;
use hickory_proto::op::{Message, MessageType, ResponseCode};
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

/// The TTL of the SOA in the authority section.
fn negative_ttl(m: &Message) -> u32 {
    m.authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .expect("a SOA in the authority section")
        .ttl
}

/// A UDP query carrying an EDNS cookie option, which the pre-encoded path leaves to hickory.
fn udp_with_cookie(addr: std::net::SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut m = message(name, rtype, Some(1232));
    let mut edns = m.edns.clone().unwrap();
    edns.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
            10,
            vec![7; 8],
        ));
    m.set_edns(edns);
    let bytes = udp_raw(addr, &m.to_vec().unwrap()).expect("an answer over UDP");
    Message::from_vec(&bytes).unwrap()
}

#[test]
fn negative_answers_carry_the_negative_caching_ttl_on_both_paths() {
    // SOA TTL 300, MINIMUM 60: RFC 2308 §3 wants min(300, 60) = 60 on NXDOMAIN and NODATA.
    let env = Env::start(ZONE, vec![]);
    let encoded = || env.metric("holdfast_dns_answer_cache_total", &[("result", "encoded")]);
    // The pre-encoded path: plain UDP, without EDNS and with a bare EDNS(0).
    for edns in [None, Some(1232)] {
        let before = encoded();
        let nx = udp(env.addr(), "nope.example.test.", RecordType::A, edns);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        assert_eq!(negative_ttl(&nx), 60, "NXDOMAIN, EDNS {edns:?}");
        assert_eq!(nx.edns.is_some(), edns.is_some());
        let nodata = udp(env.addr(), "mail.example.test.", RecordType::TXT, edns);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(negative_ttl(&nodata), 60, "NODATA, EDNS {edns:?}");
        assert_eq!(
            encoded(),
            before + 2.0,
            "both came from the pre-encoded map"
        );
    }
    // hickory's path: over TCP, and over UDP with an EDNS option the map does not cover.
    let before = encoded();
    for nx in [
        tcp(env.addr(), "nope.example.test.", RecordType::A),
        udp_with_cookie(env.addr(), "nope.example.test.", RecordType::A),
    ] {
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(negative_ttl(&nx), 60, "NXDOMAIN from hickory");
    }
    for nodata in [
        tcp(env.addr(), "mail.example.test.", RecordType::TXT),
        udp_with_cookie(env.addr(), "mail.example.test.", RecordType::TXT),
    ] {
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(negative_ttl(&nodata), 60, "NODATA from hickory");
    }
    assert_eq!(encoded(), before, "none of those took the pre-encoded path");
    // A question for the SOA itself keeps its own TTL, on both paths.
    let soa = udp(env.addr(), "example.test.", RecordType::SOA, None);
    assert_eq!(soa.answers[0].ttl, 300);
    let soa = tcp(env.addr(), "example.test.", RecordType::SOA);
    assert_eq!(soa.answers[0].ttl, 300);
}

#[test]
fn the_pre_encoded_path_echoes_id_flags_case_and_edns_size() {
    let env = Env::start(ZONE, vec![]);
    let mut m = message("MAIL.Example.TEST.", RecordType::A, Some(2000));
    m.metadata.id = 0xBEEF;
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = true;
    let before = env.metric("holdfast_dns_answer_cache_total", &[("result", "encoded")]);
    let bytes = udp_raw(env.addr(), &m.to_vec().unwrap()).unwrap();
    let a = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        env.metric("holdfast_dns_answer_cache_total", &[("result", "encoded")]),
        before + 1.0
    );
    assert_eq!(a.metadata.id, 0xBEEF);
    assert_eq!(a.metadata.message_type, MessageType::Response);
    assert!(a.metadata.authoritative);
    assert!(a.metadata.recursion_desired);
    assert!(a.metadata.checking_disabled);
    assert!(!a.metadata.recursion_available);
    assert_eq!(a.queries[0].name().to_string(), "MAIL.Example.TEST.");
    assert_eq!(a.edns.as_ref().unwrap().max_payload(), 2000);
    assert_eq!(ips(&a), ["192.0.2.25".parse::<std::net::IpAddr>().unwrap()]);
    // Without RD and without EDNS, neither comes back.
    let a = udp(env.addr(), "mail.example.test.", RecordType::A, None);
    assert!(!a.metadata.recursion_desired);
    assert!(a.edns.is_none());
    assert_eq!(
        env.metric(
            "holdfast_dns_queries_total",
            &[("qtype", "A"), ("rcode", "NOERROR")]
        ),
        2.0,
        "pre-encoded answers are counted like the others"
    );
}
