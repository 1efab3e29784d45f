//! The one ingestion path for files Holdfast loads at run time: read with a size limit, check
//! the encoding, fingerprint the bytes (`read_bounded`, for the main config and TLS key
//! material), and for artifacts (`Artifact<K>`: the bot feature file, IP and rule lists...)
//! the whole safe-change pipeline: signature, the kind's own checks, only if newer, the
//! shrink guard, atomic swap, last-known-good copy, counted and recorded rejections, file
//! watching. What the bytes mean is the kind's business; this crate never panics on any input.

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
