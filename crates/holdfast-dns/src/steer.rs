//! Steering: what a steered name answers, decided on each tick from the health of its
//! pools' servers (read through `HealthSource`, written by the edge's health checker) and
//! published as an immutable `Answer` the query path reads without a lock.
//!
//! Static stability: an answer is never empty. With every target down the name keeps its
//! last healthy set (or every target, by config) and `empty_answer_prevented` is counted.
//! A target that comes back is answered again only after `hold_down`; a shrink of the
//! answer set within one pool removes at most `max_shrink_percent` of it per step.

use crate::overrides::Force;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record};
use holdfast_config::{SteerPolicy, Steered, WhenAllDown};
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a steered name's health comes from: the servers of a pool, each with whether the
/// active checks hold it down. The binary reads the edge's current `State`.
pub trait HealthSource: Send + Sync + 'static {
    /// `None`: no such pool (it was removed by a reload).
    fn servers(&self, pool: &str) -> Option<Vec<(IpAddr, bool)>>;
}

/// Shrinks within one pool go at most one step per this interval.
pub const SHRINK_STEP: Duration = Duration::from_secs(1);

/// One group of addresses a query may be answered with (weighted: one per pool).
#[derive(Debug)]
pub struct Group {
    pub weight: u32,
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
    /// A CNAME to a provider's hostname: the answer for every query type.
    pub cname: Option<Record>,
}

/// The published decision for one name.
#[derive(Debug)]
pub struct Answer {
    pub groups: Vec<Group>,
    pub ttl: u32,
    pub ips: Vec<IpAddr>,
    /// The provider hostname answered as a CNAME, when the chosen pool has one.
    pub cname: Option<String>,
    /// Why this answer: `healthy`, `failover to pool X`, `all down: last healthy set`...
    pub reason: String,
    pick: AtomicU64,
}

impl Answer {
    /// The group this query gets: weighted round robin over the groups.
    pub fn group(&self) -> Option<&Group> {
        let total: u64 = self.groups.iter().map(|g| u64::from(g.weight)).sum();
        if total == 0 {
            return self.groups.first();
        }
        let mut n = self.pick.fetch_add(1, Ordering::Relaxed) % total;
        for g in &self.groups {
            let w = u64::from(g.weight);
            if n < w {
                return Some(g);
            }
            n -= w;
        }
        self.groups.first()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub pool: String,
    pub ip: IpAddr,
    pub healthy: bool,
    /// Healthy and past its hold-down: may be answered.
    pub eligible: bool,
    /// An operator override, if any (already applied to `healthy`).
    pub forced: Option<Force>,
}

#[derive(Debug, Clone, Copy)]
struct Track {
    /// Set when the target was seen down; cleared once it is eligible again.
    was_down: bool,
    healthy_since: Option<Instant>,
}

/// The steering state of one name. Only the steering task touches it.
pub struct Steerer {
    pub config: Steered,
    pub owner: Name,
    tracks: HashMap<(usize, IpAddr), Track>,
    current: Vec<(usize, IpAddr)>,
    last_healthy: Vec<(usize, IpAddr)>,
    last_shrink: Option<Instant>,
    /// Every target was down at the last tick.
    all_down: bool,
    /// An answer was published: the next tick may change it (the first publish is no change).
    published: bool,
    pub targets: Vec<TargetStatus>,
}

/// What one tick decided.
pub struct Decision {
    pub answer: Answer,
    /// Every target is down and the fallback is answered.
    pub prevented_empty: bool,
    /// ... and was not at the previous tick: count it once per outage.
    pub prevented_started: bool,
    /// The answer set changed since the previous tick (never on the first tick: publishing
    /// the first answer at start is not a change).
    pub changed: bool,
}

impl Steerer {
    pub fn new(config: Steered, owner: Name) -> Self {
        Steerer {
            config,
            owner,
            tracks: HashMap::new(),
            current: Vec::new(),
            last_healthy: Vec::new(),
            last_shrink: None,
            all_down: false,
            published: false,
            targets: Vec::new(),
        }
    }

