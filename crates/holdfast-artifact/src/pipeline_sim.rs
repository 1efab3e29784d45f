//! Seeded simulation of the artifact pipeline (`holdfast-sim`): a generator writes files
//! whose versions come out of order, repeat, shrink sharply or do not parse; the file goes
//! missing; operators force the next load; the process restarts on its last-known-good copy.
//! After every event: the active version never goes down (not even across a restart), the
//! active value always came from a file that passed its checks, and a change of the active
//! value that was not forced never shrinks past `max_shrink_percent`. Replay a seed with
//! `SIM_SEED=N cargo test -p holdfast-artifact --lib pipeline_sim`.

use crate::{
    Artifact, ArtifactKind, ArtifactMetrics, ArtifactOptions, LoadOutcome, Reason, Rejection,
};
use holdfast_sim::{assert_seeds, Failure, Rng};
use std::collections::BTreeMap;
use std::sync::Arc;

const REPLAY: &str = "cargo test -p holdfast-artifact --lib pipeline_sim";

/// A kind whose files say `v=VERSION n=ENTRIES t=TAG`.
struct SimKind;

#[derive(Debug)]
struct SimValue {
    version: u64,
    entries: usize,
}

impl ArtifactKind for SimKind {
    type Value = SimValue;
    const NAME: &'static str = "sim";
    const MAX_BYTES: u64 = 1024;

    fn load(bytes: &[u8]) -> Result<SimValue, Rejection> {
        let bad = || Rejection::new(Reason::Parse, "not a sim file");
        let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let mut version = None;
        let mut entries = None;
        for word in text.split_whitespace() {
            if let Some(v) = word.strip_prefix("v=") {
                version = v.parse().ok();
            } else if let Some(n) = word.strip_prefix("n=") {
                entries = n.parse().ok();
            }
        }
        Ok(SimValue {
            version: version.ok_or_else(bad)?,
            entries: entries.ok_or_else(bad)?,
        })
    }

    fn version(value: &SimValue) -> u64 {
        value.version
    }

    fn entries(value: &SimValue) -> usize {
        value.entries
    }
}

struct Run {
    rng: Rng,
    dir: tempfile::TempDir,
    metrics: Arc<ArtifactMetrics>,
    artifact: Artifact<SimKind>,
    max_shrink: u32,
    /// Every file written: SHA-256 → (version, entries), `None` for files that do not parse.
    written: BTreeMap<String, Option<(u64, usize)>>,
    /// Versions written so far, to send old ones again.
    versions: Vec<(u64, usize)>,
    /// The active (version, entries, sha256) after the previous event.
    active: Option<(u64, usize, String)>,
    force_pending: bool,
    trace: Vec<String>,
}

impl Run {
    fn new(seed: u64) -> Result<Run, Failure> {
        let mut rng = Rng::new(seed);
        // In memory where there is a tmpfs: every applied file is fsynced as the LKG copy,
        // which on a disk would make 256 seeds take minutes.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .map_err(|e| Failure::new(format!("tempdir: {e}"), &[]))?;
        let metrics = Arc::new(
            ArtifactMetrics::new(&prometheus::Registry::new())
                .map_err(|e| Failure::new(format!("metrics: {e}"), &[]))?,
        );
        let max_shrink = [10, 50, 50, 90, 100][rng.index(5)];
        let artifact = Self::artifact(&dir, &metrics, max_shrink);
        Ok(Run {
            rng,
            dir,
            metrics,
            artifact,
            max_shrink,
            written: BTreeMap::new(),
            versions: Vec::new(),
            active: None,
            force_pending: false,
            trace: Vec::new(),
        })
    }

    fn artifact(
        dir: &tempfile::TempDir,
        metrics: &Arc<ArtifactMetrics>,
        max_shrink: u32,
    ) -> Artifact<SimKind> {
        let mut options = ArtifactOptions::new(dir.path().join("sim.txt"));
        options.state_dir = Some(dir.path().join("state"));
        options.max_shrink_percent = max_shrink;
        Artifact::new(options, Arc::clone(metrics))
    }

    fn fail(&self, message: String) -> Failure {
        Failure::new(
            format!("{message} (max_shrink_percent {})", self.max_shrink),
            &self.trace,
        )
    }

    fn write(&mut self, bytes: &[u8], meaning: Option<(u64, usize)>) -> Result<(), Failure> {
        let path = self.dir.path().join("sim.txt");
        // A plain write: loads happen only between events, never during one.
        std::fs::write(&path, bytes).map_err(|e| self.fail(format!("write: {e}")))?;
        self.written.insert(crate::sha256_hex(bytes), meaning);
        Ok(())
    }

