//! The packet path without sockets, for `fuzz/` and tests: bytes as they would arrive on
//! UDP go through hickory's decoding and our `Handler` (a steered name and a small zone),
//! and the encoded answer comes back. Not used by the server.

use crate::handler::{Handler, Published, Shared};
use crate::metrics::DnsMetrics;
use crate::steer::{HealthSource, Steerer};
use crate::zone::{Zone, ZoneFile};
use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name, Record};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse, ZoneHandler};
use holdfast_artifact::ArtifactKind;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const ZONE: &str = "$TTL 300
@ IN SOA ns1 hostmaster 1 7200 900 1209600 60
@ IN NS ns1
ns1 IN A 192.0.2.1
mail IN A 192.0.2.25
mail IN AAAA 2001:db8::25
@ IN MX 10 mail
txt IN TXT \"hello\"
alias IN CNAME mail
";

struct Healthy;

impl HealthSource for Healthy {
    fn servers(&self, _pool: &str) -> Option<Vec<(IpAddr, bool)>> {
        Some(vec![("127.0.0.2".parse().ok()?, false)])
    }
}

/// Collects the encoded answer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
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
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(hickory_server::net::NetError::from)?;
        *holdfast_common::lock(&self.0) = Some(bytes);
        Ok(info)
    }
}

/// A handler over the sample zone with `www.example.test.` steered to 127.0.0.2.
pub struct PacketPath {
    handler: Handler,
    runtime: tokio::runtime::Runtime,
}

impl PacketPath {
    pub fn new() -> Option<PacketPath> {
        let zone: Zone = ZoneFile::load_in("example.test.", ZONE.as_bytes()).ok()?;
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = zone.handler.clone();
        catalog.upsert(LowerName::from(&zone.origin), vec![handler]);
        let steered = holdfast_config::Steered {
            name: "www.example.test.".into(),
            zone: 0,
            policy: holdfast_config::SteerPolicy::Failover,
            pools: vec!["p".into()],
            weights: vec![1],
            ttl: 30,
            failover_ttl: 10,
            hold_down: std::time::Duration::ZERO,
            when_all_down: holdfast_config::WhenAllDown::LastHealthy,
            max_shrink_percent: 100,
            cnames: vec![None],
        };
        let owner = Name::from_ascii(&steered.name).ok()?;
        let mut steerer = Steerer::new(steered, owner.clone());
        let decision = steerer.tick(&Healthy, &BTreeMap::new(), Instant::now());
        let mut published = HashMap::new();
        published.insert(
            LowerName::from(&owner),
            Arc::new(Published {
                answer: decision.answer,
                soa: Some(zone.soa.clone()),
            }),
        );
        let shared = Arc::new(Shared {
            catalog: ArcSwap::from_pointee((catalog, dashmap::DashMap::new())),
            steered: ArcSwap::from_pointee(published),
            metrics: DnsMetrics::new(&prometheus::Registry::new()).ok()?,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(PacketPath {
            handler: Handler(shared),
            runtime,
        })
    }

    /// The answer to `bytes` (`None`: not a message hickory's server would hand on; it
    /// answers those with FORMERR or drops them before any handler runs).
    pub fn answer(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let src = SocketAddr::from(([127, 0, 0, 1], 5353));
        let request = Request::from_bytes(bytes.to_vec(), src, Protocol::Udp).ok()?;
        let capture = Capture::default();
        let handler = &self.handler;
        self.runtime
            .block_on(handler.handle_request::<Capture, TokioTime>(&request, capture.clone()));
        let answer = holdfast_common::lock(&capture.0).take();
        answer
    }
}
