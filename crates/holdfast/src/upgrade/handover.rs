//! The hand-over between a running process and its successor. The old process makes a
//! private folder (0700) with a Unix socket in it, starts the new binary with the socket's
//! path in `HOLDFAST_UPGRADE_SOCKET`, accepts only that child's connection (`SO_PEERCRED`),
//! and sends the manifest of its listening sockets with the descriptors attached
//! (`SCM_RIGHTS`), in batches the child acknowledges. The child starts on them and reports
//! `ready` or `failed`. Every step is bounded by `READY_TIMEOUT`; on any failure the child
//! is killed and the old process goes on serving.
//!
//! Frames are a 4-byte big-endian length and a JSON body.

use super::SocketMeta;
use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that tells a new process where to take its sockets from.
pub(crate) const ENV: &str = "HOLDFAST_UPGRADE_SOCKET";
const MAX_FRAME: usize = 1 << 20;
/// Descriptors per frame (the kernel's limit per message is 253).
const FDS_PER_FRAME: usize = 200;
/// How long the new process waits for each step of the old one.
const CHILD_STEP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("an upgrade is already under way (or done: this process is draining)")]
    Busy,
    #[error("binary {0}: {1}")]
    Binary(PathBuf, String),
    #[error("cannot start {0}: {1} (check the path and that it is executable)")]
    Spawn(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("the new process exited with {0} before it was ready (its log says why)")]
    Exited(ExitStatus),
    #[error("the new process failed to start: {0}")]
    Failed(String),
    #[error("the new process was not ready within {0:?}; it was stopped")]
    Timeout(Duration),
    #[error("hand-over protocol: {0}")]
    Protocol(String),
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Batch {
    sockets: Vec<SocketMeta>,
    last: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Report {
    Ready { pid: u32 },
    Failed { reason: String },
}

/// The new process, ready and serving.
pub(crate) struct Successor {
    pub pid: u32,
    /// Kept so the child is reaped if it exits while this process drains.
    _child: Child,
}

/// Start `binary` with `args`, hand it `sockets`, wait for its report.
pub(crate) fn hand_over(
    binary: &Path,
    args: &[OsString],
    sockets: Vec<(SocketMeta, OwnedFd)>,
    timeout: Duration,
) -> Result<Successor, UpgradeError> {
    let deadline = Instant::now() + timeout;
    let dir = tempfile::Builder::new()
        .prefix("holdfast-upgrade-")
        .tempdir()
        .map_err(|e| UpgradeError::Io("creating the hand-over folder", e))?;
    let path = dir.path().join("sockets");
    let listener = UnixListener::bind(&path)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| UpgradeError::Io("binding the hand-over socket", e))?;
    let mut child = Command::new(binary)
        .args(args)
        .env(ENV, &path)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| UpgradeError::Spawn(binary.to_path_buf(), e))?;
    tracing::info!(binary = %binary.display(), pid = child.id(), sockets = sockets.len(), "upgrade: new process started");
    let talked = talk(&listener, &mut child, &sockets, deadline, timeout);
    drop(sockets);
    match talked {
        Ok(pid) => Ok(Successor { pid, _child: child }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn talk(
    listener: &UnixListener,
    child: &mut Child,
    sockets: &[(SocketMeta, OwnedFd)],
    deadline: Instant,
    timeout: Duration,
) -> Result<u32, UpgradeError> {
    let stream = accept_child(listener, child, deadline, timeout)?;
    let io = |e| UpgradeError::Io("sending the sockets", e);
    stream.set_nonblocking(false).map_err(io)?;
    for (i, chunk) in sockets.chunks(FDS_PER_FRAME).enumerate() {
        set_timeouts(&stream, deadline, timeout)?;
        let last = (i + 1) * FDS_PER_FRAME >= sockets.len();
        let batch = Batch {
            sockets: chunk.iter().map(|(m, _)| m.clone()).collect(),
            last,
        };
        let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|(_, fd)| fd.as_fd()).collect();
        send_frame(&stream, &batch, &fds).map_err(io)?;
        if last {
            break;
        }
        // The next batch only once this one is read: one frame's descriptors per recvmsg.
        let mut ack = [0u8; 1];
        (&stream)
            .read_exact(&mut ack)
            .map_err(|e| outcome_of(child, e, timeout))?;
    }
    if sockets.is_empty() {
        send_frame(
            &stream,
            &Batch {
                sockets: Vec::new(),
                last: true,
            },
            &[],
        )
        .map_err(io)?;
    }
    set_timeouts(&stream, deadline, timeout)?;
    let report: Report =
        recv_frame(&stream, &mut Vec::new()).map_err(|e| outcome_of(child, e, timeout))?;
    match report {
        Report::Ready { pid } if pid == child.id() => Ok(pid),
        Report::Ready { pid } => Err(UpgradeError::Protocol(format!(
            "ready from pid {pid}, expected {}",
            child.id()
        ))),
        Report::Failed { reason } => Err(UpgradeError::Failed(reason)),
    }
}

/// The child's connection: it must come from the child itself (`SO_PEERCRED`).
fn accept_child(
    listener: &UnixListener,
    child: &mut Child,
    deadline: Instant,
    timeout: Duration,
) -> Result<UnixStream, UpgradeError> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let peer = rustix::net::sockopt::socket_peercred(&stream)
                    .map_err(|e| UpgradeError::Io("reading the peer's credentials", e.into()))?;
                if u32::try_from(peer.pid.as_raw_pid()).ok() == Some(child.id()) {
                    return Ok(stream);
                }
                tracing::warn!(pid = peer.pid.as_raw_pid(), "upgrade: a process that is not the new one connected to the hand-over socket; refused");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(UpgradeError::Exited(status));
                }
                if Instant::now() >= deadline {
                    return Err(UpgradeError::Timeout(timeout));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(UpgradeError::Io("accepting the new process", e)),
        }
    }
}

