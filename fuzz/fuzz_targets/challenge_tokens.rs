//! The challenge's inputs from clients: the pass cookie, the proof-of-work and no-JavaScript
//! tokens, the form bodies and the return target. Never a panic; what the signer made checks
//! (round trip, with a solved proof of work); anything else a client sends — arbitrary text,
//! or a genuine value with any change — is refused; `form_value` reads back what
//! `encode_component` wrote; `safe_target` only passes same-host paths.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use holdfast_challenge::{
    encode_component, form_value, safe_target, solve, Keys, Reject, Settings, Signer,
};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    value: &'a str,
    form: &'a [u8],
    name: &'a str,
    text: String,
    ua: &'a [u8],
    ip: [u8; 16],
    v4: bool,
    /// Seconds after the epoch, within a few centuries.
    now: u32,
    /// Where to change a genuine value, and to what.
    flip_at: u16,
    flip_to: u8,
    difficulty: u8,
}

fn signer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| {
        let keys = Keys::parse(
            "aa00000000000000000000000000000000000000000000000000000000000001\n\
             bb00000000000000000000000000000000000000000000000000000000000002\n",
        )
        .expect("keys");
        Signer::new(
            keys,
            Settings {
                cookie_ttl: Duration::from_secs(3600),
                token_ttl: Duration::from_secs(300),
                ipv4_prefix: 24,
                ipv6_prefix: 64,
                nojs_wait: Duration::from_secs(5),
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(inp) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let s = signer();
    let ip: IpAddr = if inp.v4 {
        IpAddr::from([inp.ip[0], inp.ip[1], inp.ip[2], inp.ip[3]])
    } else {
        IpAddr::from(inp.ip)
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(inp.now));
    let later = now + Duration::from_secs(5);

    // Genuine values check; any change to one, or arbitrary text, does not.
    let cookie = s.cookie(ip, inp.ua, now);
    assert_eq!(s.check_cookie(&cookie, ip, inp.ua, now), Ok(()));
    let difficulty = inp.difficulty % 6;
    let pow = s.pow_token(ip, difficulty, now);
    let nonce = solve(&pow, difficulty);
    assert_eq!(s.check_pow(&pow, &nonce, ip, now), Ok(()));
    let nojs = s.nojs_token(ip, now);
    assert_eq!(s.check_nojs(&nojs, ip, later), Ok(()));
    assert_eq!(s.check_nojs(&nojs, ip, now), Err(Reject::TooEarly));
    for genuine in [&cookie, &pow, &nojs] {
        let changed = flip(genuine, inp.flip_at, inp.flip_to);
        if changed != *genuine {
            assert!(
                s.check_cookie(&changed, ip, inp.ua, now).is_err(),
                "{changed}"
            );
            assert!(s.check_pow(&changed, &nonce, ip, now).is_err(), "{changed}");
            assert!(s.check_nojs(&changed, ip, later).is_err(), "{changed}");
        }
    }
    for v in [inp.value, inp.text.as_str()] {
        if v != cookie {
            assert!(s.check_cookie(v, ip, inp.ua, now).is_err());
        }
        if v != pow {
            assert!(s.check_pow(v, &nonce, ip, now).is_err());
        }
        if v != nojs {
            assert!(s.check_nojs(v, ip, later).is_err());
        }
    }
    // The genuine pow token with another nonce: solved or refused, never a panic.
    let _ = s.check_pow(&pow, inp.value, ip, now);

    // Forms: never a panic; what was encoded reads back.
    let _ = form_value(inp.form, inp.name);
    let name: String = inp
        .name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let name = format!("n{name}");
    {
        let body = format!("x=1&{name}={}&{name}=second", encode_component(&inp.text));
        assert_eq!(
            form_value(body.as_bytes(), &name).as_deref(),
            Some(inp.text.as_str())
        );
        let plus = format!("{name}={}", inp.text.replace(' ', "+"));
        if !inp.text.contains(['%', '&', '+']) {
            assert_eq!(
                form_value(plus.as_bytes(), &name).as_deref(),
                Some(inp.text.as_str())
            );
        }
    }

    // The return target: a same-host path or nothing.
    for to in [inp.value, inp.text.as_str()] {
        if let Some(t) = safe_target(to) {
            let b = t.as_bytes();
            assert_eq!(b.first(), Some(&b'/'));
            assert!(!matches!(b.get(1), Some(b'/' | b'\\')));
            assert!(
                b.iter().all(|c| c.is_ascii_graphic() && *c != b'\\'),
                "{t:?}"
            );
        }
    }
});

/// `v` with the byte at `at` (mod its length) replaced by `to` (kept as text).
fn flip(v: &str, at: u16, to: u8) -> String {
    let mut b = v.as_bytes().to_vec();
    if b.is_empty() {
        return v.to_string();
    }
    let i = usize::from(at) % b.len();
    b[i] = to;
    String::from_utf8(b).unwrap_or_else(|_| v.to_string())
}
