//! A DNS server on 127.0.0.1:0 over a zone written to a temporary folder, a settable fake
//! health source, and a raw-message client.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use holdfast_artifact::ArtifactMetrics;
use holdfast_config::{Dns, DnsZone, SteerPolicy, Steered, WhenAllDown};
use holdfast_dns::{DnsHandle, DnsMetrics, HealthSource};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ZONE: &str = "\
$TTL 300
@        IN SOA   ns1 hostmaster 2025102001 7200 900 1209600 60
@        IN NS    ns1
ns1      IN A     192.0.2.1
@        IN MX    10 mail
mail     IN A     192.0.2.25
mail     IN AAAA  2001:db8::25
txt      IN TXT   \"v=spf1 -all\"
alias    IN CNAME mail
@        IN CAA   0 issue \"letsencrypt.org\"
_sip._tcp IN SRV  10 5 5060 mail
";

#[derive(Default)]
pub struct FakeHealth(pub Mutex<HashMap<String, Vec<(IpAddr, bool)>>>);

impl FakeHealth {
    pub fn set(&self, pool: &str, servers: &[(&str, bool)]) {
        self.0.lock().unwrap().insert(
            pool.to_string(),
            servers
                .iter()
                .map(|(a, d)| (a.parse().unwrap(), *d))
                .collect(),
        );
    }
}

impl HealthSource for FakeHealth {
    fn servers(&self, pool: &str) -> Option<Vec<(IpAddr, bool)>> {
        self.0.lock().unwrap().get(pool).cloned()
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub zone_file: PathBuf,
    pub health: Arc<FakeHealth>,
    pub registry: prometheus::Registry,
    pub dns: Option<DnsHandle>,
    pub steered: Vec<Steered>,
}

pub fn steered(name: &str, pools: &[&str]) -> Steered {
    Steered {
        name: name.into(),
        zone: 0,
        policy: SteerPolicy::Failover,
        pools: pools.iter().map(|p| p.to_string()).collect(),
        weights: vec![1; pools.len()],
        ttl: 30,
        failover_ttl: 5,
        hold_down: Duration::ZERO,
        when_all_down: WhenAllDown::LastHealthy,
        max_shrink_percent: 100,
        cnames: vec![None; pools.len()],
    }
}

impl Env {
    pub fn start(zone: &str, steered: Vec<Steered>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let zone_file = dir.path().join("example.test.zone");
        std::fs::write(&zone_file, zone).unwrap();
        let health = Arc::new(FakeHealth::default());
        let registry = prometheus::Registry::new();
        let mut env = Env {
            dir,
            zone_file,
            health,
            registry,
            dns: None,
            steered,
        };
        env.dns = Some(env.launch(env.steered.clone()));
        env
    }

    /// Start again on the same files and state folder, with a fresh registry.
    pub fn relaunch(&mut self) -> DnsHandle {
        self.registry = prometheus::Registry::new();
        self.launch(self.steered.clone())
    }

    fn launch(&self, steered: Vec<Steered>) -> DnsHandle {
        let config = Dns {
            listen: "127.0.0.1:0".parse().unwrap(),
            zones: vec![DnsZone {
                origin: "example.test.".into(),
                file: self.zone_file.clone(),
            }],
            steered,
            peers: Vec::new(),
            peer_token: None,
            quorum: 1,
            peer_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_millis(500),
        };
        DnsHandle::start(
            &config,
            Some(&self.dir.path().join("state")),
            self.health.clone(),
            Arc::new(ArtifactMetrics::new(&self.registry).unwrap()),
            DnsMetrics::new(&self.registry).unwrap(),
        )
        .unwrap()
    }

    pub fn dns(&self) -> &DnsHandle {
        self.dns.as_ref().unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.dns().addr
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            for m in family.get_metric() {
                let ok = labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                });
                if ok {
                    return m.get_counter().get_value() + m.get_gauge().get_value();
                }
            }
        }
        0.0
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = self.dns.take() {
            d.shutdown();
        }
    }
}

pub fn message(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Send raw bytes over UDP; `None` when nothing comes back within 2 s (a drop).
pub fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let n = s.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

pub fn udp(addr: SocketAddr, name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let bytes = message(name, rtype, edns).to_vec().unwrap();
    Message::from_vec(&udp_raw(addr, &bytes).expect("an answer over UDP")).unwrap()
}

pub fn tcp(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let bytes = message(name, rtype, None).to_vec().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The A/AAAA addresses of an answer, sorted.
pub fn ips(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
            hickory_proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Poll `f` until it returns true, for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
