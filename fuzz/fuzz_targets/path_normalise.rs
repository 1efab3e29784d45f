//! The front door's path normalisation (RFC 3986 §6.2.2). Never a panic, and the contract:
//! normalising twice gives the same result (the second pass finds nothing to do); the
//! output never holds `//`, a `.` or `..` segment, an encoded unreserved character or a
//! lower-case escape; a path starting with `/` still does; the query is kept exactly; refusals are the
//! documented ones.
#![no_main]

use holdfast_proxy::fuzzing::normalise_path;
use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fuzz_target!(|data: &[u8]| {
    let Ok(pq) = PathAndQuery::try_from(data) else {
        return;
    };
    let out = match normalise_path(&pq) {
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
        Ok(None) => pq.clone(),
        Ok(Some(p)) => p,
    };
    assert_eq!(out.query(), pq.query(), "the query is kept as sent");
    let path = out.path();
    if path == "*" {
        return;
    }
    assert_eq!(
        normalise_path(&out),
        Ok(None),
        "{} normalised again",
        out.as_str()
    );
    // A target not starting with `/` is refused before (strict: target form); a `/` one
    // stays one.
    if pq.path().starts_with('/') {
        assert!(path.starts_with('/'), "{path}");
    }
    assert!(!path.contains("//"), "{path}");
    for seg in path.split('/') {
        assert!(seg != "." && seg != "..", "{path}");
        assert!(!seg.starts_with(".;") && !seg.starts_with("..;"), "{path}");
    }
    let b = path.as_bytes();
    for (i, _) in b.iter().enumerate().filter(|(_, c)| **c == b'%') {
        let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
            panic!("a bad escape in {path}")
        };
        let (Some(hi), Some(lo)) = (hex(h), hex(l)) else {
            panic!("a bad escape in {path}")
        };
        assert!(
            !is_unreserved(hi * 16 + lo),
            "an encoded unreserved char in {path}"
        );
        assert!(!h.is_ascii_lowercase() && !l.is_ascii_lowercase(), "{path}");
        assert!(!matches!(hi * 16 + lo, b'/' | b'\\'), "{path}");
    }
    assert!(
        !b.iter().any(|c| *c == b'\\' || *c >= 0x7f || *c <= 0x20),
        "{path}"
    );
});
