//! The one ingestion path for files Holdfast loads at run time: read with a size limit, check
//! the encoding, fingerprint the bytes (`read_bounded`, for the main config and TLS key
//! material), and for artifacts (`Artifact<K>`: the bot feature file, IP and rule lists...)
//! the whole safe-change pipeline: signature, the kind's own checks, only if newer, the
//! shrink guard, atomic swap, last-known-good copy, counted and recorded rejections, file
//! watching. What the bytes mean is the kind's business; this crate never panics on any input.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the one way files are taken in at run time: `read_bounded`
//! (never reads more than the limit + 1 byte), `read_bounded_text` (UTF-8, with the offset of
//! the first bad byte), `sha256_hex`, and the pipeline for generated artifacts: `ArtifactKind`
//! (a kind declares its name, size limit, `load` = parse + schema + its own semantic checks
//! with the reader's constants, `version`, `entries`), `Artifact<K>` (signature, remembered
//! rejections, only-if-newer, shrink guard, `ArcSwap`, last-known-good copy in `state_dir`,
//! start-up on the LKG, status and metrics), `check_file` (the same checks offline, for
//! `holdfast check --kind`), `Watcher` (notify plus a 1 s poll, on its own thread). The main
//! config and TLS PEM files use the bounded reads; the bot feature file uses the whole pipeline.
//! See `docs/artifacts.md`.
//!
//! **Invariant:** no `fs::read` of an operator-supplied file anywhere else.
//!
//! **Invariant:** a rejected artifact never replaces the active one: every check runs before
//! the swap, and the LKG file is written only after a swap.

#![forbid(unsafe_code)]

mod error;
mod kind;
mod lkg;
mod metrics;
mod pipeline;
#[cfg(test)]
mod pipeline_sim;
mod read;
mod signature;
mod status;
mod watch;

pub use error::ReadError;
pub use kind::{parse_json, text, ArtifactKind, Reason, Rejection};
pub use lkg::{lkg_path, write_atomic};
pub use metrics::ArtifactMetrics;
pub use pipeline::{
    check_file, Active, Artifact, ArtifactOptions, LoadOutcome, DEFAULT_MAX_SHRINK_PERCENT,
};
pub use read::{read_bounded, read_bounded_text, sha256_hex, Source};
pub use signature::{decode_public_key, signature_path, MAX_SIGNATURE_BYTES};
pub use status::{ActiveStatus, ArtifactStatus, RejectionStatus, SourceKind};
pub use watch::Watcher;

/// The key type of `ArtifactOptions::public_key`, re-exported so callers need not depend on
/// `ed25519-dalek` themselves.
pub use ed25519_dalek::VerifyingKey;
