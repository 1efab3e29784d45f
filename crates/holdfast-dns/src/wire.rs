//! The UDP fast path: zone answers pre-encoded once per catalog generation (every zone load
//! builds a new one), so a plain query costs a header check, a name walk, one hash look-up
//! and a copy of the cached bytes with the ID, the RD/CD flags and the question's case patched
//! in. The bytes are what hickory's catalog answers for the same question (each one is built
//! by running the catalog on a synthetic query), so both paths answer alike by construction.
//!
//! Covered: one question, class IN, opcode QUERY, no EDNS or a bare EDNS(0) OPT (no options,
//! no DO bit), for every owner name of the zones × `TYPES` (answers, CNAMEs, referrals and
//! NODATA with the RFC 2308 SOA), and NXDOMAIN for names under a zone origin that exist
//! nowhere in the zone (not an owner, not an empty non-terminal, not below a delegation) in a
//! zone without wildcards: the client's question with the zone's negative SOA.
//!
//! Everything else returns `false` and goes to hickory (the `Handler`): steered names (their
//! answer changes every tick), EDNS options (cookies, NSID, client subnet), the DO bit, EDNS
//! versions above 0, an answer that would not fit the client's UDP size (hickory truncates),
//! other types and classes, names outside our zones (REFUSED), compression pointers or
//! trailing bytes in the query, and malformed packets (FORMERR or dropped).

use crate::handler::{rcode_label, type_label};
use crate::metrics::DnsMetrics;
use crate::negative::negative_soa;
use crate::zone::Zone;
use futures_util::FutureExt;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse};
use prometheus::IntCounter;
use std::collections::{HashMap, HashSet};

/// The fast path's maps hash every query's name: foldhash (hashbrown's default hasher),
/// seeded at random per process as SipHash is, costs a fraction of SipHash per lookup
/// (SipHash was ~9 % of a pre-encoded answer's instructions).
type Seeded = foldhash::fast::RandomState;
type NameSet = HashSet<Box<[u8]>, Seeded>;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The query types pre-encoded for every owner name (answer or NODATA).
const TYPES: [RecordType; 11] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::HTTPS,
];

/// At most this many answers are pre-encoded per generation (the rest take hickory's path).
const MAX_ANSWERS: usize = 250_000;
/// ... and at most this many bytes of them.
const MAX_BYTES: usize = 64 << 20;

const HEADER: usize = 12;
/// Length of the bare OPT record of an EDNS(0) answer: root name, type 41, class (the
/// payload size), TTL 0 (extended RCODE 0, version 0, no flags), no options.
const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;

/// One pre-encoded answer.
struct Encoded {
    /// The whole message: ID 0, RD and CD clear, the question lowercased, no OPT record.
    bytes: Box<[u8]>,
    /// `holdfast_dns_queries_total` for its type and response code.
    counted: IntCounter,
}

/// What NXDOMAIN needs to know about one zone.
struct ZoneNames {
    /// The origin in wire form, lowercased.
    origin: Box<[u8]>,
    /// Every owner name and empty non-terminal at or below the origin.
    names: NameSet,
    /// Delegations below the apex: names under them get hickory's referral.
    cuts: NameSet,
    /// A wildcard owner: names that do not exist may still match it; no NXDOMAIN here.
    wildcard: bool,
    /// The negative SOA record (TTL = min(TTL, MINIMUM)), names uncompressed.
    soa: Box<[u8]>,
}

/// The pre-encoded answers of one catalog generation.
pub(crate) struct AnswerMap {
    /// Key: the question name in wire form, lowercased, then the type (2 bytes, big-endian).
    answers: HashMap<Box<[u8]>, Encoded, Seeded>,
    zones: Vec<ZoneNames>,
    /// Steered names, always answered by the handler (their answer moves with health).
    steered: NameSet,
    /// `holdfast_dns_answer_cache_total{result="encoded"}`.
    served: IntCounter,
    /// `holdfast_dns_queries_total{rcode="NXDOMAIN"}` by type label.
    nxdomain: Vec<(&'static str, IntCounter)>,
}

impl AnswerMap {
    /// A map that answers nothing (every query takes hickory's path).
    pub(crate) fn empty(metrics: &DnsMetrics) -> AnswerMap {
        AnswerMap {
            answers: HashMap::default(),
            zones: Vec::new(),
            steered: NameSet::default(),
            served: metrics.cache.with_label_values(&["encoded"]),
            nxdomain: Vec::new(),
        }
    }

