//! Quorum across vantage points. Each instance serves its own checks' view of the steered
//! targets on `GET /dns/peer` (admin plane, bearer token) and polls its peers' views; a
//! target is down for steering only when `quorum` vantage points (this one included) see
//! it down, the quorum being capped at the vantage points heard from recently. With every
//! peer unreachable that is this instance's own checks. One instance's broken network
//! therefore cannot steer the world, and a partitioned instance still steers on its own.

use crate::steer::HealthSource;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A peer's view older than this many poll intervals is not counted.
const FRESH_INTERVALS: u32 = 3;
/// Peer answers larger than this are not read.
const MAX_VIEW_BYTES: usize = 1 << 20;

/// One vantage point's view: every steered target with whether its checks hold it down.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerView {
    pub targets: Vec<TargetVote>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetVote {
    pub pool: String,
    pub ip: IpAddr,
    pub down: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub url: String,
    pub reachable: bool,
    /// Seconds since the last good answer, if any.
    pub last_ok_seconds_ago: Option<f64>,
    pub error: Option<String>,
}

/// How one target was judged at the last look.
#[derive(Debug, Clone, Serialize)]
pub struct VoteStatus {
    pub pool: String,
    pub ip: IpAddr,
    /// This instance's checks.
    pub own_down: bool,
    /// Vantage points that see it down, of those heard from.
    pub down_votes: usize,
    pub voters: usize,
    /// Votes needed (`quorum`, capped at `voters`).
    pub needed: usize,
    pub down: bool,
}

struct Peer {
    url: String,
    view: Option<(Instant, PeerView)>,
    error: Option<String>,
}

/// The health steering reads: own checks outvoted (or not) by the peers'.
pub struct QuorumHealth {
    own: Arc<dyn HealthSource>,
    pools: Vec<String>,
    quorum: usize,
    fresh_for: Duration,
    peers: Mutex<Vec<Peer>>,
    votes: Mutex<HashMap<(String, IpAddr), VoteStatus>>,
}

impl QuorumHealth {
    /// `pools`: every pool a steered name uses (what `own_view` reports).
    pub fn new(
        own: Arc<dyn HealthSource>,
        pools: Vec<String>,
        peers: &[String],
        quorum: usize,
        interval: Duration,
    ) -> Self {
        QuorumHealth {
            own,
            pools,
            quorum: quorum.max(1),
            fresh_for: interval * FRESH_INTERVALS,
            peers: Mutex::new(
                peers
                    .iter()
                    .map(|url| Peer {
                        url: url.clone(),
                        view: None,
                        error: None,
                    })
                    .collect(),
            ),
            votes: Mutex::new(HashMap::new()),
        }
    }

    /// This instance's own checks, for `GET /dns/peer`.
    pub fn own_view(&self) -> PeerView {
        let mut targets = Vec::new();
        for pool in &self.pools {
            for (ip, down) in self.own.servers(pool).unwrap_or_default() {
                targets.push(TargetVote {
                    pool: pool.clone(),
                    ip,
                    down,
                });
            }
        }
        PeerView { targets }
    }

    /// Every vantage point's current view: `"self"` (own checks) and each peer heard from
    /// recently, by URL.
    pub fn views(&self) -> Vec<(String, PeerView)> {
        let now = Instant::now();
        let mut out = vec![("self".to_string(), self.own_view())];
        for p in holdfast_common::lock(&self.peers).iter() {
            if let Some((at, view)) = &p.view {
                if now.saturating_duration_since(*at) <= self.fresh_for {
                    out.push((p.url.clone(), view.clone()));
                }
            }
        }
        out
    }

    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        holdfast_common::lock(&self.peers)
            .iter()
            .map(|p| PeerStatus {
                url: p.url.clone(),
                reachable: p.error.is_none() && p.view.is_some(),
                last_ok_seconds_ago: p
                    .view
                    .as_ref()
                    .map(|(at, _)| now.saturating_duration_since(*at).as_secs_f64()),
                error: p.error.clone(),
            })
            .collect()
    }

    pub fn vote_status(&self) -> Vec<VoteStatus> {
        let mut v: Vec<VoteStatus> = holdfast_common::lock(&self.votes)
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.pool, a.ip).cmp(&(&b.pool, b.ip)));
        v
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    fn record(&self, url: &str, result: Result<PeerView, String>) {
        self.record_at(url, result, Instant::now());
    }

    /// `record` with the time given (the clock seam the simulation drives).
    pub(crate) fn record_at(&self, url: &str, result: Result<PeerView, String>, now: Instant) {
        let mut peers = holdfast_common::lock(&self.peers);
        if let Some(p) = peers.iter_mut().find(|p| p.url == url) {
            match result {
                Ok(view) => {
                    p.view = Some((now, view));
                    p.error = None;
                }
                Err(e) => p.error = Some(e),
            }
        }
    }

    fn peer_urls(&self) -> Vec<String> {
        holdfast_common::lock(&self.peers)
            .iter()
            .map(|p| p.url.clone())
            .collect()
    }
}

