//! `ChallengeKind`: the plan (settings and keys read, nothing written), the start (a
//! generated key written to `state_dir`), keep vs new across reloads.

use super::*;

/// What the challenge was built from; an equal one on reload keeps the running challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeConfig {
    pub(super) challenge: holdfast_config::Challenge,
    pub(super) critical: Vec<String>,
    pub(super) state_dir: Option<PathBuf>,
}

/// Where the keys come from, found by the plan (files read, nothing written).
pub(super) enum PlannedKeys {
    /// `[challenge].keys`, read and checked.
    File(Keys, String),
    /// The generated key in `state_dir` (`stored`: read from its file; `None`: not made
    /// yet), or in memory without a state folder. `fresh` is used when there is no other.
    Generated {
        stored: Option<Keys>,
        file: Option<PathBuf>,
        fresh: Keys,
    },
}

/// What a config asks of the challenge.
pub struct ChallengePlan {
    pub(super) config: ChallengeConfig,
    pub(super) keys: PlannedKeys,
}

/// The challenge of one generation: the cookie check in its runner, the metrics, the
/// critical routes (where a failing check lets requests through).
pub struct ChallengeRunning {
    pub(super) config: ChallengeConfig,
    pub(super) slot: Arc<ModuleSlot<ChallengeModule>>,
    pub(super) metrics: ChallengeMetrics,
    pub(super) critical: HashSet<String>,
    /// Where the keys came from, for /status.
    pub(super) key_source: String,
}

/// Whether `config` needs the challenge: some rule's action is `challenge`.
pub(super) fn wanted(config: &Config) -> bool {
    config
        .rules
        .iter()
        .any(|r| matches!(r.action, holdfast_config::RuleAction::Challenge { .. }))
}

pub(super) fn config_of(config: &Config) -> ChallengeConfig {
    ChallengeConfig {
        challenge: config.challenge.clone(),
        critical: config
            .routes
            .iter()
            .filter(|r| r.critical)
            .map(|r| r.name.clone())
            .collect(),
        state_dir: config.edge.state_dir.clone(),
    }
}

pub(super) fn key_error(path: &Path, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        "challenge.keys",
        format!("{}: {detail}", path.display()),
        "give a file with one or two hex keys of at least 32 bytes each, one per line \
         (e.g. `openssl rand -hex 32 > challenge.keys`); the first signs, both verify",
    )
}

/// The configured key file, read (bounded) and checked.
pub(super) fn read_key_file(path: &Path) -> Result<Keys, ConfigError> {
    let text = holdfast_artifact::read_bounded_text(path, MAX_KEY_FILE_BYTES)
        .map_err(|e| key_error(path, e))?;
    Keys::parse(&text.content).map_err(|e| key_error(path, e))
}

/// The keys for `c`, read but not written: the key file; else the generated key in
/// `state_dir` if it was made; else (`stored: None`) one to make at start.
pub(super) fn plan_keys(c: &ChallengeConfig) -> Result<PlannedKeys, ConfigError> {
    if let Some(path) = &c.challenge.keys {
        return Ok(PlannedKeys::File(
            read_key_file(path)?,
            path.display().to_string(),
        ));
    }
    let fresh = Keys::generate().map_err(|e| {
        ConfigError::new("challenge.keys", e.to_string(), "give a key file instead")
    })?;
    let Some(dir) = &c.state_dir else {
        return Ok(PlannedKeys::Generated {
            stored: None,
            file: None,
            fresh,
        });
    };
    let path = dir.join(GENERATED_KEY_FILE);
    match holdfast_artifact::read_bounded_text(&path, MAX_KEY_FILE_BYTES) {
        Ok(text) => {
            let keys = Keys::parse(&text.content).map_err(|e| {
                ConfigError::new(
                    "edge.state_dir",
                    format!("{}: {e}", path.display()),
                    "the generated challenge key file is damaged: delete it (a new key is \
                     made; existing pass cookies end) or restore it",
                )
            })?;
            Ok(PlannedKeys::Generated {
                stored: Some(keys),
                file: Some(path),
                fresh,
            })
        }
        Err(holdfast_artifact::ReadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(PlannedKeys::Generated {
                stored: None,
                file: Some(path),
                fresh,
            })
        }
        Err(e) => Err(ConfigError::new(
            "edge.state_dir",
            format!("{}: {e}", path.display()),
            "make the generated challenge key file readable, or delete it",
        )),
    }
}