    /// Decide the answer now.
    pub fn tick(
        &mut self,
        health: &dyn HealthSource,
        forced: &BTreeMap<IpAddr, Force>,
        now: Instant,
    ) -> Decision {
        let pools = self.observe(health, forced, now);
        let eligible = |with_drained: bool| -> Vec<Vec<IpAddr>> {
            pools
                .iter()
                .map(|targets| {
                    targets
                        .iter()
                        .filter(|t| t.eligible && (with_drained || t.forced != Some(Force::Drain)))
                        .map(|t| t.ip)
                        .collect()
                })
                .collect()
        };
        let all: Vec<(usize, IpAddr)> = pools
            .iter()
            .enumerate()
            .flat_map(|(i, ts)| ts.iter().map(move |t| (i, t.ip)))
            .collect();
        let (mut wanted, mut reason, mut failover) = self.wanted(&eligible(false));
        if wanted.is_empty() {
            let (drained, _, f) = self.wanted(&eligible(true));
            if !drained.is_empty() {
                wanted = drained;
                failover = f;
                reason = "only drained targets are healthy: answering them".into();
            }
        }
        let mut prevented_empty = false;
        if wanted.is_empty() {
            prevented_empty = true;
            let (set, why) = match self.config.when_all_down {
                WhenAllDown::LastHealthy if !self.last_healthy.is_empty() => (
                    self.last_healthy.clone(),
                    "every target down: the last healthy set",
                ),
                _ => (all.clone(), "every target down: all targets"),
            };
            wanted = set;
            reason = why.to_string();
        } else {
            self.last_healthy = wanted.clone();
            wanted = self.limit_shrink(wanted, &mut reason, now);
        }
        let prevented_started = prevented_empty && !self.all_down;
        self.all_down = prevented_empty;
        let changed = self.published && wanted != self.current;
        self.published = true;
        self.current = wanted;
        let ttl = if failover || prevented_empty {
            self.config.failover_ttl
        } else {
            self.config.ttl
        };
        Decision {
            answer: self.answer(ttl, reason),
            prevented_empty,
            prevented_started,
            changed,
        }
    }

    /// Read every target's health and update its hold-down track.
    fn observe(
        &mut self,
        health: &dyn HealthSource,
        forced: &BTreeMap<IpAddr, Force>,
        now: Instant,
    ) -> Vec<Vec<TargetStatus>> {
        let hold_down = self.config.hold_down;
        let mut pools = Vec::new();
        let mut seen = Vec::new();
        for (i, name) in self.config.pools.iter().enumerate() {
            let servers = health.servers(name).unwrap_or_default();
            let mut targets = Vec::new();
            for (ip, checked_down) in servers {
                seen.push((i, ip));
                let force = forced.get(&ip).copied();
                let down = match force {
                    Some(Force::Up) => false,
                    Some(Force::Down) => true,
                    _ => checked_down,
                };
                let track = self.tracks.entry((i, ip)).or_insert(Track {
                    was_down: false,
                    healthy_since: Some(now),
                });
                if down {
                    track.was_down = true;
                    track.healthy_since = None;
                } else if track.healthy_since.is_none() {
                    track.healthy_since = Some(now);
                }
                // An operator's `up` skips the hold-down too.
                let held = force != Some(Force::Up)
                    && track.was_down
                    && track
                        .healthy_since
                        .is_none_or(|since| now.saturating_duration_since(since) < hold_down);
                if !down && !held {
                    track.was_down = false;
                }
                targets.push(TargetStatus {
                    pool: name.clone(),
                    ip,
                    healthy: !down,
                    eligible: !down && !held,
                    forced: force,
                });
            }
            pools.push(targets);
        }
        self.tracks.retain(|k, _| seen.contains(k));
        self.targets = pools.iter().flatten().cloned().collect();
        pools
    }

    /// The set the policy wants from the eligible targets, why, and whether it is a failover.
    fn wanted(&self, eligible: &[Vec<IpAddr>]) -> (Vec<(usize, IpAddr)>, String, bool) {
        fn tag(i: usize, ips: &[IpAddr]) -> impl Iterator<Item = (usize, IpAddr)> + '_ {
            ips.iter().map(move |ip| (i, *ip))
        }
        match self.config.policy {
            SteerPolicy::Failover => {
                match eligible.iter().enumerate().find(|(_, ips)| !ips.is_empty()) {
                    Some((0, ips)) => (tag(0, ips).collect(), "healthy".into(), false),
                    Some((i, ips)) => {
                        let pool = self.config.pools.get(i).cloned().unwrap_or_default();
                        (
                            tag(i, ips).collect(),
                            format!("failover to pool {pool:?}: every earlier pool is down"),
                            true,
                        )
                    }
                    None => (Vec::new(), String::new(), true),
                }
            }
            SteerPolicy::Weighted | SteerPolicy::AllHealthy => {
                let set: Vec<(usize, IpAddr)> = eligible
                    .iter()
                    .enumerate()
                    .flat_map(|(i, ips)| tag(i, ips))
                    .collect();
                let missing = eligible.iter().any(Vec::is_empty);
                let reason = if missing {
                    "healthy targets only (a pool is down)"
                } else {
                    "healthy"
                };
                (set, reason.into(), missing)
            }
        }
    }

