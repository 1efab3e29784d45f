//! The errors of the fleet layer: the store's (etcd unreachable, timed out, refused) and the
//! operator's (an intent that does not fit the fleet's state), each saying what to do.

/// A failed etcd operation. The fleet layer treats every one as "etcd unavailable": callers
/// keep what they have and retry with back-off.
#[derive(Debug, Clone, thiserror::Error)]
#[error("etcd {op}: {detail}")]
pub struct StoreError {
    /// The operation (`get`, `txn`, `lease keep-alive`, ...).
    pub op: &'static str,
    pub detail: String,
}

impl StoreError {
    pub fn new(op: &'static str, detail: impl Into<String>) -> Self {
        StoreError {
            op,
            detail: detail.into(),
        }
    }
}

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value that does not decode (written by another version, or by hand).
    #[error("{key}: cannot decode the stored value: {detail} (rewrite it with `holdfast rollout`, or delete the key)")]
    Decode { key: String, detail: String },
    /// The operator asked for something the fleet's state does not allow.
    #[error("{0}")]
    Refused(String),
    /// Another writer changed the same record first; read again and retry.
    #[error("{0}: changed concurrently by another writer; try again")]
    Conflict(String),
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    value: &[u8],
) -> Result<T, FleetError> {
    serde_json::from_slice(value).map_err(|e| FleetError::Decode {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings, numbers and maps with string keys: they
    // always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}
