//! The disk tier: one file per URI (its newest variant) under the route's `cache.disk.path`,
//! named by the SHA-256 of the key, written whole to a temporary name and renamed (not
//! fsynced: a file torn by a crash fails its checksum), ending in a SHA-256 of everything
//! before it. A file whose checksum or shape is wrong is deleted and
//! never served. Writes, deletes and eviction (oldest written first, over `size`) run on one
//! writer thread fed by a bounded channel, so the data path never waits for a disk; reads
//! run where the caller puts them (the proxy uses `spawn_blocking`). A folder that cannot be
//! created or written turns the tier off: the cache goes on in memory.

use crate::entry::Entry;
use crate::policy::{self, Freshness, Options};
use crate::stats::Stats;
use crate::store::Purge;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"HFC1";
const QUEUE: usize = 1024;

enum Job {
    Write(String, Arc<Entry>),
    Remove(String),
    Purge(Purge),
    /// A reader found this file corrupt and deleted it.
    Forget(String),
}

/// The disk tier of one route's cache.
pub struct DiskTier {
    dir: PathBuf,
    /// Largest file a read accepts (max object size plus headers).
    max_file: u64,
    jobs: SyncSender<Job>,
    stats: Arc<Stats>,
}

impl DiskTier {
    /// Opens (creating) `dir` and starts its writer; `None` when the folder is not usable.
    pub fn open(dir: &Path, size: u64, max_object: u64, stats: Arc<Stats>) -> Option<DiskTier> {
        let probe = dir.join(".probe");
        let usable = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b"ok"))
            .and_then(|()| std::fs::remove_file(&probe));
        if let Err(e) = usable {
            tracing_off(&format!("cache disk tier off: {}: {e}", dir.display()));
            stats.disk_errors.fetch_add(1, Relaxed);
            return None;
        }
        let (jobs, rx) = sync_channel(QUEUE);
        let writer = Writer::scan(dir, size, Arc::clone(&stats));
        let spawned = std::thread::Builder::new()
            .name("holdfast-cache-disk".into())
            .spawn(move || writer.run(rx));
        if spawned.is_err() {
            stats.disk_errors.fetch_add(1, Relaxed);
            return None;
        }
        Some(DiskTier {
            dir: dir.to_path_buf(),
            max_file: max_object.saturating_add(1 << 20),
            jobs,
            stats,
        })
    }

    /// Queues `entry` to be written; dropped (and counted) when the writer is behind.
    pub fn save(&self, key: &str, entry: Arc<Entry>) {
        if self
            .jobs
            .try_send(Job::Write(key.to_owned(), entry))
            .is_err()
        {
            self.stats.disk_errors.fetch_add(1, Relaxed);
        }
    }

    pub fn remove(&self, key: &str) {
        let _ = self.jobs.try_send(Job::Remove(key.to_owned()));
    }

    pub fn purge(&self, what: &Purge) {
        let _ = self.jobs.try_send(Job::Purge(what.clone()));
    }

    /// Reads `key`'s file (blocking). A corrupt file is deleted and counted.
    pub fn load(&self, key: &str, opts: &Options) -> Option<Entry> {
        let name = file_name(key);
        let path = self.dir.join(&name);
        let file = std::fs::File::open(&path).ok()?;
        let mut bytes = Vec::new();
        if file
            .take(self.max_file + 1)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return None;
        }
        match decode(&bytes, opts) {
            Some((stored_key, entry)) if stored_key == key => {
                self.stats.disk_hits.fetch_add(1, Relaxed);
                Some(entry)
            }
            // A different key under the same hash cannot happen short of a SHA-256
            // collision; treat it like damage.
            _ => {
                self.stats.disk_corrupt.fetch_add(1, Relaxed);
                let _ = std::fs::remove_file(&path);
                let _ = self.jobs.try_send(Job::Forget(name));
                None
            }
        }
    }
}

fn tracing_off(message: &str) {
    // The cache crate logs nothing itself; stderr is where the edge's logs go.
    eprintln!("{message}");
}

