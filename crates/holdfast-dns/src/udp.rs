//! The UDP listener. Each datagram is first offered to the current generation's `AnswerMap`
//! (pre-encoded zone answers, answered inline with one `send_to`); anything it does not cover
//! is decoded by hickory and answered by the `Handler` in a task of its own, as hickory's own
//! server does: FORMERR when the header reads but the rest does not, nothing for a message
//! shorter than a header or for a response, and the answer limited to 512 bytes without EDNS
//! or to the client's EDNS payload size (hickory truncates and sets TC). TCP stays on hickory's
//! server.

use crate::handler::{Handler, Shared};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// The largest datagram read (a larger one is cut and then fails to parse: FORMERR).
const MAX_DATAGRAM: usize = 4096;
/// Queries on hickory's path in flight at once; beyond it a query is dropped (the client
/// retries), so a flood of uncovered queries cannot grow memory without bound.
const MAX_SLOW_IN_FLIGHT: usize = 1024;

/// Serves `socket` until the task is dropped.
pub(crate) async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(512);
    let mut slow = tokio::task::JoinSet::new();
    loop {
        let (len, src) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // An ICMP error for an earlier answer, or a signal: the socket is fine.
            Err(e)
                if !matches!(
                    e.kind(),
                    ErrorKind::NotConnected | ErrorKind::ConnectionAborted
                ) =>
            {
                tracing::debug!(error = %e, "dns: udp receive");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "dns: the UDP socket failed; UDP queries are no longer answered");
                return;
            }
        };
        // Port 0 cannot be answered (and is a reflection attempt).
        if src.port() == 0 {
            continue;
        }
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        if shared.catalog.load().map.answer(packet, &mut out) {
            if let Err(e) = socket.send_to(&out, src).await {
                tracing::debug!(error = %e, %src, "dns: udp send");
            }
            continue;
        }
        while slow.try_join_next().is_some() {}
        if slow.len() >= MAX_SLOW_IN_FLIGHT {
            continue;
        }
        let bytes = packet.to_vec();
        let handler = Handler(Arc::clone(&shared));
        let socket = Arc::clone(&socket);
        slow.spawn(async move {
            if let Some(reply) = answer_slow(&handler, bytes, src).await {
                if let Err(e) = socket.send_to(&reply, src).await {
                    tracing::debug!(error = %e, %src, "dns: udp send");
                }
            }
        });
    }
}

/// The whole UDP path for one datagram: the map, else hickory. `None`: no answer is sent.
pub(crate) async fn answer(handler: &Handler, bytes: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if handler.0.catalog.load().map.answer(bytes, &mut out) {
        return Some(out);
    }
    answer_slow(handler, bytes.to_vec(), src).await
}

/// hickory's path: decode, then the handler; FORMERR for a message that does not decode.
pub(crate) async fn answer_slow(
    handler: &Handler,
    bytes: Vec<u8>,
    src: SocketAddr,
) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(&bytes)).ok()?;
    let reply = UdpReply::default();
    match Request::from_bytes(bytes, src, Protocol::Udp) {
        Ok(request) => {
            // Never answer a response (reflection).
            if request.metadata.message_type == MessageType::Response {
                return None;
            }
            handler
                .handle_request::<UdpReply, TokioTime>(&request, reply.clone())
                .await;
        }
        Err(error) => {
            tracing::debug!(%error, %src, "dns: malformed query, FORMERR");
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return None;
            };
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let _ = reply.clone().send_response(response).await;
        }
    }
    let sent = holdfast_common::lock(&reply.0).take();
    sent
}

/// Encodes an answer as hickory's UDP handle does (512 bytes without EDNS, else the EDNS
/// payload size, truncating with TC) and keeps the bytes for the caller to send.
#[derive(Clone, Default)]
struct UdpReply(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let id = response.metadata().id;
        let max = response.edns().map_or(512, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                tracing::error!(%error, "dns: cannot encode an answer, SERVFAIL");
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                let mut metadata =
                    Metadata::new(id, MessageType::Response, hickory_proto::op::OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                header
                    .emit(&mut encoder)
                    .map_err(hickory_server::net::NetError::from)?;
                ResponseInfo::from(header)
            }
        };
        *holdfast_common::lock(&self.0) = Some(bytes);
        Ok(info)
    }
}
