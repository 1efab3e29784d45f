//! `holdfast_challenge_*`, registered once per process.

use super::*;

/// `holdfast_challenge_*`, registered once per process.
#[derive(Clone)]
pub(super) struct ChallengeMetrics {
    pub(super) issued: IntCounterVec,
    pub(super) solved: IntCounterVec,
    pub(super) passed: IntCounter,
    pub(super) rejected: IntCounterVec,
    pub(super) loops: IntCounter,
    pub(super) fail_open: IntCounter,
}

impl ChallengeMetrics {
    pub(super) fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let vec =
            |name: &str, help: &str, label: &str| -> Result<IntCounterVec, prometheus::Error> {
                let v = IntCounterVec::new(prometheus::Opts::new(name, help), &[label])?;
                registry.register(Box::new(v.clone()))?;
                Ok(v)
            };
        let one = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let rejected = vec(
            "holdfast_challenge_rejected_total",
            "Cookies, tokens and solutions refused, by reason (forged, expired, wrong_ip, \
             wrong_ua, bad_solution, too_early).",
            "reason",
        )?;
        for r in Reject::ALL {
            rejected.with_label_values(&[r.as_str()]);
        }
        Ok(ChallengeMetrics {
            issued: vec(
                "holdfast_challenge_issued_total",
                "Challenges answered, by format (html: the page; json: a 403 for an API client).",
                "format",
            )?,
            solved: vec(
                "holdfast_challenge_solved_total",
                "Challenges passed (a pass cookie set), by method (pow, nojs).",
                "method",
            )?,
            passed: one(
                "holdfast_challenge_passed_total",
                "Requests a challenge rule matched that passed on a valid cookie.",
            )?,
            rejected,
            loops: one(
                "holdfast_challenge_loop_pages_total",
                "Clients that passed but came back without the cookie (cookies blocked?): \
                 shown an explanation instead of another challenge.",
            )?,
            fail_open: one(
                "holdfast_challenge_fail_open_total",
                "Requests let through a failing challenge because their route is critical.",
            )?,
        })
    }
}
