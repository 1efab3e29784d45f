//! `run_seeds`: run one scenario per seed and fail with the command that replays a failing
//! seed. `SIM_SEED=N` runs seed N alone; `SIM_SEEDS=K` runs seeds 0..K (default
//! `DEFAULT_SEEDS`, what `.ci/run` runs through `scripts/test`).

/// Seeds run when neither `SIM_SEED` nor `SIM_SEEDS` is set.
pub const DEFAULT_SEEDS: u64 = 256;

/// A broken invariant: what was expected, and the events that led there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The last events before the failure, oldest first.
    pub trace: Vec<String>,
}

impl Failure {
    pub fn new(message: impl Into<String>, trace: &[String]) -> Failure {
        let start = trace.len().saturating_sub(20);
        Failure {
            message: message.into(),
            trace: trace.get(start..).unwrap_or_default().to_vec(),
        }
    }
}

/// The seeds to run, from the environment.
pub fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("SIM_SEED") {
        return vec![seed];
    }
    (0..env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Run `scenario` for every seed of `seeds()`; `replay` is the cargo command that runs this
/// test alone (`cargo test -p CRATE --lib NAME`). Returns how many seeds ran; on the first
/// failure, returns an error whose text starts with the command that replays that seed.
pub fn run_seeds(
    replay: &str,
    scenario: impl FnMut(u64) -> Result<(), Failure>,
) -> Result<usize, String> {
    run_over(&seeds(), replay, scenario)
}

/// `run_seeds` as a test runs it: fails the calling test with the replay command and the last
/// events of the first failing seed. This crate is a test harness (a dev-dependency only),
/// so failing the test is its job.
#[allow(clippy::panic)]
pub fn assert_seeds(replay: &str, scenario: impl FnMut(u64) -> Result<(), Failure>) {
    match run_seeds(replay, scenario) {
        Ok(n) => assert!(n >= 1, "no seed ran"),
        Err(e) => panic!("{e}"),
    }
}

fn run_over(
    seeds: &[u64],
    replay: &str,
    mut scenario: impl FnMut(u64) -> Result<(), Failure>,
) -> Result<usize, String> {
    for &seed in seeds {
        if let Err(f) = scenario(seed) {
            return Err(format!(
                "simulation failed at seed {seed}; replay with:\n  SIM_SEED={seed} {replay}\n{}\nlast events:\n  {}",
                f.message,
                f.trace.join("\n  ")
            ));
        }
    }
    Ok(seeds.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_seed_names_the_command_that_replays_it() {
        let err = run_over(&[0, 1, 2, 3, 4], "cargo test -p x --lib y", |seed| {
            if seed == 3 {
                Err(Failure::new("broken", &["e1".to_owned()]))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(err.contains("SIM_SEED=3 cargo test -p x --lib y"), "{err}");
        assert!(err.contains("broken") && err.contains("e1"), "{err}");
    }
}
