//! Steered names over the DNS wire: failover with a lower TTL, back after the hold-down,
//! never an empty answer, NODATA with the SOA for other types, `/status` says why.

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use holdfast_config::{SteerPolicy, WhenAllDown};
use std::net::IpAddr;
use std::time::Duration;

const WWW: &str = "www.example.test.";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn answer(env: &Env) -> (Vec<IpAddr>, u32) {
    let m = udp(env.addr(), WWW, RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    (ips(&m), m.answers.first().map_or(0, |r| r.ttl))
}

fn answers_with(env: &Env, want: &[&str]) -> bool {
    let want: Vec<IpAddr> = want.iter().map(|s| ip(s)).collect();
    eventually(Duration::from_secs(5), || answer(env).0 == want)
}

#[test]
fn failover_moves_to_the_secondary_and_back() {
    let env = Env::start(ZONE, vec![steered(WWW, &["primary", "secondary"])]);
    env.health.set("primary", &[("127.0.0.2", false)]);
    env.health.set("secondary", &[("127.0.0.3", false)]);
    assert!(answers_with(&env, &["127.0.0.2"]));
    assert_eq!(answer(&env).1, 30);

    env.health.set("primary", &[("127.0.0.2", true)]);
    assert!(answers_with(&env, &["127.0.0.3"]));
    assert_eq!(answer(&env).1, 5, "the failover TTL");
    let status = env.dns().status();
    assert!(
        status.steered[0].reason.contains("secondary"),
        "{:?}",
        status.steered[0]
    );

    env.health.set("primary", &[("127.0.0.2", false)]);
    assert!(answers_with(&env, &["127.0.0.2"]));
    assert!(env.metric("holdfast_dns_steering_changes_total", &[("name", WWW)]) >= 2.0);
}

#[test]
fn a_returning_target_waits_out_its_hold_down() {
    let mut s = steered(WWW, &["primary", "secondary"]);
    s.hold_down = Duration::from_secs(3600);
    let env = Env::start(ZONE, vec![s]);
    env.health.set("primary", &[("127.0.0.2", true)]);
    env.health.set("secondary", &[("127.0.0.3", false)]);
    assert!(answers_with(&env, &["127.0.0.3"]));
    env.health.set("primary", &[("127.0.0.2", false)]);
    // Give the steering task several ticks: the primary is healthy but held down.
    let held = env.dns().status();
    assert!(
        eventually(Duration::from_secs(2), || {
            env.dns().status().steered[0]
                .targets
                .iter()
                .any(|t| t.ip == ip("127.0.0.2") && t.healthy && !t.eligible)
        }),
        "{held:?}"
    );
    assert_eq!(answer(&env).0, [ip("127.0.0.3")]);
}

#[test]
fn every_target_down_still_answers_the_last_healthy_set() {
    let env = Env::start(ZONE, vec![steered(WWW, &["primary", "secondary"])]);
    env.health
        .set("primary", &[("127.0.0.2", false), ("127.0.0.4", false)]);
    env.health.set("secondary", &[("127.0.0.3", false)]);
    assert!(answers_with(&env, &["127.0.0.2", "127.0.0.4"]));
    env.health
        .set("primary", &[("127.0.0.2", true), ("127.0.0.4", true)]);
    env.health.set("secondary", &[("127.0.0.3", true)]);
    assert!(eventually(Duration::from_secs(5), || env
        .dns()
        .status()
        .steered[0]
        .reason
        .contains("last healthy")));
    assert_eq!(answer(&env).0, [ip("127.0.0.2"), ip("127.0.0.4")]);
    assert!(
        env.metric(
            "holdfast_dns_empty_answer_prevented_total",
            &[("name", WWW)]
        ) >= 1.0
    );
}

#[test]
fn every_target_down_can_answer_all_targets() {
    let mut s = steered(WWW, &["primary", "secondary"]);
    s.when_all_down = WhenAllDown::All;
    let env = Env::start(ZONE, vec![s]);
    env.health.set("primary", &[("127.0.0.2", true)]);
    env.health.set("secondary", &[("127.0.0.3", true)]);
    assert!(answers_with(&env, &["127.0.0.2", "127.0.0.3"]));
}

#[test]
fn all_healthy_answers_every_healthy_address_and_aaaa_separately() {
    let mut s = steered(WWW, &["a", "b"]);
    s.policy = SteerPolicy::AllHealthy;
    let env = Env::start(ZONE, vec![s]);
    env.health.set("a", &[("127.0.0.2", false), ("::1", false)]);
    env.health
        .set("b", &[("127.0.0.3", false), ("127.0.0.5", true)]);
    assert!(answers_with(&env, &["127.0.0.2", "127.0.0.3"]));
    let v6 = udp(env.addr(), WWW, RecordType::AAAA, None);
    assert_eq!(ips(&v6), [ip("::1")]);
}

#[test]
fn other_types_at_a_steered_name_are_nodata_with_the_soa() {
    let env = Env::start(ZONE, vec![steered(WWW, &["primary"])]);
    env.health.set("primary", &[("127.0.0.2", false)]);
    assert!(answers_with(&env, &["127.0.0.2"]));
    for rtype in [RecordType::TXT, RecordType::AAAA, RecordType::MX] {
        let m = udp(env.addr(), WWW, rtype, Some(1232));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{rtype}");
        assert!(m.answers.is_empty(), "{rtype}");
        assert!(
            m.authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
            "{rtype}"
        );
        assert!(m.edns.is_some());
    }
    // Case does not matter.
    let m = udp(env.addr(), "WWW.Example.TEST.", RecordType::A, None);
    assert_eq!(ips(&m), [ip("127.0.0.2")]);
}

#[test]
fn operator_overrides_apply_and_survive_a_restart() {
    let mut env = Env::start(ZONE, vec![steered(WWW, &["primary", "secondary"])]);
    env.health.set("primary", &[("127.0.0.2", false)]);
    env.health.set("secondary", &[("127.0.0.3", false)]);
    assert!(answers_with(&env, &["127.0.0.2"]));
    env.dns().set_override("127.0.0.2", "down").unwrap();
    assert!(answers_with(&env, &["127.0.0.3"]));
    assert_eq!(
        env.dns().set_override("not-an-ip", "down").unwrap_err().0,
        400
    );
    assert_eq!(
        env.dns()
            .set_override("127.0.0.2", "sideways")
            .unwrap_err()
            .0,
        404
    );

    env.dns.take().unwrap().shutdown();
    env.dns = Some(env.relaunch());
    assert!(
        answers_with(&env, &["127.0.0.3"]),
        "the override was persisted"
    );
    assert_eq!(
        env.dns().status().overrides.get(&ip("127.0.0.2")),
        Some(&holdfast_dns::Force::Down)
    );
    env.dns().set_override("127.0.0.2", "clear").unwrap();
    assert!(answers_with(&env, &["127.0.0.2"]));
}

#[test]
fn a_provider_pool_is_answered_as_a_cname_for_every_type() {
    let mut s = steered(WWW, &["primary", "cdn"]);
    s.cnames = vec![None, Some("edge.cdn-b.example.".into())];
    let env = Env::start(ZONE, vec![s]);
    env.health.set("primary", &[("127.0.0.2", false)]);
    env.health.set("cdn", &[("127.0.0.3", false)]);
    assert!(answers_with(&env, &["127.0.0.2"]));
    env.health.set("primary", &[("127.0.0.2", true)]);
    assert!(eventually(Duration::from_secs(5), || {
        let m = udp(env.addr(), WWW, RecordType::A, None);
        m.answers.len() == 1 && m.answers[0].record_type() == RecordType::CNAME
    }));
    for rtype in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
        let m = udp(env.addr(), WWW, rtype, None);
        assert_eq!(m.answers.len(), 1, "{rtype}");
        assert_eq!(
            m.answers[0].data,
            hickory_proto::rr::RData::CNAME(hickory_proto::rr::rdata::CNAME(
                hickory_proto::rr::Name::from_ascii("edge.cdn-b.example.").unwrap()
            )),
            "{rtype}"
        );
        assert_eq!(m.answers[0].ttl, 5, "the failover TTL");
    }
    assert_eq!(
        env.dns().status().steered[0].cname.as_deref(),
        Some("edge.cdn-b.example.")
    );
}

