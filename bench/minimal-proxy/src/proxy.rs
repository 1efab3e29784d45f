//! The request path: strip hop-by-hop headers, send to the upstream over a pooled
//! connection, stream the response back. A failed upstream exchange becomes a 502 with
//! an empty body; nothing is retried (the request body has been handed over by then).

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::pool::{Pool, PooledBody};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

pub async fn forward(
    pool: Arc<Pool>,
    mut req: Request<Incoming>,
) -> Result<Response<PooledBody>, Infallible> {
    strip_hop_by_hop(req.headers_mut());
    // The upstream leg is always keep-alive HTTP/1.1, whatever the client spoke.
    *req.version_mut() = Version::HTTP_11;
    match pool.send(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            Ok(resp)
        }
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<PooledBody> {
    let mut resp = Response::new(PooledBody::empty());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// RFC 9110 §7.6.1: headers that describe one connection, not the message. hyper
/// frames each leg itself (`Content-Length` or chunked from the body's size hint), so
/// dropping `Transfer-Encoding` here is safe.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the client named in `Connection` are hop-by-hop too. Rare, so only
    // allocate when there is something listed.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
}
