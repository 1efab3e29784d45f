//! RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers).

use std::time::Duration;

use governor::clock::FakeRelativeClock;
use holdfast_shield::limit::{LimitDecision, LimitKey, Limiter, LimiterSettings};

fn named(name: &str, requests: u32, per: Duration) -> Limiter<FakeRelativeClock> {
    let spec = LimiterSettings::new(name, LimitKey::ClientIp, requests, per);
    Limiter::with_clock(spec, FakeRelativeClock::default())
}

#[test]
fn policy() {
    let s = Duration::from_secs;
    assert_eq!(
        named("per-ip", 5, s(1)).policy_header(),
        "\"per-ip\";q=5;w=1"
    );
    assert_eq!(
        named("api", 1000, s(3600)).policy_header(),
        "\"api\";q=1000;w=3600"
    );
    // Sub-second periods are scaled to a whole second.
    assert_eq!(
        named("fast", 5, Duration::from_millis(500)).policy_header(),
        "\"fast\";q=10;w=1"
    );
    // The name is an sf-string.
    assert_eq!(
        named("a \"b\"\\", 1, s(1)).policy_header(),
        r#""a \"b\"\\";q=1;w=1"#
    );
}

#[test]
fn ratelimit_follows_the_decisions() {
    let l = named("per-ip", 5, Duration::from_secs(1));
    let h = |d: &LimitDecision| {
        l.ratelimit_header(d)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(h(&l.check_key(1)).unwrap());
    }
    assert_eq!(
        seen,
        [
            "\"per-ip\";r=4;t=1",
            "\"per-ip\";r=3;t=1",
            "\"per-ip\";r=2;t=1",
            "\"per-ip\";r=1;t=1",
            "\"per-ip\";r=0;t=1",
            "\"per-ip\";r=0;t=1",
        ]
    );
    assert_eq!(h(&LimitDecision::NoKey), None);
    assert_eq!(h(&LimitDecision::Shadow), None);
    // t rounds up: 1 per minute, burst 3, all used: 3 minutes to a full burst.
    let mut spec = LimiterSettings::new("slow", LimitKey::ClientIp, 1, Duration::from_secs(60));
    spec.burst = 3;
    let l = Limiter::with_clock(spec, FakeRelativeClock::default());
    for (r, t) in [(2, 60), (1, 120), (0, 180)] {
        let d = l.check_key(7);
        assert_eq!(
            l.ratelimit_header(&d).unwrap(),
            format!("\"slow\";r={r};t={t}").as_str()
        );
    }
    let d = l.check_key(7);
    assert_eq!(d.retry_after_header().unwrap(), "60");
    assert_eq!(l.ratelimit_header(&d).unwrap(), "\"slow\";r=0;t=180");
}
