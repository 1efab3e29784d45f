//! Files in `state_dir/acme/`: one account per directory URL (`account-<hash>.json`, the
//! credentials instant-acme serialises, private key included) and one file per name set
//! (`<first name>-<hash>.pem`: the chain, then its private key, so a crash can never pair a
//! certificate with another key). Every file is written whole (temporary file, then rename),
//! mode 0600, and read back through `holdfast_artifact::read_bounded`.

use crate::AcmeError;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Larger account or certificate files are refused.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct Storage {
    dir: PathBuf,
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A name set's id: its first name and a hash of all of them (the stem of its file, and its
/// key in a fleet's etcd).
pub(crate) fn set_id(domains: &[String]) -> String {
    let mut sorted = domains.to_vec();
    sorted.sort();
    let first = domains.first().map_or("none", String::as_str);
    format!("{first}-{}", short_hash(&sorted.join(",")))
}

impl Storage {
    pub fn new(state_dir: &Path) -> Storage {
        Storage {
            dir: state_dir.join("acme"),
        }
    }

    pub fn account_path(&self, directory: &str) -> PathBuf {
        self.dir
            .join(format!("account-{}.json", short_hash(directory)))
    }

    /// The set's file: named after its first name (readable) and a hash of all of them.
    pub fn cert_path(&self, domains: &[String]) -> PathBuf {
        self.dir.join(format!("{}.pem", set_id(domains)))
    }

    /// The file's bytes, `None` if it does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, AcmeError> {
        match holdfast_artifact::read_bounded(path, MAX_FILE_BYTES) {
            Ok(read) => Ok(Some(read.content)),
            Err(holdfast_artifact::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(AcmeError::File {
                path: path.to_path_buf(),
                what: e.to_string(),
            }),
        }
    }

    /// Write `bytes` to `path` whole, readable by the owner only.
    pub fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
        let io = |source| AcmeError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = self.dir.join(format!(
            ".{}.tmp.{}",
            name.as_deref().unwrap_or("file"),
            std::process::id()
        ));
        let result = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut file = opts.open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_written_whole_and_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let path = s.cert_path(&["www.a.test".into(), "a.test".into()]);
        assert_eq!(
            path,
            s.cert_path(&["www.a.test".into(), "a.test".into()]),
            "stable"
        );
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("www.a.test-"));
        assert_eq!(s.read(&path).unwrap(), None);
        s.write_private(&path, b"pem").unwrap();
        assert_eq!(s.read(&path).unwrap().as_deref(), Some(&b"pem"[..]));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(
            s.account_path("https://a/dir"),
            s.account_path("https://b/dir")
        );
    }

    #[test]
    fn an_oversized_file_is_an_error_not_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let path = s.account_path("https://a/dir");
        s.write_private(&path, &vec![b'x'; (MAX_FILE_BYTES + 1) as usize])
            .unwrap();
        assert!(matches!(s.read(&path), Err(AcmeError::File { .. })));
    }
}
