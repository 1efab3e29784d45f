//! The signed values, all `kind.fields….mac` with an HMAC-SHA256 over everything before the
//! last dot (the kind is signed too, so one kind never passes for another):
//! - cookie `c1.{expires_s}.{ip}.{ua}.{mac}`: the pass, bound to the client's address prefix
//!   and `User-Agent` (`ip`/`ua` are keyed hashes, so the cookie does not reveal them);
//! - proof-of-work token `p1.{issued_ms}.{difficulty}.{ip}.{mac}`;
//! - no-JavaScript token `n1.{issued_ms}.{ip}.{mac}`.
//!
//! The first key signs; every key verifies (rotation), so another instance with the same
//! key file accepts what this one made.

use crate::error::Reject;
use crate::keys::Keys;
use crate::pow;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a keyed binding hash kept in a cookie or token (96 bits).
const BINDING_BYTES: usize = 12;
/// How far in the future an issue time may be (clocks of instances differ a little).
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What the signed values are bound to and how long they last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long a pass cookie is valid.
    pub cookie_ttl: Duration,
    /// How long a challenge page (its token) can be answered.
    pub token_ttl: Duration,
    /// Address bits a cookie is bound to (0: any address).
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// The wait before the no-JavaScript form is accepted.
    pub nojs_wait: Duration,
}

/// Makes and checks cookies and tokens with one set of keys.
#[derive(Debug, Clone)]
pub struct Signer {
    keys: Keys,
    settings: Settings,
}

