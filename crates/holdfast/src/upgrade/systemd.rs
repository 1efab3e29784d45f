//! systemd: socket activation (`LISTEN_PID`, `LISTEN_FDS`; `listenfd` checks the pid and the
//! socket types) and `sd_notify` (readiness at start; at a binary upgrade, the new main pid,
//! so systemd follows the new process instead of stopping the service when the old exits).
//! Sockets are matched to configured addresses by their local address, not by name.

use super::{Proto, Role, SocketMeta};
use std::os::fd::OwnedFd;

/// The sockets systemd passed (none when `LISTEN_FDS` is unset or for another pid).
pub(super) fn listen_fds() -> Vec<(SocketMeta, OwnedFd)> {
    let mut fds = listenfd::ListenFd::from_env();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut out = Vec::new();
    for idx in 0..fds.len() {
        let name = names.split(':').nth(idx).unwrap_or("");
        let taken = match fds.take_tcp_listener(idx) {
            Ok(Some(l)) => l.local_addr().map(|a| (Proto::Tcp, a, OwnedFd::from(l))),
            Ok(None) => continue,
            Err(_) => match fds.take_udp_socket(idx) {
                Ok(Some(u)) => u.local_addr().map(|a| (Proto::Udp, a, OwnedFd::from(u))),
                Ok(None) => continue,
                Err(e) => Err(e),
            },
        };
        match taken {
            Ok((proto, local, fd)) => {
                tracing::info!(%local, ?proto, name, "systemd passed a socket");
                let meta = SocketMeta {
                    role: Role::Systemd,
                    proto,
                    configured: None,
                    local,
                };
                out.push((meta, fd));
            }
            Err(e) => {
                tracing::warn!(fd = idx + 3, name, error = %e, "LISTEN_FDS: not a TCP listener or UDP socket; ignored (check ListenStream=/ListenDatagram= in the socket unit)");
            }
        }
    }
    out
}

/// `READY=1` when run by systemd as `Type=notify` (nothing otherwise).
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "sd_notify READY=1 failed");
    }
}

/// `MAINPID=pid`: the new process of a binary upgrade is the service's main process now.
pub(crate) fn notify_main_pid(pid: u32) {
    let states = [sd_notify::NotifyState::MainPid(pid)];
    if let Err(e) = sd_notify::notify(false, &states) {
        tracing::warn!(error = %e, pid, "sd_notify MAINPID failed");
    }
}