    /// A shrink of the current set (same targets minus some) goes in steps.
    fn limit_shrink(
        &mut self,
        wanted: Vec<(usize, IpAddr)>,
        reason: &mut String,
        now: Instant,
    ) -> Vec<(usize, IpAddr)> {
        let current = &self.current;
        let is_shrink = !current.is_empty()
            && wanted.len() < current.len()
            && wanted.iter().all(|t| current.contains(t));
        if !is_shrink || self.config.max_shrink_percent >= 100 {
            return wanted;
        }
        let step = (current.len() * self.config.max_shrink_percent as usize)
            .div_ceil(100)
            .max(1);
        let due = self
            .last_shrink
            .is_none_or(|at| now.saturating_duration_since(at) >= SHRINK_STEP);
        let removable = if due { step } else { 0 };
        let to_remove = current.len() - wanted.len();
        if to_remove <= removable {
            self.last_shrink = Some(now);
            return wanted;
        }
        if due {
            self.last_shrink = Some(now);
        }
        let mut dropped = 0;
        let kept: Vec<(usize, IpAddr)> = current
            .iter()
            .filter(|t| {
                if !wanted.contains(t) && dropped < removable {
                    dropped += 1;
                    return false;
                }
                true
            })
            .copied()
            .collect();
        *reason = format!(
            "shrinking in steps of {step} (max_shrink_percent {}): {} of {} to go",
            self.config.max_shrink_percent,
            kept.len() - wanted.len(),
            to_remove
        );
        kept
    }

    fn answer(&self, ttl: u32, reason: String) -> Answer {
        let weighted = self.config.policy == SteerPolicy::Weighted;
        let cname_of = |i: usize| self.config.cnames.get(i).cloned().flatten();
        let mut groups: Vec<Group> = Vec::new();
        let mut ips = Vec::new();
        let mut cname = None;
        if weighted {
            for (i, weight) in self.config.weights.iter().enumerate() {
                let members: Vec<IpAddr> = self
                    .current
                    .iter()
                    .filter(|(p, _)| *p == i)
                    .map(|(_, ip)| *ip)
                    .collect();
                if !members.is_empty() {
                    groups.push(self.group(*weight, &members, cname_of(i), ttl));
                    ips.extend(members);
                }
            }
        } else if let Some((first, _)) = self.current.first() {
            // One group. A CNAME cannot stand beside addresses: the first pool's CNAME if it
            // has one, else the addresses of the pools without one.
            let host = cname_of(*first);
            let members: Vec<IpAddr> = self
                .current
                .iter()
                .filter(|(p, _)| match host {
                    Some(_) => *p == *first,
                    None => cname_of(*p).is_none(),
                })
                .map(|(_, ip)| *ip)
                .collect();
            cname.clone_from(&host);
            groups.push(self.group(1, &members, host, ttl));
            ips = members;
        }
        if weighted {
            cname = groups
                .iter()
                .find_map(|g| g.cname.as_ref())
                .and_then(|r| match &r.data {
                    RData::CNAME(c) => Some(c.0.to_string()),
                    _ => None,
                });
        }
        Answer {
            groups,
            ttl,
            ips,
            cname,
            reason,
            pick: AtomicU64::new(0),
        }
    }

