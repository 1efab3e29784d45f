//! `ZoneFile`, the artifact kind of an RFC 1035 zone file: parsed by hickory's zone parser
//! with the configured origin, then checked (SOA at the origin, every name inside the zone,
//! CNAME exclusivity, no empty RRset, only the record types served) before the pipeline
//! may swap it in. Versions are SOA serials, compared with RFC 1982 serial arithmetic.
//! Nothing here reads a file: the pipeline hands over bytes.

use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, ZoneType};
use holdfast_artifact::{text, ArtifactKind, Reason, Rejection};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Zone files larger than this are rejected unread.
pub const MAX_ZONE_BYTES: u64 = 16 << 20;

/// The record types a zone file may hold.
const SERVED: [RecordType; 10] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::MX,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CAA,
    RecordType::SRV,
    RecordType::PTR,
];

/// The artifact kind of zone files; `ArtifactOptions::context` is the zone's origin, then
/// (one per line) the steered names inside the zone (see `context`).
pub struct ZoneFile;

/// A loaded zone: its records and the handler hickory answers from.
pub struct Zone {
    pub origin: Name,
    pub serial: u32,
    /// The SOA record, for the authority section of negative answers at steered names.
    pub soa: Record,
    pub records: BTreeMap<RrKey, RecordSet>,
    pub handler: Arc<InMemoryZoneHandler>,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("origin", &self.origin)
            .field("serial", &self.serial)
            .field("rrsets", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Zone {
    /// Does the zone hold anything at `name` (any type)?
    pub fn has_name(&self, name: &Name) -> bool {
        self.records.keys().any(|k| Name::from(&k.name) == *name)
    }
}

impl ArtifactKind for ZoneFile {
    type Value = Zone;
    const NAME: &'static str = "dns-zone";
    const MAX_BYTES: u64 = MAX_ZONE_BYTES;

    fn load(bytes: &[u8]) -> Result<Zone, Rejection> {
        Self::load_in(".", bytes)
    }

    fn load_in(context: &str, bytes: &[u8]) -> Result<Zone, Rejection> {
        let mut lines = context.lines();
        let origin = lines.next().unwrap_or(".");
        let origin = Name::from_ascii(origin).map_err(|e| {
            Rejection::new(Reason::Schema, format!("bad zone origin {origin:?}: {e}"))
        })?;
        let zone = parse(&origin, text(bytes)?)?;
        for steered in lines.filter_map(|l| Name::from_ascii(l).ok()) {
            let key = RrKey::new((&steered).into(), RecordType::CNAME);
            if zone.records.contains_key(&key) {
                return Err(Rejection::new(
                    Reason::Duplicate,
                    format!("{steered} is a steered name ([[dns.steered]]): a CNAME there would replace its steered A/AAAA answer (remove the CNAME)"),
                ));
            }
        }
        Ok(zone)
    }

    fn is_newer(new: u64, active: u64) -> bool {
        serial_newer(new as u32, active as u32)
    }

    fn version(value: &Zone) -> u64 {
        u64::from(value.serial)
    }

    fn entries(value: &Zone) -> usize {
        value.records.len()
    }
}

/// The `ArtifactOptions::context` of a zone: its origin, then its steered names.
pub fn context(origin: &str, steered: &[&str]) -> String {
    let mut c = origin.to_string();
    for s in steered {
        c.push('\n');
        c.push_str(s);
    }
    c
}

/// RFC 1982 §3.2: `a` is newer than `b` when `a - b` (mod 2^32) is in 1..2^31.
pub fn serial_newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < (1 << 31)
}

fn parse(origin: &Name, text: &str) -> Result<Zone, Rejection> {
    // `$INCLUDE` would read a file outside the pipeline (no size limit, no LKG).
    if let Some(line) = text.lines().position(|l| {
        l.trim_start()
            .get(..8)
            .is_some_and(|w| w.eq_ignore_ascii_case("$include"))
    }) {
        return Err(Rejection::new(
            Reason::Schema,
            format!(
                "line {}: $INCLUDE is not supported (put the records in this file)",
                line + 1
            ),
        ));
    }
    let (_, records) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| Rejection::new(Reason::Parse, format!("zone file: {e}")))?;
    check(origin, &records)?;
    let soa = records
        .get(&RrKey::new(origin.into(), RecordType::SOA))
        .and_then(|set| set.records_without_rrsigs().next().cloned())
        .ok_or_else(|| no_soa(origin))?;
    let serial = match &soa.data {
        RData::SOA(s) => s.serial,
        _ => return Err(no_soa(origin)),
    };
    let handler = InMemoryZoneHandler::new(
        origin.clone(),
        records.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    )
    .map_err(|e| Rejection::new(Reason::Schema, format!("zone {origin}: {e}")))?;
    Ok(Zone {
        origin: origin.clone(),
        serial,
        soa,
        records,
        handler: Arc::new(handler),
    })
}