    /// Runs `catalog` once per (owner name, type) of `zones` and keeps the encoded answers.
    /// `steered` names are left out (and never get NXDOMAIN here).
    pub(crate) fn build(
        catalog: &Catalog,
        zones: &[&Zone],
        steered: &[Name],
        metrics: &DnsMetrics,
    ) -> AnswerMap {
        let mut map = AnswerMap::empty(metrics);
        map.steered = steered.iter().map(|n| wire(n).into()).collect();
        let mut bytes = 0usize;
        'zones: for zone in zones {
            let mut owners: Vec<Name> = zone.records.keys().map(|k| Name::from(&k.name)).collect();
            owners.dedup();
            for owner in &owners {
                let key_name = wire(owner);
                if map.steered.contains(key_name.as_slice()) {
                    continue;
                }
                for qtype in TYPES {
                    if map.answers.len() >= MAX_ANSWERS || bytes >= MAX_BYTES {
                        tracing::info!(
                            answers = map.answers.len(),
                            "dns: pre-encoded answer budget reached; the rest are looked up"
                        );
                        break 'zones;
                    }
                    let Some((encoded, rcode)) = encode(catalog, owner, qtype) else {
                        continue;
                    };
                    bytes += encoded.len();
                    let mut key = key_name.clone();
                    key.extend_from_slice(&u16::from(qtype).to_be_bytes());
                    let counted = metrics
                        .queries
                        .with_label_values(&[type_label(qtype), rcode_label(rcode)]);
                    map.answers.insert(
                        key.into(),
                        Encoded {
                            bytes: encoded.into(),
                            counted,
                        },
                    );
                }
            }
        }
        map.zones = zones.iter().filter_map(|z| zone_names(z)).collect();
        map.nxdomain = nx_labels()
            .into_iter()
            .map(|l| (l, metrics.queries.with_label_values(&[l, "NXDOMAIN"])))
            .collect();
        map
    }

    /// Answers `query` into `out` when the map covers it; `false` leaves it to hickory.
    pub(crate) fn answer(&self, query: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(q) = parse(query) else {
            return false;
        };
        let n = q.name_len;
        // The key: the name lowercased, then the type.
        let mut key = [0u8; 258];
        let (Some(lname), Some(asked)) = (key.get_mut(..n), query.get(HEADER..HEADER + n)) else {
            return false;
        };
        for (k, b) in lname.iter_mut().zip(asked) {
            *k = b.to_ascii_lowercase();
        }
        if let Some([t0, t1]) = key.get_mut(n..n + 2) {
            [*t0, *t1] = q.qtype.to_be_bytes();
        }
        let (Some(lname), Some(full_key)) = (key.get(..n), key.get(..n + 2)) else {
            return false;
        };
        // Steered names are never in `answers`: a hit needs no look at them.
        if let Some(hit) = self.answers.get(full_key) {
            if !fits(hit.bytes.len(), q.payload) {
                return false;
            }
            out.clear();
            out.extend_from_slice(&hit.bytes);
            if !patch(out, query, &q) {
                return false;
            }
            hit.counted.inc();
            self.served.inc();
            return true;
        }
        if self.steered.contains(lname) {
            return false;
        }
        self.nxdomain(lname, query, &q, out)
    }

