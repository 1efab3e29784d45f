//! The front door's parsers without sockets, for `fuzz/` and tests: the client address from
//! `X-Forwarded-For`/`Forwarded`, the PROXY protocol header read from a byte slice, the path
//! normalisation and the strict request checks, each as the data path calls it. Not used by
//! the server.

use crate::ctx::{ConnInfo, RequestCtx};
use holdfast_config::ClientIpHeader;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{HeaderMap, Request};
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The client's address as `client_ip` finds it behind `trusted` proxies.
pub fn client_ip(
    trusted: &[IpNet],
    which: ClientIpHeader,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    crate::client_ip::client_ip(trusted, which, peer, headers)
}

/// The PROXY header at the start of `input` from `peer`: the client address and every byte
/// after the header, or the rejection as text.
pub fn proxy_header(
    input: &[u8],
    peer: SocketAddr,
    trusted: &[IpNet],
) -> Result<(SocketAddr, Vec<u8>), String> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let (client, mut rest) = crate::proxy_protocol::accept(input, peer, trusted)
            .await
            .map_err(|e| e.to_string())?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after)
            .await
            .map_err(|e| e.to_string())?;
        Ok((client, after))
    };
    ready(read).unwrap_or_else(|| Err("reading a byte slice did not complete".to_string()))
}

/// The normalised path and query (`None`: already normal), or why it is refused.
pub fn normalise_path(pq: &PathAndQuery) -> Result<Option<PathAndQuery>, &'static str> {
    crate::phases::path::normalise(pq, holdfast_config::EncodedSlashes::Refuse)
        .map_err(|e| e.as_str())
}

/// `uri-host [":" port]` as the front door accepts it.
pub fn valid_host(host: &[u8]) -> bool {
    crate::phases::strict::valid_host(host)
}

/// The front door on `req` (normalised in place): the host and path the later phases see,
/// or the refusal's `reason` label.
pub fn front_door<B>(
    req: &mut Request<B>,
) -> Result<(Option<HeaderValue>, PathAndQuery), &'static str> {
    let conn = ConnInfo::new(SocketAddr::from(([192, 0, 2, 1], 40000)), false);
    let mut ctx = RequestCtx::new(req, conn);
    let slashes = holdfast_config::EncodedSlashes::Refuse;
    crate::phases::strict::inspect(req, &mut ctx, slashes).map_err(|r| r.reason())?;
    Ok((ctx.host, ctx.path))
}

/// Polls `fut` to completion with a no-op waker; `None` if it is still pending after many
/// polls (a byte slice never is).
fn ready<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_entry_answers_as_the_data_path_does() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: SocketAddr = "10.1.1.1:40000".parse().unwrap();
        let (client, rest) = proxy_header(
            b"PROXY TCP4 192.0.2.7 10.0.0.9 5555 80\r\nGET",
            peer,
            &trusted,
        )
        .unwrap();
        assert_eq!(client, "192.0.2.7:5555".parse().unwrap());
        assert_eq!(rest, b"GET");
        assert!(proxy_header(b"GET / HTTP/1.1\r\n", peer, &trusted).is_err());

        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        let ip = client_ip(&trusted, ClientIpHeader::XForwardedFor, peer.ip(), &h);
        assert_eq!(ip, "198.51.100.1".parse::<IpAddr>().unwrap());

        let pq = PathAndQuery::from_static("/x/../wp-admin");
        assert_eq!(normalise_path(&pq).unwrap().unwrap().as_str(), "/wp-admin");
        assert!(normalise_path(&PathAndQuery::from_static("/a%2fb")).is_err());

        let mut req = Request::builder()
            .uri("/%77p-admin")
            .header("host", "example.com")
            .body(())
            .unwrap();
        let (host, path) = front_door(&mut req).unwrap();
        assert_eq!(host.unwrap(), "example.com");
        assert_eq!(path.as_str(), "/wp-admin");
        let mut bad = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(front_door(&mut bad), Err("host_missing"));
        assert!(valid_host(b"example.com:80") && !valid_host(b"a b"));
    }
}
