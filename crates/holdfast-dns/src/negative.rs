//! The zone handler the catalog answers from: hickory's in-memory zone, except that the SOA
//! it puts in the authority section of a negative answer (NXDOMAIN, NODATA) carries the
//! negative-caching TTL, min(SOA TTL, SOA MINIMUM) (RFC 2308 §3), as steered names do.
//!
//! hickory's catalog builds a negative answer by asking the zone handler for the origin's SOA
//! with no request attached (`lookup(origin, SOA, None, _)`); a query for the SOA itself goes
//! through `search` and keeps the SOA's own TTL. So only that one call is answered here; every
//! other call goes to the in-memory zone unchanged.

use crate::zone::Zone;
use hickory_proto::rr::LowerName;
use hickory_proto::rr::{RData, Record, RecordSet, RecordType};
use hickory_server::server::{Request, RequestInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, LookupRecords,
    ZoneHandler, ZoneTransfer, ZoneType,
};
use std::sync::Arc;

/// The SOA for a negative answer: its TTL is the smaller of its own and its MINIMUM field,
/// the negative-caching time (RFC 2308 §3).
pub(crate) fn negative_soa(soa: &Record) -> Record {
    let mut soa = soa.clone();
    if let RData::SOA(data) = &soa.data {
        soa.ttl = soa.ttl.min(data.minimum);
    }
    soa
}

/// hickory's in-memory zone with RFC 2308 negative answers.
pub(crate) struct NegativeTtl {
    inner: Arc<InMemoryZoneHandler>,
    soa: Arc<RecordSet>,
}

impl NegativeTtl {
    pub(crate) fn handler(zone: &Zone) -> Arc<dyn ZoneHandler> {
        let soa = negative_soa(&zone.soa);
        let mut set = RecordSet::new(soa.name.clone(), RecordType::SOA, 0);
        set.insert(soa, 0);
        Arc::new(NegativeTtl {
            inner: Arc::clone(&zone.handler),
            soa: Arc::new(set),
        })
    }
}

#[async_trait::async_trait]
impl ZoneHandler for NegativeTtl {
    fn zone_type(&self) -> ZoneType {
        self.inner.zone_type()
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        self.inner.axfr_policy()
    }

    fn origin(&self) -> &LowerName {
        self.inner.origin()
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        if rtype == RecordType::SOA && request_info.is_none() && name == self.inner.origin() {
            return LookupControlFlow::Break(Ok(AuthLookup::answers(
                LookupRecords::new(lookup_options, Arc::clone(&self.soa)),
                None,
            )));
        }
        self.inner
            .lookup(name, rtype, request_info, lookup_options)
            .await
    }

    async fn search(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
    ) -> (
        LookupControlFlow<AuthLookup>,
        Option<hickory_proto::rr::TSigResponseContext>,
    ) {
        self.inner.search(request, lookup_options).await
    }

    async fn nsec_records(
        &self,
        name: &LowerName,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        self.inner.nsec_records(name, lookup_options).await
    }

    async fn zone_transfer(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
        now: u64,
    ) -> Option<(
        Result<ZoneTransfer, LookupError>,
        Option<hickory_proto::rr::TSigResponseContext>,
    )> {
        self.inner.zone_transfer(request, lookup_options, now).await
    }
}
