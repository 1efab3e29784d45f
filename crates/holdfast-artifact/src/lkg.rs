//! Last-known-good copies: the exact bytes of the last applied file of each kind, kept in
//! `state_dir/<NAME>.lkg` so that a restart with a bad file on disk comes up on them.
//! Written atomically: a temporary file in the same folder, `fsync`, `rename`, then `fsync`
//! of the folder, so a crash leaves either the old copy or the new one, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the last-known-good copy of the kind `name` lives.
pub fn lkg_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.lkg"))
}

/// Replace `path` with `bytes` atomically (creating its folder if needed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the folder is; not every platform can open a folder.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = lkg_path(&dir.path().join("state"), "bot-features");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("bot-features.lkg")]);
    }

    #[test]
    fn failure_leaves_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lkg");
        write_atomic(&p, b"old").unwrap();
        // The target is now a non-empty folder: rename must fail.
        let q = dir.path().join("y.lkg");
        fs::create_dir(&q).unwrap();
        fs::write(q.join("inside"), b"").unwrap();
        assert!(write_atomic(&q, b"new").is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
