//! Bounded reads: never more than `limit + 1` bytes are read, whatever the file claims.

use crate::error::ReadError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The bytes of an artifact and their fingerprint.
#[derive(Debug, Clone)]
pub struct Source<T> {
    pub content: T,
    /// Lower-case hex SHA-256 of the bytes as read.
    pub sha256: String,
}

/// Read at most `limit` bytes of `path`; a longer file is rejected without reading the rest.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Source<Vec<u8>>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let sha256 = sha256_hex(&bytes);
    Ok(Source {
        content: bytes,
        sha256,
    })
}

/// `read_bounded`, then UTF-8.
pub fn read_bounded_text(path: &Path, limit: u64) -> Result<Source<String>, ReadError> {
    let Source { content, sha256 } = read_bounded(path, limit)?;
    match String::from_utf8(content) {
        Ok(text) => Ok(Source {
            content: text,
            sha256,
        }),
        Err(e) => Err(ReadError::NotUtf8 {
            path: path.to_path_buf(),
            at: e.utf8_error().valid_up_to(),
        }),
    }
}

/// Lower-case hex SHA-256 of `bytes`: the fingerprint shown for every artifact.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn reads_within_limit_and_hashes() {
        let (_dir, p) = temp("ok.txt", b"abc");
        let s = read_bounded_text(&p, 3).unwrap();
        assert_eq!(s.content, "abc");
        assert_eq!(
            s.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rejects_oversize() {
        let (_dir, p) = temp("big.txt", &[b'a'; 11]);
        assert!(matches!(
            read_bounded(&p, 10),
            Err(ReadError::TooLarge { limit: 10, .. })
        ));
    }

    #[test]
    fn rejects_non_utf8_with_offset() {
        let (_dir, p) = temp("bin.txt", b"ab\xffcd");
        match read_bounded_text(&p, 100) {
            Err(ReadError::NotUtf8 { at, .. }) => assert_eq!(at, 2),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_file_keeps_the_path() {
        let err = read_bounded(Path::new("/nonexistent/holdfast.toml"), 10).unwrap_err();
        assert!(
            matches!(&err, ReadError::Io { path, .. } if path == Path::new("/nonexistent/holdfast.toml"))
        );
        assert!(err.to_string().starts_with("cannot read the file"));
    }
}