fn set_timeouts(
    stream: &UnixStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), UpgradeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(UpgradeError::Timeout(timeout));
    }
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| UpgradeError::Io("hand-over socket", e))
}

/// What a failed read from the child means: it timed out, or the child went away (then its
/// exit status, waited for briefly).
fn outcome_of(child: &mut Child, e: std::io::Error, timeout: Duration) -> UpgradeError {
    if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        return UpgradeError::Timeout(timeout);
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return UpgradeError::Exited(status);
        }
        std::thread::sleep(POLL);
    }
    UpgradeError::Protocol(format!("the new process closed the hand-over: {e}"))
}

fn send_frame<T: serde::Serialize>(
    stream: &UnixStream,
    body: &T,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("ancillary buffer too small"));
    }
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(&frame)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )?;
    // The descriptors went with the first bytes; the rest, if any, is plain data.
    let rest = frame.get(sent..).unwrap_or_default();
    let mut writer = stream;
    writer.write_all(rest)
}

/// One frame; descriptors that came with it are appended to `fds`.
fn recv_frame<T: serde::de::DeserializeOwned>(
    stream: &UnixStream,
    fds: &mut Vec<OwnedFd>,
) -> std::io::Result<T> {
    let mut head = [0u8; 4];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_FRAME))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut head)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(std::io::Error::other(
            "descriptors truncated (too many open files?)",
        ));
    }
    let mut reader = stream;
    if let Some(rest) = head.get_mut(got.bytes..) {
        reader.read_exact(rest)?;
    }
    let len = usize::try_from(u32::from_be_bytes(head)).map_err(std::io::Error::other)?;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// The sockets a new process received, each with its description.
pub(crate) type Received = Vec<(SocketMeta, OwnedFd)>;

/// The new process's end of the hand-over.
pub struct Handover {
    stream: UnixStream,
}

impl Handover {
    /// When started by an upgrade (`HOLDFAST_UPGRADE_SOCKET` set): connect and take the
    /// sockets.
    pub(crate) fn receive() -> Result<Option<(Handover, Received)>, UpgradeError> {
        let Some(path) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let io = |e| UpgradeError::Io("taking the sockets from the old process", e);
        let stream = UnixStream::connect(&path).map_err(io)?;
        stream
            .set_read_timeout(Some(CHILD_STEP_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(CHILD_STEP_TIMEOUT)))
            .map_err(io)?;
        let mut sockets = Vec::new();
        loop {
            let mut fds = Vec::new();
            let batch: Batch = recv_frame(&stream, &mut fds).map_err(io)?;
            if batch.sockets.len() != fds.len() {
                return Err(UpgradeError::Protocol(format!(
                    "{} sockets described, {} received",
                    batch.sockets.len(),
                    fds.len()
                )));
            }
            sockets.extend(batch.sockets.into_iter().zip(fds));
            if batch.last {
                break;
            }
            (&stream).write_all(b"k").map_err(io)?;
        }
        tracing::info!(
            sockets = sockets.len(),
            "upgrade: took the listening sockets from the old process"
        );
        Ok(Some((Handover { stream }, sockets)))
    }

    /// Tell the old process this one serves: it stops accepting and drains.
    pub fn ready(self) -> std::io::Result<()> {
        let pid = std::process::id();
        send_frame(&self.stream, &Report::Ready { pid }, &[])
    }

    /// Tell the old process this one failed (it keeps serving).
    pub fn failed(self, reason: &str) {
        let report = Report::Failed {
            reason: reason.to_string(),
        };
        let _ = send_frame(&self.stream, &report, &[]);
    }
}