impl Signer {
    pub fn new(keys: Keys, settings: Settings) -> Signer {
        Signer { keys, settings }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A pass cookie's value for this client.
    pub fn cookie(&self, ip: IpAddr, ua: &[u8], now: SystemTime) -> String {
        let expires = secs(now).saturating_add(self.settings.cookie_ttl.as_secs());
        let key = self.keys.signing();
        let body = format!(
            "c1.{expires}.{}.{}",
            self.ip_binding(key, ip),
            binding(key, b"ua", ua)
        );
        sign(key, body)
    }

    /// Whether a cookie value is a pass for this client now.
    pub fn check_cookie(
        &self,
        value: &str,
        ip: IpAddr,
        ua: &[u8],
        now: SystemTime,
    ) -> Result<(), Reject> {
        let (key, fields) = self.verify(value, "c1", 3)?;
        let [expires, ipb, uab] = fields.as_slice() else {
            return Err(Reject::Forged);
        };
        let expires: u64 = expires.parse().map_err(|_| Reject::Forged)?;
        if expires < secs(now) {
            return Err(Reject::Expired);
        }
        if *ipb != self.ip_binding(key, ip) {
            return Err(Reject::WrongIp);
        }
        if *uab != binding(key, b"ua", ua) {
            return Err(Reject::WrongUa);
        }
        Ok(())
    }

    /// The token a challenge page asks the client to work on.
    pub fn pow_token(&self, ip: IpAddr, difficulty: u8, now: SystemTime) -> String {
        let key = self.keys.signing();
        let body = format!(
            "p1.{}.{difficulty}.{}",
            millis(now),
            self.ip_binding(key, ip)
        );
        sign(key, body)
    }

    /// Whether `nonce` solves a token we made, for this client, in time.
    pub fn check_pow(
        &self,
        token: &str,
        nonce: &str,
        ip: IpAddr,
        now: SystemTime,
    ) -> Result<(), Reject> {
        let (key, fields) = self.verify(token, "p1", 3)?;
        let [issued, difficulty, ipb] = fields.as_slice() else {
            return Err(Reject::Forged);
        };
        let issued: u64 = issued.parse().map_err(|_| Reject::Forged)?;
        let difficulty: u8 = difficulty.parse().map_err(|_| Reject::Forged)?;
        self.check_issued(issued, now)?;
        if *ipb != self.ip_binding(key, ip) {
            return Err(Reject::WrongIp);
        }
        if nonce.is_empty() || nonce.len() > 20 || !pow::solves(token, nonce, difficulty) {
            return Err(Reject::BadSolution);
        }
        Ok(())
    }

    /// The token of the no-JavaScript form.
    pub fn nojs_token(&self, ip: IpAddr, now: SystemTime) -> String {
        let key = self.keys.signing();
        let body = format!("n1.{}.{}", millis(now), self.ip_binding(key, ip));
        sign(key, body)
    }

    /// Whether the no-JavaScript form may pass now: ours, this client's, waited long enough.
    pub fn check_nojs(&self, token: &str, ip: IpAddr, now: SystemTime) -> Result<(), Reject> {
        let (key, fields) = self.verify(token, "n1", 2)?;
        let [issued, ipb] = fields.as_slice() else {
            return Err(Reject::Forged);
        };
        let issued: u64 = issued.parse().map_err(|_| Reject::Forged)?;
        self.check_issued(issued, now)?;
        if *ipb != self.ip_binding(key, ip) {
            return Err(Reject::WrongIp);
        }
        if millis(now) < self.nojs_ready_at(issued) {
            return Err(Reject::TooEarly);
        }
        Ok(())
    }

    /// What is left of the no-JavaScript form's wait at `now` (zero once it may pass), for
    /// `Retry-After` when `check_nojs` said `TooEarly`; `None` if `token` is not one of ours.
    pub fn nojs_wait_left(&self, token: &str, now: SystemTime) -> Option<Duration> {
        let (_, fields) = self.verify(token, "n1", 2).ok()?;
        let issued: u64 = fields.first()?.parse().ok()?;
        let left = self.nojs_ready_at(issued).saturating_sub(millis(now));
        Some(Duration::from_millis(left))
    }

    /// The time (ms since the epoch) a no-JavaScript token issued at `issued` may pass.
    fn nojs_ready_at(&self, issued: u64) -> u64 {
        issued.saturating_add(ms(self.settings.nojs_wait))
    }

    fn check_issued(&self, issued: u64, now: SystemTime) -> Result<(), Reject> {
        let now = millis(now);
        if issued > now.saturating_add(ms(CLOCK_SKEW)) {
            return Err(Reject::Forged);
        }
        if issued.saturating_add(ms(self.settings.token_ttl)) < now {
            return Err(Reject::Expired);
        }
        Ok(())
    }

    /// The key that signed `value` (of `kind`, with `n` fields between kind and MAC) and
    /// those fields.
    fn verify<'a>(
        &self,
        value: &'a str,
        kind: &str,
        n: usize,
    ) -> Result<(&[u8], Vec<&'a str>), Reject> {
        if value.len() > 512 {
            return Err(Reject::Forged);
        }
        let (body, mac) = value.rsplit_once('.').ok_or(Reject::Forged)?;
        let mac = B64.decode(mac).map_err(|_| Reject::Forged)?;
        let mut parts = body.split('.');
        if parts.next() != Some(kind) {
            return Err(Reject::Forged);
        }
        let fields: Vec<&str> = parts.collect();
        if fields.len() != n {
            return Err(Reject::Forged);
        }
        let key = self
            .keys
            .all()
            .find(|key| {
                let mut m = mac_for(key);
                m.update(body.as_bytes());
                m.verify_slice(&mac).is_ok()
            })
            .ok_or(Reject::Forged)?;
        Ok((key, fields))
    }

    fn ip_binding(&self, key: &[u8], ip: IpAddr) -> String {
        let mut bytes = [0u8; 18];
        let len = match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = self.settings.ipv4_prefix.min(32);
                let masked = u32::from(v4) & mask32(bits);
                bytes[0] = 4;
                bytes[1] = bits;
                bytes[2..6].copy_from_slice(&masked.to_be_bytes());
                6
            }
            IpAddr::V6(v6) => {
                let bits = self.settings.ipv6_prefix.min(128);
                let masked = u128::from(v6) & mask128(bits);
                bytes[0] = 6;
                bytes[1] = bits;
                bytes[2..18].copy_from_slice(&masked.to_be_bytes());
                18
            }
        };
        binding(key, b"ip", bytes.get(..len).unwrap_or(&bytes))
    }
}

