//! Telling cleartext HTTP/2 with prior knowledge (h2c) from HTTP/1.1 on a plain connection:
//! read the first bytes, compare them with the HTTP/2 connection preface, and replay them to
//! whichever of the edge's own servers takes the connection, so h2c listeners apply exactly
//! the limits every other connection gets. Nothing here parses beyond the preface.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection whose first bytes were read to sniff the protocol; reads return them first.
pub(crate) struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

/// Read until the bytes seen are the whole preface (HTTP/2) or cannot begin it (HTTP/1.1),
/// or the client closes. Callers bound this with the client header timeout.
pub(crate) async fn sniff(mut stream: TcpStream) -> io::Result<(bool, Rewind)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    let h2 = loop {
        let n = stream
            .read(buf.get_mut(filled..).unwrap_or_default())
            .await?;
        filled += n;
        if n == 0 || !PREFACE.starts_with(buf.get(..filled).unwrap_or_default()) {
            break false;
        }
        if filled == PREFACE.len() {
            break true;
        }
    };
    let prefix = buf.get(..filled).unwrap_or_default().to_vec();
    Ok((
        h2,
        Rewind {
            prefix,
            pos: 0,
            inner: stream,
        },
    ))
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = this.prefix.get(this.pos..).unwrap_or_default();
        if !rest.is_empty() {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
