//! Request ids: kept from the client when well-formed, else generated from a per-process
//! random prefix and a counter (unique, cheap, no syscalls, one allocation).

use http::HeaderValue;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn prefix() -> u32 {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish() as u32
    })
}

/// A client-supplied id is kept only if it is 1–128 characters of `[A-Za-z0-9._:-]`, so it
/// is safe to echo into logs and pages.
pub fn is_well_formed(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

pub fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let value = (u128::from(prefix()) << 64) | u128::from(n);
    let mut buf = [0u8; 24];
    for (i, slot) in buf.iter_mut().enumerate() {
        let shift = (23 - i) * 4;
        let nibble = ((value >> shift) & 0xf) as usize;
        *slot = HEX.get(nibble).copied().unwrap_or(b'0');
    }
    // One allocation that every clone shares (the id goes to the origin, the client and the
    // access log): a value copied from a slice would allocate again at its first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(is_well_formed(&a));
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn rejects_unsafe_ids() {
        assert!(!is_well_formed(&HeaderValue::from_static("")));
        assert!(!is_well_formed(&HeaderValue::from_static("a b")));
        assert!(!is_well_formed(&HeaderValue::from_static("<script>")));
        let long = "a".repeat(129);
        assert!(!is_well_formed(
            &HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static(""))
        ));
        assert!(is_well_formed(&HeaderValue::from_static("req-1.2:3_x")));
    }
}
