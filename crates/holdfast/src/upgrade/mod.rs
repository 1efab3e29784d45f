//! Binary upgrades without dropping a connection, and sockets handed to us at start.
//!
//! `Sockets` gives the wiring a listening socket for an address: the one inherited (from
//! the process this one replaces, `handover`, or from systemd socket activation,
//! `systemd`) when there is one for that address, else a freshly bound one. It keeps a
//! duplicate of every socket it gave out, so that this process can hand them all to its own
//! successor. `handover` is the protocol between the two processes (descriptors over a Unix
//! socket with `SCM_RIGHTS`, then the new process's ready or failed report); `cli` is
//! `holdfast upgrade`, which asks the running process through its admin plane.
//!
//! What this must not do: bind an address twice (a socket is bound once, then passed on),
//! or leave a socket of a `SO_REUSEPORT` group without a process accepting on it.

pub mod cli;
mod handover;
mod systemd;

pub(crate) use handover::hand_over;
pub use handover::{Handover, UpgradeError};
pub(crate) use systemd::notify_main_pid;
pub use systemd::notify_ready;

use holdfast_common::lock;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

/// How long a new process may take to start, load its configuration and say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a socket serves, for the logs and the hand-over's manifest (matching is by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    Http,
    Https,
    Admin,
    Dns,
    StatusPage,
    /// An HTTP/3 listener's UDP socket (`edge.h3_listen`).
    H3,
    /// From systemd socket activation: its use is known once an address matches.
    Systemd,
    /// A role a later version added: matched by the address it is bound to only.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

/// One socket's description in the hand-over manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SocketMeta {
    pub role: Role,
    pub proto: Proto,
    /// The address as the configuration wrote it (it may have port 0); `None` from systemd.
    pub configured: Option<SocketAddr>,
    /// The address the socket is bound to.
    pub local: SocketAddr,
}

impl SocketMeta {
    /// The socket bound to `addr`; or, for an address written with port 0 (several can be),
    /// the one the same configured address and role got last time.
    fn matches(&self, role: Role, proto: Proto, addr: SocketAddr) -> bool {
        self.proto == proto
            && (self.local == addr || (self.configured == Some(addr) && self.role == role))
    }
}

/// The listening sockets of this process: inherited ones not yet claimed, and a duplicate of
/// each one in use (for a hand-over).
#[derive(Debug, Default)]
pub struct Sockets {
    inherited: Mutex<Vec<(SocketMeta, OwnedFd)>>,
    in_use: Mutex<Vec<(SocketMeta, OwnedFd)>>,
    /// Where the inherited sockets came from, for the logs: `"upgrade"` or `"systemd"`.
    from: &'static str,
}

impl Sockets {
    /// Nothing inherited: every socket is bound fresh.
    pub fn none() -> Sockets {
        Sockets::default()
    }

    pub(crate) fn inherited(from: &'static str, sockets: Vec<(SocketMeta, OwnedFd)>) -> Sockets {
        Sockets {
            inherited: Mutex::new(sockets),
            in_use: Mutex::default(),
            from,
        }
    }

    /// Every inherited socket for `proto` and `addr`, taken out of the set.
    fn take(&self, role: Role, proto: Proto, addr: SocketAddr) -> Vec<OwnedFd> {
        let mut inherited = lock(&self.inherited);
        let (taken, rest): (Vec<_>, Vec<_>) = inherited
            .drain(..)
            .partition(|(meta, _)| meta.matches(role, proto, addr));
        *inherited = rest;
        if !taken.is_empty() {
            tracing::info!(%addr, ?proto, count = taken.len(), from = self.from, "listening on inherited sockets");
        }
        taken.into_iter().map(|(_, fd)| fd).collect()
    }

