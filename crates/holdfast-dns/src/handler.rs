//! The request handler hickory-server calls for every well-formed message: a query for a
//! steered name is answered from its published `Answer` (A/AAAA, or NODATA with the zone's
//! SOA); everything else goes to hickory's `Catalog` of the active zones (NXDOMAIN/NODATA
//! with SOA, CNAME chains, referrals, REFUSED outside our zones, BADVERS, FORMERR). Both
//! read lock-free snapshots; nothing here blocks or panics. Malformed packets never get
//! here: hickory's server answers FORMERR or drops them.

use crate::metrics::DnsMetrics;
use crate::negative::NegativeTtl;
use crate::steer::Answer;
use crate::wire::AnswerMap;
use crate::zone::Zone;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use hickory_proto::op::Message;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse, MessageResponseBuilder, Queries};
use std::collections::HashMap;
use std::sync::Arc;

/// A steered name's published answer and the SOA of its zone (for NODATA).
pub(crate) struct Published {
    pub answer: Answer,
    pub soa: Option<Record>,
}

/// A zone answer as hickory's catalog built it, to answer the same question again without
/// the look-up (which is most of the CPU of a zone answer).
pub(crate) struct CachedAnswer {
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

/// Answers of the active catalog by question; replaced (emptied) with the catalog. Only
/// NOERROR answers are kept (a flood of random names is NXDOMAIN and cannot fill it).
pub(crate) type AnswerCache = DashMap<(LowerName, RecordType), Arc<CachedAnswer>>;

/// Questions kept at most per catalog generation; beyond it, answers are not cached.
const MAX_CACHED: usize = 100_000;

/// One catalog generation (rebuilt whole on every zone load): hickory's catalog, the answer
/// cache that goes with it, and its pre-encoded answers for the UDP fast path.
pub(crate) struct Generation {
    pub catalog: Catalog,
    pub cache: AnswerCache,
    pub map: AnswerMap,
}

impl Generation {
    /// A catalog over `zones` (each answering negatives with the RFC 2308 SOA), an empty
    /// answer cache, and the pre-encoded answers for every name the zones hold except the
    /// `steered` ones.
    pub(crate) fn build(zones: &[&Zone], steered: &[Name], metrics: &DnsMetrics) -> Generation {
        let mut catalog = Catalog::new();
        for zone in zones {
            catalog.upsert(
                LowerName::from(&zone.origin),
                vec![NegativeTtl::handler(zone)],
            );
        }
        let map = AnswerMap::build(&catalog, zones, steered, metrics);
        Generation {
            catalog,
            cache: DashMap::new(),
            map,
        }
    }
}

/// What the handler reads; the server's tasks swap in new snapshots.
pub(crate) struct Shared {
    /// The current catalog generation.
    pub catalog: ArcSwap<Generation>,
    pub steered: ArcSwap<HashMap<LowerName, Arc<Published>>>,
    pub metrics: DnsMetrics,
}

pub(crate) struct Handler(pub Arc<Shared>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let qtype = request
            .queries
            .queries()
            .first()
            .map_or("none", |q| type_label(q.query_type()));
        let foreign_class = request
            .queries
            .queries()
            .iter()
            .any(|q| q.query_class() != DNSClass::IN);
        let info = match self.steered(request, response_handle.clone()).await {
            Some(info) => info,
            // hickory's catalog answers IN data whatever the class asked; we serve IN only.
            None if foreign_class => refuse(request, response_handle).await,
            None => self.zone_answer::<R, T>(request, response_handle).await,
        };
        self.0
            .metrics
            .queries
            .with_label_values(&[qtype, rcode_label(info.response_code)])
            .inc();
        info
    }
}