    /// NXDOMAIN for a name under one of our origins that the zone does not hold.
    fn nxdomain(&self, lname: &[u8], query: &[u8], q: &Question, out: &mut Vec<u8>) -> bool {
        if !nx_type(q.qtype) {
            return false;
        }
        // The closest enclosing zone, as hickory's catalog chooses it.
        let Some(zone) = self
            .zones
            .iter()
            .filter(|z| is_below(lname, &z.origin))
            .max_by_key(|z| z.origin.len())
        else {
            return false;
        };
        if zone.wildcard || zone.names.contains(lname) {
            return false;
        }
        // Below a delegation, hickory answers with a referral.
        let mut at = lname;
        while at.len() > zone.origin.len() {
            if zone.cuts.contains(at) {
                return false;
            }
            let Some(next) = at.first().and_then(|&l| at.get(usize::from(l) + 1..)) else {
                return false;
            };
            at = next;
        }
        let Some(question) = query.get(HEADER..q.end_of_question) else {
            return false;
        };
        let len = HEADER + question.len() + zone.soa.len();
        if !fits(len, q.payload) {
            return false;
        }
        out.clear();
        // ID, QR + AA, RCODE 3, one question, one authority record.
        out.extend_from_slice(&[0, 0, 0x84, 0x03, 0, 1, 0, 0, 0, 1, 0, 0]);
        out.extend_from_slice(question);
        out.extend_from_slice(&zone.soa);
        if !patch(out, query, q) {
            return false;
        }
        let label = type_label(RecordType::from(q.qtype));
        if let Some((_, c)) = self.nxdomain.iter().find(|(l, _)| *l == label) {
            c.inc();
        }
        self.served.inc();
        true
    }

    /// How many answers are pre-encoded (for tests and logs).
    pub(crate) fn len(&self) -> usize {
        self.answers.len()
    }
}

/// The parts of a query the fast path needs.
struct Question {
    /// Length of the question name in wire form (from offset 12).
    name_len: usize,
    qtype: u16,
    /// Where the question ends (after QCLASS).
    end_of_question: usize,
    /// The client's EDNS UDP payload size, `None` without EDNS.
    payload: Option<u16>,
}

/// A plain query the map can answer, or `None`.
fn parse(query: &[u8]) -> Option<Question> {
    let header = query.get(..HEADER)?;
    let (flags, counts) = (header.get(2..4)?, header.get(4..12)?);
    // QR = 0, OPCODE = QUERY, TC = 0.
    if flags.first()? & 0xFA != 0 {
        return None;
    }
    let [0, 1, 0, 0, 0, 0, 0, additional] = *counts else {
        return None;
    };
    if additional > 1 {
        return None;
    }
    let mut at = HEADER;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // A compression pointer or an extended label type: hickory's path.
        if len & 0xC0 != 0 {
            return None;
        }
        at += len;
        if at - HEADER > 255 {
            return None;
        }
    }
    let name_len = at - HEADER;
    // Longer than a name may be (RFC 1035 §3.1): hickory's path answers FORMERR.
    if name_len > 255 {
        return None;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*query.get(at + 2)?, *query.get(at + 3)?]);
    if qclass != u16::from(DNSClass::IN) {
        return None;
    }
    let end_of_question = at + 4;
    let payload = if additional == 1 {
        // Exactly a bare OPT: root owner, type OPT, TTL 0 (version 0, no DO), no options.
        let opt = query.get(end_of_question..)?;
        let [0, t0, t1, p0, p1, 0, 0, 0, 0, 0, 0] = *opt else {
            return None;
        };
        if u16::from_be_bytes([t0, t1]) != TYPE_OPT {
            return None;
        }
        Some(u16::from_be_bytes([p0, p1]))
    } else {
        if query.len() != end_of_question {
            return None;
        }
        None
    };
    Some(Question {
        name_len,
        qtype,
        end_of_question,
        payload,
    })
}

/// Does a message of `len` bytes (without OPT) fit the client's UDP size?
fn fits(len: usize, payload: Option<u16>) -> bool {
    match payload {
        None => len <= 512,
        Some(p) => len + OPT_LEN <= usize::from(p.max(512)),
    }
}

