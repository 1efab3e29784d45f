//! Why a file could not be taken in. Messages leave the path out: callers put it first,
//! as in `edge.toml: the file is larger than ...`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the file: {source} (check that it exists and is readable)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the file is larger than the {limit}-byte limit (is this the right file?)")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("the file is not valid UTF-8 at byte {at} (save it as UTF-8 text)")]
    NotUtf8 { path: PathBuf, at: usize },
}