impl Handler {
    /// The catalog's answer: from the cache when this question was answered before by the
    /// same catalog, else looked up (and kept if it is a NOERROR answer).
    async fn zone_answer<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let generation = self.0.catalog.load_full();
        let (catalog, cache) = (&generation.catalog, &generation.cache);
        let Some(key) = cache_key(request) else {
            return catalog.handle_request::<R, T>(request, handle).await;
        };
        let counted = &self.0.metrics.cache;
        if let Some(hit) = cache.get(&key).map(|e| Arc::clone(e.value())) {
            counted.with_label_values(&["hit"]).inc();
            let edns_out = answer_edns(request);
            let edns = edns_out.as_ref();
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.authoritative = hit.authoritative;
            meta.response_code = ResponseCode::NoError;
            let response = MessageResponseBuilder::new(&request.queries, edns).build(
                meta,
                hit.answers.iter(),
                hit.authorities.iter(),
                std::iter::empty(),
                hit.additionals.iter(),
            );
            return match handle.send_response(response).await {
                Ok(info) => info,
                Err(_) => servfail(request),
            };
        }
        counted.with_label_values(&["miss"]).inc();
        let recorder = Recorder {
            inner: handle,
            kept: Arc::new(std::sync::Mutex::new(None)),
        };
        let info = catalog
            .handle_request::<Recorder<R>, T>(request, recorder.clone())
            .await;
        let kept = holdfast_common::lock(&recorder.kept).take();
        if let Some(answer) = kept {
            if info.response_code == ResponseCode::NoError && cache.len() < MAX_CACHED {
                cache.insert(key, Arc::new(answer));
            }
        }
        info
    }

    /// The answer for a steered name, or `None` when the query is not for one.
    async fn steered<R: ResponseHandler>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> Option<ResponseInfo> {
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
            || request.edns.as_ref().is_some_and(|e| e.version() > 0)
        {
            return None;
        }
        let info = request.request_info().ok()?;
        let query = info.query;
        if query.query_class() != DNSClass::IN {
            return None;
        }
        let entry = self.0.steered.load().get(query.name()).cloned()?;
        let edns_out = answer_edns(request);
        let edns = edns_out.as_ref();
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        meta.recursion_available = false;
        meta.response_code = ResponseCode::NoError;
        let group = entry.answer.group();
        let answers: &[Record] = match (query.query_type(), group) {
            // A CNAME answers every type (the resolver follows it to the provider).
            (_, Some(g)) if g.cname.is_some() => g.cname.as_slice(),
            (RecordType::A | RecordType::ANY, Some(g)) => &g.a,
            (RecordType::AAAA, Some(g)) => &g.aaaa,
            _ => &[],
        };
        let soa: &[Record] = if answers.is_empty() {
            entry.soa.as_slice()
        } else {
            &[]
        };
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            meta,
            answers.iter(),
            std::iter::empty(),
            soa.iter(),
            std::iter::empty(),
        );
        Some(match handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "dns: cannot send a steered answer");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        })
    }
}

/// The question, for a plain query the cache can serve: one question, class IN, no EDNS
/// version above 0, not a transfer or ANY.
fn cache_key(request: &Request) -> Option<(LowerName, RecordType)> {
    if request.metadata.message_type != MessageType::Query
        || request.metadata.op_code != OpCode::Query
        || request.edns.as_ref().is_some_and(|e| e.version() > 0)
        || request.queries.len() != 1
    {
        return None;
    }
    let q = request.queries.queries().first()?;
    let t = q.query_type();
    if q.query_class() != DNSClass::IN
        || matches!(t, RecordType::AXFR | RecordType::IXFR | RecordType::ANY)
    {
        return None;
    }
    Some((q.name().clone(), t))
}

fn servfail(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// Sends the catalog's answer on, keeping its records: the answer is encoded whole once,
/// read back, and sent from those records (truncated by the transport as usual).
#[derive(Clone)]
struct Recorder<R> {
    inner: R,
    kept: Arc<std::sync::Mutex<Option<CachedAnswer>>>,
}

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for Recorder<R> {
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
        let edns = response.edns();
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let meta = *response.metadata();
        response
            .destructive_emit(&mut encoder)
            .map_err(hickory_server::net::NetError::from)?;
        let decode = |e: hickory_proto::serialize::binary::DecodeError| {
            hickory_server::net::NetError::from(hickory_proto::ProtoError::from(e))
        };
        let message = Message::from_vec(&bytes).map_err(decode)?;
        // The question section as the catalog wrote it (it echoes the request's).
        let mut decoder = BinDecoder::new(bytes.get(12..).unwrap_or_default());
        let queries = Queries::read(&mut decoder, message.queries.len()).map_err(decode)?;
        let answer = CachedAnswer {
            authoritative: meta.authoritative,
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        };
        let sent = {
            let out = MessageResponseBuilder::new(&queries, edns).build(
                meta,
                answer.answers.iter(),
                answer.authorities.iter(),
                std::iter::empty(),
                answer.additionals.iter(),
            );
            self.inner.send_response(out).await
        };
        *holdfast_common::lock(&self.kept) = Some(answer);
        sent
    }
}

async fn refuse<R: ResponseHandler>(request: &Request, mut handle: R) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, None)
        .error_msg(&request.metadata, ResponseCode::Refused);
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::Refused;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// A bounded label set for query types: the served ones, a few common others, "other".
pub(crate) fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::CNAME => "CNAME",
        RecordType::TXT => "TXT",
        RecordType::MX => "MX",
        RecordType::NS => "NS",
        RecordType::SOA => "SOA",
        RecordType::CAA => "CAA",
        RecordType::SRV => "SRV",
        RecordType::PTR => "PTR",
        RecordType::ANY => "ANY",
        RecordType::AXFR => "AXFR",
        RecordType::HTTPS => "HTTPS",
        _ => "other",
    }
}

/// Our EDNS(0) for an answer to a request that carried EDNS: version 0, the client's payload
/// size (at least 512 bytes). `None` without EDNS in the request.
fn answer_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|e| {
        let mut out = Edns::new();
        out.set_max_payload(e.max_payload().max(512));
        out.set_version(0);
        out
    })
}

/// The `rcode` label: the RFC 1035/6895 mnemonic, as `dig` prints it (`NOERROR`, `NXDOMAIN`).
pub(crate) fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