fn file_name(key: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

struct Indexed {
    key: String,
    tags: Vec<String>,
    size: u64,
    seq: u64,
}

struct Writer {
    dir: PathBuf,
    cap: u64,
    index: HashMap<String, Indexed>,
    total: u64,
    seq: u64,
    stats: Arc<Stats>,
}

impl Writer {
    /// Indexes the files already there (a warm restart), oldest first; unreadable ones go.
    fn scan(dir: &Path, cap: u64, stats: Arc<Stats>) -> Writer {
        let mut w = Writer {
            dir: dir.to_path_buf(),
            cap,
            index: HashMap::new(),
            total: 0,
            seq: 0,
            stats,
        };
        let mut found: Vec<(SystemTime, String, u64)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let meta = e.metadata().ok()?;
                if name.len() != 64 || !meta.is_file() {
                    // Left-over temporary files of an interrupted write.
                    if name.ends_with(".tmp") {
                        let _ = std::fs::remove_file(e.path());
                    }
                    return None;
                }
                Some((meta.modified().unwrap_or(UNIX_EPOCH), name, meta.len()))
            })
            .collect();
        found.sort();
        for (_, name, size) in found {
            match read_head(&dir.join(&name)) {
                Some((key, tags)) => w.add(name, key, tags, size),
                None => {
                    w.stats.disk_corrupt.fetch_add(1, Relaxed);
                    let _ = std::fs::remove_file(dir.join(&name));
                }
            }
        }
        w.evict();
        w
    }

    fn add(&mut self, name: String, key: String, tags: Vec<String>, size: u64) {
        self.seq += 1;
        let old = self.index.insert(
            name,
            Indexed {
                key,
                tags,
                size,
                seq: self.seq,
            },
        );
        self.total = self.total + size - old.map_or(0, |o| o.size);
        self.publish();
    }

    fn publish(&self) {
        self.stats
            .disk_objects
            .store(self.index.len() as u64, Relaxed);
        self.stats.disk_bytes.store(self.total, Relaxed);
    }

    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            match job {
                Job::Write(key, entry) => self.write(&key, &entry),
                Job::Remove(key) => self.delete(&file_name(&key)),
                Job::Forget(name) => {
                    if let Some(old) = self.index.remove(&name) {
                        self.total -= old.size;
                        self.publish();
                    }
                }
                Job::Purge(what) => {
                    let names: Vec<String> = self
                        .index
                        .iter()
                        .filter(|(_, i)| match &what {
                            Purge::Exact(k) => i.key == *k,
                            Purge::Prefix(p) => i.key.starts_with(p.as_str()),
                            Purge::Tag(t) => i.tags.iter().any(|x| x == t),
                            Purge::All => true,
                        })
                        .map(|(n, _)| n.clone())
                        .collect();
                    names.iter().for_each(|n| self.delete(n));
                }
            }
        }
    }

    fn write(&mut self, key: &str, entry: &Entry) {
        let name = file_name(key);
        let bytes = encode(key, entry);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let done = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(&name)));
        if done.is_err() {
            // Disk full or gone: this object stays in memory only.
            let _ = std::fs::remove_file(&tmp);
            self.stats.disk_errors.fetch_add(1, Relaxed);
            return;
        }
        let tags = entry.tags.iter().map(|t| t.to_string()).collect();
        self.add(name, key.to_owned(), tags, bytes.len() as u64);
        self.evict();
    }

    fn delete(&mut self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
        if let Some(old) = self.index.remove(name) {
            self.total -= old.size;
            self.publish();
        }
    }

    /// Oldest written first, until the tier is within its size.
    fn evict(&mut self) {
        while self.total > self.cap {
            let Some(oldest) = self
                .index
                .iter()
                .min_by_key(|(_, i)| i.seq)
                .map(|(n, _)| n.clone())
            else {
                return;
            };
            self.delete(&oldest);
            self.stats.disk_evictions.fetch_add(1, Relaxed);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode(key: &str, e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(e.body.len() + 1024);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, key.as_bytes());
    out.extend_from_slice(&e.status.as_u16().to_le_bytes());
    let f = &e.freshness;
    let since = f
        .response_time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for n in [f.lifetime, f.corrected_initial_age, since] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(e.selected.len() as u32).to_le_bytes());
    for (name, value) in &e.selected {
        put_bytes(&mut out, name.as_str().as_bytes());
        out.push(u8::from(value.is_some()));
        put_bytes(&mut out, value.as_deref().unwrap_or("").as_bytes());
    }
    out.extend_from_slice(&(e.headers.len() as u32).to_le_bytes());
    for (name, value) in &e.headers {
        put_bytes(&mut out, name.as_str().as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    out.extend_from_slice(&(e.body.len() as u64).to_le_bytes());
    out.extend_from_slice(&e.body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// A cursor over a file's bytes; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

struct Head {
    key: String,
    status: StatusCode,
    times: [u64; 3],
    selected: crate::vary::Selected,
    headers: HeaderMap,
}

fn decode_head(c: &mut Cursor<'_>) -> Option<Head> {
    if c.take(4)? != MAGIC {
        return None;
    }
    let key = c.str()?.to_owned();
    let status = StatusCode::from_u16(c.u16()?).ok()?;
    let times = [c.u64()?, c.u64()?, c.u64()?];
    let mut selected = Vec::new();
    for _ in 0..c.u32()? {
        let name = HeaderName::from_bytes(c.bytes()?).ok()?;
        let present = c.take(1)? == [1];
        let value = c.str()?;
        selected.push((name, present.then(|| Box::from(value))));
    }
    let mut headers = HeaderMap::new();
    for _ in 0..c.u32()? {
        let name = HeaderName::from_bytes(c.bytes()?).ok()?;
        let value = HeaderValue::from_bytes(c.bytes()?).ok()?;
        headers.append(name, value);
    }
    Some(Head {
        key,
        status,
        times,
        selected,
        headers,
    })
}

/// The whole file, checksum first; `None` for anything damaged.
fn decode(bytes: &[u8], opts: &Options) -> Option<(String, Entry)> {
    let split = bytes.len().checked_sub(32)?;
    let (content, sum) = (bytes.get(..split)?, bytes.get(split..)?);
    if Sha256::digest(content).as_slice() != sum {
        return None;
    }
    let mut c = Cursor(content);
    let head = decode_head(&mut c)?;
    let len = usize::try_from(c.u64()?).ok()?;
    let body = Bytes::copy_from_slice(c.take(len)?);
    if !c.0.is_empty() {
        return None;
    }
    let (directives, _) = policy::response_directives(&head.headers, opts);
    let [lifetime, corrected_initial_age, since] = head.times;
    let freshness = Freshness {
        lifetime,
        corrected_initial_age,
        response_time: UNIX_EPOCH + Duration::from_secs(since),
        directives,
    };
    let entry = Entry::new(head.status, head.headers, body, freshness, head.selected);
    Some((head.key, entry))
}

/// The key and surrogate keys of a file, reading only its head (the restart scan).
fn read_head(path: &Path) -> Option<(String, Vec<String>)> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut buf)
        .ok()?;
    let head = decode_head(&mut Cursor(&buf))?;
    let entry_tags = crate::entry::tags(&head.headers);
    Some((head.key, entry_tags.iter().map(|t| t.to_string()).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::ResponseDirectives;

    fn entry() -> Entry {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        h.insert("surrogate-key", HeaderValue::from_static("a b"));
        let f = Freshness {
            lifetime: 60,
            corrected_initial_age: 2,
            response_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            directives: ResponseDirectives::default(),
        };
        let selected = vec![(
            HeaderName::from_static("accept-encoding"),
            Some("gzip".into()),
        )];
        Entry::new(StatusCode::OK, h, Bytes::from_static(b"hello"), f, selected)
    }

    #[test]
    fn round_trips_and_rejects_any_flipped_byte() {
        let e = entry();
        let bytes = encode("h/a", &e);
        let (key, back) = decode(&bytes, &Options::default()).unwrap();
        assert_eq!(key, "h/a");
        assert_eq!(back.body, e.body);
        assert_eq!(back.selected, e.selected);
        assert_eq!(back.freshness.lifetime, 60);
        assert_eq!(back.freshness.directives.max_age, Some(60));
        assert_eq!(&*back.tags, &*e.tags);
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad, &Options::default()).is_none(), "byte {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 3], &Options::default()).is_none());
    }

    #[test]
    fn an_unusable_folder_turns_the_tier_off() {
        let stats = Arc::new(Stats::default());
        let tier = DiskTier::open(
            Path::new("/proc/holdfast-no-such"),
            1 << 20,
            1 << 10,
            Arc::clone(&stats),
        );
        assert!(tier.is_none());
        assert_eq!(stats.disk_errors.load(Relaxed), 1);
    }

    #[test]
    fn evicts_oldest_over_the_size_and_warms_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let size = encode("k0", &entry()).len() as u64 * 2;
        let mut w = Writer::scan(dir.path(), size, Arc::clone(&stats));
        for i in 0..3 {
            w.write(&format!("k{i}"), &entry());
        }
        assert_eq!(w.index.len(), 2);
        assert_eq!(stats.disk_evictions.load(Relaxed), 1);
        let restarted = Writer::scan(dir.path(), size, Arc::new(Stats::default()));
        let mut keys: Vec<_> = restarted.index.values().map(|i| i.key.clone()).collect();
        keys.sort();
        assert_eq!(keys, ["k1", "k2"]);
        let tier = DiskTier::open(dir.path(), size, 1 << 10, Arc::clone(&stats)).unwrap();
        assert!(tier.load("k2", &Options::default()).is_some());
        assert!(tier.load("k0", &Options::default()).is_none());
        // Damage one file: it is dropped, never served.
        let path = dir.path().join(file_name("k1"));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(tier.load("k1", &Options::default()).is_none());
        assert!(!path.exists());
        assert_eq!(stats.disk_corrupt.load(Relaxed), 1);
    }
}
