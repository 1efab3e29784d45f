//! `holdfast demo`: the tour of what Holdfast is for, on an embedded configuration in front of
//! two in-process demo origins: a failover chain with a fallback page (stop and start the
//! origins from the operator page), a cached route, a rate limit, a rule, the challenge, the
//! 18 Nov 2025 feature-file replay, and a DNS name steered by the origins' health.

mod origin;
mod tour;

use crate::app::{Running, StartError};
use crate::controller::ConfigSource;
use std::net::SocketAddr;
use std::sync::Arc;

pub use origin::DemoOrigin;
pub use tour::{Tour, STEERED_NAME};

const TEMPLATE: &str = include_str!("demo.toml");

/// Where the demo listens (port 0: any free port, as the tests use).
#[derive(Debug, Clone, Copy)]
pub struct DemoAddrs {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub dns: SocketAddr,
}

/// A local port where nothing listens (bound, then released), for the `/down` route.
fn closed_port() -> std::io::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

/// The demo's configuration for `tour`'s origins and files.
pub fn config(addrs: &DemoAddrs, tour: &Tour) -> std::io::Result<ConfigSource> {
    let origin = |name: &str| {
        tour.origin_addr(name)
            .map(|a| a.to_string())
            .ok_or_else(|| std::io::Error::other(format!("no demo origin {name}")))
    };
    let dir = tour.dir().display().to_string();
    let text = TEMPLATE
        .replace("{LISTEN}", &addrs.listen.to_string())
        .replace("{ADMIN}", &addrs.admin.to_string())
        .replace("{DNS}", &addrs.dns.to_string())
        .replace("{ORIGIN_A}", &origin("a")?)
        .replace("{ORIGIN_B}", &origin("b")?)
        .replace("{DOWN}", &closed_port()?.to_string())
        .replace("{DIR}", &dir);
    Ok(ConfigSource::Embedded {
        name: "(embedded demo config)".into(),
        text,
    })
}

/// A running demo: the edge and the tour it shows.
pub struct Demo {
    running: Running,
    tour: Arc<Tour>,
}

impl Demo {
    /// Start the origins, write the demo's files, start the edge on them.
    pub fn start(addrs: &DemoAddrs) -> Result<Demo, StartError> {
        let tour = Arc::new(
            Tour::start().map_err(|e| StartError::Io("starting the demo origins".into(), e))?,
        );
        let source = config(addrs, &tour)
            .map_err(|e| StartError::Io("writing the demo configuration".into(), e))?;
        let running = Running::start(source)?;
        running.set_demo(Arc::clone(&tour));
        Ok(Demo { running, tour })
    }

    pub fn running(&self) -> &Running {
        &self.running
    }

    pub fn tour(&self) -> &Tour {
        &self.tour
    }

    /// What to try, printed once the demo is up.
    pub fn instructions(&self) -> String {
        let r = &self.running;
        instructions(
            r.http_addrs.first().copied().unwrap_or(r.admin_addr),
            r.admin_addr,
            r.dns_addr,
            &self.tour,
        )
    }

    /// Stop the edge, then the origins (and remove the demo's files).
    pub fn shutdown(self) {
        self.running.shutdown();
    }
}

/// The tour: each thing Holdfast does, with the command to see it.
pub fn instructions(
    http: SocketAddr,
    admin: SocketAddr,
    dns: Option<SocketAddr>,
    tour: &Tour,
) -> String {
    let addr_of = |name: &str| {
        tour.origin_addr(name)
            .map_or_else(|| "?".into(), |a| a.ip().to_string())
    };
    let dig = match dns {
        Some(d) => format!(
            "  dig @{} -p {} {STEERED_NAME} A +short   # {} while origin a is up; {} once a is down",
            d.ip(),
            d.port(),
            addr_of("a"),
            addr_of("b")
        ),
        None => "  (no DNS server)".to_string(),
    };
    let lines = [
        "Holdfast demo is running: the edge in front of two demo origins, a and b.".to_string(),
        String::new(),
        format!("  edge           http://{http}/"),
        format!("  operator page  http://{admin}/   (live: pools, routes, artifacts, modules, DNS; the demo's buttons)"),
        format!("  status JSON    http://{admin}/status"),
        String::new(),
        "1. Failover: route \"site\" sends to origin a, else origin b, else a fallback page.".to_string(),
        format!("  curl -si http://{http}/ | grep -i x-demo-origin        # a"),
        format!("  curl -s -X POST http://{admin}/demo/origins/a/stop     # stop origin a (or Stop on the operator page)"),
        format!("  curl -si http://{http}/ | grep -i x-demo-origin        # b: no error, the route fails over"),
        format!("  curl -s -X POST http://{admin}/demo/origins/b/stop     # both down ..."),
        format!("  curl -i http://{http}/                                 # ... 503 + Retry-After: the fallback page"),
        format!("  curl -s -X POST http://{admin}/demo/origins/a/start    # and .../b/start: back to normal"),
        String::new(),
        "2. Cache: the second request is a hit, answered by the edge.".to_string(),
        format!("  curl -si http://{http}/cached | grep -i cache-status   # twice: fwd=uri-miss, then hit"),
        String::new(),
        "3. Rate limit: 3 requests a minute per client on /limited.".to_string(),
        format!("  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{{http_code}} ' http://{http}/limited; done; echo"),
        format!("  curl -si http://{http}/limited | grep -i retry-after   # 429 + Retry-After"),
        String::new(),
        "4. A rule: probes for a WordPress login are blocked at the edge.".to_string(),
        format!("  curl -i http://{http}/wp-login.php                     # 403"),
        String::new(),
        "5. The challenge on /protected: a browser passes it, an API client is told why not.".to_string(),
        format!("  open http://{http}/protected/ in a browser            # a moment of proof of work, then the page"),
        format!("  curl -s -H 'accept: application/json' http://{http}/protected/   # 403 JSON: reason, request_id"),
        String::new(),
        "6. The 18 Nov 2025 replay: a generated bot feature file comes with every entry repeated".to_string(),
        "   past its limit. The edge rejects it, keeps the last good one, and traffic goes on.".to_string(),
        format!("  curl -s -X POST http://{admin}/demo/replay             # or Replay on the operator page"),
        format!("  curl -s -o /dev/null -w '%{{http_code}}\\n' http://{http}/   # still 200"),
        format!("  curl -s http://{admin}/status | grep -o '\"last_rejection\":{{[^}}]*}}'   # capacity; the page's Artifacts"),
        format!("                                                         # file: {}", tour.feature_file().display()),
        String::new(),
        "7. DNS steering: www.demo.test answers the healthy origin's address.".to_string(),
        dig,
        String::new(),
        "8. Failures, each answered by the edge with the request id:".to_string(),
        format!("  curl -i 'http://{http}/slow?ms=3000'                   # slower than the 1s read timeout: 504"),
        format!("  curl -i http://{http}/down/                            # origin unreachable: 502"),
        format!("  curl -s http://{admin}/metrics | grep holdfast_http"),
        String::new(),
        "Access log: one JSON line per request on stdout. Ctrl-C stops.".to_string(),
    ];
    format!("\n{}\n", lines.join("\n"))
}
