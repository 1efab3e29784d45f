//! The challenge key file (an untrusted file, like every artifact): never a panic; a
//! rejection names its line and says why; a file it accepts round-trips through
//! `to_file_text` to the same keys, and signs values that the same keys verify.
#![no_main]

use holdfast_challenge::{Keys, Settings, Signer, MAX_KEYS, MAX_KEY_BYTES, MIN_KEY_BYTES};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Keys::parse(text) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(keys) => {
            assert!((1..=MAX_KEYS).contains(&keys.count()));
            let again = Keys::parse(&keys.to_file_text()).expect("the file form reads back");
            assert_eq!(again, keys);
            let hex_lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            for l in hex_lines {
                assert!((MIN_KEY_BYTES * 2..=MAX_KEY_BYTES * 2).contains(&l.len()));
            }
            let settings = Settings {
                cookie_ttl: Duration::from_secs(60),
                token_ttl: Duration::from_secs(60),
                ipv4_prefix: 24,
                ipv6_prefix: 64,
                nojs_wait: Duration::ZERO,
            };
            let signer = Signer::new(keys, settings.clone());
            let ip = "192.0.2.7".parse().expect("address");
            let now = SystemTime::now();
            let cookie = signer.cookie(ip, b"UA", now);
            let peer = Signer::new(again, settings);
            assert_eq!(peer.check_cookie(&cookie, ip, b"UA", now), Ok(()));
        }
    }
});
