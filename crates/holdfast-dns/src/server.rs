//! `DnsHandle`: binds UDP and TCP on the `[dns]` address (the same port for both), loads
//! the zones through the artifact pipeline (one `Artifact<ZoneFile>` per zone, its LKG in
//! `state_dir/dns/<origin>/`), and runs hickory's server plus the steering task on a thread
//! of its own with its own runtime ("holdfast-dns"). Zone files are watched; an applied
//! zone rebuilds the catalog, which is swapped whole.

use crate::error::DnsError;
use crate::handler::{Generation, Handler, Published, Shared};
use crate::metrics::DnsMetrics;
use crate::negative::negative_soa;
use crate::overrides::{Force, Overrides};
use crate::quorum::{PeerStatus, PeerView, QuorumHealth, VoteStatus};
use crate::steer::{HealthSource, Steerer, TargetStatus};
use crate::zone::ZoneFile;
use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name};
use hickory_server::Server;
use holdfast_artifact::{
    Artifact, ArtifactMetrics, ArtifactOptions, ArtifactStatus, LoadOutcome, Watcher,
};
use holdfast_config::Dns;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often steered answers are recomputed from health.
const TICK: Duration = Duration::from_millis(100);
/// How often zone files are polled besides notify events.
const ZONE_POLL: Duration = Duration::from_secs(1);
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// With port 0, UDP picks a port and TCP must get the same one: tries before giving up.
const BIND_TRIES: usize = 16;

/// `/status` of the DNS server.
#[derive(Debug, Clone, Serialize)]
pub struct DnsStatus {
    pub listen: SocketAddr,
    pub zones: Vec<ArtifactStatus>,
    pub steered: Vec<SteeredStatus>,
    pub quorum: QuorumStatus,
    /// Operator overrides by target address.
    pub overrides: std::collections::BTreeMap<std::net::IpAddr, Force>,
}

/// How target health is decided across vantage points.
#[derive(Debug, Clone, Serialize)]
pub struct QuorumStatus {
    /// Vantage points that must agree a target is down (capped at those heard from).
    pub quorum: usize,
    pub peers: Vec<PeerStatus>,
    pub votes: Vec<VoteStatus>,
}

/// A steered name: what it answers now and why, and each target as this instance sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SteeredStatus {
    pub name: String,
    pub policy: String,
    pub answer: Vec<std::net::IpAddr>,
    /// The provider hostname answered as a CNAME, when the chosen pool has one.
    pub cname: Option<String>,
    pub ttl: u32,
    pub reason: String,
    /// Every target is down: the answer is the fallback set (alert).
    pub all_down: bool,
    pub targets: Vec<TargetStatus>,
}

struct Inner {
    overrides: Overrides,
    zones: Vec<Arc<Artifact<ZoneFile>>>,
    shared: Arc<Shared>,
    status: Mutex<Vec<SteeredStatus>>,
    /// Serialises catalog rebuilds (zone watchers, `reload_zones`).
    rebuild: Mutex<()>,
    /// The steered names: never pre-encoded (their answer moves with health).
    steered_names: Vec<Name>,
}

/// The running DNS server. Dropping it without `shutdown` leaves the thread running.
pub struct DnsHandle {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    quorum: Arc<QuorumHealth>,
    peer_token: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _watchers: Vec<Watcher>,
}

impl DnsHandle {
    /// Load the zones, bind, and serve. A zone that is rejected at start is served from its
    /// LKG copy if there is one, else not at all (queries for it are REFUSED) — the other
    /// zones and the steered names still run.
    pub fn start(
        config: &Dns,
        state_dir: Option<&Path>,
        health: Arc<dyn HealthSource>,
        artifact_metrics: Arc<ArtifactMetrics>,
        metrics: DnsMetrics,
    ) -> Result<DnsHandle, DnsError> {
        let sockets = bind(config.listen)?;
        DnsHandle::start_on(
            config,
            sockets,
            state_dir,
            health,
            artifact_metrics,
            metrics,
        )
    }

