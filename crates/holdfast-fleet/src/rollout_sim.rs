//! Seeded simulation of the rollout state machine (`holdfast-sim`): `rollout::advance` ticked
//! every second over a simulated fleet whose instances apply targets after a delay, serve
//! traffic (with more errors on the new version when it is bad), refuse the version, die and
//! come back, while operators pause, resume and abort and the clock jumps. After every tick:
//! a finished record never changes again; the version, the previous version and the start
//! never change; the stage never goes back; only a rolling rollout takes instances; a rollout
//! that ends says what to do with the targets (done: complete, anything else: clear); an
//! abort of an unfinished rollout rolls it back at once. Each run ends with an abort and
//! checks the rollback completes: every live instance back on the previous version. Replay a
//! seed with `SIM_SEED=N cargo test -p holdfast-fleet --lib rollout_sim`.

use crate::record::{
    HealthCounters, InstanceReport, Intent, RolloutRecord, RolloutState, VersionRejection,
};
use crate::rollout::{advance, tests::record, Targets};
use holdfast_sim::{assert_seeds, Failure, Rng, Sim};
use std::collections::BTreeMap;
use std::time::Duration;

const REPLAY: &str = "cargo test -p holdfast-fleet --lib rollout_sim";
const SECOND: u64 = 1_000_000_000;

#[derive(Debug)]
enum Event {
    Tick,
    Traffic,
    /// Instance `i` now serves `version`.
    Apply {
        i: usize,
        version: u64,
    },
    Alive {
        i: usize,
        alive: bool,
    },
    Intent(Intent),
    Jump(Duration),
    /// The end: an abort, then time for the rollback.
    Abort,
}

struct Instance {
    id: String,
    group: Option<String>,
    alive: bool,
    version: u64,
    counters: HealthCounters,
    rejects: bool,
}