fn mask32(bits: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0)
}

fn mask128(bits: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0)
}

fn mac_for(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // `new_from_slice` cannot fail for HMAC; an empty key keeps this total without a panic.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

fn sign(key: &[u8], body: String) -> String {
    let mut m = mac_for(key);
    m.update(body.as_bytes());
    let tag = B64.encode(m.finalize().into_bytes());
    format!("{body}.{tag}")
}

/// A keyed hash of `what` under `label`, shortened: binds without revealing.
fn binding(key: &[u8], label: &[u8], what: &[u8]) -> String {
    let mut m = mac_for(key);
    m.update(label);
    m.update(b"\0");
    m.update(what);
    let full = m.finalize().into_bytes();
    B64.encode(full.get(..BINDING_BYTES).unwrap_or(&full))
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(line: &str) -> Keys {
        Keys::parse(line).unwrap()
    }
    const A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    fn settings() -> Settings {
        Settings {
            cookie_ttl: Duration::from_secs(3600),
            token_ttl: Duration::from_secs(300),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            nojs_wait: Duration::from_secs(5),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cookie_binds_prefix_ua_and_time() {
        let s = Signer::new(keys(A), settings());
        let t = SystemTime::now();
        let c = s.cookie(ip("10.1.2.3"), b"UA", t);
        assert_eq!(s.check_cookie(&c, ip("10.1.2.200"), b"UA", t), Ok(()));
        assert_eq!(s.check_cookie(&c, ip("::ffff:10.1.2.9"), b"UA", t), Ok(()));
        assert_eq!(
            s.check_cookie(&c, ip("10.1.3.3"), b"UA", t),
            Err(Reject::WrongIp)
        );
        assert_eq!(
            s.check_cookie(&c, ip("10.1.2.3"), b"other", t),
            Err(Reject::WrongUa)
        );
        let later = t + Duration::from_secs(3601);
        assert_eq!(
            s.check_cookie(&c, ip("10.1.2.3"), b"UA", later),
            Err(Reject::Expired)
        );
        let v6 = s.cookie(ip("2001:db8:1:2::1"), b"UA", t);
        assert_eq!(
            s.check_cookie(&v6, ip("2001:db8:1:2:ffff::9"), b"UA", t),
            Ok(())
        );
        assert_eq!(
            s.check_cookie(&v6, ip("2001:db8:1:3::1"), b"UA", t),
            Err(Reject::WrongIp)
        );
    }

    #[test]
    fn forgeries_are_forged() {
        let s = Signer::new(keys(A), settings());
        let t = SystemTime::now();
        let c = s.cookie(ip("10.1.2.3"), b"UA", t);
        let other = Signer::new(keys(B), settings()).cookie(ip("10.1.2.3"), b"UA", t);
        // A later expiry with the old MAC.
        let (body, mac) = c.rsplit_once('.').unwrap();
        let mut f: Vec<&str> = body.split('.').collect();
        let far = "99999999999";
        f[1] = far;
        let tampered = format!("{}.{mac}", f.join("."));
        for bad in [
            "",
            "garbage",
            "c1.1.2.3.4",
            other.as_str(),
            tampered.as_str(),
            &c.replacen("c1", "n1", 1),
            &"c".repeat(600),
        ] {
            assert_eq!(
                s.check_cookie(bad, ip("10.1.2.3"), b"UA", t),
                Err(Reject::Forged),
                "{bad}"
            );
        }
        // A token is not a cookie.
        let tok = s.nojs_token(ip("10.1.2.3"), t);
        assert_eq!(
            s.check_cookie(&tok, ip("10.1.2.3"), b"UA", t),
            Err(Reject::Forged)
        );
    }

    #[test]
    fn rotation_keeps_old_cookies() {
        let t = SystemTime::now();
        let old = Signer::new(keys(A), settings()).cookie(ip("10.0.0.1"), b"UA", t);
        let rotated = Signer::new(keys(&format!("{B}\n{A}\n")), settings());
        assert_eq!(rotated.check_cookie(&old, ip("10.0.0.1"), b"UA", t), Ok(()));
        let new = rotated.cookie(ip("10.0.0.1"), b"UA", t);
        let peer = Signer::new(keys(B), settings());
        assert_eq!(peer.check_cookie(&new, ip("10.0.0.1"), b"UA", t), Ok(()));
        assert_eq!(
            Signer::new(keys(A), settings()).check_cookie(&new, ip("10.0.0.1"), b"UA", t),
            Err(Reject::Forged)
        );
    }

    #[test]
    fn pow_checks_token_ip_and_solution() {
        let s = Signer::new(keys(A), settings());
        let t = SystemTime::now();
        let tok = s.pow_token(ip("10.0.0.1"), 8, t);
        let n = pow::solve(&tok, 8);
        assert_eq!(s.check_pow(&tok, &n, ip("10.0.0.1"), t), Ok(()));
        let bad = (0u32..)
            .map(|i| i.to_string())
            .find(|c| !pow::solves(&tok, c, 8))
            .unwrap();
        assert_eq!(
            s.check_pow(&tok, &bad, ip("10.0.0.1"), t),
            Err(Reject::BadSolution)
        );
        assert_eq!(
            s.check_pow(&tok, &n, ip("10.9.0.1"), t),
            Err(Reject::WrongIp)
        );
        assert_eq!(
            s.check_pow(&tok, &n, ip("10.0.0.1"), t + Duration::from_secs(301)),
            Err(Reject::Expired)
        );
        // Lowering the difficulty breaks the MAC.
        let easier = tok.replacen(".8.", ".0.", 1);
        assert_eq!(
            s.check_pow(&easier, "0", ip("10.0.0.1"), t),
            Err(Reject::Forged)
        );
    }

    #[test]
    fn nojs_waits() {
        let s = Signer::new(keys(A), settings());
        let t = SystemTime::now();
        let tok = s.nojs_token(ip("10.0.0.1"), t);
        assert_eq!(
            s.check_nojs(&tok, ip("10.0.0.1"), t + Duration::from_secs(1)),
            Err(Reject::TooEarly)
        );
        assert_eq!(
            s.check_nojs(&tok, ip("10.0.0.1"), t + Duration::from_secs(5)),
            Ok(())
        );
        assert_eq!(
            s.check_nojs(&tok, ip("10.0.1.1"), t + Duration::from_secs(5)),
            Err(Reject::WrongIp)
        );
        let pow = s.pow_token(ip("10.0.0.1"), 1, t);
        assert_eq!(
            s.check_nojs(&pow, ip("10.0.0.1"), t + Duration::from_secs(5)),
            Err(Reject::Forged)
        );
    }

    #[test]
    fn nojs_wait_left_is_what_remains_of_the_wait() {
        let s = Signer::new(keys(A), settings());
        // Whole milliseconds, as the token keeps them.
        let t = UNIX_EPOCH + Duration::from_millis(millis(SystemTime::now()));
        let tok = s.nojs_token(ip("10.0.0.1"), t);
        let left = |after_ms: u64| s.nojs_wait_left(&tok, t + Duration::from_millis(after_ms));
        assert_eq!(left(0), Some(Duration::from_secs(5)));
        assert_eq!(left(3_000), Some(Duration::from_secs(2)));
        assert_eq!(left(4_750), Some(Duration::from_millis(250)));
        assert_eq!(left(5_000), Some(Duration::ZERO));
        assert_eq!(left(60_000), Some(Duration::ZERO));
        let pow = s.pow_token(ip("10.0.0.1"), 1, t);
        assert_eq!(s.nojs_wait_left(&pow, t), None, "not a no-JavaScript token");
        assert_eq!(s.nojs_wait_left("n1.1.x.y", t), None, "not signed by us");
    }
}