#[test]
fn publishing_the_first_answer_is_not_a_change() {
    let mut env = Env::start(ZONE, vec![steered(WWW, &["primary", "secondary"])]);
    env.health.set("primary", &[("127.0.0.2", false)]);
    env.health.set("secondary", &[("127.0.0.3", false)]);
    // Start again with the health known from the first tick on, and a fresh registry.
    if let Some(first) = env.dns.take() {
        first.shutdown();
    }
    env.dns = Some(env.relaunch());
    assert!(answers_with(&env, &["127.0.0.2"]));
    let changes = |env: &Env| env.metric("holdfast_dns_steering_changes_total", &[("name", WWW)]);
    assert_eq!(
        changes(&env),
        0.0,
        "the first answer at start is not a change"
    );

    env.health.set("primary", &[("127.0.0.2", true)]);
    assert!(answers_with(&env, &["127.0.0.3"]));
    assert_eq!(changes(&env), 1.0, "the failover is one change");
}

#[test]
fn an_override_for_an_address_that_is_no_target_is_refused() {
    let env = Env::start(ZONE, vec![steered(WWW, &["primary", "secondary"])]);
    env.health.set("primary", &[("127.0.0.2", false)]);
    env.health.set("secondary", &[("127.0.0.3", false)]);
    assert!(answers_with(&env, &["127.0.0.2"]));
    for action in ["down", "up", "drain", "clear"] {
        let (code, message) = env.dns().set_override("127.0.0.99", action).unwrap_err();
        assert_eq!(code, 404, "{action}: {message}");
        assert!(
            message.contains("127.0.0.99 is not a target")
                && message.contains("127.0.0.2, 127.0.0.3"),
            "{message}"
        );
    }
    assert!(env.dns().status().overrides.is_empty(), "nothing kept");
    let ok = env.dns().set_override("127.0.0.3", "drain").unwrap();
    assert_eq!(ok["warning"], serde_json::Value::Null, "{ok}");
}
