//! The request handler hickory-server calls for every well-formed message: a query for a
//! steered name is answered from its published `Answer` (A/AAAA, or NODATA with the zone's
//! SOA); everything else goes to hickory's `Catalog` of the active zones (NXDOMAIN/NODATA
//! with SOA, CNAME chains, referrals, REFUSED outside our zones, BADVERS, FORMERR). Both
//! read lock-free snapshots; nothing here blocks or panics. Malformed packets never get
//! here: hickory's server answers FORMERR or drops them.

use crate::metrics::DnsMetrics;
use crate::steer::Answer;
use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};
use std::collections::HashMap;
use std::sync::Arc;

/// A steered name's published answer and the SOA of its zone (for NODATA).
pub(crate) struct Published {
    pub answer: Answer,
    pub soa: Option<Record>,
}

/// What the handler reads; the server's tasks swap in new snapshots.
pub(crate) struct Shared {
    pub catalog: ArcSwap<Catalog>,
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
            None => {
                let catalog = self.0.catalog.load_full();
                catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
        };
        self.0
            .metrics
            .queries
            .with_label_values(&[qtype, info.response_code.to_str()])
            .inc();
        info
    }
}

impl Handler {
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
        let mut edns_out = Edns::new();
        let edns = request.edns.as_ref().map(|e| {
            edns_out.set_max_payload(e.max_payload().max(512));
            edns_out.set_version(0);
            &edns_out
        });
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        meta.recursion_available = false;
        meta.response_code = ResponseCode::NoError;
        let group = entry.answer.group();
        let answers: &[Record] = match (query.query_type(), group) {
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
fn type_label(t: RecordType) -> &'static str {
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
