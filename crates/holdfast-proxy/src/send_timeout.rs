//! A client connection's write side with a stall limit: when writing to the client has made
//! no progress for `limit` (its receive window stays full: it stopped reading), the next write
//! fails with `TimedOut` and hyper closes the connection, which drops the response body and
//! with it the origin connection and the pool's slot. Without it a client that never reads
//! holds all three for as long as it keeps the socket open (hyper has no write timeout, and
//! the route's read timeout only runs while the body is polled). nginx's `send_timeout`.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// How long writing to a client may stall before the connection is closed (nginx's
/// `send_timeout` default).
pub(crate) const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct SendTimeout<I> {
    inner: I,
    limit: Duration,
    /// Armed at the first write that could not proceed; cleared by any write that did.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> SendTimeout<I> {
    pub(crate) fn new(inner: I, limit: Duration) -> Self {
        SendTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    pub(crate) fn into_inner(self) -> I {
        self.inner
    }

    /// The write side is `Pending`: `Pending` until the stall has lasted `limit`, then the error.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl<I: Read + Unpin> Read for SendTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for SendTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncReadExt;

    /// Writes `chunk` until a write stays pending, as hyper does with a client that stopped
    /// reading; the result of the write that ended it.
    async fn write_until_refused(
        io: &mut SendTimeout<TokioIo<tokio::io::DuplexStream>>,
    ) -> io::Result<usize> {
        let chunk = [7u8; 1024];
        let mut sent = 0;
        loop {
            let n = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, &chunk)).await?;
            sent += n;
            assert!(sent < 1 << 20, "the duplex buffer never filled up");
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_after_the_limit() {
        let (ours, _client) = tokio::io::duplex(4096);
        let limit = Duration::from_millis(200);
        let mut io = SendTimeout::new(TokioIo::new(ours), limit);
        let start = std::time::Instant::now();
        let err = write_until_refused(&mut io).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= limit, "cut before the limit");
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        let (ours, mut client) = tokio::io::duplex(4096);
        // Generous against a loaded machine: the reader reads every 20 ms.
        let mut io = SendTimeout::new(TokioIo::new(ours), Duration::from_secs(5));
        // The client reads 1 KiB at a time with pauses: each read lets a write proceed.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                total += client.read(&mut buf).await.unwrap_or(0);
            }
            (total, client)
        });
        let chunk = [7u8; 1024];
        let mut sent = 0;
        // 20 reads of 1 KiB leave room for the buffer (4 KiB) plus 20 KiB: 24 writes, the
        // writer stalled before most of them.
        while sent < 24 * 1024 {
            sent += std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk))
                .await
                .expect("a reader that keeps reading is never cut");
        }
        let (total, _client) = reader.await.expect("reader task");
        assert_eq!(total, 20 * 1024);
    }

    #[tokio::test]
    async fn a_stall_that_ends_rearms_the_limit_from_zero() {
        let (ours, mut client) = tokio::io::duplex(1024);
        let limit = Duration::from_millis(300);
        let mut io = SendTimeout::new(TokioIo::new(ours), limit);
        let chunk = [7u8; 1024];
        let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk))
            .await
            .expect("the first write fits");
        assert_eq!(n, 1024);
        // Full: a stalled write arms the timer; the client then drains the buffer.
        let pending = std::future::poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut io).poll_write(cx, &chunk).is_pending())
        })
        .await;
        assert!(pending, "the buffer was full");
        assert!(io.stalled.is_some(), "a stalled write arms the timer");
        let mut buf = [0u8; 1024];
        client.read_exact(&mut buf).await.expect("drain");
        let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk))
            .await
            .expect("writes proceed again");
        assert_eq!(n, 1024);
        assert!(io.stalled.is_none(), "progress clears the timer");
    }
}