/// The keys to run with and where they came from: the planned ones; for a generated key
/// not made yet, the running generated key (so a reload keeps cookies valid) or the fresh
/// one, written to `state_dir` (owner-only) when there is one.
pub(super) fn start_keys(planned: PlannedKeys, current: Option<&Keys>) -> (Keys, String) {
    let (stored, file, fresh) = match planned {
        PlannedKeys::File(keys, source) => return (keys, source),
        PlannedKeys::Generated {
            stored,
            file,
            fresh,
        } => (stored, file, fresh),
    };
    let in_memory = "generated (in memory)".to_string();
    match (stored, file) {
        (Some(keys), Some(path)) => (keys, path.display().to_string()),
        (_, None) => (current.cloned().unwrap_or(fresh), in_memory),
        (None, Some(path)) => {
            let keys = current.cloned().unwrap_or(fresh);
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            match write_key(&dir, &path, &keys) {
                Ok(()) => (keys, path.display().to_string()),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e,
                        "challenge key not saved; it lasts until the edge stops");
                    (keys, in_memory)
                }
            }
        }
    }
}

/// Write the generated key atomically, readable by the owner only.
pub(super) fn write_key(dir: &Path, path: &Path, keys: &Keys) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{GENERATED_KEY_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(keys.to_file_text().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The `challenge` kind: its metrics, registered once per process.
pub struct ChallengeKind {
    metrics: ChallengeMetrics,
    module_metrics: holdfast_modules::ModuleMetrics,
}

impl ChallengeKind {
    pub fn new(
        registry: &prometheus::Registry,
        module_metrics: &holdfast_modules::ModuleMetrics,
    ) -> Result<Self, prometheus::Error> {
        Ok(ChallengeKind {
            metrics: ChallengeMetrics::new(registry)?,
            module_metrics: module_metrics.clone(),
        })
    }

    fn build(&self, plan: ChallengePlan, current: Option<&ChallengeRunning>) -> ChallengeRunning {
        let c = plan.config;
        let (keys, key_source) = start_keys(plan.keys, current.map(|r| r.keys()));
        let ch = &c.challenge;
        let signer = Signer::new(
            keys,
            Settings {
                cookie_ttl: ch.ttl,
                token_ttl: ch.page_ttl,
                ipv4_prefix: ch.ipv4_prefix,
                ipv6_prefix: ch.ipv6_prefix,
                nojs_wait: ch.nojs_wait,
            },
        );
        let settings = holdfast_modules::ModuleSettings {
            enabled: ch.enabled,
            fail_policy: ch.fail_policy,
            time_budget: ch.time_budget,
            ..holdfast_modules::ModuleSettings::default()
        };
        let module = ChallengeModule {
            signer,
            cookie_name: ch.cookie_name.clone(),
            fault: AtomicBool::new(false),
        };
        ChallengeRunning {
            critical: c.critical.iter().cloned().collect(),
            config: c,
            slot: Arc::new(ModuleSlot::new(module, settings, &self.module_metrics)),
            metrics: self.metrics.clone(),
            key_source,
        }
    }
}

impl ModuleKind for ChallengeKind {
    const NAME: &'static str = "challenge";
    const UNCONFIGURED: &'static str = "no rule has action = \"challenge\"";
    type Plan = ChallengePlan;
    type Running = ChallengeRunning;
    type Status = ChallengeStatus;

    /// When a rule asks for it: its settings and its keys (the key file read and checked,
    /// or the generated key read from `state_dir`).
    fn plan(&self, config: &Config) -> Result<Option<ChallengePlan>, Vec<ConfigError>> {
        if !wanted(config) {
            return Ok(None);
        }
        let c = config_of(config);
        let keys = plan_keys(&c).map_err(|e| vec![e])?;
        Ok(Some(ChallengePlan { config: c, keys }))
    }

    /// The running challenge if its settings and keys are unchanged (the key file is re-read
    /// by each plan: a rotation applies on reload), else a new one.
    fn start(
        &self,
        plan: ChallengePlan,
        previous: Option<&ChallengeRunning>,
        _links: &Links,
    ) -> Start<ChallengePlan, ChallengeRunning> {
        if let Some(rt) = previous.filter(|rt| rt.config == plan.config) {
            let same_keys = match &plan.keys {
                PlannedKeys::File(keys, _) => keys == rt.keys(),
                PlannedKeys::Generated { .. } => true,
            };
            if same_keys {
                return Start::Keep(plan);
            }
        }
        Start::New(self.build(plan, previous))
    }

    /// No step of its own: the rules call it (`ChallengeGate`), and serve its paths.
    fn wire(&self, running: &Arc<ChallengeRunning>, links: &mut Links) -> Vec<Step> {
        let gate: Arc<dyn ChallengeGate> = Arc::clone(running) as Arc<dyn ChallengeGate>;
        links.offer(gate);
        Vec::new()
    }

    fn switch<'r>(&self, running: &'r ChallengeRunning) -> Option<&'r dyn Switch> {
        Some(running.slot.as_ref())
    }

    fn status(&self, running: &ChallengeRunning) -> Option<ChallengeStatus> {
        Some(running.status())
    }
}
