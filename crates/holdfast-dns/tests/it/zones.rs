//! Zone files through the artifact pipeline: only newer serials apply (RFC 1982), the
//! 20 Oct 2025 race (an older version applied last loses), bad and oversize files leave
//! the active zone in place, a restart with a bad file serves the last-known-good copy.

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use holdfast_artifact::{LoadOutcome, Reason};
use std::net::IpAddr;

fn zone(serial: u32, www: &str) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns1 hostmaster {serial} 7200 900 1209600 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A {www}\n"
    )
}

fn www(env: &Env) -> Vec<IpAddr> {
    ips(&udp(env.addr(), "www.example.test.", RecordType::A, None))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Replace the zone file atomically (a watcher never sees half of it).
fn publish(env: &Env, text: impl AsRef<[u8]>) {
    let tmp = env.zone_file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &env.zone_file).unwrap();
}

/// Reload now and return why the file was rejected. The zone watcher may have got to the
/// file first (then this reload is `Unchanged`): the zone's status tells either way.
fn rejected(env: &Env) -> String {
    let outcome = env.dns().reload_zones();
    assert!(
        !matches!(outcome.as_slice(), [LoadOutcome::Applied { .. }]),
        "{outcome:?}"
    );
    let status = env.dns().status();
    let r = status.zones[0]
        .last_rejection
        .as_ref()
        .expect("a rejection");
    r.reason.to_string()
}

fn applied(env: &Env, version: u64) {
    env.dns().reload_zones();
    let status = env.dns().status();
    assert_eq!(status.zones[0].active.as_ref().unwrap().version, version);
}

#[test]
fn two_writers_out_of_order_the_newer_serial_stays() {
    let env = Env::start(&zone(1, "192.0.2.1"), vec![]);
    // Writer A publishes serial 3, writer B (slower, older data) publishes serial 2 after it.
    publish(&env, zone(3, "192.0.2.3"));
    applied(&env, 3);
    publish(&env, zone(2, "192.0.2.2"));
    assert_eq!(rejected(&env), Reason::NotNewer.label());
    assert_eq!(www(&env), [ip("192.0.2.3")]);
    let status = env.dns().status();
    let z = &status.zones[0];
    assert_eq!(z.active.as_ref().unwrap().version, 3);
    assert_eq!(z.last_rejection.as_ref().unwrap().reason, "not_newer");
}

#[test]
fn serials_wrap_by_rfc_1982() {
    let env = Env::start(&zone(u32::MAX, "192.0.2.1"), vec![]);
    publish(&env, zone(5, "192.0.2.5"));
    applied(&env, 5);
    assert_eq!(www(&env), [ip("192.0.2.5")]);
}

#[test]
fn a_bad_zone_leaves_the_active_one_in_place() {
    let env = Env::start(&zone(1, "192.0.2.1"), vec![]);
    publish(
        &env,
        format!(
            "{}www IN CNAME elsewhere.example.net.\n",
            zone(2, "192.0.2.2")
        ),
    );
    assert_eq!(rejected(&env), Reason::Duplicate.label());
    publish(&env, "$TTL 300\nwww IN A 192.0.2.9\n");
    assert_eq!(rejected(&env), Reason::Schema.label());
    assert_eq!(www(&env), [ip("192.0.2.1")]);
}

#[test]
fn an_oversize_zone_is_rejected_unread() {
    let env = Env::start(&zone(1, "192.0.2.1"), vec![]);
    let mut big = zone(2, "192.0.2.2");
    big.push_str(&";".repeat(holdfast_dns::MAX_ZONE_BYTES as usize + 1));
    publish(&env, big);
    assert_eq!(rejected(&env), Reason::TooLarge.label());
    assert_eq!(www(&env), [ip("192.0.2.1")]);
}

#[test]
fn a_restart_with_a_bad_file_serves_the_last_known_good_zone() {
    let mut env = Env::start(&zone(7, "192.0.2.7"), vec![]);
    env.dns.take().unwrap().shutdown();
    publish(&env, "garbage (((\n");
    env.dns = Some(env.relaunch());
    assert_eq!(www(&env), [ip("192.0.2.7")]);
    let nx = udp(env.addr(), "nope.example.test.", RecordType::A, None);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_zone_that_would_replace_a_steered_name_is_rejected() {
    let env = Env::start(
        &zone(1, "192.0.2.1"),
        vec![steered("api.example.test.", &["p"])],
    );
    env.health.set("p", &[("127.0.0.2", false)]);
    publish(
        &env,
        format!(
            "{}api IN CNAME elsewhere.example.net.\n",
            zone(2, "192.0.2.2")
        ),
    );
    assert_eq!(rejected(&env), Reason::Duplicate.label());
    assert!(crate::support::eventually(
        std::time::Duration::from_secs(5),
        || { ips(&udp(env.addr(), "api.example.test.", RecordType::A, None)) == [ip("127.0.0.2")] }
    ));
}

#[test]
fn an_applied_zone_is_answered_at_once_not_from_a_stale_cache() {
    let env = Env::start(&zone(1, "192.0.2.1"), vec![]);
    assert_eq!(www(&env), [ip("192.0.2.1")]);
    assert_eq!(www(&env), [ip("192.0.2.1")], "now cached");
    publish(&env, zone(2, "192.0.2.2"));
    applied(&env, 2);
    assert_eq!(www(&env), [ip("192.0.2.2")]);
}
