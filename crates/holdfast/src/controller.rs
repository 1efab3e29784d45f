//! The reload controller: loads a configuration through the artifact path, validates it,
//! builds the next `State` and swaps it in — or rejects it and keeps the active one. Reloads
//! are serialised; the data path never waits for one. It is also the admin plane's `Backend`.

use arc_swap::ArcSwap;
use holdfast_admin::{Backend, ModuleSwitch, ReloadOutcome};
use holdfast_artifact::ArtifactMetrics;
use holdfast_common::lock;
use holdfast_config::{AccessLog, Config, Dns};
use holdfast_modules::host::{ModuleHost, Prepared};
use holdfast_modules::Override;
use holdfast_proxy::{
    AccessLogTarget, AccessLogWriter, HealthChecker, Metrics, RequestModule, State, StateInputs,
};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// Text built into the binary (the demo); relative paths resolve against the current folder.
    Embedded {
        name: String,
        text: String,
    },
}

impl ConfigSource {
    pub fn label(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Embedded { name, .. } => name.clone(),
        }
    }
}

/// A parsed, validated configuration and the fingerprint of its bytes.
pub(crate) struct Loaded {
    pub config: Arc<Config>,
    pub sha256: String,
    /// The text, kept as the last-known-good copy once it is running.
    pub text: String,
    /// Where it came from: the file, or (at start) the last-known-good copy.
    pub from_lkg: Option<Vec<String>>,
}

/// The name of the main configuration's last-known-good copy in `state_dir`.
const CONFIG_LKG: &str = "config";

/// `load` at start: if the file is rejected and its `[edge] state_dir` (read leniently from
/// the rejected text) holds a last-known-good copy that is valid, start on that copy — with
/// the rejection logged loudly and shown on `/status`. Relative paths in the copy resolve
/// against the configuration file's folder, as they did when it ran.
pub(crate) fn load_at_start(source: &ConfigSource) -> Result<Loaded, Vec<String>> {
    let errors = match load(source) {
        Ok(loaded) => return Ok(loaded),
        Err(errors) => errors,
    };
    let ConfigSource::File(path) = source else {
        return Err(errors);
    };
    let base = base_dir(path);
    let hint = holdfast_artifact::read_bounded_text(path, holdfast_config::MAX_CONFIG_BYTES)
        .ok()
        .and_then(|read| holdfast_config::state_dir_hint(&read.content, &base));
    let Some(state_dir) = hint else {
        return Err(errors);
    };
    let lkg = holdfast_artifact::lkg_path(&state_dir, CONFIG_LKG);
    let Ok(read) = holdfast_artifact::read_bounded_text(&lkg, holdfast_config::MAX_CONFIG_BYTES)
    else {
        return Err(errors);
    };
    let Ok(config) = holdfast_config::parse(&read.content, &base) else {
        tracing::error!(lkg = %lkg.display(), "the last-known-good configuration is invalid too");
        return Err(errors);
    };
    tracing::error!(
        file = %path.display(),
        lkg = %lkg.display(),
        errors = ?errors,
        "STARTED ON THE LAST-KNOWN-GOOD CONFIGURATION: the file was rejected; fix it and reload"
    );
    Ok(Loaded {
        config: Arc::new(config),
        sha256: read.sha256,
        text: read.content,
        from_lkg: Some(errors),
    })
}

/// Keep the running configuration's text as the last-known-good copy (after it started or
/// was applied by a reload), if there is a state folder; a failure is logged, not fatal.
pub(crate) fn save_lkg(config: &Config, text: &str) {
    let Some(dir) = &config.edge.state_dir else {
        return;
    };
    let lkg = holdfast_artifact::lkg_path(dir, CONFIG_LKG);
    if let Err(e) = holdfast_artifact::write_atomic(&lkg, text.as_bytes()) {
        tracing::error!(lkg = %lkg.display(), error = %e, "cannot save the last-known-good configuration");
    }
}

/// The folder relative paths in the file are resolved against: the file's own folder, or
/// none for a file in the working folder (so `../tls/x` prints as written, not `./../tls/x`).
pub(crate) fn base_dir(path: &Path) -> PathBuf {
    path.parent().map_or_else(PathBuf::new, Path::to_path_buf)
}

