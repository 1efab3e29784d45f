//! Test support: in-process origins with controllable behaviour, an edge started from a
//! TOML template, and small HTTP clients.

#![allow(dead_code)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub type Body = Full<Bytes>;
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// What an origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: http::HeaderMap,
}

/// An origin server on 127.0.0.1:0, serving with `handler`, recording what it saw.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Origin {
    pub async fn start(handler: Handler) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Origin::serve(listener, handler)
    }

    /// Serve on an already-bound listener (to bring an origin back on the same port).
    pub fn serve(listener: tokio::net::TcpListener, handler: Handler) -> Origin {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (seen2, conns2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                conns2.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().clone(),
                            uri: req.uri().clone(),
                            version: req.version(),
                            headers: req.headers().clone(),
                        });
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            seen,
            connections,
            stop: Some(stop),
        }
    }

    /// An origin answering 200 with `body` to everything.
    pub async fn text(body: &'static str) -> Origin {
        Origin::start(handler(move |_req| async move { ok(body) })).await
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("origin saw no request")
    }

    /// Stop accepting new connections (open ones are not cut).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

pub fn ok(body: impl Into<Bytes>) -> Response<Body> {
    Response::new(Full::new(body.into()))
}

pub fn status(code: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = ok(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

/// A local port with nothing listening on it.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running edge built from a TOML template; `{edge}` and `{admin}` are replaced by
/// `127.0.0.1:0`, other `{name}` placeholders by `vars`.
pub struct Edge {
    pub running: Option<holdfast::Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut text = template
        .replace("{edge}", "127.0.0.1:0")
        .replace("{admin}", "127.0.0.1:0");
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    text
}

impl Edge {
    pub fn start(template: &str, vars: &[(&str, String)]) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("edge.toml");
        std::fs::write(&config_path, render(template, vars)).unwrap();
        Edge::start_file(dir, config_path)
    }

    pub fn start_file(dir: tempfile::TempDir, config_path: PathBuf) -> Edge {
        let running = holdfast::Running::start(holdfast::ConfigSource::File(config_path.clone()))
            .unwrap_or_else(|e| panic!("edge did not start: {e}"));
        Edge {
            running: Some(running),
            dir,
            config_path,
        }
    }

    pub fn running(&self) -> &holdfast::Running {
        self.running.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().http_addrs[0])
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().admin_addr)
    }

    /// Replace the config file (template rendered as in `start`).
    pub fn rewrite(&self, template: &str, vars: &[(&str, String)]) {
        std::fs::write(&self.config_path, render(template, vars)).unwrap();
    }

    pub fn reload(&self) -> holdfast::ReloadOutcome {
        self.running().reload()
    }

    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pooled HTTP/1.1 client.
pub fn client() -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A response with its whole body read.
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub async fn send(req: Request<Body>) -> Got {
    let resp = client().request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Got {
    send(Request::get(url).body(Body::default()).unwrap()).await
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Body::default()).unwrap()).await
}

pub async fn post(url: &str) -> Got {
    send(Request::post(url).body(Body::default()).unwrap()).await
}

/// Send raw bytes on a new connection and read until the server closes or `limit` bytes.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 1 << 20 {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The basic one-pool, one-route file (the issue's example shape).
pub const BASIC: &str = r#"
[edge]
listen = ["{edge}"]
threads = 2
access_log = "off"

[admin]
listen = "{admin}"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;
