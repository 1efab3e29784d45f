//! What an artifact kind declares, and why a file can be rejected. A kind (the bot feature
//! file, an IP list, a rule list) owns its format and its semantic checks, written against the
//! same constants its reader uses; the pipeline (`Artifact`) owns everything every kind shares:
//! the size limit, the signature, "only if newer", the shrink guard, the atomic swap and the
//! last-known-good copy.

use serde::de::DeserializeOwned;

/// One kind of artifact: its name, its size limit and how its bytes become a value.
pub trait ArtifactKind: Send + Sync + 'static {
    /// The loaded form, ready for the data path (compiled, preallocated).
    type Value: Send + Sync + 'static;
    /// Metric label, `/status` name, `holdfast check --kind` name and LKG file stem,
    /// e.g. `"bot-features"`.
    const NAME: &'static str;
    /// Files larger than this are rejected without reading the rest.
    const MAX_BYTES: u64;

    /// Bytes (within `MAX_BYTES`, signature already checked) to a value: parse, schema
    /// (unknown fields rejected, required present, types exact) and the consumer's semantic
    /// checks (capacity, ranges, duplicates, emptiness), using the consumer's own constants.
    fn load(bytes: &[u8]) -> Result<Self::Value, Rejection>;

    /// `load` for a kind whose files need a word from the config to be read (a DNS zone
    /// file's origin): the pipeline calls this with `ArtifactOptions::context`. The default
    /// ignores the context.
    fn load_in(context: &str, bytes: &[u8]) -> Result<Self::Value, Rejection> {
        let _ = context;
        Self::load(bytes)
    }

    /// Is version `new` newer than `active`? Plain `>` by default; a kind whose versions
    /// wrap (DNS SOA serials, RFC 1982 serial arithmetic) says so here.
    fn is_newer(new: u64, active: u64) -> bool {
        new > active
    }

    /// The version the file declares; a file is applied only if it is newer than the active one.
    fn version(value: &Self::Value) -> u64;

    /// Number of entries, for the shrink guard (a sharp drop against the active version is
    /// rejected unless forced).
    fn entries(value: &Self::Value) -> usize;
}

/// Why an artifact was rejected: the `reason` label of `holdfast_artifact_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Over the kind's `MAX_BYTES`.
    TooLarge,
    /// The file could not be read.
    Io,
    NotUtf8,
    /// Not well-formed JSON/TOML (syntax, truncation, empty file).
    Parse,
    /// Well-formed, but a field is unknown, missing or of the wrong type.
    Schema,
    /// More entries than the reader has room for.
    Capacity,
    /// The same name twice.
    Duplicate,
    /// A name the reader does not know.
    Unknown,
    /// A value out of its range (non-finite, too large, negative...).
    Range,
    /// No entries where none would be dangerous.
    Empty,
    /// Far fewer entries than the active version, not forced.
    Shrink,
    /// A version not newer than the active one.
    NotNewer,
    /// Missing or wrong signature while a public key is configured.
    Signature,
    /// An entry the consumer cannot build (a rule expression that does not compile, an
    /// unknown action).
    Invalid,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Io => "io",
            Reason::NotUtf8 => "not_utf8",
            Reason::Parse => "parse",
            Reason::Schema => "schema",
            Reason::Capacity => "capacity",
            Reason::Duplicate => "duplicate",
            Reason::Unknown => "unknown_name",
            Reason::Range => "range",
            Reason::Empty => "empty",
            Reason::Shrink => "shrink",
            Reason::NotNewer => "not_newer",
            Reason::Signature => "signature",
            Reason::Invalid => "invalid",
        }
    }
}

/// A rejected file: the reason (for metrics) and a message naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    /// The version the file declared, when it got that far.
    pub version: Option<u64>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            version: None,
        }
    }

    pub fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }
}

/// The bytes as UTF-8 text, or a `NotUtf8` rejection naming the first bad byte.
pub fn text(bytes: &[u8]) -> Result<&str, Rejection> {
    std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            Reason::NotUtf8,
            format!(
                "not valid UTF-8 at byte {} (write the file as UTF-8)",
                e.valid_up_to()
            ),
        )
    })
}

/// JSON to `T`: syntax errors (and truncation) are `Parse`, a well-formed document of the
/// wrong shape is `Schema`; both name the path of the field (`features[3].weight`) and
/// the line and column. `T` should `#[serde(deny_unknown_fields)]`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
    let text = text(bytes)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let reason = match inner.classify() {
            serde_json::error::Category::Data => Reason::Schema,
            _ => Reason::Parse,
        };
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        Rejection::new(reason, format!("{at}{inner}"))
    })?;
    de.end()
        .map_err(|e| Rejection::new(Reason::Parse, e.to_string()))?;
    Ok(value)
}