impl HealthSource for QuorumHealth {
    fn servers(&self, pool: &str) -> Option<Vec<(IpAddr, bool)>> {
        self.servers_at(pool, Instant::now())
    }
}

impl QuorumHealth {
    /// `servers` with the time given (the clock seam the simulation drives).
    pub(crate) fn servers_at(&self, pool: &str, now: Instant) -> Option<Vec<(IpAddr, bool)>> {
        let own = self.own.servers(pool)?;
        let peers = holdfast_common::lock(&self.peers);
        let fresh: Vec<&PeerView> = peers
            .iter()
            .filter_map(|p| p.view.as_ref())
            .filter(|(at, _)| now.saturating_duration_since(*at) <= self.fresh_for)
            .map(|(_, v)| v)
            .collect();
        let mut votes = holdfast_common::lock(&self.votes);
        let out = own
            .into_iter()
            .map(|(ip, own_down)| {
                let mut voters = 1;
                let mut down_votes = usize::from(own_down);
                for view in &fresh {
                    if let Some(t) = view.targets.iter().find(|t| t.pool == pool && t.ip == ip) {
                        voters += 1;
                        down_votes += usize::from(t.down);
                    }
                }
                let needed = self.quorum.min(voters);
                let down = down_votes >= needed;
                votes.insert(
                    (pool.to_string(), ip),
                    VoteStatus {
                        pool: pool.to_string(),
                        ip,
                        own_down,
                        down_votes,
                        voters,
                        needed,
                        down,
                    },
                );
                (ip, down)
            })
            .collect();
        Some(out)
    }
}

/// Poll every peer each `interval` (on the DNS runtime) until the task is dropped.
pub(crate) async fn poll_peers(
    health: Arc<QuorumHealth>,
    token: String,
    interval: Duration,
    timeout: Duration,
) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let polls = health.peer_urls().into_iter().map(|url| {
            let client = client.clone();
            let token = token.clone();
            async move {
                let result = tokio::time::timeout(timeout, fetch(&client, &url, &token))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (url, result)
            }
        });
        for (url, result) in futures_util::future::join_all(polls).await {
            if let Err(e) = &result {
                tracing::debug!(peer = %url, error = %e, at = ?SystemTime::now(), "dns: peer unreachable");
            }
            health.record(&url, result);
        }
    }
}

async fn fetch(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    token: &str,
) -> Result<PeerView, String> {
    let req = http::Request::get(format!("{url}/dns/peer"))
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("request: {e}"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_VIEW_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("bad view: {e}"))
}

/// Is `authorization` (`Bearer <token>`) the peer token? Constant time in the token length.
pub fn authorized(authorization: Option<&str>, token: &str) -> bool {
    let Some(given) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Own(Vec<(IpAddr, bool)>);
    impl HealthSource for Own {
        fn servers(&self, _pool: &str) -> Option<Vec<(IpAddr, bool)>> {
            Some(self.0.clone())
        }
    }

    fn ip() -> IpAddr {
        "127.0.0.2".parse().unwrap()
    }

    fn view(down: bool) -> PeerView {
        PeerView {
            targets: vec![TargetVote {
                pool: "p".into(),
                ip: ip(),
                down,
            }],
        }
    }

    fn majority(points: usize) -> usize {
        points / 2 + 1
    }

    fn quorum(own_down: bool, peers: &[Option<bool>]) -> bool {
        let urls: Vec<String> = (0..peers.len()).map(|i| format!("http://p{i}")).collect();
        let q = QuorumHealth::new(
            Arc::new(Own(vec![(ip(), own_down)])),
            vec!["p".into()],
            &urls,
            majority(peers.len() + 1),
            Duration::from_secs(1),
        );
        for (url, p) in urls.iter().zip(peers) {
            match p {
                Some(down) => q.record(url, Ok(view(*down))),
                None => q.record(url, Err("unreachable".into())),
            }
        }
        q.servers("p").unwrap()[0].1
    }

    #[test]
    fn one_vantage_point_alone_cannot_take_a_target_down() {
        assert!(!quorum(true, &[Some(false), Some(false)]));
        assert!(!quorum(false, &[Some(true), Some(false)]));
    }

    #[test]
    fn a_majority_takes_it_down() {
        assert!(quorum(true, &[Some(true), Some(false)]));
        assert!(quorum(false, &[Some(true), Some(true)]));
    }

    #[test]
    fn unreachable_peers_leave_the_own_checks() {
        assert!(quorum(true, &[None, None]));
        assert!(!quorum(false, &[None, None]));
        // One peer heard: two voters, quorum 2 of 3 capped at 2: both must agree.
        assert!(!quorum(true, &[Some(false), None]));
        assert!(quorum(true, &[Some(true), None]));
    }

    #[test]
    fn the_token_must_match_exactly() {
        assert!(authorized(Some("Bearer s3cret"), "s3cret"));
        assert!(!authorized(Some("Bearer s3cre"), "s3cret"));
        assert!(!authorized(Some("s3cret"), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }
}
