//! The UDP listener. Datagrams are taken from the socket in batches (`recvmmsg`, up to
//! `BATCH` per system call); each is first offered to the current generation's `AnswerMap`
//! (pre-encoded zone answers, answered inline: the batch's answers leave together by one
//! `sendmmsg`); anything it does not cover is decoded by hickory and answered by the
//! `Handler` in a task of its own, as hickory's own server does: FORMERR when the header reads
//! but the rest does not, nothing for a message shorter than a header or for a response, and
//! the answer limited to 512 bytes without EDNS or to the client's EDNS payload size (hickory
//! truncates and sets TC). TCP stays on hickory's server.
//!
//! `recvmmsg` is nix's safe wrapper and `sendmmsg` rustix's (rustix has no `recvmmsg`; nix's
//! `sendmmsg` reports its count only through an iterator over receive headers). quinn-udp is
//! not used: it turns on UDP GRO and the DF bit for the whole socket and sends to one
//! destination per call, which does not batch answers to many clients. Where the
//! kernel refuses either call (`ENOSYS`, as in some sandboxes) the loop falls back to one
//! `recv_from` / `send_to` per datagram for the rest of the socket's life.

use crate::handler::{Handler, Shared};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use std::cell::RefCell;
use std::io::{ErrorKind, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The largest datagram read (a larger one is cut and then fails to parse: FORMERR).
const MAX_DATAGRAM: usize = 4096;
/// Queries on hickory's path in flight at once; beyond it a query is dropped (the client
/// retries), so a flood of uncovered queries cannot grow memory without bound.
const MAX_SLOW_IN_FLIGHT: usize = 1024;
/// Datagrams taken by one `recvmmsg` (and so answers sent by one `sendmmsg`, at most).
const BATCH: usize = 64;
/// The fewest slots offered to one `recvmmsg` (see `offered` in `serve`).
const MIN_OFFERED: usize = 2;
/// How long one batch of answers waits in all for room in a full send buffer; what is still
/// unsent then is dropped (DNS clients retry), so a stuck socket never holds the receive loop.
const SEND_WAIT: Duration = Duration::from_millis(50);

thread_local! {
    /// nix's `recvmmsg` headers: they hold raw pointers (not `Send`), so they cannot live in
    /// the task across an `.await`; each thread keeps one set, used only inside the call, with
    /// the address family it was last used for (the kernel leaves each header's address
    /// length at the last sender's, which is the same for every datagram of one family; a
    /// socket of the other family on the same thread gets fresh headers).
    static RECV_HEADERS: RefCell<Option<(bool, MultiHeaders<SockaddrStorage>)>> =
        const { RefCell::new(None) };
}

/// Serves `socket` until the task is dropped.
///
/// The catalog generation is loaded once per batch: a reload that lands between two
/// datagrams of one batch is seen from the next batch on.
pub(crate) async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut bufs = vec![0u8; BATCH * MAX_DATAGRAM];
    // Per datagram of the batch, in the order of `bufs`' slots: its length and its source.
    let mut got: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(BATCH);
    let mut answers = Answers::default();
    let mut out = Vec::with_capacity(512);
    let mut slow = tokio::task::JoinSet::new();
    let mut batching = true;
    let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    // Slots offered to the next `recvmmsg`: twice what the last one filled, so a quiet
    // socket (one datagram per wake-up) does not pay for setting up `BATCH` of them.
    let mut offered = MIN_OFFERED;
    loop {
        let received = if batching {
            socket
                .async_io(Interest::READABLE, || {
                    recv_batch(&socket, v6, offered, &mut bufs, &mut got)
                })
                .await
        } else {
            recv_one(&socket, &mut bufs, &mut got).await
        };
        match received {
            Ok(()) => {}
            Err(e) if batching && e.kind() == ErrorKind::Unsupported => {
                tracing::warn!(error = %e, "dns: recvmmsg unavailable, one datagram per system call");
                batching = false;
                continue;
            }
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
        }
        offered = (2 * got.len()).clamp(MIN_OFFERED, BATCH);
        let generation = shared.catalog.load();
        for (slot, &(len, src)) in bufs.chunks(MAX_DATAGRAM).zip(&got) {
            // Port 0 cannot be answered (and is a reflection attempt); nor can a source that is
            // not an IP address.
            let Some(src) = src.filter(|s| s.port() != 0) else {
                continue;
            };
            let Some(packet) = slot.get(..len) else {
                continue;
            };
            if generation.map.answer(packet, &mut out) {
                answers.push(&out, src);
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
        drop(generation);
        if !answers.is_empty() {
            batching = send_answers(&socket, &answers, batching).await;
            answers.clear();
        }
    }
}

/// One `recvmmsg` into the first `offered` of `bufs`' `MAX_DATAGRAM`-sized slots; `got` gets
/// each datagram's length and source. `WouldBlock` when nothing is queued (tokio then waits for
/// readiness).
fn recv_batch(
    socket: &UdpSocket,
    v6: bool,
    offered: usize,
    bufs: &mut [u8],
    got: &mut Vec<(usize, Option<SocketAddr>)>,
) -> std::io::Result<()> {
    got.clear();
    RECV_HEADERS.with_borrow_mut(|kept| {
        if kept.as_ref().is_none_or(|(family, _)| *family != v6) {
            *kept = Some((v6, MultiHeaders::preallocate(BATCH, None)));
        }
        let Some((_, headers)) = kept.as_mut() else {
            return Ok(());
        };
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
            .chunks_mut(MAX_DATAGRAM)
            .take(offered.clamp(1, BATCH))
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let received = nix::sys::socket::recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::empty(),
            None,
        )?;
        for message in received {
            // A datagram longer than its slot was cut to it (MSG_TRUNC): it fails to parse.
            let len = message.bytes.min(MAX_DATAGRAM);
            got.push((len, message.address.as_ref().and_then(std_addr)));
        }
        Ok(())
    })
}

/// The fallback: one `recv_from` into the first slot.
async fn recv_one(
    socket: &UdpSocket,
    bufs: &mut [u8],
    got: &mut Vec<(usize, Option<SocketAddr>)>,
) -> std::io::Result<()> {
    got.clear();
    let slot = bufs.get_mut(..MAX_DATAGRAM).unwrap_or_default();
    let (len, src) = socket.recv_from(slot).await?;
    got.push((len, Some(src)));
    Ok(())
}

/// nix's address of a received datagram as the standard library's (`None`: not IP).
fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// The pre-encoded answers of one batch, back to back, with where each goes.
#[derive(Default)]
struct Answers {
    bytes: Vec<u8>,
    /// Per answer: its end in `bytes` (it starts where the previous one ends).
    ends: Vec<usize>,
    to: Vec<SocketAddr>,
}

impl Answers {
    fn push(&mut self, answer: &[u8], to: SocketAddr) {
        self.bytes.extend_from_slice(answer);
        self.ends.push(self.bytes.len());
        self.to.push(to);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.to.clear();
    }

    /// The `i`th answer and its destination.
    fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let start = match i.checked_sub(1) {
            Some(before) => *self.ends.get(before)?,
            None => 0,
        };
        let end = *self.ends.get(i)?;
        Some((self.bytes.get(start..end)?, *self.to.get(i)?))
    }
}