    /// `start` on UDP and TCP sockets bound (or inherited from the process before a binary
    /// upgrade) by the caller.
    pub fn start_on(
        config: &Dns,
        (udp, tcp): (UdpSocket, TcpListener),
        state_dir: Option<&Path>,
        health: Arc<dyn HealthSource>,
        artifact_metrics: Arc<ArtifactMetrics>,
        metrics: DnsMetrics,
    ) -> Result<DnsHandle, DnsError> {
        let nonblocking = |r: std::io::Result<()>, proto| {
            r.map_err(|source| DnsError::Bind {
                addr: config.listen,
                proto,
                source,
            })
        };
        nonblocking(udp.set_nonblocking(true), "udp")?;
        nonblocking(tcp.set_nonblocking(true), "tcp")?;
        let zones: Vec<Arc<Artifact<ZoneFile>>> = config
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let steered: Vec<&str> = config
                    .steered
                    .iter()
                    .filter(|s| s.zone == i)
                    .map(|s| s.name.as_str())
                    .collect();
                let options = ArtifactOptions {
                    state_dir: state_dir
                        .map(|d| d.join("dns").join(z.origin.trim_end_matches('.'))),
                    context: crate::zone::context(&z.origin, &steered),
                    ..ArtifactOptions::new(&z.file)
                };
                let artifact = Arc::new(Artifact::new(options, Arc::clone(&artifact_metrics)));
                if let LoadOutcome::Rejected(r) = artifact.start() {
                    tracing::error!(zone = %z.origin, file = %z.file.display(), reason = r.reason.label(), detail = %r.detail, "dns: zone file rejected at start");
                }
                artifact
            })
            .collect();
        let shared = Arc::new(Shared {
            catalog: ArcSwap::from_pointee(Generation::build(&[], &[], &metrics)),
            steered: ArcSwap::from_pointee(HashMap::new()),
            metrics,
        });
        let inner = Arc::new(Inner {
            overrides: Overrides::load(state_dir),
            zones,
            shared,
            status: Mutex::new(Vec::new()),
            rebuild: Mutex::new(()),
            steered_names: config
                .steered
                .iter()
                .filter_map(|s| Name::from_ascii(&s.name).ok())
                .collect(),
        });
        inner.rebuild_catalog();
        let mut steerers: Vec<Steerer> = config
            .steered
            .iter()
            .filter_map(|s| Some(Steerer::new(s.clone(), Name::from_ascii(&s.name).ok()?)))
            .collect();
        let mut pools: Vec<String> = config
            .steered
            .iter()
            .flat_map(|s| s.pools.iter().cloned())
            .collect();
        pools.sort();
        pools.dedup();
        let quorum = Arc::new(QuorumHealth::new(
            health,
            pools,
            &config.peers,
            config.quorum,
            config.peer_interval,
        ));
        let health: Arc<dyn HealthSource> = quorum.clone();
        let poller = config
            .peer_token
            .clone()
            .filter(|_| !config.peers.is_empty())
            .map(|token| {
                crate::quorum::poll_peers(
                    Arc::clone(&quorum),
                    token,
                    config.peer_interval,
                    config.peer_timeout,
                )
            });
        inner.steer(&mut steerers, health.as_ref());
        inner.export_vantage(&quorum);
        let run_quorum = Arc::clone(&quorum);

        let addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: config.listen,
            proto: "udp",
            source,
        })?;
        let watchers = inner.watch_zones();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DnsError::Thread)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let run = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("holdfast-dns".into())
            .spawn(move || {
                if let Some(poller) = poller {
                    runtime.spawn(poller);
                }
                runtime.block_on(serve(run, udp, tcp, steerers, run_quorum, stop_rx))
            })
            .map_err(DnsError::Thread)?;
        tracing::info!(%addr, zones = config.zones.len(), steered = config.steered.len(), "dns: serving");
        Ok(DnsHandle {
            addr,
            inner,
            quorum,
            peer_token: config.peer_token.clone(),
            stop: Some(stop_tx),
            thread: Some(thread),
            _watchers: watchers,
        })
    }

    /// Re-read every zone file now (what `POST /reload` does); returns each outcome.
    pub fn reload_zones(&self) -> Vec<LoadOutcome> {
        let outcomes = self.inner.zones.iter().map(|z| z.reload()).collect();
        self.inner.rebuild_catalog();
        outcomes
    }

    pub fn status(&self) -> DnsStatus {
        DnsStatus {
            listen: self.addr,
            zones: self.inner.zones.iter().map(|z| z.status()).collect(),
            steered: holdfast_common::lock(&self.inner.status).clone(),
            quorum: QuorumStatus {
                quorum: self.quorum.quorum(),
                peers: self.quorum.peer_status(),
                votes: self.quorum.vote_status(),
            },
            overrides: self.inner.overrides.snapshot(),
        }
    }

    /// `POST /dns/targets/IP/ACTION`: force a target `up`, `down`, `drain` it, or `clear`
    /// its override; persisted in `state_dir`, applied at the next steering tick.
    pub fn set_override(
        &self,
        target: &str,
        action: &str,
    ) -> Result<serde_json::Value, (u16, String)> {
        let ip: std::net::IpAddr = target
            .parse()
            .map_err(|_| (400, format!("{target:?} is not an IP address (use the target's address as /status shows it)")))?;
        let force = match action {
            "up" => Some(Force::Up),
            "down" => Some(Force::Down),
            "drain" => Some(Force::Drain),
            "clear" => None,
            _ => {
                return Err((
                    404,
                    "use POST /dns/targets/IP/up, /down, /drain or /clear".into(),
                ))
            }
        };
        self.check_target(ip, force.is_none())?;
        let saved = self.inner.overrides.set(ip, force);
        tracing::warn!(target = %ip, action, "dns: operator override");
        Ok(serde_json::json!({
            "target": ip,
            "override": force,
            "overrides": self.inner.overrides.snapshot(),
            "warning": saved.err(),
        }))
    }

    /// An override must name a target of a steered name (as `/status` lists them); `clear`
    /// may also remove an override kept from an earlier configuration.
    fn check_target(&self, ip: std::net::IpAddr, clearing: bool) -> Result<(), (u16, String)> {
        let status = holdfast_common::lock(&self.inner.status);
        if status.is_empty() {
            return Err((
                503,
                "steering has not run yet (it starts with the server): retry in a second".into(),
            ));
        }
        let mut targets: Vec<String> = status
            .iter()
            .flat_map(|n| n.targets.iter().map(|t| t.ip.to_string()))
            .collect();
        drop(status);
        if targets.contains(&ip.to_string())
            || (clearing && self.inner.overrides.snapshot().contains_key(&ip))
        {
            return Ok(());
        }
        targets.sort();
        targets.dedup();
        Err((
            404,
            format!(
                "{ip} is not a target of any steered name (targets: {}); use one of those addresses",
                targets.join(", ")
            ),
        ))
    }

    /// `GET /dns/peer`: this instance's own checks of the steered targets, for a peer that
    /// presents the peer token. `Err` is (HTTP status, message).
    pub fn peer_view(&self, authorization: Option<&str>) -> Result<PeerView, (u16, String)> {
        let Some(token) = &self.peer_token else {
            return Err((
                404,
                "dns.peer_token is not set: this instance has no peers".into(),
            ));
        };
        if !crate::quorum::authorized(authorization, token) {
            return Err((
                401,
                "a bearer token equal to dns.peer_token is required".into(),
            ));
        }
        Ok(self.quorum.own_view())
    }

    /// Stop serving and join the thread.
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    /// A new catalog generation from every zone's active value (catalog, empty answer cache,
    /// pre-encoded answers), swapped in whole.
    fn rebuild_catalog(&self) {
        let _one = holdfast_common::lock(&self.rebuild);
        let active: Vec<_> = self
            .zones
            .iter()
            .filter_map(|z| z.current().clone())
            .collect();
        let zones: Vec<&crate::zone::Zone> = active.iter().map(|a| &a.value).collect();
        let generation = Generation::build(&zones, &self.steered_names, &self.shared.metrics);
        tracing::debug!(
            zones = zones.len(),
            encoded = generation.map.len(),
            "dns: catalog rebuilt"
        );
        self.shared.catalog.store(Arc::new(generation));
    }

    fn watch_zones(self: &Arc<Self>) -> Vec<Watcher> {
        self.zones
            .iter()
            .filter_map(|zone| {
                let me = Arc::downgrade(self);
                let z = Arc::clone(zone);
                Watcher::start(zone.watch_paths(), ZONE_POLL, move |_| {
                    if let (LoadOutcome::Applied { .. }, Some(me)) = (z.reload(), me.upgrade()) {
                        me.rebuild_catalog();
                    }
                })
                .map_err(|e| tracing::error!(error = %e, path = %zone.path().display(), "dns: cannot watch the zone file; POST /reload re-reads it"))
                .ok()
            })
            .collect()
    }

    /// Each vantage point's view of each target, on `/metrics`.
    fn export_vantage(&self, quorum: &QuorumHealth) {
        let gauge = &self.shared.metrics.vantage_down;
        for (vantage, view) in quorum.views() {
            for t in &view.targets {
                gauge
                    .with_label_values(&[vantage.as_str(), t.pool.as_str(), &t.ip.to_string()])
                    .set(i64::from(t.down));
            }
        }
    }

    /// One steering tick for every name: decide, publish, count.
    fn steer(&self, steerers: &mut [Steerer], health: &dyn HealthSource) {
        let now = Instant::now();
        let forced = self.overrides.snapshot();
        let mut published = HashMap::new();
        let mut status = Vec::new();
        let m = &self.shared.metrics;
        for s in steerers.iter_mut() {
            let decision = s.tick(health, &forced, now);
            let name = s.config.name.as_str();
            if decision.prevented_started {
                m.empty_answer_prevented.with_label_values(&[name]).inc();
            }
            if decision.changed {
                m.steering_changes.with_label_values(&[name]).inc();
                tracing::info!(name, answer = ?decision.answer.ips, reason = %decision.answer.reason, "dns: steered answer changed");
            }
            m.answer_size
                .with_label_values(&[name])
                .set(decision.answer.ips.len() as i64);
            for t in &s.targets {
                m.target_healthy
                    .with_label_values(&[name, &t.pool, &t.ip.to_string()])
                    .set(i64::from(t.healthy));
            }
            let soa = self
                .zones
                .get(s.config.zone)
                .and_then(|z| z.current().as_ref().map(|a| negative_soa(&a.value.soa)));
            status.push(SteeredStatus {
                name: s.config.name.clone(),
                policy: s.config.policy.name().to_string(),
                answer: decision.answer.ips.clone(),
                cname: decision.answer.cname.clone(),
                ttl: decision.answer.ttl,
                reason: decision.answer.reason.clone(),
                all_down: decision.prevented_empty,
                targets: s.targets.clone(),
            });
            published.insert(
                LowerName::from(&s.owner),
                Arc::new(Published {
                    answer: decision.answer,
                    soa,
                }),
            );
        }
        self.shared.steered.store(Arc::new(published));
        *holdfast_common::lock(&self.status) = status;
    }
}

