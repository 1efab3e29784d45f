//! Opening a connection to an origin server: TCP (no Nagle), optional TLS with SNI, then the
//! HTTP/1.1 or HTTP/2 handshake. The whole set-up is bounded by the route's connect timeout.

use super::conns::Conn;
use super::pool::Pool;
use super::server::Server;
use crate::body::RequestBody;
use crate::error::ProxyError;
use http::{header, Request, Uri, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest read buffer per origin connection; without a cap hyper's buffers grow to the
/// size of large bodies on every connection.
const MAX_BUF: usize = 64 << 10;

pub(crate) async fn connect(
    pool: &Pool,
    server: &Server,
    timeout: Duration,
    upgrade: bool,
) -> Result<Conn, ProxyError> {
    match tokio::time::timeout(timeout, open(pool, server, upgrade)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout),
    }
}

async fn open(pool: &Pool, server: &Server, upgrade: bool) -> Result<Conn, ProxyError> {
    let tcp = TcpStream::connect(server.addr)
        .await
        .map_err(ProxyError::Connect)?;
    let _ = tcp.set_nodelay(true);
    match (&pool.tls, &server.sni) {
        (Some(tls), Some(sni)) => {
            let stream = tls
                .connector
                .connect(sni.clone(), tcp)
                .await
                .map_err(ProxyError::UpstreamTls)?;
            handshake(TokioIo::new(stream), pool.http2, upgrade).await
        }
        _ => handshake(TokioIo::new(tcp), pool.http2, upgrade).await,
    }
}

async fn handshake<I>(io: I, h2: bool, upgrade: bool) -> Result<Conn, ProxyError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 && !upgrade {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake::<_, RequestBody>(io)
            .await
            .map_err(ProxyError::Upstream)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "origin HTTP/2 connection ended");
            }
        });
        return Ok(Conn::H2(sender));
    }
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_BUF)
        .handshake::<_, RequestBody>(io)
        .await
        .map_err(ProxyError::Upstream)?;
    if upgrade {
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "origin connection ended");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "origin connection ended");
            }
        });
    }
    Ok(Conn::H1(sender))
}

/// HTTP/1.1 origins get origin-form targets; HTTP/2 needs scheme and authority.
pub(crate) fn set_target(req: &mut Request<RequestBody>, conn: &Conn, server: &Server) {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    match conn {
        Conn::H1(_) => {
            *req.version_mut() = Version::HTTP_11;
            if req.uri().scheme().is_some() {
                *req.uri_mut() = Uri::from(path);
            }
        }
        Conn::H2(_) => {
            *req.version_mut() = Version::HTTP_2;
            let authority = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| server.addr.to_string());
            let scheme = if server.sni.is_some() {
                "https"
            } else {
                "http"
            };
            if let Ok(uri) = Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query(path)
                .build()
            {
                *req.uri_mut() = uri;
            }
            req.headers_mut().remove(header::HOST);
        }
    }
}