/// Read and validate; every error is formatted `FILE: key.path: message (hint)`.
pub(crate) fn load(source: &ConfigSource) -> Result<Loaded, Vec<String>> {
    let label = source.label();
    let (text, sha256, base) = match source {
        ConfigSource::File(path) => {
            let read =
                holdfast_artifact::read_bounded_text(path, holdfast_config::MAX_CONFIG_BYTES)
                    .map_err(|e| vec![format!("{label}: {e}")])?;
            (read.content, read.sha256, base_dir(path))
        }
        ConfigSource::Embedded { text, .. } => (
            text.clone(),
            holdfast_artifact::sha256_hex(text.as_bytes()),
            PathBuf::from("."),
        ),
    };
    load_text(&label, text, sha256, &base)
}

/// Validate text read from `label`, whose relative paths resolve against `base`.
pub(crate) fn load_text(
    label: &str,
    text: String,
    sha256: String,
    base: &Path,
) -> Result<Loaded, Vec<String>> {
    let config = holdfast_config::parse(&text, base).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{label}: {e}"))
            .collect::<Vec<_>>()
    })?;
    Ok(Loaded {
        config: Arc::new(config),
        sha256,
        text,
        from_lkg: None,
    })
}

/// Settings that only a restart can change, compared on every reload.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    const LISTENERS: &str =
        "changed, but listeners and threads are fixed while running (restart Holdfast to apply this change)";
    let mut changed = Vec::new();
    if old.edge.listen != new.edge.listen {
        changed.push(format!("edge.listen: {LISTENERS}"));
    }
    if old.edge.tls_listen != new.edge.tls_listen {
        changed.push(format!("edge.tls_listen: {LISTENERS}"));
    }
    if old.edge.h3_listen != new.edge.h3_listen {
        changed.push(format!("edge.h3_listen: {LISTENERS}"));
    }
    if old.edge.threads != new.edge.threads {
        changed.push(format!("edge.threads: {LISTENERS}"));
    }
    if old.admin.listen != new.admin.listen {
        changed.push(format!("admin.listen: {LISTENERS}"));
    }
    if old.status_page != new.status_page {
        changed.push("status_page: changed, but the status page reads its settings at start (restart Holdfast to apply this change)".into());
    }
    if old.admin_auth != new.admin_auth {
        changed.push("admin.token_file: changed, but the admin plane reads it at start (restart Holdfast to apply this change)".into());
    }
    changed.extend(dns_changes(old.dns.as_ref(), new.dns.as_ref()));
    changed
}

/// The DNS server takes its settings at start (its zone files reload on their own).
fn dns_changes(old: Option<&Dns>, new: Option<&Dns>) -> Vec<String> {
    const AT_START: &str =
        "changed, but the DNS server reads its settings at start (restart Holdfast to apply this change; zone files reload by themselves)";
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (Some(o), Some(n)) if o == n => return Vec::new(),
        (Some(o), Some(n)) => (o, n),
        _ => return vec![format!("dns: {AT_START}")],
    };
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("dns.listen".to_string());
    }
    if old.zones != new.zones {
        keys.push("dns.zones".to_string());
    }
    if old.steered.len() != new.steered.len() {
        keys.push("dns.steered".to_string());
    } else {
        for (i, (o, n)) in old.steered.iter().zip(&new.steered).enumerate() {
            if o != n {
                keys.push(format!("dns.steered[{i}]"));
            }
        }
    }
    if old.peers != new.peers
        || old.peer_token != new.peer_token
        || old.quorum != new.quorum
        || old.peer_interval != new.peer_interval
        || old.peer_timeout != new.peer_timeout
    {
        keys.push("dns (peers, peer_token, quorum, peer_interval, peer_timeout)".to_string());
    }
    if keys.is_empty() {
        keys.push("dns".to_string());
    }
    keys.into_iter()
        .map(|k| format!("{k}: {AT_START}"))
        .collect()
}

/// How far `build_generation` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `holdfast check`: nothing is started (no module, no artifact load, no key written).
    Check,
    /// A start or reload: the modules are started once every check passed.
    Run,
}

