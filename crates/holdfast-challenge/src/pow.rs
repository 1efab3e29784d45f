//! The proof of work: find a nonce so that SHA-256 of `"{token}:{nonce}"` starts with
//! `difficulty` zero bits. Checking costs the edge one hash; finding costs the client
//! 2^difficulty hashes on average.

use sha2::{Digest, Sha256};

/// Zero bits at the start of `hash`.
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut n = 0;
    for b in hash {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Whether `nonce` solves `token` at `difficulty`.
pub fn solves(token: &str, nonce: &str, difficulty: u8) -> bool {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(b":");
    h.update(nonce.as_bytes());
    leading_zero_bits(&h.finalize()) >= u32::from(difficulty)
}

/// The first nonce (decimal) that solves `token`: what the page's script does, for tests
/// and tools.
pub fn solve(token: &str, difficulty: u8) -> String {
    let mut n: u64 = 0;
    loop {
        let nonce = n.to_string();
        if solves(token, &nonce, difficulty) {
            return nonce;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_zero_bits() {
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x00, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn a_solution_solves_and_others_mostly_do_not() {
        let n = solve("tok", 12);
        assert!(solves("tok", &n, 12));
        let misses = (0..64)
            .filter(|i| !solves("tok", &i.to_string(), 12))
            .count();
        assert!(
            misses > 48,
            "most nonces must fail at 12 bits, {misses} missed"
        );
    }
}
