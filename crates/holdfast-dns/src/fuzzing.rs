//! The packet path without sockets, for `fuzz/` and tests: bytes as they would arrive on
//! UDP go through the same path as the server's (the pre-encoded answers first, then
//! hickory's decoding and our `Handler`; a steered name and a small zone), and the encoded
//! answer comes back.

use crate::handler::{Generation, Handler, Published, Shared};
use crate::metrics::DnsMetrics;
use crate::steer::{HealthSource, Steerer};
use crate::zone::{Zone, ZoneFile};
use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name};
use holdfast_artifact::ArtifactKind;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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

/// A handler over the sample zone with `www.example.test.` steered to 127.0.0.2.
pub struct PacketPath {
    handler: Handler,
    runtime: tokio::runtime::Runtime,
}

impl PacketPath {
    pub fn new() -> Option<PacketPath> {
        let zone: Zone = ZoneFile::load_in("example.test.", ZONE.as_bytes()).ok()?;
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
                soa: Some(crate::negative::negative_soa(&zone.soa)),
            }),
        );
        let metrics = DnsMetrics::new(&prometheus::Registry::new()).ok()?;
        let generation = Generation::build(&[&zone], &[owner], &metrics);
        let shared = Arc::new(Shared {
            catalog: ArcSwap::from_pointee(generation),
            steered: ArcSwap::from_pointee(published),
            metrics,
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
        self.runtime
            .block_on(crate::udp::answer(&self.handler, bytes, src))
    }
}
