//! One HTTP/3 request stream: read its head (bounded by `client_header_timeout`), adapt its
//! body, run `service::handle` — the phases every protocol goes through — and stream the
//! response back. A response body that fails mid-way resets the stream (the client sees an
//! incomplete response, as an HTTP/2 client sees RST_STREAM); a client that stops reading
//! for `CLIENT_SEND_TIMEOUT` is dropped, releasing the origin.

use super::body::H3Body;
use crate::body::{ClientBody, ResponseBody};
use crate::ctx::ConnInfo;
use crate::send_timeout::CLIENT_SEND_TIMEOUT;
use crate::state::State;
use arc_swap::ArcSwap;
use bytes::Bytes;
use h3::error::{Code, StreamError};
use h3::server::{RequestResolver, RequestStream};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

type SendStream = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// RFC 8470: what the origin is told about a request that arrived in early data.
static EARLY_DATA: HeaderName = HeaderName::from_static("early-data");

/// Headers that are connection-specific in HTTP/1.1 and malformed in HTTP/3 (RFC 9114
/// §4.2): never sent to an HTTP/3 client, whatever the origin or an edge page said.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

pub(super) async fn serve(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    states: Arc<ArcSwap<State>>,
    conn: ConnInfo,
    early: Option<Arc<AtomicBool>>,
) {
    let state = states.load_full();
    let edge = &state.config.edge;
    let head = tokio::time::timeout(edge.client_header_timeout, resolver.resolve_request());
    let (req, stream) = match head.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.client, error = %e, "HTTP/3 request refused");
            if matches!(e, StreamError::HeaderTooBig { .. }) {
                // h3 has answered 431 on the stream; the connection goes on.
                state.metrics.bad_request("header_too_large");
            } else if !e.is_h3_no_error() {
                // A malformed frame or field section: h3 closes the connection (or resets
                // the stream) with the RFC 9114 error code.
                state.metrics.bad_request("malformed");
            }
            return;
        }
        Err(_) => return state.metrics.bad_request("header_timeout"),
    };
    let (mut send, recv) = stream.split();
    if req.headers().len() > edge.limits.max_headers {
        state.metrics.bad_request("header_too_large");
        return edge_answer(&mut send, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
    }
    let in_early_data = early.is_some_and(|pending| pending.load(Ordering::Relaxed));
    if in_early_data && !is_safe(req.method()) {
        state.metrics.quic.early_data_rejected.inc();
        return edge_answer(&mut send, StatusCode::TOO_EARLY).await;
    }
    let length = declared_length(req.headers());
    let mut body = H3Body::new(recv, length);
    if length.is_none_or(|n| n == 0) {
        let peek = tokio::time::timeout(edge.client_header_timeout, body.peek());
        if let Ok(Err(e)) = peek.await {
            tracing::debug!(client = %conn.client, error = %e, "HTTP/3 request body failed");
            return;
        }
    }
    let mut req = req.map(|()| ClientBody::Stream(Box::pin(body)));
    if in_early_data {
        req.headers_mut()
            .insert(EARLY_DATA.clone(), HeaderValue::from_static("1"));
    }
    let head_only = req.method() == Method::HEAD;
    let Ok(resp) = crate::service::handle(state, conn, req).await;
    respond(&mut send, resp, head_only).await;
}

/// RFC 8470 §3: only requests that are safe to replay are served from early data.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A bodiless answer the edge makes before the request reaches the service.
async fn edge_answer(send: &mut SendStream, status: StatusCode) {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    if send_timed(send.send_response(resp)).await {
        let _ = send_timed(send.finish()).await;
    }
}

/// Stream `resp` to the client: the head, the body chunk by chunk, trailers, the end.
async fn respond(send: &mut SendStream, resp: Response<ResponseBody>, head_only: bool) {
    let (mut parts, mut body) = resp.into_parts();
    for name in &CONNECTION_SPECIFIC {
        parts.headers.remove(name);
    }
    if !send_timed(send.send_response(Response::from_parts(parts, ()))).await {
        return;
    }
    loop {
        if head_only {
            break;
        }
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; resetting the HTTP/3 stream");
                send.stop_stream(Code::H3_INTERNAL_ERROR);
                return;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                if !send_timed(send.send_data(data)).await {
                    send.stop_stream(Code::H3_REQUEST_CANCELLED);
                    return;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    if !send_timed(send.send_trailers(trailers)).await {
                        return;
                    }
                }
            }
        }
    }
    let _ = send_timed(send.finish()).await;
}

/// One write to the client, bounded by the stall limit every client write has.
async fn send_timed<F, E>(write: F) -> bool
where
    F: std::future::Future<Output = Result<(), E>>,
{
    matches!(
        tokio::time::timeout(CLIENT_SEND_TIMEOUT, write).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replay_safe_methods_in_early_data() {
        assert!(is_safe(&Method::GET));
        assert!(is_safe(&Method::HEAD));
        assert!(!is_safe(&Method::POST));
        assert!(!is_safe(&Method::PUT));
        assert!(!is_safe(&Method::DELETE));
    }

    #[test]
    fn reads_the_declared_length() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(declared_length(&h), Some(12));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(declared_length(&h), None);
    }
}