/// Sets the request's ID, RD and CD flags and question case on a cached answer, and appends
/// the OPT record when the request had one (hickory's answer echoes the payload size).
fn patch(out: &mut Vec<u8>, query: &[u8], q: &Question) -> bool {
    let (Some(&[id0, id1, rd, cd]), Some(asked)) =
        (query.get(..4), query.get(HEADER..HEADER + q.name_len))
    else {
        return false;
    };
    let Some([o0, o1, o2, o3]) = out.get_mut(..4) else {
        return false;
    };
    (*o0, *o1) = (id0, id1);
    *o2 |= rd & 0x01;
    *o3 |= cd & 0x10;
    let Some(question) = out.get_mut(HEADER..HEADER + q.name_len) else {
        return false;
    };
    question.copy_from_slice(asked);
    if let Some(payload) = q.payload {
        let Some([a0, a1]) = out.get_mut(10..12) else {
            return false;
        };
        [*a0, *a1] = u16::from_be_bytes([*a0, *a1])
            .saturating_add(1)
            .to_be_bytes();
        let [p0, p1] = payload.max(512).to_be_bytes();
        let [t0, t1] = TYPE_OPT.to_be_bytes();
        out.extend_from_slice(&[0, t0, t1, p0, p1, 0, 0, 0, 0, 0, 0]);
    }
    true
}

/// Types NXDOMAIN is synthesised for: data types; not meta types (AXFR, IXFR, ANY, OPT) nor
/// DNSSEC types, which take hickory's path.
fn nx_type(t: u16) -> bool {
    matches!(t, 1..=40 | 42 | 44 | 45 | 49 | 51..=127 | 256 | 257)
}

fn nx_labels() -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = TYPES.iter().map(|t| type_label(*t)).collect();
    labels.push("other");
    labels.dedup();
    labels
}

/// `name` (wire form) equals `origin` or lies below it, on a label boundary.
fn is_below(name: &[u8], origin: &[u8]) -> bool {
    let mut at = name;
    loop {
        if at == origin {
            return true;
        }
        if at.len() <= origin.len() {
            return false;
        }
        match at.first().and_then(|&l| at.get(usize::from(l) + 1..)) {
            Some(next) => at = next,
            None => return false,
        }
    }
}

/// A name in wire form, lowercased, uncompressed.
pub(crate) fn wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

fn zone_names(zone: &Zone) -> Option<ZoneNames> {
    let origin = wire(&zone.origin);
    let mut names = NameSet::default();
    let mut cuts = NameSet::default();
    let mut wildcard = false;
    for key in zone.records.keys() {
        let owner = Name::from(&key.name);
        wildcard |= owner.is_wildcard();
        let w = wire(&owner);
        if key.record_type == RecordType::NS && w != origin {
            cuts.insert(w.clone().into_boxed_slice());
        }
        // The owner and every empty non-terminal up to the origin.
        let mut at = w.as_slice();
        while at.len() >= origin.len() {
            names.insert(Box::<[u8]>::from(at));
            match at.first().and_then(|&l| at.get(usize::from(l) + 1..)) {
                Some(next) if !at.is_empty() && at != origin.as_slice() => at = next,
                _ => break,
            }
        }
    }
    let mut soa = Vec::new();
    let mut encoder = BinEncoder::new(&mut soa);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    negative_soa(&zone.soa).emit(&mut encoder).ok()?;
    Some(ZoneNames {
        origin: origin.into(),
        names,
        cuts,
        wildcard,
        soa: soa.into(),
    })
}

/// hickory's catalog answer to (`name`, `qtype`, IN) asked without EDNS, encoded whole, with
/// ID 0 and RD clear; `None` when it is not one to keep (not NOERROR/NXDOMAIN, truncated,
/// or the look-up did not finish at once).
fn encode(catalog: &Catalog, name: &Name, qtype: RecordType) -> Option<(Vec<u8>, ResponseCode)> {
    let mut message = Message::new(0, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(name.clone(), qtype));
    let bytes = message.to_vec().ok()?;
    let src = SocketAddr::from(([127, 0, 0, 1], 53));
    let request = Request::from_bytes(bytes, src, Protocol::Udp).ok()?;
    let capture = Capture::default();
    // The in-memory zone answers without waiting; a look-up that would wait is skipped.
    catalog
        .handle_request::<Capture, TokioTime>(&request, capture.clone())
        .now_or_never()?;
    let (bytes, rcode, truncated) = holdfast_common::lock(&capture.0).take()?;
    if truncated || !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return None;
    }
    Some((bytes, rcode))
}

