//! The shield's public API, from outside the crate. One module per behaviour.

// A failing test is the point: helpers may unwrap, panic and index too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod flood;
mod headers;
mod keys;

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use holdfast_modules::RequestView;
use holdfast_shield::limit::{LimitKey, Limiter, LimiterSettings};

/// A request's parts, owned, to lend out as a `RequestView`.
pub struct Req {
    pub headers: http::HeaderMap,
    pub ip: IpAddr,
}

impl Req {
    pub fn from(ip: &str) -> Req {
        Req {
            headers: http::HeaderMap::new(),
            ip: ip.parse().unwrap(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers
            .append(name, http::HeaderValue::from_static(value));
        self
    }

    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &http::Method::GET,
            version: http::Version::HTTP_11,
            headers: &self.headers,
            path: "/",
            query: None,
            client_ip: self.ip,
            tls: false,
            route: "all",
        }
    }
}

/// A limiter of `requests` per second on a fake clock (no sleeps).
pub fn limiter(key: LimitKey, requests: u32) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let spec = LimiterSettings::new("t", key, requests, Duration::from_secs(1));
    (Limiter::with_clock(spec, clock.clone()), clock)
}
