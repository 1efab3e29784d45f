//! The little DER the OCSP messages need: writing a request's TLVs and reading a response's,
//! every read bounded by the input (no indexing, no panics on a hostile responder's bytes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const ENUMERATED: u8 = 0x0a;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OID: u8 = 0x06;
pub(super) const NULL: u8 = 0x05;
pub(super) const GENERALIZED_TIME: u8 = 0x18;

/// One DER element: `tag`, its content `value`, and the whole encoding `raw`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// A type-length-value: `tag`, the DER length of `content`, `content`.
pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let rest = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | rest.len() as u8);
        out.extend_from_slice(rest);
    }
    out.extend_from_slice(content);
    out
}

/// Reads the elements of a constructed value one after another.
pub(super) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self) -> Option<Tlv<'a>> {
        let input = self.0;
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, rest) = rest.split_at_checked(n)?;
            let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
            (len, rest)
        };
        let (value, rest) = rest.split_at_checked(len)?;
        let header = input.len() - rest.len() - len;
        let raw = input.get(..header + len)?;
        self.0 = rest;
        Some(Tlv { tag, value, raw })
    }

    /// The next element, which must have `tag`.
    pub fn take(&mut self, tag: u8) -> Option<Tlv<'a>> {
        self.any().filter(|t| t.tag == tag)
    }

    /// The next element if it has `tag`; nothing is consumed otherwise.
    pub fn optional(&mut self, tag: u8) -> Option<Tlv<'a>> {
        let before = self.0;
        match self.any() {
            Some(t) if t.tag == tag => Some(t),
            _ => {
                self.0 = before;
                None
            }
        }
    }
}

/// A GeneralizedTime `YYYYMMDDHHMMSS[.fff]Z` as a system time.
pub(super) fn generalized_time(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text.strip_suffix('Z')?;
    let main = text.split('.').next()?;
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| main.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(8..10)?, num(10..12)?, num(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for n in [0usize, 5, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; n];
            let encoded = tlv(OCTET_STRING, &content);
            let mut r = Reader(&encoded);
            let t = r.take(OCTET_STRING).unwrap();
            assert_eq!(t.value.len(), n);
            assert_eq!(t.raw.len(), encoded.len());
            assert!(r.is_empty());
        }
        assert!(Reader(&[0x30, 0x05, 1, 2]).any().is_none(), "short input");
        assert!(Reader(&[0x30, 0x85, 1, 1, 1, 1, 1]).any().is_none());
    }

    #[test]
    fn generalized_times() {
        let t = generalized_time(b"20260102030405Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_767_323_045
        );
        assert!(generalized_time(b"19700101000000Z").is_some());
        assert!(generalized_time(b"2026010203040Z").is_none());
        assert!(generalized_time(b"20261302030405Z").is_none());
    }
}
