//! The one ingestion path for files Holdfast loads at run time (today: the main config and
//! TLS key material): read with a size limit, check the encoding, fingerprint the bytes.
//! What the bytes mean is the consumer's business; this crate never panics on any input.

mod error;
mod kind;
mod read;

pub use error::ReadError;
pub use kind::{parse_json, text, ArtifactKind, Reason, Rejection};
pub use read::{read_bounded, read_bounded_text, sha256_hex, Source};
