//! Seeded simulation of the circuit breaker (`holdfast-sim`): requests arrive at random
//! times and take random times to finish (so calls overlap), the module goes healthy, flaky
//! and broken (a partition), and the clock jumps. After every event: at most one half-open
//! probe is in flight; a probe is only let through once the cool-down is over; a trip
//! reports a count that met the thresholds; a cool-down never exceeds
//! `MAX_COOLDOWN_FACTOR` × `cooldown`; and once the module is healthy the breaker is closed
//! again within the longest cool-down plus the slowest call and the widest gap between
//! requests (it recovers). Replay a seed with `SIM_SEED=N cargo test -p holdfast-modules
//! --lib breaker_sim`.

use crate::breaker::{Admit, Breaker, Transition, MAX_COOLDOWN_FACTOR};
use crate::clock::nanos;
use crate::BreakerSettings;
use holdfast_sim::{assert_seeds, Failure, Rng, Sim};
use std::time::Duration;

const REPLAY: &str = "cargo test -p holdfast-modules --lib breaker_sim";
const MS: u64 = 1_000_000;

#[derive(Debug)]
enum Event {
    /// A request asks the breaker.
    Arrive,
    /// An admitted call ends with `ok`.
    Finish { admit: Admit, ok: bool },
    /// The module now fails this share (%) of its calls.
    Phase(u64),
    /// The clock jumps forward.
    Jump(Duration),
}

