//! Seeded simulation of a route's upstream decisions (`holdfast-sim`): real `Pool`s of real
//! `Server`s behind a real `Chain`, on a virtual clock (`outlier::sim_clock`). Servers go up,
//! down and flaky (partitions), active checks run on each server's interval, requests pick a
//! server and report their outcome (passive ejection), the clock jumps, and the pools are
//! rebuilt over the same servers as a reload does (restarts). After every event: no pool has
//! more servers ejected than `max_ejection_percent` allows; a pool with servers always gives
//! a pick (panic mode, `unknown` as healthy: health alone never refuses a request); the
//! chain picks the first pool that is not down, else its fallback, else its first pool; a
//! verdict matches the streak of check results that led to it; no ejection outlasts
//! `max_ejection`. Replay a seed with `SIM_SEED=N cargo test -p holdfast-proxy --lib
//! upstream::sim`.

use super::chain::{Chain, FallbackRt, Target};
use super::health::{CheckResult, Checked};
use super::outlier::{now_nanos, sim_clock, Member};
use super::pool::{Picked, Pool, PoolParts};
use super::server::Server;
use super::{test_retry, Balancer, RetryBudget};
use holdfast_config::{CheckKind, HealthCheck, Outlier};
use holdfast_sim::{assert_seeds, Failure, Rng, Sim};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const REPLAY: &str = "cargo test -p holdfast-proxy --lib upstream::sim";
const MS: u64 = 1_000_000;
/// The virtual clock starts here: 0 means "never" on the passive-health time line.
const START: u64 = 1_000 * MS;

#[derive(Debug)]
enum Event {
    Request,
    Check {
        pool: usize,
        server: usize,
    },
    /// Server `server` of `pool` now fails this share (%) of requests and checks.
    Partition {
        pool: usize,
        server: usize,
        fail: u64,
    },
    Jump(Duration),
    /// Rebuild the pools and the chain over the same servers (a reload).
    Restart,
}

/// What the simulation knows of one server besides the code's own state.
struct Truth {
    fail: u64,
    /// Check results in a row, for the verdict invariant: (passes, failures).
    streak: (u32, u32),
}

struct Run {
    rng: Rng,
    sim: Sim<Event>,
    metrics: crate::metrics::Metrics,
    outlier: Outlier,
    panic_threshold: u32,
    check: HealthCheck,
    servers: Vec<Vec<Arc<Server>>>,
    truth: Vec<Vec<Truth>>,
    pools: Vec<Arc<Pool>>,
    chain: Chain,
    has_fallback: bool,
    /// Requests the chain sent elsewhere than its first pool.
    moved: u64,
    trace: Vec<String>,
}

/// What all seeds did, so the test shows the runs reached the states it checks.
#[derive(Debug, Default)]
struct Seen {
    ejections: u64,
    moved: u64,
    down_verdicts: u64,
}

fn build_pool(
    metrics: &crate::metrics::Metrics,
    i: usize,
    servers: &[Arc<Server>],
    outlier: &Outlier,
    panic_threshold: u32,
    check: &HealthCheck,
) -> Arc<Pool> {
    let name = format!("p{i}");
    let retry = test_retry(1);
    Arc::new(Pool::new(PoolParts {
        name: Arc::from(name.as_str()),
        balancer: Balancer::new(
            &holdfast_config::Balance::RoundRobin,
            &vec![1; servers.len()],
        ),
        servers: servers.to_vec(),
        host_header: None,
        tls: None,
        http2: false,
        budget: Arc::new(RetryBudget::new(&retry)),
        retry,
        metrics: metrics.pool(&name),
        admission: None,
        outlier: *outlier,
        panic_threshold,
        max_connections: None,
        retry_after: http::HeaderValue::from_static("1"),
        health: Some(check.clone()),
    }))
}

