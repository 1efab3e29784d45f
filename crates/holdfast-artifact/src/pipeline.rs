//! `Artifact<K>`: one file of one kind, from disk to the data path. Every load (start, file
//! change, `POST /reload`) runs the same steps, in this order:
//!
//! 1. read at most `K::MAX_BYTES` (over it: `TooLarge`, the rest is not read);
//! 2. the same bytes as the active value: `Unchanged`; a file rejected before (same bytes,
//!    same signature file): `Unchanged`, not parsed, counted or logged again;
//! 3. the detached signature, when a public key is configured;
//! 4. `K::load`: parse, schema, the consumer's semantic checks (a panic in it is caught and
//!    is a rejection);
//! 5. only if newer than the active version;
//! 6. the shrink guard against the active value, unless forced;
//! 7. atomic swap, then the last-known-good copy in `state_dir`.
//!
//! Any rejection leaves the active value in place, is counted by reason, logged once and
//! shown on `/status`. Loads are serialised by a mutex; readers never take it.

use crate::kind::{ArtifactKind, Reason, Rejection};
use crate::lkg::{lkg_path, write_atomic};
use crate::metrics::{ArtifactMetrics, LoadResult};
use crate::read::{read_bounded, Source};
use crate::signature::{read_signature, signature_path, verify};
use crate::status::{rfc3339, ActiveStatus, ArtifactStatus, RejectionStatus, SourceKind};
use crate::ReadError;
use arc_swap::{ArcSwapOption, Guard};
use ed25519_dalek::VerifyingKey;
use holdfast_common::lock;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A shrink of more than this share of entries is rejected unless forced (the default of
/// `ArtifactOptions::new`).
pub const DEFAULT_MAX_SHRINK_PERCENT: u32 = 50;

/// How many rejected files are remembered (and not parsed again).
const REMEMBERED_REJECTIONS: usize = 64;

/// Where one artifact comes from and how it is guarded.
#[derive(Debug, Clone)]
pub struct ArtifactOptions {
    /// The file.
    pub path: PathBuf,
    /// Last-known-good copies go to `state_dir/<NAME>.lkg` (exact bytes, written atomically);
    /// `None`: no copy is kept and a bad file at start leaves the artifact without a value.
    pub state_dir: Option<PathBuf>,
    /// When set, `<path>.sig` must hold a valid ed25519 signature over the file's bytes.
    pub public_key: Option<VerifyingKey>,
    /// Reject a file with fewer than `100 - max_shrink_percent` percent of the active
    /// value's entries, unless forced; 100 (or more) disables the guard.
    pub max_shrink_percent: u32,
    /// For kinds with several files (IP lists, rule lists): this one's name. Its metric
    /// label, LKG file stem and `/status` name are then `<NAME>:<name>`.
    pub name: Option<String>,
    /// Passed to `K::load_in` (a DNS zone's origin); empty for most kinds.
    pub context: String,
}

impl ArtifactOptions {
    /// `path` with no state folder, no signature and `DEFAULT_MAX_SHRINK_PERCENT`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ArtifactOptions {
            path: path.into(),
            state_dir: None,
            public_key: None,
            max_shrink_percent: DEFAULT_MAX_SHRINK_PERCENT,
            name: None,
            context: String::new(),
        }
    }
}

/// The value the data path reads, with where and when it came from.
#[derive(Debug)]
pub struct Active<V> {
    pub value: V,
    pub version: u64,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub loaded_at: SystemTime,
    pub source: SourceKind,
}

/// What one load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The file is now active.
    Applied { version: u64 },
    /// The same bytes as the active value, or a file already rejected: nothing done.
    Unchanged,
    /// The file was rejected; the active value (if any) stays.
    Rejected(Rejection),
}

/// One artifact file of kind `K`: its active value and its load history.
pub struct Artifact<K: ArtifactKind> {
    options: ArtifactOptions,
    /// `K::NAME`, or `<NAME>:<name>` for a named one.
    label: String,
    metrics: Arc<ArtifactMetrics>,
    active: ArcSwapOption<Active<K::Value>>,
    /// Serialises loads; holds the files rejected before (key, reason), oldest first.
    loading: Mutex<VecDeque<(String, Reason)>>,
    last_rejection: Mutex<Option<RejectionStatus>>,
    applied: AtomicU64,
    rejections: AtomicU64,
    force: AtomicBool,
    /// The consumer's check against its own state (e.g. rule ids already in the config),
    /// after `K::load` and before the swap; also applied to the LKG.
    check: Option<Check<K>>,
    _kind: PhantomData<fn() -> K>,
}

/// A consumer's extra check of a loaded value.
type Check<K> =
    Box<dyn Fn(&<K as ArtifactKind>::Value) -> Result<(), Rejection> + Send + Sync + 'static>;