struct Run {
    rng: Rng,
    sim: Sim<Event>,
    breaker: Breaker,
    settings: BreakerSettings,
    fail_percent: u64,
    /// Since when the module has been healthy (fails nothing), if it is now.
    healthy_since: Option<u64>,
    probes_in_flight: u32,
    /// The widest gap between two requests, and the slowest call.
    max_gap: u64,
    max_latency: u64,
    /// The run ends here.
    end: u64,
    trace: Vec<String>,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let settings = BreakerSettings {
            error_percent: u32::try_from(rng.between(1, 100)).unwrap_or(50),
            min_requests: u32::try_from(rng.between(1, 20)).unwrap_or(20),
            window: Duration::from_millis(rng.between(200, 20_000)),
            cooldown: Duration::from_millis(rng.between(100, 5_000)),
        };
        let max_gap = rng.between(20, 300) * MS;
        let max_latency = rng.between(1, 500) * MS;
        let mut sim = Sim::new();
        sim.after(Duration::ZERO, Event::Arrive);
        let mut at = 0;
        for _ in 0..rng.between(2, 8) {
            at += rng.between(1_000, 60_000) * MS;
            let phase = [0, 0, 30, 100][rng.index(4)];
            sim.at(at, Event::Phase(phase));
            if rng.chance(30) {
                let by = Duration::from_millis(rng.between(1_000, 3_600_000));
                sim.at(at + rng.between(1, 1_000) * MS, Event::Jump(by));
            }
        }
        // The run ends healthy, long enough for the breaker to have to recover.
        let recover = nanos(settings.cooldown) * u64::from(MAX_COOLDOWN_FACTOR);
        sim.at(at + 1_000 * MS, Event::Phase(0));
        let end = at + 1_000 * MS + recover * 3 + (max_gap + max_latency) * 4;
        sim.at(end, Event::Phase(0));
        Run {
            rng,
            sim,
            breaker: Breaker::new(),
            settings,
            fail_percent: 0,
            healthy_since: Some(0),
            probes_in_flight: 0,
            max_gap,
            max_latency,
            end,
            trace: Vec::new(),
        }
    }

    fn fail(&self, message: String) -> Failure {
        Failure::new(
            format!("{message} (settings {:?})", self.settings),
            &self.trace,
        )
    }

    /// The latest time the breaker may still be open after the module turned healthy at `t`.
    fn recovered_by(&self, t: u64) -> u64 {
        t + 2 * self.max_latency
            + nanos(self.settings.cooldown) * u64::from(MAX_COOLDOWN_FACTOR)
            + self.max_gap
            + MS
    }

    fn step(&mut self, event: Event) -> Result<(), Failure> {
        let now = self.sim.now();
        if self.trace.len() >= 200 {
            self.trace.drain(..100);
        }
        self.trace.push(format!("{now}ns {event:?}"));
        match event {
            Event::Arrive => {
                let open_until = self.breaker.tripped_until();
                let admit = self.breaker.admit(now);
                if admit == Admit::Probe {
                    if open_until.is_some_and(|until| until > now) {
                        return Err(self.fail(format!("a probe at {now} inside the cool-down")));
                    }
                    if self.probes_in_flight != 0 {
                        return Err(self.fail(format!("a second probe at {now}")));
                    }
                    self.probes_in_flight += 1;
                }
                if admit != Admit::Reject {
                    let ok = !self.rng.chance(self.fail_percent);
                    let latency = self.rng.between(0, self.max_latency);
                    self.sim.at(now + latency, Event::Finish { admit, ok });
                }
                let gap = self.rng.between(1, self.max_gap);
                self.sim.at(now + gap, Event::Arrive);
            }
            Event::Finish { admit, ok } => {
                if admit == Admit::Probe {
                    self.probes_in_flight -= 1;
                }
                let t = self.breaker.record(now, admit, ok, &self.settings);
                self.check_transition(now, t)?;
            }
            Event::Phase(p) => {
                if p == 0 && self.fail_percent != 0 {
                    self.healthy_since = Some(now);
                } else if p != 0 {
                    self.healthy_since = None;
                }
                self.fail_percent = p;
            }
            Event::Jump(by) => {
                self.sim.jump(by);
                // No request came during the jump: recovery is timed from the first after it.
                if self.healthy_since.is_some() {
                    self.healthy_since = Some(self.sim.now());
                }
            }
        }
        self.check_state(now)
    }

    fn check_transition(&self, now: u64, t: Transition) -> Result<(), Failure> {
        let Transition::Tripped {
            cooldown,
            calls,
            failures,
            reprobe,
        } = t
        else {
            return Ok(());
        };
        let longest = self.settings.cooldown * MAX_COOLDOWN_FACTOR;
        if cooldown > longest {
            return Err(self.fail(format!("cool-down {cooldown:?} beyond {longest:?}")));
        }
        if !reprobe {
            let percent = u64::from(self.settings.error_percent);
            if calls < self.settings.min_requests
                || u64::from(failures) * 100 < percent * u64::from(calls)
            {
                return Err(self.fail(format!(
                    "tripped at {now} on {failures} failures of {calls} calls"
                )));
            }
        }
        Ok(())
    }

    fn check_state(&self, now: u64) -> Result<(), Failure> {
        if self.probes_in_flight > 1 {
            return Err(self.fail(format!("{} probes in flight", self.probes_in_flight)));
        }
        if let Some(until) = self.breaker.tripped_until() {
            let longest = nanos(self.settings.cooldown) * u64::from(MAX_COOLDOWN_FACTOR);
            if until > now + longest {
                return Err(self.fail(format!(
                    "open until {until}, beyond now {now} + the longest cool-down"
                )));
            }
        }
        if let Some(since) = self.healthy_since {
            if now > self.recovered_by(since) && self.breaker.is_tripped() {
                return Err(self.fail(format!(
                    "healthy since {since}, still open at {now}: the breaker did not recover"
                )));
            }
        }
        Ok(())
    }
}

fn scenario(seed: u64) -> Result<(), Failure> {
    let mut run = Run::new(seed);
    let mut events = 0u32;
    while let Some(event) = run.sim.next() {
        if run.sim.now() >= run.end {
            return Ok(());
        }
        events += 1;
        if events > 2_000_000 {
            return Err(run.fail("the run did not end".to_owned()));
        }
        run.step(event)?;
    }
    Err(run.fail("the queue ran dry before the end".to_owned()))
}

#[test]
fn breaker_trips_probes_alone_and_recovers_under_every_seed() {
    assert_seeds(REPLAY, scenario);
}