/// What `holdfast check`, the start and every reload run on a configuration — one path, so
/// a check and a reload cannot disagree — with every error together, each `FILE: key.path:
/// message (hint)`: the module kinds' plans and the access log's file (neither starts
/// anything), then (`Mode::Run`, once those passed) the modules' start, and the runtime
/// build (`State::build`: pools, TLS files, names, fallback files) in any case.
/// `inputs` makes the `StateInputs` for a module chain.
pub(crate) fn build_generation(
    label: &str,
    config: &Config,
    modules: &ModuleHost,
    mode: Mode,
    inputs: impl FnOnce(Vec<Arc<dyn RequestModule>>) -> StateInputs,
) -> Result<(State, Option<Prepared>), Vec<String>> {
    let mut errors = access_log_errors(&config.edge.access_log);
    errors.extend(holdfast_acme::check(&config.edge.acme));
    let plan = match modules.plan(config) {
        Ok(plan) => Some(plan),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let prepared = match (plan, mode) {
        (Some(plan), Mode::Run) if errors.is_empty() => Some(modules.start(plan)),
        _ => None,
    };
    let chain = prepared.as_ref().map(Prepared::chain).unwrap_or_default();
    let built = State::build(inputs(chain));
    let state = match built {
        Ok(state) if errors.is_empty() => state,
        Ok(_) => return Err(in_file(label, &errors)),
        Err(e) => {
            errors.extend(e);
            return Err(in_file(label, &errors));
        }
    };
    if matches!(mode, Mode::Run) {
        // Off the data path: handshakes go on without a staple until a response is in.
        if let Err(e) = state.start_ocsp() {
            tracing::warn!(error = %e, "OCSP stapling: cannot start its thread; serving without staples");
        }
    }
    Ok((state, prepared))
}

fn in_file(label: &str, errors: &[holdfast_config::ConfigError]) -> Vec<String> {
    errors.iter().map(|e| format!("{label}: {e}")).collect()
}

/// The access log's file must be writable where it is: an existing file opened for
/// appending, or a new one in an existing folder (checked without creating anything).
pub(crate) fn access_log_errors(log: &AccessLog) -> Vec<holdfast_config::ConfigError> {
    let AccessLog::File(path) = log else {
        return Vec::new();
    };
    let opened = if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match std::fs::metadata(folder) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(std::io::Error::other(format!(
                "{} is not a folder",
                folder.display()
            ))),
            Err(e) => Err(e),
        }
    };
    match opened {
        Ok(()) => Vec::new(),
        Err(e) => vec![holdfast_config::ConfigError::new(
            "edge.access_log",
            format!("cannot open: {}: {e}", path.display()),
            "create its folder, or give a path Holdfast can write to (or \"stdout\", \"off\")",
        )],
    }
}

pub(crate) fn access_log_target(log: &AccessLog) -> AccessLogTarget {
    match log {
        AccessLog::File(p) => AccessLogTarget::File(p.clone()),
        AccessLog::Stdout | AccessLog::Off => AccessLogTarget::Stdout,
    }
}

struct LastReload {
    at: SystemTime,
    generation: u64,
    errors: Vec<String>,
}

struct Book {
    generation: u64,
    sha256: String,
    loaded_at: SystemTime,
    last: Option<LastReload>,
    /// Set while running on the last-known-good copy: why the file was rejected at start.
    started_on_lkg: Option<Vec<String>>,
}