impl<K: ArtifactKind> std::fmt::Debug for Artifact<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("kind", &K::NAME)
            .field("path", &self.options.path)
            .finish_non_exhaustive()
    }
}

/// A value and the bytes it was loaded from.
type Loaded<V> = (V, crate::read::Source<Vec<u8>>);

impl<K: ArtifactKind> Artifact<K> {
    pub fn new(options: ArtifactOptions, metrics: Arc<ArtifactMetrics>) -> Self {
        let label = match &options.name {
            None => K::NAME.to_string(),
            Some(name) => format!("{}:{name}", K::NAME),
        };
        metrics.init(&label);
        Artifact {
            label,
            options,
            metrics,
            active: ArcSwapOption::empty(),
            loading: Mutex::new(VecDeque::new()),
            last_rejection: Mutex::new(None),
            applied: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            force: AtomicBool::new(false),
            check: None,
            _kind: PhantomData,
        }
    }

    /// Add the consumer's check: a value it rejects is rejected like any other (counted,
    /// remembered, the active value kept), and an LKG it rejects is not used.
    pub fn with_check(
        mut self,
        check: impl Fn(&K::Value) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Box::new(check));
        self
    }

    fn consumer_check(&self, value: &K::Value) -> Result<(), Rejection> {
        match &self.check {
            Some(check) => check(value).map_err(|r| r.with_version(K::version(value))),
            None => Ok(()),
        }
    }

    /// The first load. A last-known-good copy in `state_dir` is the baseline: the file is applied only if it passes every check and is newer,
    /// as on any reload — a restart does not let an older file replace a newer LKG. If the
    /// file is rejected (or missing), the LKG stays active (source `Lkg`) and an error is
    /// logged. Returns the file's outcome; `current()` tells what is active.
    pub fn start(&self) -> LoadOutcome {
        let mut memory = lock(&self.loading);
        if let Some(Ok((value, source))) = self.lkg_value() {
            self.activate_lkg(value, &source);
        }
        let mut outcome = self.load(&mut memory);
        let on_lkg = self
            .active
            .load()
            .as_deref()
            .is_some_and(|a| a.source == SourceKind::Lkg);
        if outcome == LoadOutcome::Unchanged && on_lkg {
            // The file is the LKG's bytes: take it as the file it is.
            self.active.store(None);
            outcome = self.load(&mut memory);
        }
        if let LoadOutcome::Rejected(rejection) = &outcome {
            self.after_start_rejection(rejection);
        }
        outcome
    }

    /// Load the file again (it changed, or an operator asked).
    pub fn reload(&self) -> LoadOutcome {
        let mut memory = lock(&self.loading);
        self.load(&mut memory)
    }

    /// Apply the next file even if it shrinks sharply. Cleared by the next load that gets
    /// past the "unchanged" check (whatever its result); a file rejected only for shrinking
    /// is evaluated again.
    pub fn force_next(&self) {
        self.force.store(true, Ordering::SeqCst);
        tracing::info!(
            artifact = %self.label,
            "the next file will be applied even if it shrinks sharply"
        );
    }

    /// The active value, if any. Lock-free: for the data path.
    pub fn current(&self) -> Guard<Option<Arc<Active<K::Value>>>> {
        self.active.load()
    }

    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// The files to watch for this artifact: the file, and its `.sig` when a key is set.
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.options.path.clone()];
        if self.options.public_key.is_some() {
            paths.push(signature_path(&self.options.path));
        }
        paths
    }

    pub fn status(&self) -> ArtifactStatus {
        let active = self.active.load().as_ref().map(|a| ActiveStatus {
            version: a.version,
            sha256: a.sha256.clone(),
            loaded_at: rfc3339(a.loaded_at),
            source: a.source,
        });
        ArtifactStatus {
            kind: K::NAME,
            name: self.options.name.clone(),
            path: self.options.path.display().to_string(),
            active,
            last_rejection: lock(&self.last_rejection).clone(),
            loads: self.applied.load(Ordering::Relaxed),
            rejections: self.rejections.load(Ordering::Relaxed),
            force_next: self.force.load(Ordering::Relaxed),
        }
    }

    fn load(&self, memory: &mut VecDeque<(String, Reason)>) -> LoadOutcome {
        let path = &self.options.path;
        let Source {
            content: bytes,
            sha256,
        } = match read_bounded(path, K::MAX_BYTES) {
            Ok(source) => source,
            Err(e) => {
                // A file too large is remembered by its metadata (it was not read whole);
                // an unreadable one is tried again next time.
                let key = match &e {
                    ReadError::TooLarge { .. } => metadata_key(path),
                    _ => None,
                };
                if let Some(key) = &key {
                    if memory.iter().any(|(k, _)| k == key) {
                        return self.unchanged();
                    }
                }
                let rejection = read_rejection::<K>(e);
                if let Some(key) = key {
                    remember(memory, key, rejection.reason);
                }
                return self.reject(rejection);
            }
        };

        if let Some(active) = self.active.load().as_ref() {
            if active.sha256 == sha256 {
                return self.unchanged();
            }
        }

        let signature = self
            .options
            .public_key
            .as_ref()
            .map(|key| (read_signature(path), key));
        let key = match &signature {
            None => sha256.clone(),
            Some((Ok(sig), _)) => format!("{sha256}+{}", crate::sha256_hex(sig)),
            Some((Err(_), _)) => format!("{sha256}+unsigned"),
        };
        if let Some((_, reason)) = memory.iter().find(|(k, _)| *k == key) {
            let retry = *reason == Reason::Shrink && self.force.load(Ordering::SeqCst);
            if !retry {
                return self.unchanged();
            }
        }
        let forced = self.force.swap(false, Ordering::SeqCst);
        memory.retain(|(k, _)| *k != key);

        let signature = signature.as_ref().map(|(sig, key)| (sig, *key));
        let value = match checked::<K>(path, &bytes, signature, &self.options.context)
            .and_then(|v| self.consumer_check(&v).map(|()| v))
        {
            Ok(value) => value,
            Err(rejection) => {
                remember(memory, key, rejection.reason);
                return self.reject(rejection);
            }
        };
        let version = K::version(&value);
        let active = self.active.load_full();
        if let Some(active) = &active {
            if let Err(rejection) = self.against_active(&value, active, forced) {
                let rejection = rejection.with_version(version);
                remember(memory, key, rejection.reason);
                return self.reject(rejection);
            }
        }

        let entries = K::entries(&value);
        self.active.store(Some(Arc::new(Active {
            value,
            version,
            sha256: sha256.clone(),
            loaded_at: SystemTime::now(),
            source: SourceKind::File,
        })));
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.metrics.set_version(&self.label, version);
        self.metrics.set_on_lkg(&self.label, false);
        self.metrics.load(&self.label, LoadResult::Applied);
        tracing::info!(
            artifact = %self.label,
            version,
            entries,
            sha256 = %sha256,
            forced,
            path = %path.display(),
            "artifact applied"
        );
        if let Some(dir) = &self.options.state_dir {
            let lkg = lkg_path(dir, &self.label);
            if let Err(e) = write_atomic(&lkg, &bytes) {
                tracing::error!(
                    artifact = %self.label,
                    version,
                    path = %lkg.display(),
                    error = %e,
                    "cannot save the last-known-good copy; a restart with a bad file would have no fallback"
                );
            }
        }
        LoadOutcome::Applied { version }
    }

    /// Only if newer; no sharp shrink unless forced.
    fn against_active(
        &self,
        value: &K::Value,
        active: &Active<K::Value>,
        forced: bool,
    ) -> Result<(), Rejection> {
        let version = K::version(value);
        if !K::is_newer(version, active.version) {
            return Err(Rejection::new(
                Reason::NotNewer,
                format!(
                    "version {version} is not newer than the active version {} (raise the version to apply it)",
                    active.version
                ),
            ));
        }
        let percent = self.options.max_shrink_percent;
        if !forced && percent < 100 {
            let new = K::entries(value);
            let old = K::entries(&active.value);
            if (new as u128) * 100 < (old as u128) * u128::from(100 - percent) {
                return Err(Rejection::new(
                    Reason::Shrink,
                    format!(
                        "{new} entries, down from {old}: more than {percent}% fewer than the active version (force the next load to apply it anyway)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The LKG copy, through `K::load`: `None` when there is no state folder or no copy.
    fn lkg_value(&self) -> Option<Result<Loaded<K::Value>, Rejection>> {
        let dir = self.options.state_dir.as_ref()?;
        let lkg = lkg_path(dir, &self.label);
        if !lkg.exists() {
            return None;
        }
        Some(
            read_bounded(&lkg, K::MAX_BYTES)
                .map_err(read_rejection::<K>)
                .and_then(|source| {
                    checked::<K>(&lkg, &source.content, None, &self.options.context)
                        .map(|v| (v, source))
                })
                .and_then(|(v, source)| self.consumer_check(&v).map(|()| (v, source))),
        )
    }

    fn activate_lkg(&self, value: K::Value, source: &crate::read::Source<Vec<u8>>) {
        let version = K::version(&value);
        self.active.store(Some(Arc::new(Active {
            value,
            version,
            sha256: source.sha256.clone(),
            loaded_at: SystemTime::now(),
            source: SourceKind::Lkg,
        })));
        self.metrics.set_version(&self.label, version);
        self.metrics.set_on_lkg(&self.label, true);
    }

    /// The file was rejected at start: say loudly what runs instead (the LKG, or nothing).
    fn after_start_rejection(&self, rejection: &Rejection) {
        let lkg = self
            .options
            .state_dir
            .as_ref()
            .map(|dir| lkg_path(dir, &self.label));
        match self.active.load().as_deref() {
            Some(active) if active.source == SourceKind::Lkg => tracing::error!(
                artifact = %self.label,
                version = active.version,
                sha256 = %active.sha256,
                lkg = %lkg.as_deref().map_or_else(String::new, |p| p.display().to_string()),
                path = %self.options.path.display(),
                reason = rejection.reason.label(),
                detail = %rejection.detail,
                "STARTED ON THE LAST-KNOWN-GOOD COPY: the file was rejected; fix or replace it"
            ),
            Some(_) => {}
            None => {
                let why = match self.lkg_value() {
                    None => "there is no last-known-good copy".to_string(),
                    Some(Err(e)) => format!(
                        "the last-known-good copy is unusable too ({}: {})",
                        e.reason.label(),
                        e.detail
                    ),
                    Some(Ok(_)) => "the last-known-good copy was not taken".to_string(),
                };
                tracing::error!(
                    artifact = %self.label,
                    path = %self.options.path.display(),
                    reason = rejection.reason.label(),
                    detail = %rejection.detail,
                    "the file was rejected at start and {why}: the artifact has no value"
                );
            }
        }
    }

    fn unchanged(&self) -> LoadOutcome {
        self.metrics.load(&self.label, LoadResult::Unchanged);
        LoadOutcome::Unchanged
    }

    fn reject(&self, rejection: Rejection) -> LoadOutcome {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.metrics.load(&self.label, LoadResult::Rejected);
        self.metrics.reject(&self.label, rejection.reason);
        tracing::warn!(
            artifact = %self.label,
            reason = rejection.reason.label(),
            version = rejection.version,
            detail = %rejection.detail,
            path = %self.options.path.display(),
            active_version = self.active.load().as_ref().map(|a| a.version),
            "artifact rejected; the active version stays"
        );
        *lock(&self.last_rejection) = Some(RejectionStatus {
            version: rejection.version,
            reason: rejection.reason.label(),
            detail: rejection.detail.clone(),
            at: rfc3339(SystemTime::now()),
        });
        LoadOutcome::Rejected(rejection)
    }
}

fn remember(memory: &mut VecDeque<(String, Reason)>, key: String, reason: Reason) {
    if memory.len() >= REMEMBERED_REJECTIONS {
        memory.pop_front();
    }
    memory.push_back((key, reason));
}

/// Identifies a file that was too large to read (and hash): size, mtime and inode.
fn metadata_key(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    Some(format!("too-large:{}:{mtime}:{inode}", meta.len()))
}

fn read_rejection<K: ArtifactKind>(e: ReadError) -> Rejection {
    match e {
        ReadError::TooLarge { limit, .. } => Rejection::new(
            Reason::TooLarge,
            format!(
                "the file is larger than the {limit}-byte limit for {} (the rest was not read)",
                K::NAME
            ),
        ),
        ReadError::NotUtf8 { at, .. } => {
            Rejection::new(Reason::NotUtf8, format!("not valid UTF-8 at byte {at}"))
        }
        ReadError::Io { source, .. } => {
            Rejection::new(Reason::Io, format!("cannot read the file: {source}"))
        }
    }
}

/// The checks on the bytes alone, shared by loads and `check_file`: the signature (when a
/// key is given, with the contents of the signature file or why it could not be read),
/// then `K::load`, with any panic in it caught.
fn checked<K: ArtifactKind>(
    path: &Path,
    bytes: &[u8],
    signature: Option<(&Result<Vec<u8>, Rejection>, &VerifyingKey)>,
    context: &str,
) -> Result<K::Value, Rejection> {
    if let Some((sig, key)) = signature {
        let sig = sig.as_ref().map_err(Clone::clone)?;
        verify(path, bytes, sig, key)?;
    }
    match catch_unwind(AssertUnwindSafe(|| K::load_in(context, bytes))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Rejection::new(
                Reason::Parse,
                format!(
                    "the {} loader failed on this file (internal error: {message}); the file is rejected",
                    K::NAME
                ),
            ))
        }
    }
}

/// The offline check (`holdfast check --kind`, R4): the same checks a load makes, minus
/// those against an active value (version, shrink): size, signature (when `public_key` is
/// given), `K::load`.
pub fn check_file<K: ArtifactKind>(
    path: &Path,
    public_key: Option<&VerifyingKey>,
) -> Result<K::Value, Rejection> {
    let source = read_bounded(path, K::MAX_BYTES).map_err(read_rejection::<K>)?;
    let signature = public_key.map(|key| (read_signature(path), key));
    checked::<K>(
        path,
        &source.content,
        signature.as_ref().map(|(sig, key)| (sig, *key)),
        "",
    )
}
