//! The UDP loop takes datagrams in batches (`recvmmsg`) and sends the batch's answers together
//! (`sendmmsg`): bursts from several clients, sent without waiting for answers, must each get
//! their own answer — the right ID, the right bytes, to the right client — and a bad datagram
//! inside a burst must not disturb its neighbours.

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Questions whose answers differ in length and path: pre-encoded answers of every kind,
/// NXDOMAIN and NODATA, EDNS and not, and hickory's path (the steered name, a name outside
/// our zones).
const QUESTIONS: &[(&str, RecordType, Option<u16>)] = &[
    ("mail.example.test.", RecordType::A, None),
    ("mail.example.test.", RecordType::AAAA, Some(1232)),
    ("example.test.", RecordType::MX, None),
    ("txt.example.test.", RecordType::TXT, Some(4096)),
    ("example.test.", RecordType::NS, None),
    ("example.test.", RecordType::SOA, Some(1232)),
    ("example.test.", RecordType::CAA, None),
    ("_sip._tcp.example.test.", RecordType::SRV, None),
    ("alias.example.test.", RecordType::A, Some(1232)),
    ("nope.example.test.", RecordType::A, None),
    ("mail.example.test.", RecordType::TXT, None),
    ("www.example.test.", RecordType::A, None),
    ("elsewhere.invalid.", RecordType::A, None),
];

fn query(q: usize, id: u16) -> Vec<u8> {
    let (name, rtype, edns) = QUESTIONS[q % QUESTIONS.len()];
    let mut m = message(name, rtype, edns);
    m.metadata.id = id;
    m.to_vec().unwrap()
}

/// Each question's answer asked alone, without its two ID bytes.
fn reference(env: &Env) -> Vec<Vec<u8>> {
    (0..QUESTIONS.len())
        .map(|q| {
            let bytes = udp_raw(env.addr(), &query(q, 7)).expect("a reference answer");
            bytes[2..].to_vec()
        })
        .collect()
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Reads what `sock` gets until it has been quiet for 200 ms or `until` has passed.
fn drain(sock: &UdpSocket, until: Instant) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65535];
    while Instant::now() < until {
        match sock.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_burst_from_several_clients_is_answered_each_to_its_sender() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 25;
    let env = Env::start(ZONE, vec![steered("www.example.test.", &["p"])]);
    env.health.set("p", &[("127.0.0.2", false)]);
    let steered_ip = ["127.0.0.2".parse::<std::net::IpAddr>().unwrap()];
    assert!(eventually(Duration::from_secs(5), || ips(&udp(
        env.addr(),
        "www.example.test.",
        RecordType::A,
        None
    )) == steered_ip));
    let want = reference(&env);
    let clients: Vec<UdpSocket> = (0..CLIENTS).map(|_| client()).collect();
    // Client c's query i: ID c * 1000 + i, question (c * 7 + i) mod the list.
    let question = |c: usize, i: usize| (c * 7 + i) % QUESTIONS.len();
    let mut pending: Vec<HashMap<u16, usize>> = (0..CLIENTS)
        .map(|c| {
            (0..PER_CLIENT)
                .map(|i| ((c * 1000 + i) as u16, question(c, i)))
                .collect()
        })
        .collect();
    let mut first_round = 0;
    // Round 0 is the burst; later rounds resend only what a full socket buffer may have
    // dropped (a loaded test machine), never what was answered wrongly: that fails at once.
    for round in 0..3 {
        for i in 0..PER_CLIENT {
            for (c, sock) in clients.iter().enumerate() {
                let id = (c * 1000 + i) as u16;
                if let Some(&q) = pending[c].get(&id) {
                    sock.send_to(&query(q, id), env.addr()).unwrap();
                }
            }
        }
        let until = Instant::now() + Duration::from_secs(3);
        for (c, sock) in clients.iter().enumerate() {
            for answer in drain(sock, until) {
                let id = u16::from_be_bytes([answer[0], answer[1]]);
                let q = pending[c].remove(&id).unwrap_or_else(|| {
                    panic!("client {c} got ID {id}, which it did not ask or got twice")
                });
                assert_eq!(
                    answer[2..],
                    want[q][..],
                    "client {c} ID {id}: {:?} {:?}",
                    QUESTIONS[q],
                    Message::from_vec(&answer)
                );
                if round == 0 {
                    first_round += 1;
                }
            }
        }
        if pending.iter().all(HashMap::is_empty) {
            break;
        }
    }
    let left: usize = pending.iter().map(HashMap::len).sum();
    assert_eq!(left, 0, "unanswered after 3 rounds: {pending:?}");
    assert!(
        first_round >= CLIENTS * PER_CLIENT * 3 / 4,
        "the burst itself: {first_round} of {} answered",
        CLIENTS * PER_CLIENT
    );
}

#[test]
fn a_malformed_datagram_in_a_burst_gets_formerr_and_its_neighbours_their_answers() {
    let env = Env::start(ZONE, vec![]);
    let want = reference(&env);
    let sock = client();
    let good: Vec<(u16, usize)> = (0..20)
        .map(|i| (100 + i as u16, i % QUESTIONS.len()))
        .collect();
    // A header that reads (ID 0xBEEF, one question) and a question that does not.
    let mut malformed = vec![0xBE, 0xEF, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    malformed.extend_from_slice(&[0x3f, b'x', b'y']);
    // Longer than the largest datagram read: cut, then it fails to parse (FORMERR, ID 0xCAFE).
    let mut oversized = vec![0xCA, 0xFE, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    oversized.resize(5000, 0xFF);
    // Shorter than a header, and a response: no answer at all.
    let short = vec![0x12, 0x34, 0x01];
    let mut response = message("mail.example.test.", RecordType::A, None);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    response.metadata.id = 0xD00D;
    let response = response.to_vec().unwrap();
    for (n, &(id, q)) in good.iter().enumerate() {
        sock.send_to(&query(q, id), env.addr()).unwrap();
        match n {
            5 => sock.send_to(&malformed, env.addr()).map(drop).unwrap(),
            9 => sock.send_to(&short, env.addr()).map(drop).unwrap(),
            12 => sock.send_to(&oversized, env.addr()).map(drop).unwrap(),
            15 => sock.send_to(&response, env.addr()).map(drop).unwrap(),
            _ => {}
        }
    }
    let got = drain(&sock, Instant::now() + Duration::from_secs(3));
    let mut by_id: HashMap<u16, Vec<u8>> = HashMap::new();
    for answer in got {
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        assert!(by_id.insert(id, answer).is_none(), "ID {id} answered twice");
    }
    for (id, q) in &good {
        let answer = by_id
            .remove(id)
            .unwrap_or_else(|| panic!("ID {id} ({:?}) unanswered", QUESTIONS[*q]));
        assert_eq!(answer[2..], want[*q][..], "ID {id}: {:?}", QUESTIONS[*q]);
    }
    for id in [0xBEEF, 0xCAFE] {
        let answer = by_id
            .remove(&id)
            .unwrap_or_else(|| panic!("no FORMERR for {id:#x}"));
        let m = Message::from_vec(&answer).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{id:#x}");
    }
    assert!(
        by_id.is_empty(),
        "answers to what must not be answered: {:?}",
        by_id.keys().collect::<Vec<_>>()
    );
    let m = udp(env.addr(), "mail.example.test.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}