/// Sends every answer of the batch, `sendmmsg` from answer `from` on, as many as it takes.
/// Returns `false` when batching is unavailable and the rest went one `send_to` each.
///
/// A full send buffer (`WouldBlock`) is waited out for at most `SEND_WAIT` for the whole
/// batch; then the answers not yet sent are dropped (their clients retry), so the receive
/// loop is never held for longer. An answer that the kernel refuses alone (an unreachable
/// destination, say) is skipped; the others still go.
async fn send_answers(socket: &UdpSocket, answers: &Answers, batching: bool) -> bool {
    let count = answers.len();
    let mut next = 0;
    if batching {
        let mut deadline = None;
        // Each round sends at least one answer, skips one, or waits; the waits end at the
        // deadline, the bound ends a socket that keeps reporting room it does not have.
        for _ in 0..2 * count + 2 {
            if next >= count {
                return true;
            }
            // One answer left (a quiet moment's batch): one `sendto`, no headers to build.
            let sent = match answers.get(next) {
                Some((bytes, to)) if next + 1 == count => socket.try_send_to(bytes, to).map(|_| 1),
                _ => socket.try_io(Interest::WRITABLE, || send_batch(socket, answers, next)),
            };
            match sent {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let until =
                        *deadline.get_or_insert_with(|| tokio::time::Instant::now() + SEND_WAIT);
                    if !matches!(
                        tokio::time::timeout_at(until, socket.writable()).await,
                        Ok(Ok(()))
                    ) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    tracing::warn!(error = %e, "dns: sendmmsg unavailable, one answer per system call");
                    return send_one_by_one(socket, answers, next).await;
                }
                Err(e) => {
                    if let Some((_, to)) = answers.get(next) {
                        tracing::debug!(error = %e, %to, "dns: udp send");
                    }
                    next += 1;
                }
            }
        }
        if next < count {
            tracing::debug!(
                dropped = count - next,
                "dns: the UDP send buffer stayed full; answers dropped (clients retry)"
            );
        }
        return true;
    }
    send_one_by_one(socket, answers, next).await
}

/// The fallback: one `send_to` per answer from `from` on, each waiting for room as tokio's
/// `send_to` does. Returns `false` (batching is off from now on).
async fn send_one_by_one(socket: &UdpSocket, answers: &Answers, from: usize) -> bool {
    for i in from..answers.len() {
        let Some((bytes, to)) = answers.get(i) else {
            break;
        };
        if let Err(e) = socket.send_to(bytes, to).await {
            tracing::debug!(error = %e, %to, "dns: udp send");
        }
    }
    false
}

/// One `sendmmsg` of the answers from `from` on; the number the kernel took.
fn send_batch(socket: &UdpSocket, answers: &Answers, from: usize) -> std::io::Result<usize> {
    let (slices, to): (Vec<[IoSlice<'_>; 1]>, Vec<SocketAddrAny>) = (from..answers.len())
        .filter_map(|i| answers.get(i))
        .map(|(bytes, to)| ([IoSlice::new(bytes)], SocketAddrAny::from(to)))
        .unzip();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = slices
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = to
        .iter()
        .zip(&slices)
        .zip(controls.iter_mut())
        .map(|((to, slice), control)| MMsgHdr::new_with_addr(to, slice, control))
        .collect();
    Ok(rustix::net::sendmmsg(
        socket,
        &mut messages,
        SendFlags::empty(),
    )?)
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