    fn keep(
        &self,
        role: Role,
        proto: Proto,
        configured: SocketAddr,
        local: SocketAddr,
        socket: &impl AsFd,
    ) -> std::io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        let meta = SocketMeta {
            role,
            proto,
            configured: Some(configured),
            local,
        };
        lock(&self.in_use).push((meta, fd));
        Ok(())
    }

    /// The data path's sockets for `addr`: the inherited group, else `n` fresh `SO_REUSEPORT`
    /// sockets.
    pub(crate) fn tcp_group(
        &self,
        role: Role,
        addr: SocketAddr,
        n: usize,
    ) -> std::io::Result<Vec<TcpListener>> {
        let taken = self.take(role, Proto::Tcp, addr);
        let sockets = if taken.is_empty() {
            holdfast_proxy::bind_all(addr, n)?.1
        } else {
            taken.into_iter().map(TcpListener::from).collect()
        };
        for s in &sockets {
            self.keep(role, Proto::Tcp, addr, s.local_addr()?, s)?;
        }
        Ok(sockets)
    }

    /// One listening socket for `addr` (admin plane, status page).
    pub(crate) fn tcp(&self, role: Role, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let mut taken = self.take(role, Proto::Tcp, addr).into_iter();
        let socket = match taken.next() {
            Some(fd) => TcpListener::from(fd),
            None => TcpListener::bind(addr)?,
        };
        if taken.len() > 0 {
            tracing::warn!(%addr, extra = taken.len(), "more inherited sockets than used for this address; closed");
        }
        self.keep(role, Proto::Tcp, addr, socket.local_addr()?, &socket)?;
        Ok(socket)
    }

    /// An HTTP/3 listener's UDP socket for `addr`: the inherited one, else a fresh one.
    pub(crate) fn udp(&self, role: Role, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        let mut taken = self.take(role, Proto::Udp, addr).into_iter();
        let socket = match taken.next() {
            Some(fd) => UdpSocket::from(fd),
            None => holdfast_proxy::bind_h3(addr)?,
        };
        if taken.len() > 0 {
            tracing::warn!(%addr, extra = taken.len(), "more inherited sockets than used for this address; closed");
        }
        self.keep(role, Proto::Udp, addr, socket.local_addr()?, &socket)?;
        Ok(socket)
    }

    /// The DNS server's UDP and TCP sockets for `addr`: inherited, else bound on one port.
    pub(crate) fn dns(&self, addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
        let udp = self.take(Role::Dns, Proto::Udp, addr).into_iter().next();
        let tcp = self.take(Role::Dns, Proto::Tcp, addr).into_iter().next();
        let (udp, tcp) = match (udp, tcp) {
            (Some(u), Some(t)) => (UdpSocket::from(u), TcpListener::from(t)),
            (Some(u), None) => {
                let udp = UdpSocket::from(u);
                let tcp = TcpListener::bind(udp.local_addr()?)?;
                (udp, tcp)
            }
            (None, Some(t)) => {
                let tcp = TcpListener::from(t);
                let udp = UdpSocket::bind(tcp.local_addr()?)?;
                (udp, tcp)
            }
            (None, None) => holdfast_dns::bind_udp_tcp(addr)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        };
        self.keep(Role::Dns, Proto::Udp, addr, udp.local_addr()?, &udp)?;
        self.keep(Role::Dns, Proto::Tcp, addr, tcp.local_addr()?, &tcp)?;
        Ok((udp, tcp))
    }

    /// After the start: close inherited sockets no configured address claimed (the new
    /// configuration dropped or moved that listener).
    pub(crate) fn close_unclaimed(&self) {
        for (meta, _fd) in lock(&self.inherited).drain(..) {
            tracing::warn!(local = %meta.local, role = ?meta.role, proto = ?meta.proto, from = self.from, "inherited socket matches no configured address: closed");
        }
    }

    /// Duplicates of every socket in use, for the successor.
    pub(crate) fn for_handover(&self) -> std::io::Result<Vec<(SocketMeta, OwnedFd)>> {
        lock(&self.in_use)
            .iter()
            .map(|(meta, fd)| Ok((meta.clone(), fd.try_clone()?)))
            .collect()
    }

    /// Close the duplicates (at shutdown: a listening socket must close with its listener,
    /// or the kernel keeps queueing connections nobody will accept).
    pub(crate) fn release(&self) {
        lock(&self.in_use).clear();
    }
}

/// What this process inherited at start, and from where.
pub struct Inherited {
    pub sockets: Sockets,
    /// Set when this process was started by a binary upgrade: report ready or failed on it.
    pub handover: Option<Handover>,
}