fn build_chain(pools: &[Arc<Pool>], fallback: bool, active: usize) -> Chain {
    let Ok(failovers) = prometheus::IntCounterVec::new(
        prometheus::Opts::new("sim_failover_total", "sim"),
        &["route", "from", "to"],
    ) else {
        unreachable!("valid metric options");
    };
    let fallback = fallback.then(|| FallbackRt {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        body: bytes::Bytes::from_static(b"down"),
        content_type: http::HeaderValue::from_static("text/plain"),
        retry_after: None,
    });
    Chain::new(
        Arc::from("r"),
        pools.to_vec().into(),
        fallback,
        active,
        failovers,
    )
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let registry = prometheus::Registry::new();
        let Ok(metrics) = crate::metrics::Metrics::new(&registry) else {
            unreachable!("a fresh registry takes every family");
        };
        let base = Duration::from_millis(rng.between(100, 30_000));
        let outlier = Outlier {
            consecutive_failures: u32::try_from(rng.below(6)).unwrap_or(1),
            base_ejection: base,
            max_ejection: base * u32::try_from(rng.between(1, 10)).unwrap_or(1),
            max_ejection_percent: u32::try_from(rng.below(101)).unwrap_or(50),
        };
        let panic_threshold = u32::try_from(rng.below(101)).unwrap_or(50);
        let check = HealthCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_millis(rng.between(100, 5_000)),
            timeout: Duration::from_millis(100),
            healthy_after: u32::try_from(rng.between(1, 4)).unwrap_or(1),
            unhealthy_after: u32::try_from(rng.between(1, 4)).unwrap_or(1),
        };
        let pool_count = rng.index(3) + 1;
        let mut servers = Vec::new();
        let mut truth = Vec::new();
        let mut sim = Sim::new();
        sim.at(START, Event::Request);
        for p in 0..pool_count {
            let n = rng.index(5) + 1;
            let name = format!("p{p}");
            servers.push(
                (0..n)
                    .map(|i| {
                        let label = format!("127.0.0.{}:{}", p + 1, i + 1);
                        Arc::new(Server::new(
                            std::net::SocketAddr::from(([127, 0, 0, 1], (i + 1) as u16)),
                            Arc::from(label.as_str()),
                            1,
                            None,
                            metrics.server(&name, &label),
                            1,
                            4,
                            Duration::from_secs(60),
                        ))
                    })
                    .collect::<Vec<_>>(),
            );
            truth.push(
                (0..n)
                    .map(|_| Truth {
                        fail: 0,
                        streak: (0, 0),
                    })
                    .collect(),
            );
            for s in 0..n {
                sim.at(
                    START + rng.below(1_000) * MS,
                    Event::Check { pool: p, server: s },
                );
            }
        }
        let mut at = START;
        for _ in 0..rng.between(5, 40) {
            at += rng.between(100, 20_000) * MS;
            let pool = rng.index(pool_count);
            let server = rng.index(servers.get(pool).map_or(1, Vec::len));
            let fail = [0, 0, 20, 100, 100][rng.index(5)];
            sim.at(at, Event::Partition { pool, server, fail });
            if rng.chance(15) {
                sim.at(
                    at + MS,
                    Event::Jump(Duration::from_millis(rng.between(1_000, 600_000))),
                );
            }
            if rng.chance(15) {
                sim.at(at + 2 * MS, Event::Restart);
            }
        }
        let pools: Vec<Arc<Pool>> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| build_pool(&metrics, i, s, &outlier, panic_threshold, &check))
            .collect();
        let has_fallback = rng.chance(50);
        let chain = build_chain(&pools, has_fallback, 0);
        Run {
            rng,
            sim,
            metrics,
            outlier,
            panic_threshold,
            check,
            servers,
            truth,
            pools,
            chain,
            has_fallback,
            moved: 0,
            trace: Vec::new(),
        }
    }

    fn fail(&self, message: String) -> Failure {
        Failure::new(
            format!(
                "{message} (outlier {:?}, panic_threshold {}, check {:?})",
                self.outlier, self.panic_threshold, self.check
            ),
            &self.trace,
        )
    }

    fn step(&mut self, event: Event) -> Result<(), Failure> {
        sim_clock::set(Some(self.sim.now()));
        if self.trace.len() >= 200 {
            self.trace.drain(..100);
        }
        self.trace
            .push(format!("{}ms {event:?}", self.sim.now() / MS));
        match event {
            Event::Request => {
                self.request()?;
                let gap = self.rng.between(1, 200) * MS;
                self.sim.after(Duration::from_nanos(gap), Event::Request);
            }
            Event::Check { pool, server } => {
                self.check(pool, server)?;
                self.sim
                    .after(self.check.interval, Event::Check { pool, server });
            }
            Event::Partition { pool, server, fail } => {
                if let Some(t) = self.truth.get_mut(pool).and_then(|t| t.get_mut(server)) {
                    t.fail = fail;
                }
            }
            Event::Jump(by) => {
                self.sim.jump(by);
                sim_clock::set(Some(self.sim.now()));
            }
            Event::Restart => {
                self.pools = self
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        build_pool(
                            &self.metrics,
                            i,
                            s,
                            &self.outlier,
                            self.panic_threshold,
                            &self.check,
                        )
                    })
                    .collect();
                self.chain = build_chain(&self.pools, self.has_fallback, self.chain.active_index());
            }
        }
        self.check_invariants()
    }

    fn request(&mut self) -> Result<(), Failure> {
        let target = self.chain.choose();
        let first_up = self.pools.iter().position(|p| !p.is_down());
        let expected = match first_up {
            Some(i) => Target::Pool(i),
            None if self.has_fallback => Target::Fallback,
            None => Target::Pool(0),
        };
        if target != expected {
            return Err(self.fail(format!("chain chose {target:?}, expected {expected:?}")));
        }
        if target != Target::Pool(0) {
            self.moved += 1;
        }
        let Target::Pool(p) = target else {
            return Ok(());
        };
        let Some(pool) = self.pools.get(p).cloned() else {
            return Err(self.fail(format!("chain chose pool {p} of {}", self.pools.len())));
        };
        let picked = match pool.pick(&[], self.rng.next_u64()) {
            Picked::Server(i, server, in_flight) => Some((i, Arc::clone(server), in_flight)),
            Picked::Full | Picked::Empty => None,
        };
        let Some((i, server, in_flight)) = picked else {
            return Err(self.fail(format!("pool {p} gave no server to a request")));
        };
        let fail = self
            .truth
            .get(p)
            .and_then(|t| t.get(i))
            .map_or(0, |t| t.fail);
        let failed = self.rng.chance(fail);
        pool.record_outcome(&server, failed);
        drop(in_flight);
        Ok(())
    }

    fn check(&mut self, p: usize, s: usize) -> Result<(), Failure> {
        let (Some(pool), Some(server)) = (
            self.pools.get(p).cloned(),
            self.servers.get(p).and_then(|v| v.get(s)).cloned(),
        ) else {
            return Ok(());
        };
        let Some(truth) = self.truth.get_mut(p).and_then(|t| t.get_mut(s)) else {
            return Ok(());
        };
        let ok = !self.rng.chance(truth.fail);
        truth.streak = if ok {
            (truth.streak.0 + 1, 0)
        } else {
            (0, truth.streak.1 + 1)
        };
        let streak = truth.streak;
        let before = server.health.verdict();
        let result = CheckResult {
            at: SystemTime::UNIX_EPOCH + Duration::from_nanos(self.sim.now()),
            ok,
            detail: String::new(),
        };
        if let Some(verdict) = server.health.record(result, &self.check) {
            pool.health_changed(&server, verdict);
        }
        let after = server.health.verdict();
        let (passes, failures) = streak;
        let (healthy_after, unhealthy_after) =
            (self.check.healthy_after, self.check.unhealthy_after);
        let right = match (before, after) {
            (Checked::Unknown, Checked::Unknown) => passes == 0 && failures < unhealthy_after,
            (Checked::Unknown, Checked::Up) => passes >= 1,
            (Checked::Up, Checked::Up) => passes >= 1 || failures < unhealthy_after,
            (Checked::Unknown | Checked::Up, Checked::Down) => failures >= unhealthy_after,
            (Checked::Down, Checked::Down) => passes < healthy_after,
            (Checked::Down, Checked::Up) => passes >= healthy_after,
            _ => false,
        };
        if !right {
            return Err(self.fail(format!(
                "verdict {before:?} -> {after:?} after {passes} passes / {failures} failures in a row"
            )));
        }
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), Failure> {
        let now = now_nanos();
        let longest = u64::try_from(self.outlier.max_ejection.as_nanos()).unwrap_or(u64::MAX);
        for (p, pool) in self.pools.iter().enumerate() {
            let n = pool.servers.len();
            let ejected = pool
                .servers
                .iter()
                .filter(|s| s.passive().is_ejected(now))
                .count();
            let cap = n * self.outlier.max_ejection_percent as usize / 100;
            if ejected > cap {
                return Err(self.fail(format!(
                    "pool {p}: {ejected} of {n} servers ejected, cap {cap}"
                )));
            }
            for s in pool.servers.iter() {
                let until = s.passive().ejected_until();
                if until > now.saturating_add(longest) {
                    return Err(self.fail(format!(
                        "pool {p}: ejected until {until}, beyond now {now} + max_ejection"
                    )));
                }
            }
            if !matches!(pool.pick(&[], 0), Picked::Server(..)) {
                return Err(self.fail(format!("pool {p} of {n} servers refuses a pick")));
            }
        }
        Ok(())
    }
}

fn scenario(seed: u64, seen: &mut Seen) -> Result<(), Failure> {
    let mut run = Run::new(seed);
    let end = START + 600_000 * MS;
    let result = (|| {
        while let Some(event) = run.sim.next() {
            if run.sim.now() >= end {
                return Ok(());
            }
            run.step(event)?;
        }
        Ok(())
    })();
    sim_clock::set(None);
    for s in run.servers.iter().flatten() {
        seen.ejections += u64::from(s.passive().ejections());
        seen.down_verdicts += u64::from(s.health.is_down());
    }
    seen.moved += run.moved;
    result
}

#[test]
fn ejection_health_and_failover_hold_their_invariants_under_every_seed() {
    let mut seen = Seen::default();
    assert_seeds(REPLAY, |seed| scenario(seed, &mut seen));
    if holdfast_sim::seeds().len() >= 64 {
        assert!(
            seen.ejections > 0 && seen.moved > 0 && seen.down_verdicts > 0,
            "the runs never reached ejection, failover or a down verdict: {seen:?}"
        );
    }
    eprintln!("upstream::sim: {seen:?}");
}
