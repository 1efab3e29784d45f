//! What a `[[limits]]` entry says.

use std::time::Duration;

/// `max_keys` when the config does not say.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// The longest a full burst may take to refill (`burst × per / requests`): 366 days. Longer
/// limits are rejected by [`LimiterSettings::errors`] (and clamped by `Limiter::new`) so that
/// governor's nanosecond arithmetic cannot overflow.
pub const MAX_REFILL: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest limit name (it is sent in headers).
pub const MAX_NAME_LEN: usize = 128;

/// What requests are counted together: the config's key, used as it is.
pub use holdfast_config::LimitKey;

/// One `[[limits]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    pub name: String,
    pub key: LimitKey,
    /// Requests per `per`, on average (≥ 1).
    pub requests: u32,
    /// The period `requests` are counted over (> 0).
    pub per: Duration,
    /// Requests allowed at once (≥ 1; default `requests`).
    pub burst: u32,
    /// Count and report, never deny.
    pub shadow: bool,
    /// The cap of the key table (default [`DEFAULT_MAX_KEYS`]; ≥ 2, half per generation).
    pub max_keys: usize,
}

impl LimiterSettings {
    /// A limit with the defaults: `burst = requests`, enforced, [`DEFAULT_MAX_KEYS`].
    pub fn new(name: impl Into<String>, key: LimitKey, requests: u32, per: Duration) -> Self {
        LimiterSettings {
            name: name.into(),
            key,
            requests,
            per,
            burst: requests,
            shadow: false,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }

    /// Every problem of this spec (empty: valid). `Limiter::new` accepts any spec and clamps
    /// what is out of range; config validation should reject with these instead.
    pub fn errors(&self) -> Vec<LimitSpecError> {
        let mut errors = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.name.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if !name_ok {
            errors.push(LimitSpecError::Name);
        }
        if let LimitKey::Cookie(c) = &self.key {
            // RFC 6265 cookie-name: a token.
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if c.is_empty() || !c.bytes().all(token) {
                errors.push(LimitSpecError::CookieName);
            }
        }
        if self.requests == 0 {
            errors.push(LimitSpecError::Requests);
        }
        if self.per.is_zero() {
            errors.push(LimitSpecError::Per);
        }
        if self.burst == 0 {
            errors.push(LimitSpecError::Burst);
        }
        if self.max_keys < 2 {
            errors.push(LimitSpecError::MaxKeys);
        }
        if self.requests > 0 && !self.per.is_zero() {
            let refill = self
                .per
                .as_nanos()
                .saturating_mul(u128::from(self.burst.max(1)))
                / u128::from(self.requests);
            if refill > MAX_REFILL.as_nanos() {
                errors.push(LimitSpecError::TooSlow);
            }
        }
        errors
    }
}

/// A problem of a [`LimiterSettings`]; [`LimitSpecError::field`] names the config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitSpecError {
    #[error("must be 1 to 128 printable ASCII characters")]
    Name,
    #[error("must be a cookie name (an RFC 6265 token)")]
    CookieName,
    #[error("must be at least 1")]
    Requests,
    #[error("must be longer than zero")]
    Per,
    #[error("must be at least 1")]
    Burst,
    #[error("must be at least 2")]
    MaxKeys,
    #[error("a full burst would take more than 366 days to refill (burst × per / requests)")]
    TooSlow,
}

impl LimitSpecError {
    /// The `[[limits]]` key the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            LimitSpecError::Name => "name",
            LimitSpecError::CookieName => "key",
            LimitSpecError::Requests => "requests",
            LimitSpecError::Per | LimitSpecError::TooSlow => "per",
            LimitSpecError::Burst => "burst",
            LimitSpecError::MaxKeys => "max_keys",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_valid_spec() {
        let s = LimiterSettings::new("per-ip", LimitKey::ClientIp, 5, Duration::from_secs(1));
        assert_eq!(s.burst, 5);
        assert!(!s.shadow);
        assert_eq!(s.max_keys, DEFAULT_MAX_KEYS);
        assert!(s.errors().is_empty());
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let s = LimiterSettings {
            name: String::new(),
            key: LimitKey::Cookie("a b".into()),
            requests: 0,
            per: Duration::ZERO,
            burst: 0,
            shadow: false,
            max_keys: 1,
        };
        let fields: Vec<_> = s.errors().iter().map(LimitSpecError::field).collect();
        assert_eq!(
            fields,
            ["name", "key", "requests", "per", "burst", "max_keys"]
        );
        let mut s = LimiterSettings::new("x\u{7f}", LimitKey::ClientIp, 1, Duration::from_secs(1));
        assert_eq!(s.errors(), [LimitSpecError::Name]);
        s.name = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(s.errors(), [LimitSpecError::Name]);
        s.name = "per ip \"quoted\"".into();
        assert!(s.errors().is_empty());
    }

    #[test]
    fn refill_longer_than_a_year_is_rejected() {
        let day = Duration::from_secs(24 * 3600);
        let mut s = LimiterSettings::new("slow", LimitKey::Route, 1, day * 366);
        assert!(s.errors().is_empty());
        s.per = day * 367;
        assert_eq!(s.errors(), [LimitSpecError::TooSlow]);
        // 10 a day with a burst of 5000: 500 days to refill.
        let mut s = LimiterSettings::new("slow", LimitKey::Route, 10, day);
        s.burst = 5000;
        assert_eq!(s.errors(), [LimitSpecError::TooSlow]);
    }
}