/// Take the sockets handed to this process: from the process it replaces (a binary
/// upgrade) or from systemd (`LISTEN_FDS`). Call once, first thing in `main`.
pub fn inherit() -> Result<Inherited, UpgradeError> {
    if let Some((handover, sockets)) = Handover::receive()? {
        return Ok(Inherited {
            sockets: Sockets::inherited("upgrade", sockets),
            handover: Some(handover),
        });
    }
    let sockets = systemd::listen_fds();
    let sockets = if sockets.is_empty() {
        Sockets::none()
    } else {
        Sockets::inherited("systemd", sockets)
    };
    Ok(Inherited {
        sockets,
        handover: None,
    })
}

/// The path this process was started from. After the file was replaced (the usual way to
/// install a new version), `/proc/self/exe` reads `PATH (deleted)`: the new file is at PATH.
pub(crate) fn own_binary() -> Result<std::path::PathBuf, UpgradeError> {
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| UpgradeError::Io("reading /proc/self/exe", e))?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => std::path::PathBuf::from(path),
        None => exe,
    })
}

/// The new binary must be a regular, executable file that only its owner can write: the
/// admin plane can name it, and whoever can write it would run code as this process.
pub(crate) fn check_binary(path: &std::path::Path) -> Result<(), UpgradeError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |why: &str| Err(UpgradeError::Binary(path.to_path_buf(), why.to_string()));
    if !path.is_absolute() {
        return bad("not an absolute path");
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return bad(&format!("{e} (check the path)")),
    };
    let mode = meta.permissions().mode();
    if !meta.is_file() {
        return bad("not a regular file");
    }
    if mode & 0o111 == 0 {
        return bad("not executable (chmod +x)");
    }
    if mode & 0o022 != 0 {
        return bad("writable by group or others (chmod go-w)");
    }
    Ok(())
}

/// A `POST /upgrade` on its way to the loop that owns the `Running`.
#[derive(Debug)]
pub struct UpgradeJob {
    pub binary: Option<std::path::PathBuf>,
    reply: std::sync::mpsc::SyncSender<Result<u32, String>>,
}

impl UpgradeJob {
    /// The outcome: the new process's pid, or why it failed.
    pub fn reply(self, outcome: Result<u32, String>) {
        let _ = self.reply.send(outcome);
    }
}

/// The admin plane's side of the upgrade channel.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeRequests(pub(crate) tokio::sync::mpsc::UnboundedSender<UpgradeJob>);

impl UpgradeRequests {
    /// Ask for an upgrade and wait (bounded) for its outcome.
    pub(crate) fn ask(
        &self,
        binary: Option<std::path::PathBuf>,
    ) -> Result<serde_json::Value, (u16, String)> {
        let (reply, outcome) = std::sync::mpsc::sync_channel(1);
        self.0
            .send(UpgradeJob { binary, reply })
            .map_err(|_| (503, "this process is stopping".to_string()))?;
        let old_pid = std::process::id();
        match outcome.recv_timeout(READY_TIMEOUT + Duration::from_secs(10)) {
            Ok(Ok(new_pid)) => Ok(serde_json::json!({
                "result": "upgraded",
                "old_pid": old_pid,
                "new_pid": new_pid,
            })),
            Ok(Err(reason)) => Err((
                500,
                format!("upgrade failed; still serving on pid {old_pid}: {reason}"),
            )),
            Err(_) => Err((
                504,
                format!("no outcome in time; pid {old_pid} is still serving"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn h3_sockets_are_in_the_manifest_and_later_roles_match_by_address() {
        let local: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let meta = SocketMeta {
            role: Role::H3,
            proto: Proto::Udp,
            configured: Some("127.0.0.1:0".parse().unwrap()),
            local,
        };
        let text = serde_json::to_string(&meta).unwrap();
        assert!(text.contains(r#""role":"h3""#), "{text}");
        assert_eq!(serde_json::from_str::<SocketMeta>(&text).unwrap(), meta);
        // Port 0 in the configuration: the same role's socket; by address: any role's.
        assert!(meta.matches(Role::H3, Proto::Udp, "127.0.0.1:0".parse().unwrap()));
        assert!(!meta.matches(Role::Dns, Proto::Udp, "127.0.0.1:0".parse().unwrap()));
        assert!(!meta.matches(Role::H3, Proto::Tcp, local));
        let later = text.replace(r#""h3""#, r#""some_later_role""#);
        let later: SocketMeta = serde_json::from_str(&later).unwrap();
        assert_eq!(later.role, Role::Other);
        assert!(later.matches(Role::H3, Proto::Udp, local));
    }
}
