//! `Entry`: one stored response — status, headers, the whole body, its freshness facts,
//! the request values it was selected by, and its surrogate keys. Immutable once stored
//! except for two flags: soft-purged, and a background refresh under way.

use crate::policy::{Freshness, Options, Use};
use crate::vary::Selected;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::StatusCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Fields whose values are surrogate keys for purging by tag.
pub static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
pub static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub freshness: Freshness,
    pub selected: Selected,
    pub tags: Box<[Box<str>]>,
    purged: AtomicBool,
    refreshing: AtomicBool,
}

impl Entry {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        freshness: Freshness,
        selected: Selected,
    ) -> Self {
        let tags = tags(&headers);
        Entry {
            status,
            headers,
            body,
            freshness,
            selected,
            tags,
            purged: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
        }
    }

    /// Bytes it costs the memory tier (body, headers and a fixed overhead).
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + 256) as u64
    }

    pub fn has_validator(&self) -> bool {
        self.headers.contains_key(http::header::ETAG)
            || self.headers.contains_key(http::header::LAST_MODIFIED)
    }

    /// How long the memory tier keeps it.
    pub fn keep_for(&self, opts: &Options) -> Duration {
        self.freshness.keep_for(opts, self.has_validator())
    }

    /// Soft purge: from now on it is stale (still usable on error within the ceilings).
    pub fn mark_purged(&self) {
        self.purged.store(true, Ordering::Relaxed);
    }

    pub fn is_purged(&self) -> bool {
        self.purged.load(Ordering::Relaxed)
    }

    /// What it may do for a request (a soft-purged entry must be validated).
    pub fn usable(&self, req: &crate::RequestDirectives, now: SystemTime) -> Use {
        if self.is_purged() {
            return Use::Validate;
        }
        self.freshness.usable(req, now)
    }

    /// Claims the one background refresh; false when one is already running.
    pub fn claim_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    pub fn release_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

pub(crate) fn tags(headers: &HeaderMap) -> Box<[Box<str>]> {
    let mut out: Vec<Box<str>> = Vec::new();
    for field in [&SURROGATE_KEY, &CACHE_TAG] {
        for line in headers.get_all(field) {
            let Ok(line) = line.to_str() else { continue };
            // Surrogate-Key is space-separated, Cache-Tag comma-separated.
            out.extend(
                line.split([' ', ','])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(Box::from),
            );
        }
    }
    out.into_boxed_slice()
}