pub(crate) struct Controller {
    /// Changes only when a fleet version is applied (`apply_source`).
    source: Mutex<ConfigSource>,
    pub(crate) registry: Registry,
    metrics: Arc<Metrics>,
    pub(crate) states: Arc<ArcSwap<State>>,
    pub(crate) access_log: Arc<AccessLogWriter>,
    workers: usize,
    started: Instant,
    book: Mutex<Book>,
    /// Serialises reloads. `book` is locked only briefly, so `/status` never waits for a
    /// reload that is reading files or resolving names.
    reloading: Mutex<()>,
    reloads: IntCounterVec,
    generation: IntGauge,
    serving: AtomicBool,
    pub(crate) listeners: Mutex<serde_json::Value>,
    /// Runs the active health checks of the current state's pools, off the data path.
    health: HealthChecker,
    /// The modules and their artifacts, kept across reloads.
    pub(crate) modules: ModuleHost,
    /// Shared by every artifact of the process (modules' and DNS zones').
    artifact_metrics: Arc<ArtifactMetrics>,
    /// The DNS server, when `[dns]` is configured (set once serving).
    pub(crate) dns: Mutex<Option<holdfast_dns::DnsHandle>>,
    /// `/status`'s `fleet`, kept by the fleet agent (null when not in a fleet).
    pub(crate) fleet_status: Mutex<serde_json::Value>,
    /// The public status page, when `[status_page]` is configured (set once serving).
    pub(crate) status_page: Mutex<Option<holdfast_admin::public::StatusPageHandle>>,
    /// The ACME side, once a configuration with `[[edge.acme]]` has run.
    pub(crate) acme: Mutex<Option<holdfast_acme::AcmeManager>>,
    acme_metrics: holdfast_acme::AcmeMetrics,
    /// Whether this instance holds the fleet election (set by the fleet agent's controller;
    /// the ACME manager orders only while it does).
    pub(crate) fleet_leading: tokio::sync::watch::Sender<bool>,
    /// With `[fleet]`: the session-ticket key ring the fleet shares, installed by the agent.
    pub(crate) ticket_keys: Option<Arc<holdfast_proxy::FleetTicketKeys>>,
    /// The demo's origins and files (`holdfast demo` only).
    pub(crate) demo: Mutex<Option<Arc<crate::demo::Tour>>>,
    /// Where `POST /upgrade` sends its request: the loop that owns the `Running` (`holdfast
    /// run`'s main thread); `None` in a process that takes no upgrades (an embedding test).
    pub(crate) upgrades: Mutex<Option<crate::upgrade::UpgradeRequests>>,
}

