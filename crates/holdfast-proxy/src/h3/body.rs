//! An HTTP/3 request body as an `http_body::Body`, so the phases read it as they read
//! hyper's (`ClientBody::Stream`). Its stream failures (reset by the client, connection lost)
//! become `BodyError::Stream`; request trailers are not forwarded (as for HTTP/2 clients,
//! origins get the body only).

use crate::body::BodyError;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pub(super) type RecvStream = RequestStream<h3_quinn::RecvStream, Bytes>;

pub(super) struct H3Body {
    stream: RecvStream,
    /// A chunk read ahead by `peek`, returned first.
    first: Option<Bytes>,
    /// The stream ended (FIN): nothing more to read.
    done: bool,
    /// What is left of the declared `Content-Length`, for the size hint.
    length: Option<u64>,
}

impl H3Body {
    pub(super) fn new(stream: RecvStream, length: Option<u64>) -> Self {
        H3Body {
            stream,
            first: None,
            done: false,
            length,
        }
    }

    /// Read ahead until the first chunk or the end of the stream, so that a request whose
    /// body is empty (a GET's stream ends right after its headers) is known to be empty
    /// before it is forwarded: an origin then gets no body framing at all.
    pub(super) async fn peek(&mut self) -> Result<(), BodyError> {
        if self.done || self.first.is_some() {
            return Ok(());
        }
        match std::future::poll_fn(|cx| self.poll_chunk(cx)).await? {
            Some(chunk) => self.first = Some(chunk),
            None => self.done = true,
        }
        Ok(())
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BodyError>> {
        loop {
            return match self.stream.poll_recv_data(cx) {
                Poll::Ready(Ok(Some(mut buf))) => {
                    let chunk = buf.copy_to_bytes(buf.remaining());
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(left) = self.length.as_mut() {
                        *left = left.saturating_sub(chunk.len() as u64);
                    }
                    Poll::Ready(Ok(Some(chunk)))
                }
                Poll::Ready(Ok(None)) => Poll::Ready(Ok(None)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(BodyError::Stream(e.to_string()))),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match this.poll_chunk(cx) {
            Poll::Ready(Ok(Some(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(Ok(None)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            return SizeHint::with_exact(0);
        }
        let first = self.first.as_ref().map_or(0, |c| c.len() as u64);
        match self.length {
            Some(n) => SizeHint::with_exact(n + first),
            None => SizeHint::default(),
        }
    }
}
