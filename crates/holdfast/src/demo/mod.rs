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
    format!(
        "\nHoldfast demo is running.\n\
         \n  edge   http://{http}/\n  admin  http://{admin}/status\n\nTry:\n\
         \n  curl -i http://{http}/                     # a page from the demo origin, via the edge\
         \n  curl -i http://{http}/about                # another page; note x-request-id and via\
         \n  curl -i 'http://{http}/slow?ms=300'        # a slow origin, within the 1s read timeout\
         \n  curl -i 'http://{http}/slow?ms=3000'       # too slow: 504 page from the edge\
         \n  curl -i 'http://{http}/fail?status=503'    # the origin fails on demand: its 503 passes through\
         \n  curl -i http://{http}/down/                # origin unreachable: 502 page naming the request id\
         \n  curl -i -H 'accept: application/json' http://{http}/down/   # the same, as JSON\
         \n  curl -s http://{admin}/status              # generation, reload result, pools\
         \n  curl -s http://{admin}/metrics | grep holdfast_http\
         \n  curl -s -X POST http://{admin}/reload      # re-read the configuration\
         \n\nAccess log: one JSON line per request on stdout. Ctrl-C stops.\n"
    )
}