fn no_soa(origin: &Name) -> Rejection {
    Rejection::new(
        Reason::Schema,
        format!("no SOA record at the zone origin {origin} (add one: `@ IN SOA ns1 hostmaster 1 7200 900 1209600 300`)"),
    )
}

/// The semantic checks, every one naming the owner and type at fault.
fn check(origin: &Name, records: &BTreeMap<RrKey, RecordSet>) -> Result<(), Rejection> {
    let mut soas = 0;
    let mut types_at: BTreeMap<Name, BTreeSet<RecordType>> = BTreeMap::new();
    for (key, set) in records {
        let name = Name::from(&key.name);
        let rtype = key.record_type;
        if !origin.zone_of(&name) {
            return Err(Rejection::new(
                Reason::Range,
                format!("{name} {rtype} is outside the zone {origin} (remove it or fix its name)"),
            ));
        }
        if !SERVED.contains(&rtype) {
            return Err(Rejection::new(
                Reason::Unknown,
                format!("{name} {rtype}: record type not served (served: A, AAAA, CNAME, TXT, MX, NS, SOA, CAA, SRV, PTR)"),
            ));
        }
        let count = set.records_without_rrsigs().count();
        if set.is_empty() || count == 0 {
            return Err(Rejection::new(
                Reason::Empty,
                format!("{name} {rtype}: empty record set"),
            ));
        }
        if rtype == RecordType::SOA {
            soas += count;
            if name != *origin {
                return Err(Rejection::new(
                    Reason::Range,
                    format!("SOA at {name}, not at the zone origin {origin}"),
                ));
            }
        }
        if rtype == RecordType::CNAME && count > 1 {
            return Err(Rejection::new(
                Reason::Duplicate,
                format!("{name} has {count} CNAME records (a name has at most one)"),
            ));
        }
        types_at.entry(name).or_default().insert(rtype);
    }
    if soas == 0 {
        return Err(no_soa(origin));
    }
    if soas > 1 {
        return Err(Rejection::new(
            Reason::Duplicate,
            format!("{soas} SOA records at {origin} (keep one)"),
        ));
    }
    for (name, types) in &types_at {
        if types.contains(&RecordType::CNAME) && types.len() > 1 {
            let others: Vec<String> = types
                .iter()
                .filter(|t| **t != RecordType::CNAME)
                .map(ToString::to_string)
                .collect();
            return Err(Rejection::new(
                Reason::Duplicate,
                format!(
                    "{name} has a CNAME and also {} (RFC 1034 §3.6.2: a CNAME is alone at its name)",
                    others.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "$TTL 300\n@ IN SOA ns1 hostmaster 7 7200 900 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.10\n";

    fn load(text: &str) -> Result<Zone, Rejection> {
        ZoneFile::load_in("example.test.", text.as_bytes())
    }

    #[test]
    fn a_good_zone_loads_with_its_serial() {
        let z = load(GOOD).unwrap();
        assert_eq!(z.serial, 7);
        assert_eq!(ZoneFile::entries(&z), 4);
    }

    #[test]
    fn missing_soa_is_rejected() {
        let e = load("$TTL 300\nwww IN A 192.0.2.10\n").unwrap_err();
        assert_eq!(e.reason, Reason::Schema);
        assert!(e.detail.contains("no SOA"), "{}", e.detail);
    }

    #[test]
    fn cname_beside_other_data_is_rejected() {
        let e = load(&format!("{GOOD}www IN CNAME other.example.net.\n")).unwrap_err();
        assert_eq!(e.reason, Reason::Duplicate);
        assert!(e.detail.contains("www.example.test."), "{}", e.detail);
    }

    #[test]
    fn names_outside_the_zone_and_includes_are_rejected() {
        let e = load(&format!("{GOOD}www.other.test. IN A 192.0.2.1\n")).unwrap_err();
        assert_eq!(e.reason, Reason::Range);
        let e = load(&format!("$INCLUDE /etc/passwd\n{GOOD}")).unwrap_err();
        assert!(e.detail.contains("$INCLUDE"), "{}", e.detail);
    }

    #[test]
    fn a_cname_at_a_steered_name_is_rejected() {
        let text = format!("{GOOD}api IN CNAME elsewhere.example.net.\n");
        let ctx = context("example.test.", &["api.example.test."]);
        let e = ZoneFile::load_in(&ctx, text.as_bytes()).unwrap_err();
        assert!(e.detail.contains("steered"), "{}", e.detail);
        assert!(ZoneFile::load_in("example.test.", text.as_bytes()).is_ok());
    }

    #[test]
    fn garbage_is_a_parse_rejection() {
        let e = load("@ IN SOA ns1\n\"\"\" ((( \n").unwrap_err();
        assert_eq!(e.reason, Reason::Parse);
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 1));
        assert!(!serial_newer(1, 2));
        assert!(serial_newer(0, u32::MAX));
        assert!(serial_newer(5, u32::MAX - 5));
        assert!(!serial_newer(u32::MAX - 5, 5));
        assert!(
            !serial_newer(1 << 31, 0),
            "exactly half way is undefined: not newer"
        );
    }
}