/// An encoded answer, its response code, and whether it was truncated.
type Captured = (Vec<u8>, ResponseCode, bool);

/// Collects an encoded answer, whole (no size limit).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Captured>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(hickory_server::net::NetError::from)?;
        let truncated = bytes.get(2).is_some_and(|b| b & 0x02 != 0);
        *holdfast_common::lock(&self.0) = Some((bytes, info.response_code, truncated));
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::handler::{Generation, Handler, Shared};
    use crate::zone::ZoneFile;
    use arc_swap::ArcSwap;
    use hickory_proto::op::Edns;
    use holdfast_artifact::ArtifactKind;

    const ZONE: &str = "$TTL 300
@ IN SOA ns1 hostmaster 7 7200 900 1209600 60
@ IN NS ns1
ns1 IN A 192.0.2.1
mail IN A 192.0.2.25
mail IN AAAA 2001:db8::25
@ IN MX 10 mail
txt IN TXT \"hello\"
alias IN CNAME mail
outside IN CNAME www.elsewhere.test.
_sip._tcp IN SRV 10 5 5060 mail
sub IN NS ns.sub
ns.sub IN A 192.0.2.53
www IN A 192.0.2.80
";

    fn handler(zone: &str) -> Handler {
        let zone = ZoneFile::load_in("example.test.", zone.as_bytes()).unwrap();
        let metrics = DnsMetrics::new(&prometheus::Registry::new()).unwrap();
        let steered = [Name::from_ascii("www.example.test.").unwrap()];
        let generation = Generation::build(&[&zone], &steered, &metrics);
        Handler(Arc::new(Shared {
            catalog: ArcSwap::from_pointee(generation),
            steered: ArcSwap::from_pointee(HashMap::new()),
            metrics,
        }))
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn both(h: &Handler, q: &[u8]) -> (Option<Message>, Message) {
        let mut out = Vec::new();
        let fast = h.0.catalog.load().map.answer(q, &mut out);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let src = SocketAddr::from(([127, 0, 0, 1], 5353));
        let slow = rt
            .block_on(crate::udp::answer_slow(h, q.to_vec(), src))
            .unwrap();
        (
            fast.then(|| Message::from_vec(&out).unwrap()),
            Message::from_vec(&slow).unwrap(),
        )
    }

    #[test]
    fn pre_encoded_answers_equal_hickorys_for_every_name_and_type() {
        let h = handler(ZONE);
        let names = [
            "example.test.",
            "ns1.example.test.",
            "mail.example.test.",
            "MAIL.Example.Test.",
            "txt.example.test.",
            "alias.example.test.",
            "outside.example.test.",
            "_sip._tcp.example.test.",
            "sub.example.test.",
            "nope.example.test.",
            "deep.nope.example.test.",
            "x.mail.example.test.",
        ];
        let mut fast = 0;
        for name in names {
            for qtype in TYPES {
                for edns in [None, Some(512), Some(4096)] {
                    let q = query(name, qtype, edns);
                    let (f, s) = both(&h, &q);
                    let Some(f) = f else {
                        panic!("{name} {qtype} {edns:?}: not pre-encoded");
                    };
                    fast += 1;
                    assert_eq!(f.metadata, s.metadata, "{name} {qtype} {edns:?}");
                    assert_eq!(f.queries, s.queries, "{name} {qtype} {edns:?}");
                    assert_eq!(f.answers, s.answers, "{name} {qtype} {edns:?}");
                    assert_eq!(f.authorities, s.authorities, "{name} {qtype} {edns:?}");
                    assert_eq!(f.additionals, s.additionals, "{name} {qtype} {edns:?}");
                    assert_eq!(f.edns, s.edns, "{name} {qtype} {edns:?}");
                    for r in f
                        .authorities
                        .iter()
                        .filter(|r| r.record_type() == RecordType::SOA)
                    {
                        assert_eq!(r.ttl, 60, "{name} {qtype}: RFC 2308 negative TTL");
                    }
                }
            }
        }
        assert_eq!(fast, names.len() * TYPES.len() * 3);
    }

    #[test]
    fn what_the_map_does_not_cover_goes_to_hickory() {
        let h = handler(ZONE);
        let mut out = Vec::new();
        let generation = h.0.catalog.load();
        let map = &generation.map;
        let not = |q: &[u8]| !map.answer(q, &mut Vec::new());
        // Steered names, below a delegation, an empty non-terminal, other zones, ANY, AXFR.
        assert!(not(&query("www.example.test.", RecordType::A, None)));
        assert!(not(&query("host.sub.example.test.", RecordType::A, None)));
        assert!(not(&query("_tcp.example.test.", RecordType::A, None)));
        assert!(not(&query("www.other.test.", RecordType::A, None)));
        assert!(not(&query("mail.example.test.", RecordType::ANY, None)));
        assert!(not(&query("example.test.", RecordType::AXFR, None)));
        assert!(not(&query("mail.example.test.", RecordType::DS, None)));
        // DO bit, EDNS version 1, an option.
        let mut m =
            Message::from_vec(&query("mail.example.test.", RecordType::A, Some(1232))).unwrap();
        let mut e = m.edns.clone().unwrap();
        e.set_dnssec_ok(true);
        m.set_edns(e);
        assert!(not(&m.to_vec().unwrap()));
        let mut m =
            Message::from_vec(&query("mail.example.test.", RecordType::A, Some(1232))).unwrap();
        let mut e = m.edns.clone().unwrap();
        e.set_version(1);
        m.set_edns(e);
        assert!(not(&m.to_vec().unwrap()));
        // A response, a truncated query, trailing bytes, a short packet, class CH.
        let good = query("mail.example.test.", RecordType::A, None);
        assert!(map.answer(&good, &mut out));
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(not(&response));
        let mut tc = good.clone();
        tc[2] |= 0x02;
        assert!(not(&tc));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(not(&trailing));
        assert!(not(&good[..good.len() - 1]));
        assert!(not(&good[..11]));
        // A 256-byte name under our origin is not a name: no NXDOMAIN from the map.
        let mut long = good[..12].to_vec();
        for _ in 0..4 {
            long.push(59);
            long.extend_from_slice(&[b'a'; 59]);
        }
        long.extend_from_slice(&[1, b'b']);
        long.extend_from_slice(b"\x07example\x04test\x00\x00\x01\x00\x01");
        assert!(not(&long));
        let mut chaos = good.clone();
        let n = chaos.len();
        chaos[n - 1] = 3;
        assert!(not(&chaos));
    }

    #[test]
    fn an_answer_too_big_for_the_client_is_left_to_hickory_to_truncate() {
        let mut zone = ZONE.to_string();
        for i in 0..10 {
            zone.push_str(&format!("big IN TXT \"{i:03}-{}\"\n", "x".repeat(100)));
        }
        let h = handler(&zone);
        let (f, s) = both(&h, &query("big.example.test.", RecordType::TXT, None));
        assert!(f.is_none(), "over 512 bytes without EDNS");
        assert!(s.metadata.truncation);
        let (f, _) = both(&h, &query("big.example.test.", RecordType::TXT, Some(4096)));
        assert_eq!(f.expect("fits 4096 bytes").answers.len(), 10);
    }

    #[test]
    fn a_zone_with_a_wildcard_gets_no_synthesised_nxdomain() {
        let h = handler(&format!("{ZONE}*.wild IN A 192.0.2.9\n"));
        let (f, s) = both(&h, &query("x.wild.example.test.", RecordType::A, None));
        assert!(f.is_none());
        assert_eq!(s.answers.len(), 1);
        let (f, _) = both(&h, &query("nope.example.test.", RecordType::A, None));
        assert!(f.is_none());
    }
}