struct Run {
    rng: Rng,
    sim: Sim<Event>,
    fleet: Vec<Instance>,
    record: RolloutRecord,
    intent: Option<Intent>,
    /// The new version makes more errors.
    bad: bool,
    apply_delay: u64,
    aborted_at: Option<u64>,
    trace: Vec<String>,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let n = rng.index(9) + 2;
        let fleet = (0..n)
            .map(|i| Instance {
                id: format!("edge-{i}"),
                group: (i == 0 || rng.chance(10)).then(|| "canary".to_owned()),
                alive: true,
                version: 1,
                counters: HealthCounters::default(),
                rejects: rng.chance(3),
            })
            .collect();
        let stages = ["canary,10%,50%,100%", "50%,100%", "100%", "canary,100%"][rng.index(4)];
        let mut r = record(stages, rng.between(1, 30) * 1_000);
        r.min_requests = rng.between(10, 200);
        r.data_wait_ms = rng.between(5, 60) * 1_000;
        let mut sim = Sim::new();
        sim.after(Duration::ZERO, Event::Tick);
        sim.after(Duration::ZERO, Event::Traffic);
        let mut at = 0;
        for _ in 0..rng.between(0, 12) {
            at += rng.between(1, 60) * SECOND;
            let e = match rng.below(6) {
                0 | 1 => Event::Alive {
                    i: rng.index(n),
                    alive: rng.chance(50),
                },
                2 => Event::Intent(Intent::Pause),
                3 => Event::Intent(Intent::Resume),
                4 => Event::Jump(Duration::from_secs(rng.between(1, 600))),
                _ => Event::Intent(Intent::Resume),
            };
            sim.at(at, e);
        }
        sim.at(at + rng.between(1, 900) * SECOND, Event::Abort);
        Run {
            bad: rng.chance(40),
            apply_delay: rng.between(0, 5) * SECOND,
            rng,
            sim,
            fleet,
            record: r,
            intent: None,
            aborted_at: None,
            trace: Vec::new(),
        }
    }

    fn fail(&self, message: String) -> Failure {
        Failure::new(format!("{message}; record: {:?}", self.record), &self.trace)
    }

    fn alive(&self) -> BTreeMap<String, InstanceReport> {
        self.fleet
            .iter()
            .filter(|i| i.alive)
            .map(|i| {
                let rejected =
                    (i.rejects && i.version == self.record.version).then(|| VersionRejection {
                        version: self.record.version,
                        errors: vec!["refused".to_owned()],
                        rollout: Some(self.record.started_ms),
                    });
                (
                    i.id.clone(),
                    InstanceReport {
                        id: i.id.clone(),
                        group: i.group.clone(),
                        version: Some(if rejected.is_some() { 1 } else { i.version }),
                        since_ms: 0,
                        rejected,
                        counters: i.counters,
                        at_ms: self.sim.now() / 1_000_000,
                    },
                )
            })
            .collect()
    }

    fn step(&mut self, event: Event) -> Result<(), Failure> {
        if !matches!(event, Event::Tick | Event::Traffic) {
            if self.trace.len() >= 60 {
                self.trace.drain(..30);
            }
            self.trace
                .push(format!("{}s {event:?}", self.sim.now() / SECOND));
        }
        match event {
            Event::Tick => {
                self.tick()?;
                self.sim.after(Duration::from_secs(1), Event::Tick);
            }
            Event::Traffic => {
                let (new, bad) = (self.record.version, self.bad);
                for inst in self.fleet.iter_mut().filter(|i| i.alive) {
                    let requests = self.rng.between(0, 40);
                    inst.counters.requests += requests;
                    let errors = if bad && inst.version == new {
                        requests / 2
                    } else {
                        u64::from(self.rng.chance(2))
                    };
                    inst.counters.edge_5xx += errors.min(requests);
                }
                self.sim.after(Duration::from_secs(1), Event::Traffic);
            }
            Event::Apply { i, version } => {
                if let Some(inst) = self.fleet.get_mut(i) {
                    inst.version = version;
                }
            }
            Event::Alive { i, alive } => {
                if let Some(inst) = self.fleet.get_mut(i) {
                    inst.alive = alive;
                    if alive {
                        // A restart starts its counters again.
                        inst.counters = HealthCounters::default();
                    }
                }
            }
            Event::Intent(intent) => self.intent = Some(intent),
            Event::Jump(by) => self.sim.jump(by),
            Event::Abort => {
                self.intent = Some(Intent::Abort);
                self.aborted_at = Some(self.sim.now());
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), Failure> {
        let before = self.record.clone();
        let intent = self.intent.take();
        let alive = self.alive();
        let step = advance(&before, &alive, intent, self.sim.now() / 1_000_000);
        let after = &step.record;
        if before.state.finished() && (step.changed || *after != before) {
            return Err(self.fail("a finished rollout changed".to_owned()));
        }
        if (after.version, after.previous, after.started_ms)
            != (before.version, before.previous, before.started_ms)
        {
            return Err(self.fail("the version, previous version or start changed".to_owned()));
        }
        if after.stage < before.stage {
            return Err(self.fail(format!(
                "stage went back from {} to {}",
                before.stage, after.stage
            )));
        }
        if after.taken.len() > before.taken.len()
            && before.state != RolloutState::Rolling
            && intent != Some(Intent::Resume)
        {
            return Err(self.fail("instances taken while not rolling".to_owned()));
        }
        if intent == Some(Intent::Abort)
            && !before.state.finished()
            && after.state != RolloutState::RolledBack
        {
            return Err(self.fail(format!("an abort left the rollout {:?}", after.state)));
        }
        if !before.state.finished() && after.state.finished() {
            let expected = if after.state == RolloutState::Done {
                Targets::Complete
            } else {
                Targets::Clear
            };
            if step.targets != expected {
                return Err(self.fail(format!(
                    "ended {:?} with targets {:?}",
                    after.state, step.targets
                )));
            }
            if step.finished.is_none() {
                return Err(self.fail("ended without a history entry".to_owned()));
            }
        }
        self.apply_targets(&step.targets);
        self.record = step.record;
        Ok(())
    }

    fn apply_targets(&mut self, targets: &Targets) {
        let delay = Duration::from_nanos(self.apply_delay);
        let (new, old) = (self.record.version, self.record.previous.unwrap_or(1));
        for (i, inst) in self.fleet.iter().enumerate() {
            let version = match targets {
                Targets::Keep => continue,
                Targets::Add(ids) if ids.contains(&inst.id) => new,
                Targets::Add(_) => continue,
                Targets::Clear => old,
                Targets::Complete => new,
            };
            self.sim.after(delay, Event::Apply { i, version });
        }
    }

    /// After the abort and the agents' delay: every live instance is on the previous version
    /// (or, if the rollout had completed before, on the new one everywhere).
    fn rollback_completed(&self) -> Result<(), Failure> {
        let want = match self.record.state {
            RolloutState::Done => self.record.version,
            RolloutState::RolledBack | RolloutState::Failed => self.record.previous.unwrap_or(1),
            other => return Err(self.fail(format!("still {other:?} after the abort"))),
        };
        if let Some(i) = self.fleet.iter().find(|i| i.version != want && i.alive) {
            return Err(self.fail(format!(
                "{} still on v{} after the rollback",
                i.id, i.version
            )));
        }
        Ok(())
    }
}

fn scenario(seed: u64, seen: &mut BTreeMap<&'static str, u64>) -> Result<(), Failure> {
    let mut run = Run::new(seed);
    while let Some(event) = run.sim.next() {
        if let Some(at) = run.aborted_at {
            if run.sim.now() > at + run.apply_delay + 3 * SECOND {
                break;
            }
        }
        run.step(event)?;
    }
    run.rollback_completed()?;
    *seen.entry(run.record.state.label()).or_default() += 1;
    Ok(())
}

#[test]
fn a_rollback_always_completes_under_every_seed() {
    let mut seen = BTreeMap::new();
    assert_seeds(REPLAY, |seed| scenario(seed, &mut seen));
    if holdfast_sim::seeds().len() >= 64 {
        assert!(seen.len() >= 2, "every run ended the same way: {seen:?}");
    }
    eprintln!("rollout_sim: {seen:?}");
}
