//! An in-memory UDP network for quinn endpoints, so the HTTP/3 listener's own code can run
//! without sockets (`fuzzing::H3Exchange`): datagrams between the sockets of one `Network`
//! go through channels, in order, never lost. Not used by the server.

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

type Datagram = (SocketAddr, Vec<u8>);

#[derive(Debug, Default)]
pub(crate) struct Network {
    sockets: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Datagram>>>,
}

impl Network {
    /// A socket on this network at `addr`.
    pub(crate) fn socket(self: &Arc<Self>, addr: SocketAddr) -> Arc<MemorySocket> {
        let (tx, rx) = mpsc::unbounded_channel();
        holdfast_common::lock(&self.sockets).insert(addr, tx);
        Arc::new(MemorySocket {
            addr,
            network: Arc::clone(self),
            rx: Mutex::new(rx),
        })
    }
}

#[derive(Debug)]
pub(crate) struct MemorySocket {
    addr: SocketAddr,
    network: Arc<Network>,
    rx: Mutex<mpsc::UnboundedReceiver<Datagram>>,
}

/// Always writable: sends never block.
#[derive(Debug)]
struct Writable;

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for MemorySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // One datagram per transmit (max_transmit_segments is 1); to nowhere if no socket
        // has that address, as UDP would.
        let sockets = holdfast_common::lock(&self.network.sockets);
        if let Some(to) = sockets.get(&transmit.destination) {
            let _ = to.send((self.addr, transmit.contents.to_vec()));
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut rx = holdfast_common::lock(&self.rx);
        let (from, data) = match rx.poll_recv(cx) {
            Poll::Ready(Some(d)) => d,
            Poll::Ready(None) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => return Poll::Pending,
        };
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let n = data.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        *m = RecvMeta {
            addr: from,
            len: n,
            stride: n,
            dst_ip: Some(self.addr.ip()),
            ..RecvMeta::default()
        };
        Poll::Ready(Ok(1))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
