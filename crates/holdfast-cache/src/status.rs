//! The RFC 9211 `Cache-Status` field value this cache adds to every response of a cached
//! route: `holdfast; hit; ttl=42`, `holdfast; fwd=uri-miss; stored; ttl=60`,
//! `holdfast; fwd=stale; fwd-status=304`, ... .

use http::HeaderValue;

pub static CACHE_STATUS: http::HeaderName = http::HeaderName::from_static("cache-status");

/// Why the request went forward (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    UriMiss,
    VaryMiss,
    Stale,
    Request,
    Bypass,
    Method,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Stale => "stale",
            Fwd::Request => "request",
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
        }
    }
}

/// One `Cache-Status` member, built up by the cache phase.
#[derive(Debug, Clone, Default)]
pub struct CacheStatus {
    pub hit: bool,
    pub fwd: Option<Fwd>,
    pub fwd_status: Option<u16>,
    pub stored: bool,
    pub collapsed: bool,
    pub ttl: Option<i64>,
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    pub fn hit(ttl: i64) -> Self {
        CacheStatus {
            hit: true,
            ttl: Some(ttl),
            ..CacheStatus::default()
        }
    }

    pub fn fwd(fwd: Fwd) -> Self {
        CacheStatus {
            fwd: Some(fwd),
            ..CacheStatus::default()
        }
    }

    pub fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn to_header(&self) -> HeaderValue {
        let mut s = String::with_capacity(48);
        s.push_str("holdfast");
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            s.push_str("; fwd=");
            s.push_str(f.as_str());
        }
        if let Some(code) = self.fwd_status {
            s.push_str("; fwd-status=");
            s.push_str(itoa::Buffer::new().format(code));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            s.push_str("; ttl=");
            s.push_str(itoa::Buffer::new().format(ttl));
        }
        if let Some(d) = self.detail {
            s.push_str("; detail=");
            s.push_str(d);
        }
        HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("holdfast"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_members_in_rfc_order() {
        assert_eq!(CacheStatus::hit(42).to_header(), "holdfast; hit; ttl=42");
        let mut s = CacheStatus::fwd(Fwd::UriMiss);
        s.stored = true;
        s.ttl = Some(60);
        assert_eq!(s.to_header(), "holdfast; fwd=uri-miss; stored; ttl=60");
        let mut s = CacheStatus::fwd(Fwd::Stale).detail("stale-if-error");
        s.fwd_status = Some(503);
        assert_eq!(
            s.to_header(),
            "holdfast; fwd=stale; fwd-status=503; detail=stale-if-error"
        );
    }
}
