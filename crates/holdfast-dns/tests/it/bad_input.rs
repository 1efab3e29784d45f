//! Bad input over the wire: garbage, short headers, oversize datagrams, unknown classes,
//! a flood of random names. Each is answered (FORMERR, REFUSED, NXDOMAIN) or dropped, and
//! the server keeps answering good queries afterwards.

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

fn still_serving(env: &Env) {
    let m = udp(env.addr(), "mail.example.test.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn garbage_and_short_packets_are_answered_or_dropped() {
    let env = Env::start(ZONE, vec![steered("www.example.test.", &["p"])]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let good = message("www.example.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    for len in [0usize, 1, 2, 11, 12, 13, 40, 300, 4000] {
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(reply) = udp_raw(env.addr(), &bytes) {
            assert!(reply.len() >= 2, "a reply is at least an id");
        }
    }
    // A good header with every later byte flipped at random.
    for _ in 0..50 {
        let mut bytes = good.clone();
        for b in bytes.iter_mut().skip(12) {
            if next() % 4 == 0 {
                *b = next() as u8;
            }
        }
        let _ = udp_raw(env.addr(), &bytes);
    }
    still_serving(&env);
}

#[test]
fn an_oversize_query_is_dropped_or_refused() {
    let env = Env::start(ZONE, vec![]);
    let mut bytes = message("mail.example.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 60_000));
    if let Some(reply) = udp_raw(env.addr(), &bytes) {
        let m = Message::from_vec(&reply).unwrap();
        assert_ne!(m.metadata.response_code, ResponseCode::ServFail);
    }
    still_serving(&env);
}

#[test]
fn an_unknown_class_is_refused_at_steered_and_zone_names() {
    let env = Env::start(ZONE, vec![steered("www.example.test.", &["p"])]);
    env.health.set("p", &[("127.0.0.2", false)]);
    for class in [DNSClass::Unknown(999), DNSClass::CH, DNSClass::HS] {
        for name in ["www.example.test.", "mail.example.test."] {
            let mut m = message(name, RecordType::A, None);
            m.queries[0].set_query_class(class);
            let reply = udp_raw(env.addr(), &m.to_vec().unwrap())
                .unwrap_or_else(|| panic!("{name} {class:?}: no answer"));
            let r = Message::from_vec(&reply).unwrap();
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::Refused,
                "{name} {class:?}"
            );
            assert!(r.answers.is_empty(), "{name} {class:?}: {:?}", r.answers);
        }
    }
    still_serving(&env);
}

#[test]
fn a_flood_of_random_names_gets_nxdomain_and_the_server_stays_up() {
    let env = Env::start(ZONE, vec![]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    for i in 0..2000u32 {
        let name = format!("r{:08x}.example.test.", i.wrapping_mul(2_654_435_761));
        let bytes = message(&name, RecordType::A, None).to_vec().unwrap();
        sock.send_to(&bytes, env.addr()).unwrap();
    }
    let mut nx = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.metadata.response_code == ResponseCode::NXDomain {
                nx += 1;
            }
        }
    }
    assert!(nx > 0, "some of the flood is answered");
    still_serving(&env);
}

#[test]
fn the_packet_path_without_sockets_answers_good_queries_and_survives_noise() {
    let path = holdfast_dns::fuzzing::PacketPath::new().unwrap();
    let good = message("www.example.test.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let answer = Message::from_vec(&path.answer(&good).unwrap()).unwrap();
    assert_eq!(
        ips(&answer),
        ["127.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    let mut seed: u32 = 0x1234_5678;
    for i in 0..5000 {
        let mut bytes = good.clone();
        for b in bytes.iter_mut() {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if seed.is_multiple_of(7) {
                *b = (seed >> 24) as u8;
            }
        }
        bytes.truncate(i % (good.len() + 1));
        let _ = path.answer(&bytes);
    }
}