impl Controller {
    pub(crate) fn new(
        source: ConfigSource,
        loaded: Loaded,
        workers: usize,
        extra_modules: Vec<Arc<dyn RequestModule>>,
    ) -> Result<Controller, crate::app::StartError> {
        use crate::app::StartError;
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::new(&registry).map_err(StartError::metrics)?);
        let reloads = IntCounterVec::new(
            Opts::new(
                "holdfast_config_reload_total",
                "Configuration reloads, by result (applied, rejected).",
            ),
            &["result"],
        )
        .map_err(StartError::metrics)?;
        let generation = IntGauge::new(
            "holdfast_config_generation",
            "Generation number of the active configuration.",
        )
        .map_err(StartError::metrics)?;
        registry
            .register(Box::new(reloads.clone()))
            .map_err(StartError::metrics)?;
        registry
            .register(Box::new(generation.clone()))
            .map_err(StartError::metrics)?;
        let dropped = IntGauge::new("holdfast_build_info", "Build information (always 1).")
            .map_err(StartError::metrics)?;
        dropped.set(1);
        registry
            .register(Box::new(dropped))
            .map_err(StartError::metrics)?;
        let artifact_metrics =
            Arc::new(ArtifactMetrics::new(&registry).map_err(StartError::metrics)?);
        let modules = crate::registry::module_host(&registry, &artifact_metrics, extra_modules)
            .map_err(StartError::metrics)?;
        let acme_metrics =
            holdfast_acme::AcmeMetrics::new(&registry).map_err(StartError::metrics)?;
        let label = source.label();
        let config = &loaded.config;
        let (fleet_leading, _) = tokio::sync::watch::channel(false);
        let ticket_keys = config
            .fleet
            .as_ref()
            .map(|_| Arc::new(holdfast_proxy::FleetTicketKeys::new()));
        // Stored certificates (or placeholders) are served from the first handshake on.
        let acme = start_acme(config, &acme_metrics, &fleet_leading)
            .map_err(|e| StartError::Config(vec![format!("{label}: edge.acme: {e}")]))?;
        let acme_store = acme.as_ref().map(holdfast_acme::AcmeManager::store);
        let inputs = |access_log: Option<Arc<AccessLogWriter>>| {
            let metrics = Arc::clone(&metrics);
            let acme = acme_store.clone();
            let ticket_keys = ticket_keys.clone();
            move |chain| StateInputs {
                config: Arc::clone(config),
                generation: 1,
                metrics,
                access_log,
                workers,
                modules: chain,
                previous: None,
                acme,
                ticket_keys,
            }
        };
        // A log that cannot be opened: every problem of the file, as `check` reports them.
        if !access_log_errors(&config.edge.access_log).is_empty() {
            let errors = build_generation(&label, config, &modules, Mode::Check, inputs(None))
                .err()
                .unwrap_or_default();
            stop_acme(acme.as_ref());
            return Err(StartError::Config(errors));
        }
        let access_log = Arc::new(
            AccessLogWriter::start(
                &access_log_target(&config.edge.access_log),
                metrics.access_log_dropped(),
            )
            .map_err(|e| StartError::Io(format!("{label}: edge.access_log: cannot open"), e))?,
        );
        let (state, prepared) = build_generation(
            &label,
            config,
            &modules,
            Mode::Run,
            inputs(Some(Arc::clone(&access_log))),
        )
        .map_err(|e| {
            stop_acme(acme.as_ref());
            StartError::Config(e)
        })?;
        if let Some(prepared) = prepared {
            modules.install(prepared);
        }
        if loaded.from_lkg.is_none() {
            save_lkg(&loaded.config, &loaded.text);
        }
        generation.set(1);
        let state = Arc::new(state);
        let health = HealthChecker::start(&state)
            .map_err(|e| StartError::Io("health checks: cannot start the thread".into(), e))?;
        Ok(Controller {
            source: Mutex::new(source),
            registry,
            metrics,
            states: Arc::new(ArcSwap::new(state)),
            access_log,
            workers,
            started: Instant::now(),
            book: Mutex::new(Book {
                generation: 1,
                sha256: loaded.sha256,
                loaded_at: SystemTime::now(),
                last: None,
                started_on_lkg: loaded.from_lkg,
            }),
            reloading: Mutex::new(()),
            reloads,
            generation,
            serving: AtomicBool::new(true),
            listeners: Mutex::new(serde_json::Value::Null),
            health,
            modules,
            artifact_metrics,
            dns: Mutex::new(None),
            fleet_status: Mutex::new(serde_json::Value::Null),
            status_page: Mutex::new(None),
            acme: Mutex::new(acme),
            acme_metrics,
            fleet_leading,
            ticket_keys,
            demo: Mutex::new(None),
            upgrades: Mutex::new(None),
        })
    }

    /// Stop ordering certificates (at shutdown).
    pub(crate) fn stop_acme(&self) {
        stop_acme(lock(&self.acme).as_ref());
    }

    /// The ACME certificates' store for a reload's `State`: the running manager's, or a new
    /// manager's (with no name set yet: `follow` gives it the sets once the reload applies).
    fn acme_store(&self, config: &Config) -> Result<Option<Arc<holdfast_acme::CertStore>>, String> {
        let mut acme = lock(&self.acme);
        if let Some(m) = acme.as_ref() {
            return Ok(Some(m.store()));
        }
        let (false, Some(dir)) = (config.edge.acme.is_empty(), &config.edge.state_dir) else {
            return Ok(None);
        };
        let fleet = crate::fleet::tls::acme_link(config, self.fleet_leading.subscribe());
        let m = holdfast_acme::AcmeManager::start(&[], dir, self.acme_metrics.clone(), fleet)
            .map_err(|e| format!("edge.acme: {e}"))?;
        let store = m.store();
        *acme = Some(m);
        Ok(Some(store))
    }

    /// Stop the active health checks (at shutdown).
    pub(crate) fn stop_checks(&self) {
        self.health.stop();
    }

    pub(crate) fn dns_handle(&self) -> std::sync::MutexGuard<'_, Option<holdfast_dns::DnsHandle>> {
        lock(&self.dns)
    }

    /// Start the DNS server (if configured) on the health of the current state.
    pub(crate) fn start_dns(
        &self,
        sockets: &crate::upgrade::Sockets,
    ) -> Result<(), crate::app::StartError> {
        let config = Arc::clone(&self.states.load().config);
        let handle = crate::dns::start(
            &config,
            sockets,
            &self.states,
            &self.registry,
            Arc::clone(&self.artifact_metrics),
        )?;
        *self.dns_handle() = handle;
        Ok(())
    }

    pub(crate) fn status_page_handle(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<holdfast_admin::public::StatusPageHandle>> {
        lock(&self.status_page)
    }

    pub(crate) fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        lock(&self.book)
    }

    fn source(&self) -> ConfigSource {
        lock(&self.source).clone()
    }

    fn try_reload(
        &self,
        source: &ConfigSource,
        generation: u64,
    ) -> Result<(State, Loaded, Prepared), Vec<String>> {
        let loaded = load(source)?;
        let current = self.states.load();
        let label = source.label();
        let fixed = restart_only_changes(&current.config, &loaded.config);
        if !fixed.is_empty() {
            return Err(fixed.into_iter().map(|e| format!("{label}: {e}")).collect());
        }
        let acme = self
            .acme_store(&loaded.config)
            .map_err(|e| vec![format!("{label}: {e}")])?;
        let (state, prepared) =
            build_generation(&label, &loaded.config, &self.modules, Mode::Run, |chain| {
                StateInputs {
                    config: Arc::clone(&loaded.config),
                    generation,
                    metrics: Arc::clone(&self.metrics),
                    access_log: Some(Arc::clone(&self.access_log)),
                    workers: self.workers,
                    modules: chain,
                    previous: Some(self.states.load_full()),
                    acme,
                    ticket_keys: self.ticket_keys.clone(),
                }
            })?;
        // `Mode::Run` starts the modules whenever the build succeeds.
        let Some(prepared) = prepared else {
            return Err(vec![format!(
                "{label}: internal: the modules were not started"
            )]);
        };
        let old_log = &current.config.edge.access_log;
        let new_log = &loaded.config.edge.access_log;
        if matches!(new_log, AccessLog::File(_)) || old_log != new_log {
            self.access_log
                .reopen(&access_log_target(new_log))
                .map_err(|e| vec![format!("{label}: edge.access_log: cannot open: {e} (check the path and permissions)")])?;
        }
        Ok((state, loaded, prepared))
    }

    pub(crate) fn do_reload(&self) -> ReloadOutcome {
        self.reload_from(None)
    }

    /// Reload from another source (a fleet version written to `state_dir`), which becomes
    /// the source of later reloads only if it is applied.
    pub(crate) fn apply_source(&self, source: ConfigSource) -> ReloadOutcome {
        self.reload_from(Some(source))
    }

    fn reload_from(&self, next: Option<ConfigSource>) -> ReloadOutcome {
        let _reloading = lock(&self.reloading);
        let source = next.clone().unwrap_or_else(|| self.source());
        // Only reloads change the generation, and they are serialised: it stays current.
        let candidate = self.book().generation + 1;
        // Artifacts are re-read whatever becomes of the config: each keeps its own
        // last-known-good.
        self.modules.reload_artifacts();
        if let Some(dns) = self.dns_handle().as_ref() {
            dns.reload_zones();
        }
        let result = self.try_reload(&source, candidate);
        let mut book = self.book();
        let outcome = match result {
            Ok((state, loaded, prepared)) => {
                if let Some(next) = next {
                    *lock(&self.source) = next;
                }
                self.modules.install(prepared);
                save_lkg(&loaded.config, &loaded.text);
                book.started_on_lkg = None;
                let sha256 = loaded.sha256;
                let state = Arc::new(state);
                self.health.follow(&state);
                if let Some(acme) = lock(&self.acme).as_ref() {
                    acme.follow(&state.config.edge.acme);
                }
                self.states.store(state);
                book.generation = candidate;
                book.sha256 = sha256;
                book.loaded_at = SystemTime::now();
                self.generation
                    .set(i64::try_from(candidate).unwrap_or(i64::MAX));
                self.reloads.with_label_values(&["applied"]).inc();
                tracing::info!(generation = candidate, "configuration reloaded");
                ReloadOutcome::Applied {
                    generation: candidate,
                }
            }
            Err(errors) => {
                self.reloads.with_label_values(&["rejected"]).inc();
                tracing::warn!(errors = ?errors, active_generation = book.generation, "configuration rejected; the active configuration stays");
                ReloadOutcome::Rejected {
                    generation: book.generation,
                    errors,
                }
            }
        };
        book.last = Some(LastReload {
            at: SystemTime::now(),
            generation: book.generation,
            errors: match &outcome {
                ReloadOutcome::Rejected { errors, .. } => errors.clone(),
                ReloadOutcome::Applied { .. } => Vec::new(),
            },
        });
        outcome
    }
}

