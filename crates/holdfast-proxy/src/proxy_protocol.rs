//! The PROXY protocol (HAProxy's v1 text and v2 binary headers, parsed by the `ppp` crate):
//! with `edge.proxy_protocol`, a load balancer in front opens every connection with a header
//! naming the client it accepted. The header is required on every connection; the address
//! in it is believed only when the connecting peer is in `edge.trusted_proxies` — from any
//! other peer it is read and ignored, so a client cannot name itself.

use crate::rewind::Rewind;
use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult, PartialResult};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest header read: v1 is at most 107 bytes; v2 carries TLVs, which a load balancer
/// keeps small (AWS and GCP send well under 1 KiB).
const MAX_HEADER_BYTES: usize = 4096;

/// Why a connection was closed before any HTTP was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejected {
    #[error("the connection ended before a complete PROXY header")]
    Closed,
    #[error("no valid PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY header longer than {MAX_HEADER_BYTES} bytes")]
    TooLarge,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Read the header off `stream`; returns the client's address (the header's source if
/// `peer` is trusted and the header names one; else `peer`) and the stream, with any bytes
/// read past the header put back in front. Callers bound this with the header timeout.
pub(crate) async fn accept<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    trusted: &[IpNet],
) -> Result<(SocketAddr, Rewind<S>), Rejected> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        if buf.len() >= MAX_HEADER_BYTES {
            return Err(Rejected::TooLarge);
        }
        let want = (MAX_HEADER_BYTES - buf.len()).min(512);
        let n = (&mut stream).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(Rejected::Closed);
        }
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() {
            continue;
        }
        let (len, source) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h)),
            HeaderResult::V1(Err(e)) => return Err(Rejected::Malformed(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(Rejected::Malformed(e.to_string())),
        };
        let trusted_peer = trusted.iter().any(|n| n.contains(&peer.ip()));
        let client = match source {
            Some(addr) if trusted_peer => addr,
            _ => peer,
        };
        let rest = buf.get(len..).unwrap_or_default().to_vec();
        return Ok((client, Rewind::new(rest, stream)));
    }
}

fn v1_source(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    }
}

/// `LOCAL` (the balancer's own health check) and non-IP families name no client.
fn v2_source(header: &v2::Header<'_>) -> Option<SocketAddr> {
    if header.command != v2::Command::Proxy {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    async fn run(input: &[u8], peer: &str) -> Result<(SocketAddr, Vec<u8>), Rejected> {
        let (client, mut rest) = accept(input, addr(peer), &trusted()).await?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after).await.unwrap();
        Ok((client, after))
    }

    fn v2_header(command: v2::Command, src: &str, dst: &str) -> Vec<u8> {
        let addresses: v2::Addresses = (addr(src), addr(dst)).into();
        v2::Builder::with_addresses(v2::Version::Two | command, v2::Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_trusted_v1_header_names_the_client_and_the_request_follows_intact() {
        let input = b"PROXY TCP4 192.0.2.7 10.0.0.9 5555 80\r\nGET / HTTP/1.1\r\n\r\n";
        let (client, after) = run(input, "10.1.1.1:40000").await.unwrap();
        assert_eq!(client, addr("192.0.2.7:5555"));
        assert_eq!(after, b"GET / HTTP/1.1\r\n\r\n");
        let input = b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\nX";
        let (client, after) = run(input, "10.1.1.1:40000").await.unwrap();
        assert_eq!(client, addr("[2001:db8::7]:5555"));
        assert_eq!(after, b"X");
    }

    #[tokio::test]
    async fn a_trusted_v2_header_names_the_client_local_names_none() {
        let mut input = v2_header(v2::Command::Proxy, "198.51.100.4:1234", "10.0.0.9:80");
        input.extend_from_slice(b"GET /");
        let (client, after) = run(&input, "10.1.1.1:40000").await.unwrap();
        assert_eq!(client, addr("198.51.100.4:1234"));
        assert_eq!(after, b"GET /");
        let input = v2_header(v2::Command::Local, "198.51.100.4:1234", "10.0.0.9:80");
        let (client, _) = run(&input, "10.1.1.1:40000").await.unwrap();
        assert_eq!(client, addr("10.1.1.1:40000"));
    }

    #[tokio::test]
    async fn an_untrusted_peer_is_the_client_whatever_its_header_says() {
        let input = b"PROXY TCP4 192.0.2.7 10.0.0.9 5555 80\r\nGET";
        let (client, after) = run(input, "203.0.113.9:40000").await.unwrap();
        assert_eq!(client, addr("203.0.113.9:40000"));
        assert_eq!(after, b"GET");
    }

    #[tokio::test]
    async fn missing_malformed_truncated_or_huge_headers_close_the_connection() {
        let peer = "10.1.1.1:40000";
        assert!(matches!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", peer).await,
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            run(b"PROXY TCP4 192.0.2.7", peer).await,
            Err(Rejected::Closed)
        ));
        assert!(matches!(
            run(b"PROXY TCP4 nonsense 10.0.0.9 5555 80\r\n", peer).await,
            Err(Rejected::Malformed(_))
        ));
        // A v2 signature announcing a 60 KiB payload.
        let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xf0\x00".to_vec();
        huge.resize(MAX_HEADER_BYTES + 100, 0);
        assert!(matches!(run(&huge, peer).await, Err(Rejected::TooLarge)));
    }
}
