//! `holdfast demo`: a complete edge on an embedded configuration in front of an in-process
//! demo origin, so a new user can try routing, timeouts, error pages and the admin plane.

mod origin;

use crate::controller::ConfigSource;
use std::net::SocketAddr;

pub use origin::DemoOrigin;

const TEMPLATE: &str = include_str!("demo.toml");

/// A local port where nothing listens (bound, then released), for the `/down` route.
fn closed_port() -> std::io::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

/// The demo's configuration, pointing at `origin`.
pub fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    origin: SocketAddr,
) -> std::io::Result<ConfigSource> {
    let text = TEMPLATE
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{ORIGIN}", &origin.to_string())
        .replace("{DOWN}", &closed_port()?.to_string());
    Ok(ConfigSource::Embedded {
        name: "(embedded demo config)".into(),
        text,
    })
}

/// What to try, printed once the demo is up.
pub fn instructions(http: SocketAddr, admin: SocketAddr) -> String {
    let lines = [
        "Holdfast demo is running.".to_string(),
        String::new(),
        format!("  edge           http://{http}/"),
        format!("  operator page  http://{admin}/   (live: pools, routes, modules, the last reload)"),
        format!("  status JSON    http://{admin}/status"),
        String::new(),
        "Try:".to_string(),
        String::new(),
        format!("  curl -i http://{http}/                     # a page from the demo origin, via the edge"),
        format!("  curl -i http://{http}/about                # another page; note x-request-id and via"),
        format!("  curl -i 'http://{http}/slow?ms=300'        # a slow origin, within the 1s read timeout"),
        format!("  curl -i 'http://{http}/slow?ms=3000'       # too slow: 504 page from the edge"),
        format!("  curl -i 'http://{http}/fail?status=503'    # the origin fails on demand: its 503 passes through"),
        format!("  curl -i http://{http}/down/                # origin unreachable: 502 page naming the request id"),
        format!("  curl -i -H 'accept: application/json' http://{http}/down/   # the same, as JSON"),
        format!("  for i in 1 2 3 4 5 6 7; do curl -s -o /dev/null -w '%{{http_code}} ' http://{http}/failover/; done; echo"),
        "                                             # all 200: refused by the first pool, served by the next; then the route fails over (operator page)".to_string(),
        format!("  curl -si http://{http}/cached | grep -i cache-status   # twice: a miss, then a hit"),
        format!("  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{{http_code}} ' http://{http}/limited; done; echo"),
        "                                             # 3 pass, then 429 with Retry-After".to_string(),
        format!("  curl -i http://{http}/wp-login.php         # blocked by a rule: 403"),
        format!("  curl -s http://{admin}/status              # generation, reload result, pools"),
        format!("  curl -s http://{admin}/metrics | grep holdfast_http"),
        format!("  curl -s -X POST http://{admin}/reload      # re-read the configuration"),
        String::new(),
        "Access log: one JSON line per request on stdout. Ctrl-C stops.".to_string(),
    ];
    format!("\n{}\n", lines.join("\n"))
}