    /// One event: a change of the file, a force, or a restart; then the load it causes.
    fn step(&mut self) -> Result<(), Failure> {
        let top = self.versions.iter().map(|v| v.0).max().unwrap_or(0);
        let last_entries = self.active.as_ref().map_or(100, |a| a.1);
        let event = self.rng.below(100);
        let what;
        let mut restart = false;
        match event {
            0..=34 => {
                let version = top + self.rng.between(1, 3);
                let entries =
                    (last_entries as u64 * self.rng.between(80, 130) / 100).max(1) as usize;
                what = format!("newer v{version} n{entries}");
                self.new_file(version, entries)?;
            }
            35..=44 => {
                let version = top + 1;
                let entries = (last_entries as u64 * self.rng.between(0, 40) / 100) as usize;
                what = format!("sharp shrink v{version} n{entries}");
                self.new_file(version, entries)?;
            }
            45..=59 => {
                let (version, entries) = self
                    .versions
                    .get(self.rng.index(self.versions.len()))
                    .copied()
                    .unwrap_or((0, 1));
                what = format!("older or repeated v{version} n{entries}");
                self.new_file(version, entries)?;
            }
            60..=67 => {
                what = "corrupt".to_owned();
                let tag = self.rng.next_u64();
                self.write(format!("garbage {tag}").as_bytes(), None)?;
            }
            68..=72 => {
                what = "missing".to_owned();
                let _ = std::fs::remove_file(self.dir.path().join("sim.txt"));
            }
            73..=80 => {
                what = "force".to_owned();
                self.artifact.force_next();
                self.force_pending = true;
            }
            81..=88 => {
                what = "restart".to_owned();
                restart = true;
            }
            _ => what = "reload".to_owned(),
        }
        let outcome = if restart {
            self.artifact = Self::artifact(&self.dir, &self.metrics, self.max_shrink);
            self.force_pending = false;
            self.artifact.start()
        } else {
            self.artifact.reload()
        };
        self.trace.push(format!("{what}: {outcome:?}"));
        if self.trace.len() > 40 {
            self.trace.remove(0);
        }
        self.check(&outcome, restart)
    }

    fn new_file(&mut self, version: u64, entries: usize) -> Result<(), Failure> {
        let tag = self.rng.next_u64();
        let bytes = format!("v={version} n={entries} t={tag}");
        self.write(bytes.as_bytes(), Some((version, entries)))?;
        self.versions.push((version, entries));
        Ok(())
    }

    fn check(&mut self, outcome: &LoadOutcome, restart: bool) -> Result<(), Failure> {
        let now = self
            .artifact
            .current()
            .as_ref()
            .map(|a| (a.version, a.value.entries, a.sha256.clone()));
        if let LoadOutcome::Applied { version } = outcome {
            if now.as_ref().map(|a| a.0) != Some(*version) {
                return Err(self.fail(format!("applied v{version} but {now:?} is active")));
            }
        }
        match (&self.active, &now) {
            (Some(before), None) => {
                return Err(self.fail(format!(
                    "v{} was active, now nothing (restart: {restart})",
                    before.0
                )));
            }
            (Some(before), Some(after)) if after.0 < before.0 => {
                return Err(self.fail(format!("v{} replaced the newer v{}", after.0, before.0)));
            }
            (Some(before), Some(after)) if after.2 != before.2 => {
                let shrunk = (after.1 as u128) * 100
                    < (before.1 as u128) * u128::from(100 - self.max_shrink.min(100));
                if shrunk && !self.force_pending {
                    return Err(self.fail(format!(
                        "{} entries replaced {} without a force",
                        after.1, before.1
                    )));
                }
            }
            _ => {}
        }
        if let Some((version, entries, sha)) = &now {
            if self.written.get(sha) != Some(&Some((*version, *entries))) {
                return Err(self.fail(format!(
                    "active v{version} is not a file that passed its checks"
                )));
            }
        }
        // A force is used by the next load that read the file and got past "unchanged".
        let read_failed = matches!(outcome, LoadOutcome::Rejected(r) if matches!(r.reason, Reason::Io | Reason::TooLarge));
        if !matches!(outcome, LoadOutcome::Unchanged) && !read_failed {
            self.force_pending = false;
        }
        self.active = now;
        Ok(())
    }
}

/// Outcomes over all seeds, so the test shows the runs reached what it checks.
#[derive(Debug, Default)]
struct Seen {
    applied: u64,
    not_newer: u64,
    shrink: u64,
}

fn scenario(seed: u64, seen: &mut Seen) -> Result<(), Failure> {
    let mut run = Run::new(seed)?;
    for _ in 0..60 {
        run.step()?;
        match run.trace.last() {
            Some(t) if t.contains("Applied") => seen.applied += 1,
            Some(t) if t.contains("NotNewer") => seen.not_newer += 1,
            Some(t) if t.contains("Shrink") => seen.shrink += 1,
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn never_an_older_version_over_a_newer_one_under_every_seed() {
    let mut seen = Seen::default();
    assert_seeds(REPLAY, |seed| scenario(seed, &mut seen));
    if holdfast_sim::seeds().len() >= 64 {
        assert!(
            seen.applied > 0 && seen.not_newer > 0 && seen.shrink > 0,
            "the runs never reached an apply, an older version or a shrink: {seen:?}"
        );
    }
    eprintln!("pipeline_sim: {seen:?}");
}
