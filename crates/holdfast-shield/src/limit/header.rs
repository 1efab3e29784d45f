//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), as structured
//! fields: an sf-string item (the limit's name) with integer parameters.

use std::time::Duration;

use smallvec::SmallVec;

use super::ceil_secs;

/// `name` as an sf-string: in double quotes, `"` and `\` escaped; bytes outside printable
/// ASCII (which a valid spec has none of) become `_`.
pub(crate) fn sf_string(name: &str) -> Box<str> {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            ' '..='~' => s.push(c),
            _ => s.push('_'),
        }
    }
    s.push('"');
    s.into_boxed_str()
}

/// `q` and `w` for `requests` per `per`: `w` is `per` in whole seconds (rounded up, at
/// least 1); when `per` is not a whole number of seconds, `q` is the quota scaled to `w`
/// (rounded down, at least 1), e.g. 5 per 500 ms → `q=10;w=1`.
pub(crate) fn quota_window(requests: u32, per: Duration) -> (u64, u64) {
    let w = ceil_secs(per).max(1);
    let q = if per == Duration::from_secs(w) {
        u64::from(requests)
    } else {
        let nanos = per.as_nanos().max(1);
        let scaled = u128::from(requests) * u128::from(w) * 1_000_000_000 / nanos;
        u64::try_from(scaled).unwrap_or(u64::MAX)
    };
    (q.max(1), w)
}

/// `<sf_name>;<k1>=<v1>;<k2>=<v2>`, built on the stack.
pub(crate) fn item(sf_name: &str, k1: &str, v1: u64, k2: &str, v2: u64) -> http::HeaderValue {
    let mut buf: SmallVec<[u8; 128]> = SmallVec::new();
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(sf_name.as_bytes());
    for (k, v) in [(k1, v1), (k2, v2)] {
        buf.push(b';');
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(num.format(v).as_bytes());
    }
    // Printable ASCII only (sf_string), so this cannot fail; an empty value if it did.
    http::HeaderValue::from_bytes(&buf).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(&*sf_string("per-ip"), "\"per-ip\"");
        assert_eq!(&*sf_string("a \"b\" \\c"), r#""a \"b\" \\c""#);
        assert_eq!(&*sf_string("é\t"), "\"__\"");
    }

    #[test]
    fn quota_and_window() {
        let s = Duration::from_secs;
        assert_eq!(quota_window(5, s(1)), (5, 1));
        assert_eq!(quota_window(100, s(60)), (100, 60));
        assert_eq!(quota_window(5, Duration::from_millis(500)), (10, 1));
        assert_eq!(quota_window(3, Duration::from_millis(1500)), (4, 2));
        assert_eq!(quota_window(1, Duration::from_millis(2500)), (1, 3));
        assert_eq!(
            quota_window(u32::MAX, Duration::from_nanos(1)),
            (4_294_967_295_000_000_000, 1)
        );
    }

    #[test]
    fn items() {
        assert_eq!(item("\"per-ip\"", "q", 5, "w", 1), "\"per-ip\";q=5;w=1");
        let long = sf_string(&"n".repeat(300));
        let v = item(&long, "r", u64::MAX, "t", 0);
        assert!(v.to_str().unwrap().ends_with(";r=18446744073709551615;t=0"));
    }
}