    fn group(&self, weight: u32, ips: &[IpAddr], cname: Option<String>, ttl: u32) -> Group {
        let cname = cname
            .and_then(|host| Name::from_ascii(host).ok())
            .map(|target| Record::from_rdata(self.owner.clone(), ttl, RData::CNAME(CNAME(target))));
        if cname.is_some() {
            return Group {
                weight,
                a: Vec::new(),
                aaaa: Vec::new(),
                cname,
            };
        }
        let mut a = Vec::new();
        let mut aaaa = Vec::new();
        for ip in ips {
            match ip {
                IpAddr::V4(v4) => a.push(Record::from_rdata(
                    self.owner.clone(),
                    ttl,
                    RData::A(A(*v4)),
                )),
                IpAddr::V6(v6) => aaaa.push(Record::from_rdata(
                    self.owner.clone(),
                    ttl,
                    RData::AAAA(AAAA(*v6)),
                )),
            }
        }
        Group {
            weight,
            a,
            aaaa,
            cname: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Fake(Mutex<HashMap<String, Vec<(IpAddr, bool)>>>);

    impl HealthSource for Fake {
        fn servers(&self, pool: &str) -> Option<Vec<(IpAddr, bool)>> {
            self.0.lock().unwrap().get(pool).cloned()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fake(pools: &[(&str, &[(&str, bool)])]) -> Fake {
        Fake(Mutex::new(
            pools
                .iter()
                .map(|(n, s)| (n.to_string(), s.iter().map(|(a, d)| (ip(a), *d)).collect()))
                .collect(),
        ))
    }

    fn set(f: &Fake, pool: &str, addr: &str, down: bool) {
        let mut m = f.0.lock().unwrap();
        for s in m.get_mut(pool).unwrap() {
            if s.0 == ip(addr) {
                s.1 = down;
            }
        }
    }

    fn steered(policy: SteerPolicy, pools: &[&str]) -> Steered {
        Steered {
            name: "www.example.test.".into(),
            zone: 0,
            policy,
            pools: pools.iter().map(|p| p.to_string()).collect(),
            weights: vec![1; pools.len()],
            ttl: 30,
            failover_ttl: 5,
            hold_down: Duration::from_secs(10),
            when_all_down: WhenAllDown::LastHealthy,
            max_shrink_percent: 100,
            cnames: vec![None; pools.len()],
        }
    }

    fn steerer(c: Steered) -> Steerer {
        Steerer::new(c, Name::from_ascii("www.example.test.").unwrap())
    }

    #[test]
    fn failover_answers_the_first_pool_with_a_healthy_server_and_lowers_the_ttl() {
        let f = fake(&[
            ("primary", &[("127.0.0.2", false)]),
            ("secondary", &[("127.0.0.3", false)]),
        ]);
        let mut s = steerer(steered(SteerPolicy::Failover, &["primary", "secondary"]));
        let t0 = Instant::now();
        let d = s.tick(&f, &BTreeMap::new(), t0);
        assert_eq!(d.answer.ips, [ip("127.0.0.2")]);
        assert_eq!(d.answer.ttl, 30);
        assert!(!d.changed, "the first publish is not a change");
        let d = s.tick(&f, &BTreeMap::new(), t0);
        assert!(!d.changed, "the same answer again");
        set(&f, "primary", "127.0.0.2", true);
        let d = s.tick(&f, &BTreeMap::new(), t0 + Duration::from_secs(1));
        assert_eq!(d.answer.ips, [ip("127.0.0.3")]);
        assert_eq!(d.answer.ttl, 5);
        assert!(d.changed);
        // Back, but held down for 10 s.
        set(&f, "primary", "127.0.0.2", false);
        let d = s.tick(&f, &BTreeMap::new(), t0 + Duration::from_secs(2));
        assert_eq!(d.answer.ips, [ip("127.0.0.3")]);
        let d = s.tick(&f, &BTreeMap::new(), t0 + Duration::from_secs(11));
        assert_eq!(d.answer.ips, [ip("127.0.0.3")], "9 s into the hold-down");
        let d = s.tick(&f, &BTreeMap::new(), t0 + Duration::from_secs(12));
        assert_eq!(d.answer.ips, [ip("127.0.0.2")]);
    }

    #[test]
    fn overrides_force_targets_and_drain_keeps_them_as_a_last_resort() {
        let f = fake(&[
            ("primary", &[("127.0.0.2", false)]),
            ("secondary", &[("127.0.0.3", true)]),
        ]);
        let mut s = steerer(steered(SteerPolicy::Failover, &["primary", "secondary"]));
        let now = Instant::now();
        let mut forced = BTreeMap::new();
        forced.insert(ip("127.0.0.2"), Force::Drain);
        let d = s.tick(&f, &forced, now);
        assert_eq!(d.answer.ips, [ip("127.0.0.2")], "nothing else is healthy");
        assert!(d.answer.reason.contains("drained"), "{}", d.answer.reason);
        forced.insert(ip("127.0.0.3"), Force::Up);
        let d = s.tick(&f, &forced, now);
        assert_eq!(d.answer.ips, [ip("127.0.0.3")]);
        forced.insert(ip("127.0.0.2"), Force::Down);
        forced.insert(ip("127.0.0.3"), Force::Down);
        let d = s.tick(&f, &forced, now);
        assert!(
            d.prevented_empty,
            "forced down everywhere is still never empty"
        );
        assert!(!d.answer.ips.is_empty());
    }

    #[test]
    fn a_pool_with_a_cname_is_answered_as_that_cname() {
        let f = fake(&[
            ("primary", &[("127.0.0.2", true)]),
            ("cdn", &[("127.0.0.3", false)]),
        ]);
        let mut c = steered(SteerPolicy::Failover, &["primary", "cdn"]);
        c.cnames = vec![None, Some("edge.cdn.example.".into())];
        let d = steerer(c).tick(&f, &BTreeMap::new(), Instant::now());
        let g = d.answer.group().unwrap();
        assert!(g.a.is_empty());
        assert_eq!(
            g.cname.as_ref().map(|r| r.data.clone()),
            Some(RData::CNAME(CNAME(
                Name::from_ascii("edge.cdn.example.").unwrap()
            )))
        );
        assert_eq!(d.answer.cname.as_deref(), Some("edge.cdn.example."));
    }

    #[test]
    fn only_healthy_servers_of_the_pool_are_answered() {
        let f = fake(&[("primary", &[("127.0.0.2", false), ("127.0.0.4", true)])]);
        let mut s = steerer(steered(SteerPolicy::Failover, &["primary"]));
        let d = s.tick(&f, &BTreeMap::new(), Instant::now());
        assert_eq!(d.answer.ips, [ip("127.0.0.2")]);
    }

    #[test]
    fn all_down_keeps_the_last_healthy_set_and_counts_it() {
        let f = fake(&[
            ("primary", &[("127.0.0.2", false)]),
            ("secondary", &[("127.0.0.3", false)]),
        ]);
        let mut s = steerer(steered(SteerPolicy::Failover, &["primary", "secondary"]));
        let t0 = Instant::now();
        s.tick(&f, &BTreeMap::new(), t0);
        set(&f, "primary", "127.0.0.2", true);
        set(&f, "secondary", "127.0.0.3", true);
        let d = s.tick(&f, &BTreeMap::new(), t0 + Duration::from_secs(1));
        assert!(d.prevented_empty);
        assert_eq!(d.answer.ips, [ip("127.0.0.2")]);
        assert!(
            d.answer.reason.contains("last healthy"),
            "{}",
            d.answer.reason
        );
    }

    #[test]
    fn all_down_can_answer_every_target() {
        let f = fake(&[
            ("primary", &[("127.0.0.2", true)]),
            ("secondary", &[("127.0.0.3", true)]),
        ]);
        let mut c = steered(SteerPolicy::Failover, &["primary", "secondary"]);
        c.when_all_down = WhenAllDown::All;
        let d = steerer(c).tick(&f, &BTreeMap::new(), Instant::now());
        assert!(d.prevented_empty);
        assert_eq!(d.answer.ips.len(), 2);
    }

    #[test]
    fn all_healthy_answers_every_healthy_server() {
        let f = fake(&[
            ("a", &[("127.0.0.2", false), ("127.0.0.3", true)]),
            ("b", &[("127.0.0.4", false)]),
        ]);
        let mut s = steerer(steered(SteerPolicy::AllHealthy, &["a", "b"]));
        let d = s.tick(&f, &BTreeMap::new(), Instant::now());
        assert_eq!(d.answer.ips, [ip("127.0.0.2"), ip("127.0.0.4")]);
        assert_eq!(d.answer.groups.len(), 1);
        assert_eq!(d.answer.groups[0].a.len(), 2);
    }

    #[test]
    fn weighted_picks_pools_by_weight() {
        let f = fake(&[
            ("a", &[("127.0.0.2", false)]),
            ("b", &[("127.0.0.3", false)]),
        ]);
        let mut c = steered(SteerPolicy::Weighted, &["a", "b"]);
        c.weights = vec![3, 1];
        let d = steerer(c).tick(&f, &BTreeMap::new(), Instant::now());
        let picks: Vec<usize> = (0..8)
            .map(|_| d.answer.group().unwrap().weight as usize)
            .collect();
        assert_eq!(picks.iter().filter(|w| **w == 3).count(), 6);
        assert_eq!(picks.iter().filter(|w| **w == 1).count(), 2);
    }

    #[test]
    fn a_sharp_shrink_goes_in_steps() {
        let servers: Vec<(String, bool)> =
            (2..12).map(|i| (format!("127.0.0.{i}"), false)).collect();
        let refs: Vec<(&str, bool)> = servers.iter().map(|(a, d)| (a.as_str(), *d)).collect();
        let f = fake(&[("a", &refs)]);
        let mut c = steered(SteerPolicy::AllHealthy, &["a"]);
        c.max_shrink_percent = 30;
        let mut s = steerer(c);
        let t0 = Instant::now();
        s.tick(&f, &BTreeMap::new(), t0);
        for i in 2..10 {
            set(&f, "a", &format!("127.0.0.{i}"), true);
        }
        let sizes: Vec<usize> = (1..=4)
            .map(|k| {
                s.tick(&f, &BTreeMap::new(), t0 + SHRINK_STEP * k)
                    .answer
                    .ips
                    .len()
            })
            .collect();
        assert_eq!(sizes, [7, 4, 2, 2]);
    }
}