impl Controller {
    /// `/status`'s entry of the bot feature file (null without one).
    fn feature_file_status(&self) -> serde_json::Value {
        serde_json::to_value(self.modules.status().artifacts)
            .ok()
            .and_then(|all| {
                all.as_array()?
                    .iter()
                    .find(|a| {
                        a.get("kind").and_then(serde_json::Value::as_str) == Some("bot-features")
                    })
                    .cloned()
            })
            .unwrap_or(serde_json::Value::Null)
    }

    /// How many bot feature files were rejected so far.
    fn feature_file_rejections(&self) -> u64 {
        self.feature_file_status()
            .get("rejections")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Backend for Controller {
    fn healthy(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    fn status(&self) -> serde_json::Value {
        let state = self.states.load();
        let modules = self.modules.status();
        let book = self.book();
        let last = book.last.as_ref().map(|l| {
            json!({
                "at": rfc3339(l.at),
                "result": if l.errors.is_empty() { "applied" } else { "rejected" },
                "active_generation": l.generation,
                "errors": l.errors,
            })
        });
        let mut status = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "pid": std::process::id(),
            "serving": self.healthy(),
            "config": {
                "source": self.source().label(),
                "running_on": if book.started_on_lkg.is_some() { "lkg" } else { "file" },
                "rejected_at_start": book.started_on_lkg,
                "generation": book.generation,
                "sha256": book.sha256,
                "loaded_at": rfc3339(book.loaded_at),
            },
            "last_reload": last,
            "listeners": *lock(&self.listeners),
            "workers": self.workers,
            "artifacts": modules.artifacts,
            "modules": modules.modules,
            "routes": state.route_status(),
            "pools": state.pool_status(),
            "dns": self.dns_handle().as_ref().map(|d| d.status()),
            "fleet": *lock(&self.fleet_status),
            "status_page": self.status_page_handle().as_ref().map(|p| p.status()),
            "acme": lock(&self.acme).as_ref().map(|a| a.status()),
            "ocsp": state.ocsp_status(),
        });
        if let (Some(tour), Some(obj)) = (lock(&self.demo).as_ref(), status.as_object_mut()) {
            obj.insert("demo".into(), tour.status());
        }
        status
    }

    fn reload(&self) -> ReloadOutcome {
        self.do_reload()
    }

    fn upgrade(
        &self,
        request: &holdfast_admin::UpgradeRequest,
    ) -> Result<serde_json::Value, (u16, String)> {
        let Some(requests) = lock(&self.upgrades).clone() else {
            return Err((
                404,
                "this process takes no upgrades (not `holdfast run`)".into(),
            ));
        };
        requests.ask(request.binary.clone())
    }

    fn set_module(
        &self,
        name: &str,
        switch: ModuleSwitch,
    ) -> Result<serde_json::Value, (u16, String)> {
        let o = match switch {
            ModuleSwitch::Enable => Override::Enabled,
            ModuleSwitch::Disable => Override::Disabled,
            ModuleSwitch::Clear => Override::None,
        };
        self.modules.set_override(name, o)
    }

    fn force_artifact(&self, name: &str) -> Result<serde_json::Value, (u16, String)> {
        self.modules.force_artifact(name)
    }

    fn purge_cache(
        &self,
        p: &holdfast_admin::PurgeRequest,
    ) -> Result<serde_json::Value, (u16, String)> {
        use holdfast_proxy::Purge;
        let what = match (&p.url, &p.prefix, &p.tag, p.all) {
            (Some(u), None, None, false) => Purge::Exact(u.clone()),
            (None, Some(x), None, false) => Purge::Prefix(x.clone()),
            (None, None, Some(t), false) => Purge::Tag(t.clone()),
            (None, None, None, true) => Purge::All,
            _ => {
                return Err((
                    400,
                    "name exactly one of url=HOST/PATH, prefix=…, tag=… or all=true".into(),
                ))
            }
        };
        let purged = self.states.load().purge_cache(&what, p.soft);
        Ok(json!({ "purged": purged, "soft": p.soft }))
    }

    fn dns_peer_view(
        &self,
        authorization: Option<&str>,
    ) -> Result<serde_json::Value, (u16, String)> {
        let dns = self.dns_handle();
        let dns = dns
            .as_ref()
            .ok_or_else(|| (404, "no [dns] configured here".to_string()))?;
        let view = dns.peer_view(authorization)?;
        serde_json::to_value(view).map_err(|e| (500, e.to_string()))
    }

    fn dns_override(&self, target: &str, action: &str) -> Result<serde_json::Value, (u16, String)> {
        let dns = self.dns_handle();
        let dns = dns
            .as_ref()
            .ok_or_else(|| (404, "no [dns] configured here".to_string()))?;
        dns.set_override(target, action)
    }

    fn incident(
        &self,
        id: Option<u64>,
        post: holdfast_admin::public::incidents::IncidentPost,
    ) -> Result<serde_json::Value, (u16, String)> {
        let page = self.status_page_handle();
        let page = page
            .as_ref()
            .ok_or_else(|| (404, "no [status_page] configured here".to_string()))?;
        page.post_incident(id, post)
    }

    fn demo(&self, action: holdfast_admin::DemoAction) -> Result<serde_json::Value, (u16, String)> {
        let tour = lock(&self.demo)
            .clone()
            .ok_or_else(|| (404, "only `holdfast demo` has demo controls".to_string()))?;
        match action {
            holdfast_admin::DemoAction::Origin { name, start } => tour.origin(&name, start),
            holdfast_admin::DemoAction::Replay => {
                let before = self.feature_file_rejections();
                let mut wrote = tour.replay()?;
                // The watcher takes the file within about a second: answer with its verdict.
                let deadline = Instant::now() + std::time::Duration::from_secs(5);
                while self.feature_file_rejections() <= before && Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if let Some(obj) = wrote.as_object_mut() {
                    obj.insert("artifact".into(), self.feature_file_status());
                }
                Ok(wrote)
            }
        }
    }

    fn registry(&self) -> &Registry {
        // Ejections end by the clock: bring the health gauges up to date for this scrape.
        let state = self.states.load();
        state.refresh_health_gauges();
        state.refresh_cache_metrics();
        state.refresh_ocsp_metrics();
        let mut certs = state.certificate_expiries().to_vec();
        if let Some(acme) = lock(&self.acme).as_ref() {
            certs.extend(acme.expiries());
        }
        self.acme_metrics.refresh_expiry(&certs);
        &self.registry
    }
}

/// The ACME side for `config` at start, when it has `[[edge.acme]]` (validation made sure
/// `state_dir` is set): stored certificates or placeholders are loaded before it returns.
fn start_acme(
    config: &Config,
    metrics: &holdfast_acme::AcmeMetrics,
    leading: &tokio::sync::watch::Sender<bool>,
) -> Result<Option<holdfast_acme::AcmeManager>, holdfast_acme::AcmeError> {
    let (false, Some(dir)) = (config.edge.acme.is_empty(), &config.edge.state_dir) else {
        return Ok(None);
    };
    let fleet = crate::fleet::tls::acme_link(config, leading.subscribe());
    holdfast_acme::AcmeManager::start(&config.edge.acme, dir, metrics.clone(), fleet).map(Some)
}

fn stop_acme(acme: Option<&holdfast_acme::AcmeManager>) {
    if let Some(a) = acme {
        a.stop();
    }
}

/// The addresses actually bound, for `/status`.
pub(crate) fn listeners_json(
    plain: &[SocketAddr],
    tls: &[SocketAddr],
    admin: SocketAddr,
) -> serde_json::Value {
    json!({ "http": plain, "https": tls, "admin": admin })
}

/// `/status` `listeners.h3`: the HTTP/3 (UDP) listeners.
pub(crate) fn add_h3_listeners(listeners: &mut serde_json::Value, h3: &[SocketAddr]) {
    if let Some(map) = listeners.as_object_mut() {
        map.insert("h3".into(), json!(h3));
    }
}