async fn serve(
    inner: Arc<Inner>,
    udp: UdpSocket,
    tcp: TcpListener,
    mut steerers: Vec<Steerer>,
    quorum: Arc<QuorumHealth>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut server = Server::new(Handler(Arc::clone(&inner.shared)));
    // UDP is ours (the pre-encoded fast path, then hickory's handler); TCP is hickory's.
    let udp_task = match tokio::net::UdpSocket::from_std(udp) {
        Ok(s) => Some(tokio::spawn(crate::udp::serve(
            s,
            Arc::clone(&inner.shared),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "dns: cannot use the UDP socket");
            None
        }
    };
    match tokio::net::TcpListener::from_std(tcp) {
        Ok(l) => server.register_listener(l, TCP_IDLE, 64),
        Err(e) => tracing::error!(error = %e, "dns: cannot use the TCP listener"),
    }
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {
                inner.steer(&mut steerers, quorum.as_ref());
                inner.export_vantage(&quorum);
            }
        }
    }
    if let Some(task) = udp_task {
        task.abort();
    }
    if let Err(e) = server.shutdown_gracefully().await {
        tracing::debug!(error = %e, "dns: shutdown");
    }
}

/// UDP and TCP on the same address; with port 0, the port UDP got, retried if TCP cannot.
pub fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let err = |proto, source| DnsError::Bind {
        addr,
        proto,
        source,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = UdpSocket::bind(addr).map_err(|e| err("udp", e))?;
        let port = udp.local_addr().map_err(|e| err("udp", e))?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => {
                udp.set_nonblocking(true).map_err(|e| err("udp", e))?;
                tcp.set_nonblocking(true).map_err(|e| err("tcp", e))?;
                return Ok((udp, tcp));
            }
            Err(e) if addr.port() == 0 && tries < BIND_TRIES => {
                tracing::debug!(port, error = %e, "dns: TCP port taken, trying another");
            }
            Err(e) => return Err(err("tcp", e)),
        }
    }
}
