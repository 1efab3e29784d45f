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
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

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
                tokio::spawn(serve_recorded(stream, handler.clone(), seen2.clone()));
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
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("origin saw no request")
    }

    /// Stop accepting new connections (open ones are not cut).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serve one connection with `handler`, recording what is seen of each request in `seen`.
async fn serve_recorded(
    stream: tokio::net::TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
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
/// The port stays bound (never listening) for the rest of the test process, so connections
/// to it are refused and no parallel test can be given it.
pub fn dead_addr() -> SocketAddr {
    let (socket, addr) = reserved_port();
    std::mem::forget(socket);
    addr
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
        Edge::start_in_dir(template, vars, |_| {})
    }

    /// `start`, with `files` first writing what the config refers to into its directory.
    pub fn start_in_dir(
        template: &str,
        vars: &[(&str, String)],
        files: impl FnOnce(&std::path::Path),
    ) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
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

    /// Drain as after a binary upgrade (`drain_after_upgrade`), on a thread: it returns once
    /// every open connection finished or `edge.drain_timeout` passed.
    pub fn drain_in_background(&mut self) -> std::thread::JoinHandle<()> {
        let running = self.running.take().unwrap();
        std::thread::spawn(move || running.drain_after_upgrade())
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pooled HTTP/1.1 client.
pub fn client(
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
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
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub async fn send(req: Request<Body>) -> Got {
    read_got(client().request(req).await.unwrap()).await
}

/// A response with its whole body read.
async fn read_got(resp: Response<Incoming>) -> Got {
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

/// `get_with` on a new connection from the local address `from`: all of 127.0.0.0/8 is
/// loopback, so `127.0.0.2` is a second client address for an edge on 127.0.0.1.
pub async fn get_from(from: std::net::IpAddr, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some(from));
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Body>(connector);
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    read_got(
        client
            .request(b.body(Body::default()).unwrap())
            .await
            .unwrap(),
    )
    .await
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

// ---- Config templates ----

/// A config template: the `[edge]` and `[admin]` tables every test edge starts with (both
/// listeners on 127.0.0.1:0, through `{edge}` and `{admin}`; `threads` workers; no access
/// log), then `rest`, its pools and routes.
pub fn edge_config(threads: u32, rest: &str) -> String {
    edge_config_with(threads, "", rest)
}

/// `edge_config` with the keys `edge_keys` added to `[edge]`.
pub fn edge_config_with(threads: u32, edge_keys: &str, rest: &str) -> String {
    format!(
        r#"
[edge]
listen = ["{{edge}}"]
threads = {threads}
access_log = "off"
{edge_keys}

[admin]
listen = "{{admin}}"
{rest}"#
    )
}

/// `addrs` as the entries of a TOML array, in that order: `"127.0.0.1:1", "127.0.0.1:2"`.
pub fn server_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The basic file (the issue's example shape), two workers: one pool "primary" of `{origin}`
/// and one route "all" sending everything to it.
pub fn basic() -> String {
    edge_config(2, BASIC_POOL)
}

/// Two routes to one pool "primary" of `{origin}`: "api" for `/api/`, then "all" for
/// everything else.
pub const TWO_ROUTES: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "api"
match = { path_prefix = "/api/" }
pool = "primary"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

/// The pools and routes of `basic`.
pub const BASIC_POOL: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

/// The pools and routes of an edge with one pool "app" of `{servers}` (the entries of its
/// `servers` array) and one route "all" sending everything to it; `{pool}` follows the
/// pool's `servers` line (pool keys first, then its `[pools.*]` tables), `{route}` the
/// route's `pool` line.
pub const APP_POOL: &str = r#"
[[pools]]
name = "app"
servers = [{servers}]
{pool}

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "app"
{route}
"#;

/// The values for `APP_POOL`: `servers` as written in the array (see `server_list`), and
/// the lines added to the pool and to the route ("" for none).
pub fn app_vars(servers: &str, pool: &str, route: &str) -> Vec<(&'static str, String)> {
    vec![
        ("servers", servers.to_owned()),
        ("pool", pool.to_owned()),
        ("route", route.to_owned()),
    ]
}

/// An edge with `threads` workers and `APP_POOL`, filled in as `app_vars` says.
pub fn app_edge(threads: u32, servers: &str, pool: &str, route: &str) -> Edge {
    Edge::start(
        &edge_config(threads, APP_POOL),
        &app_vars(servers, pool, route),
    )
}

/// The pools and routes of an edge whose route "site" fails over from pool "primary" (of
/// `{primary}`) to pool "secondary" (of `{secondary}`), both written as the entries of a
/// `servers` array; `{primary_extra}` and `{secondary_extra}` follow each pool's `servers`
/// line, `{route}` the route's `pools` line.
pub const CHAIN: &str = r#"
[[pools]]
name = "primary"
servers = [{primary}]
{primary_extra}

[[pools]]
name = "secondary"
servers = [{secondary}]
{secondary_extra}

[[routes]]
name = "site"
match = { path_prefix = "/" }
pools = ["primary", "secondary"]
{route}
"#;

/// The values for `CHAIN`.
pub fn chain_vars(
    primary: &[SocketAddr],
    primary_extra: &str,
    secondary: &[SocketAddr],
    secondary_extra: &str,
    route: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("primary", server_list(primary)),
        ("primary_extra", primary_extra.to_owned()),
        ("secondary", server_list(secondary)),
        ("secondary_extra", secondary_extra.to_owned()),
        ("route", route.to_owned()),
    ]
}

/// Active checks on `HEALTHZ` every 50ms, two results in a row to change state.
pub const QUICK_CHECKS: &str = r#"
[pools.health]
path = "/healthz"
interval = "50ms"
healthy_after = 2
unhealthy_after = 2
"#;

/// Passive ejections that end within a second, so that coming back is up to the checks.
pub const SHORT_EJECTIONS: &str = r#"
[pools.outlier]
base_ejection = "1s"
max_ejection = "1s"
"#;

// ---- Limits and waits ----

/// "Returns at all", and the longest wait for a state the tests wait for (a health verdict,
/// a chain's choice, requests reaching an origin): far above every timeout, back-off and
/// check interval the tests configure, far below "hangs", and below the 60s read timeout a
/// request waiting for a busy origin would be answered at.
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// What stalling origins wait when they mean "forever" (they are dropped with the test).
pub const FOREVER: std::time::Duration = std::time::Duration::from_secs(3600);

/// `f`, which must finish within `LIMIT`; `what` names it if it does not.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {LIMIT:?}"))
}

/// An answer from the edge, which must come within `LIMIT`.
pub async fn within_limit<T>(f: impl Future<Output = T>) -> T {
    within("the edge", f).await
}

/// A GET running on its own task, so the test can go on while it hangs.
pub fn spawn_get(url: String) -> tokio::task::JoinHandle<Got> {
    tokio::spawn(async move { get(&url).await })
}

/// `spawn_get` with request headers.
pub fn spawn_get_with(
    url: String,
    headers: &'static [(&'static str, &'static str)],
) -> tokio::task::JoinHandle<Got> {
    tokio::spawn(async move { get_with(&url, headers).await })
}

/// Every request answered (within `LIMIT`) 200 with one of `bodies`; their bodies.
pub async fn all_ok(requests: Vec<tokio::task::JoinHandle<Got>>, bodies: &[&str]) -> Vec<String> {
    let mut got_bodies = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        let got = within(&format!("request {i}"), r).await.unwrap();
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        let body = got.text();
        assert!(bodies.contains(&body.as_str()), "request {i}: {body}");
        got_bodies.push(body);
    }
    got_bodies
}

/// Wait (bounded) until `origins` have seen `n` requests in all, then check they saw no more.
pub async fn until_seen(origins: &[&Origin], n: usize) {
    let seen = || origins.iter().map(|o| o.requests()).sum::<usize>();
    eventually(
        &format!("the origins to see {n} requests"),
        LIMIT,
        || async { seen() >= n },
    )
    .await;
    assert_eq!(seen(), n, "the origins saw more than {n} requests");
}

// ---- Helpers for reload, admin, check, TLS and access-log tests ----

/// Run blocking edge calls (`reload`, `stop`, `Running::start`) from a multi-thread test.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Poll `check` until it holds, at most `within`; fails the test with `what` otherwise.
/// For conditions that become true eventually (a log flushed, a signal handled), never for
/// ordering between steps the test controls.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = std::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of one sample in Prometheus text, e.g.
/// `metric(&text, r#"holdfast_config_reload_total{result="applied"}"#)`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

impl Edge {
    pub async fn status(&self) -> serde_json::Value {
        let got = get(&self.admin_url("/status")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        got.json()
    }

    pub async fn metrics(&self) -> String {
        let got = get(&self.admin_url("/metrics")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        got.text()
    }

    /// `edge.reload()` off the async worker, expecting it to be applied; returns the generation.
    pub fn reload_applied(&self) -> u64 {
        match blocking(|| self.reload()) {
            holdfast::ReloadOutcome::Applied { generation } => generation,
            other => panic!("reload was not applied: {other:?}"),
        }
    }

    /// `edge.reload()` off the async worker, expecting a rejection; returns its errors.
    pub fn reload_rejected(&self) -> (u64, Vec<String>) {
        match blocking(|| self.reload()) {
            holdfast::ReloadOutcome::Rejected { generation, errors } => (generation, errors),
            other => panic!("reload was not rejected: {other:?}"),
        }
    }
}

/// A certificate authority made at run time (no keys are committed), issuing leaf
/// certificates for the TLS tests.
pub struct TestCa {
    pub pem: String,
    pub der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate and its key, PEM and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names, `*.` wildcards allowed).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl TestCa {
    /// The CA's private key, PEM (for `openssl ocsp` to sign responses with).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A server certificate for `names` whose Authority Information Access names the OCSP
    /// responder `url`.
    pub fn leaf_with_ocsp(&self, names: &[&str], url: &str) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        // AuthorityInfoAccess ::= SEQUENCE OF SEQUENCE { id-ad-ocsp, [6] IA5String url }
        let der = |tag: u8, content: &[u8]| {
            assert!(content.len() < 128);
            [&[tag, content.len() as u8][..], content].concat()
        };
        let oid = der(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
        let access = der(0x30, &[oid, der(0x86, url.as_bytes())].concat());
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                der(0x30, &access),
            ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client certificate for `name` (TLS client authentication).
    pub fn client(&self, name: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl Leaf {
    /// Write `<stem>.pem` and `<stem>.key` into `dir`.
    pub fn write(&self, dir: &std::path::Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem).unwrap();
    }
}

/// Run the real `holdfast` binary with `args`; (exit code, stdout, stderr).
pub fn holdfast_cmd(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .env("HOLDFAST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- Helpers for header, timeout, origin-down, bad-input, streaming and keep-alive tests ----

/// Longest wait for any single read or write of a raw connection before the test fails.
pub const RAW_IO_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One HTTP/1.x connection spoken byte by byte: a client to the edge, or the server side of
/// a `RawOrigin`. Every read is bounded by `RAW_IO_LIMIT`.
pub struct RawConn {
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// A response read by `RawConn::read_response`.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Status line and header lines, without the blank line.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        head_header(&self.head, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The first value of header `name` in a message head.
pub fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn head_status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {head:?}"))
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn::new(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    pub fn new(stream: tokio::net::TcpStream) -> RawConn {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        tokio::time::timeout(RAW_IO_LIMIT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .unwrap();
    }

    /// Read more bytes into the buffer; false at end of stream or on a reset.
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout(RAW_IO_LIMIT, self.stream.read(&mut chunk)).await {
            Err(_) => panic!("read timed out after {RAW_IO_LIMIT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next message head (start line and headers, without the blank line).
    pub async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            if !self.fill().await {
                panic!(
                    "connection closed before a complete head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill().await {
                panic!("connection closed after {} of {n} bytes", self.buf.len());
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Everything until the peer closes (or resets) the connection.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// One response: the head, then a `Content-Length` or chunked body (none for 1xx, 204,
    /// 304 or a response to HEAD is not handled here: callers read those with `read_head`).
    pub async fn read_response(&mut self) -> RawResponse {
        let head = self.read_head().await;
        let status = head_status(&head);
        let body = if let Some(len) = head_header(&head, "content-length") {
            self.read_exact(len.parse().unwrap()).await
        } else if head_header(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            self.read_chunked().await
        } else if status == 204 || status == 304 || status < 200 {
            Vec::new()
        } else {
            self.read_to_end().await
        };
        RawResponse { status, head, body }
    }

    async fn read_line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            if !self.fill().await {
                panic!("connection closed inside a chunked body");
            }
        }
    }

    async fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let size_line = self.read_line().await;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
            if size == 0 {
                while !self.read_line().await.is_empty() {}
                return body;
            }
            body.extend(self.read_exact(size).await);
            assert_eq!(self.read_line().await, "", "chunk not followed by CRLF");
        }
    }

    /// A whole request as an origin sees it: head, then a `Content-Length` body if any.
    pub async fn read_request(&mut self) -> (String, Vec<u8>) {
        let head = self.read_head().await;
        let body = match head_header(&head, "content-length") {
            Some(len) => self.read_exact(len.parse().unwrap()).await,
            None if head_header(&head, "transfer-encoding").is_some() => self.read_chunked().await,
            None => Vec::new(),
        };
        (head, body)
    }
}

/// Send one request on a new connection and read one response.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut c = RawConn::connect(addr).await;
    c.write(request).await;
    c.read_response().await
}

/// An origin that speaks HTTP/1.1 by hand, one `script` run per accepted connection, for
/// behaviour a well-behaved server library will not produce (stalls, drips, closes).
pub struct RawOrigin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    pub async fn start<F, Fut>(script: F) -> RawOrigin
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let accept = tokio::spawn(async move {
            loop {
                // An accept error (a connection reset while queued) must not stop the origin.
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(RawConn::new(stream)));
            }
        });
        RawOrigin {
            addr,
            connections,
            accept,
        }
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The `/status` entry for the server `addr` (as written in the config) of pool `pool`.
pub fn server_status(status: &serde_json::Value, pool: &str, addr: &str) -> serde_json::Value {
    let pools = status["pools"].as_array().expect("status has pools");
    let pool = pools
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap_or_else(|| panic!("no pool {pool:?} in {status}"));
    pool["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == addr)
        .cloned()
        .unwrap_or_else(|| panic!("no server {addr:?} in {pool}"))
}

/// Deterministic, non-repeating-looking bytes (a xorshift stream), for body integrity checks.
pub fn pattern_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// A loopback port that refuses connections and stays reserved while the returned socket
/// lives: bound but not listening, without `SO_REUSEADDR`, so no other test's listener (nor
/// an outgoing connection's local port) is given it, as can happen to `dead_addr`'s port
/// once it is freed. `listen` on the socket brings the port up.
pub fn reserved_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(false).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

// ---- Helpers for retry tests ----

/// The value of the sample of metric `name` whose labels are exactly `labels`, in any order
/// (Prometheus text lists labels sorted by name, not in the order they were declared).
/// Label values must not contain `,` or escaped quotes.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (have, value) = match rest.strip_prefix('{') {
            Some(inner) => {
                let (set, value) = inner.split_once('}')?;
                let mut have: Vec<String> = set
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                have.sort();
                (have, value)
            }
            None => (Vec::new(), rest),
        };
        if have != wanted {
            return None;
        }
        value.strip_prefix(' ')?.trim().parse().ok()
    })
}

// ---- Helpers for overload tests ----

/// A gate the test opens: origins wait at it until then, and pass at once ever after.
/// Waiting only needs the gate to be opened at some point, not while the wait is parked, so
/// an origin that reaches it after `open` does not hang (unlike `Notify::notify_waiters`).
#[derive(Clone)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            open: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub async fn wait(&self) {
        let mut open = self.open.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = open.wait_for(|o| *o).await;
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

/// An origin that answers 200 with `body` to every request once `gate` is open; until then
/// each request it has seen (counted by `Origin::requests`) hangs.
pub async fn gated_origin(gate: &Gate, body: &'static str) -> Origin {
    let gate = gate.clone();
    Origin::start(handler(move |_req| {
        let gate = gate.clone();
        async move {
            gate.wait().await;
            ok(body)
        }
    }))
    .await
}

// ---- Helpers for health-check, failover and fallback tests ----

/// How many of the requests in `seen` were for `path` (the query ignored).
pub fn requests_to(seen: &Mutex<Vec<Seen>>, path: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.uri.path() == path)
        .count()
}

impl Origin {
    /// The requests it saw for `path` (the query ignored).
    pub fn requests_to(&self, path: &str) -> usize {
        requests_to(&self.seen, path)
    }
}

/// The check path origins behind active health checks answer on.
pub const HEALTHZ: &str = "/healthz";

/// A handler for an origin behind active health checks: `HEALTHZ` is answered with the
/// status `check(n)` returns for the n-th check it sees (from 0), every other path with 200
/// and `body`.
pub fn with_checks(
    body: &'static str,
    check: impl Fn(usize) -> u16 + Send + Sync + 'static,
) -> Handler {
    let checks = Arc::new(AtomicUsize::new(0));
    let check = Arc::new(check);
    handler(move |req| {
        let reply = if req.uri().path() == HEALTHZ {
            let n = checks.fetch_add(1, Ordering::SeqCst);
            status(check(n), "check")
        } else {
            ok(body)
        };
        async move { reply }
    })
}

/// An origin that can be killed — its listener closed and every open connection cut, so
/// requests in progress fail and new connections are refused — and started again on the
/// same port, which stays reserved for it in between.
pub struct Killable {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
    accept: Option<tokio::task::JoinHandle<()>>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    reserved: Option<tokio::net::TcpSocket>,
}

impl Killable {
    pub async fn start(handler: Handler) -> Killable {
        let socket = Self::port_sharing_socket();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let mut k = Killable {
            addr: listener.local_addr().unwrap(),
            seen: Arc::new(Mutex::new(Vec::new())),
            handler,
            accept: None,
            connections: Arc::new(Mutex::new(Vec::new())),
            reserved: None,
        };
        k.serve(listener);
        k
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (handler, seen, connections) = (
            self.handler.clone(),
            self.seen.clone(),
            self.connections.clone(),
        );
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = tokio::spawn(serve_recorded(stream, handler.clone(), seen.clone()));
                connections.lock().unwrap().push(conn);
            }
        }));
    }

    /// Close the listener and cut every open connection; when this returns, connections to
    /// `addr` are refused.
    pub async fn kill(&mut self) {
        if self.reserved.is_none() {
            // Bound but not listening: once the listener is gone, connections are refused
            // and no other test can be given the port. Bound *before* the listener closes
            // (SO_REUSEPORT, which both carry, allows it): bound after, the port would be
            // free for an instant, and another test's connection could take it as its own.
            let socket = Self::port_sharing_socket();
            socket
                .bind(self.addr)
                .unwrap_or_else(|e| panic!("could not keep port {} for a kill: {e}", self.addr));
            self.reserved = Some(socket);
        }
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let open = std::mem::take(&mut *self.connections.lock().unwrap());
        for c in &open {
            c.abort();
        }
        for c in open {
            let _ = c.await;
        }
    }

    /// Serve again, on the same port, with the same handler.
    pub fn restart(&mut self) {
        let socket = self.reserved.take().expect("restart after kill");
        let listener = socket
            .listen(1024)
            .unwrap_or_else(|e| panic!("could not listen on {} again: {e}", self.addr));
        self.serve(listener);
    }

    /// SO_REUSEADDR because cut connections linger in TIME_WAIT; SO_REUSEPORT so that the
    /// reservation and the listener can hold the port together, and only sockets of this
    /// process that ask for it can share it.
    fn port_sharing_socket() -> tokio::net::TcpSocket {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.set_reuseport(true).unwrap();
        socket
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The requests it saw for `path` (the query ignored).
    pub fn requests_to(&self, path: &str) -> usize {
        requests_to(&self.seen, path)
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// The `/status` entry for route `name`.
pub fn route_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no routes: {status}"))
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no route {name:?} in {status}"))
}

/// The pool route `route` last chose for a request (`active` on `/status`).
pub async fn active_pool(edge: &Edge, route: &str) -> String {
    let route = route_status(&edge.status().await, route);
    route["active"]
        .as_str()
        .unwrap_or_else(|| panic!("active is not a string: {route}"))
        .to_owned()
}

impl Edge {
    /// The `/status` entry of server `addr` of pool `pool`.
    pub async fn server(&self, pool: &str, addr: SocketAddr) -> serde_json::Value {
        server_status(&self.status().await, pool, &addr.to_string())
    }
}

// ---- Origins that fail ----

/// An origin answering every request with `code` and `body`.
pub async fn answering(code: u16, body: &'static str) -> Origin {
    Origin::start(handler(move |_req| async move { status(code, body) })).await
}

/// An origin that reads a request head, then resets the connection (RST, no response),
/// with whatever part of a body it was sent unread.
pub async fn resetting() -> RawOrigin {
    RawOrigin::start(|mut c| async move {
        c.read_head().await;
        c.stream.set_zero_linger().unwrap();
        drop(c);
    })
    .await
}

// ---- Metrics (Prometheus text from `Edge::metrics`) ----

/// `holdfast_upstream_errors_total{pool,server=addr,kind="connect"}`, 0 when not exported.
pub fn connect_errors(metrics: &str, pool: &str, addr: SocketAddr) -> f64 {
    sample(
        metrics,
        "holdfast_upstream_errors_total",
        &[
            ("pool", pool),
            ("server", &addr.to_string()),
            ("kind", "connect"),
        ],
    )
    .unwrap_or(0.0)
}

/// `holdfast_upstream_healthy{pool,server=addr}`; `None` when not exported.
pub fn healthy(metrics: &str, pool: &str, addr: SocketAddr) -> Option<f64> {
    sample(
        metrics,
        "holdfast_upstream_healthy",
        &[("pool", pool), ("server", &addr.to_string())],
    )
}

/// `holdfast_upstream_ejections_total{pool,server=addr}`, 0 when not exported.
pub fn ejections_total(metrics: &str, pool: &str, addr: SocketAddr) -> f64 {
    sample(
        metrics,
        "holdfast_upstream_ejections_total",
        &[("pool", pool), ("server", &addr.to_string())],
    )
    .unwrap_or(0.0)
}

/// `holdfast_upstream_retries_total{pool,outcome}`, 0 when not exported.
pub fn retries(metrics: &str, pool: &str, outcome: &str) -> f64 {
    sample(
        metrics,
        "holdfast_upstream_retries_total",
        &[("pool", pool), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// `holdfast_upstream_overload_rejected_total{pool}`; `None` when not exported.
pub fn overload_rejected(metrics: &str, pool: &str) -> Option<f64> {
    sample(
        metrics,
        "holdfast_upstream_overload_rejected_total",
        &[("pool", pool)],
    )
}

/// The edge's own 503 for a pool or server with no room, as an HTML page naming the request
/// id, with `Retry-After: retry_after`.
pub fn assert_overload_page(got: &Got, retry_after: &str) {
    assert_eq!(got.status, 503, "{}", got.text());
    assert_eq!(got.header("retry-after"), Some(retry_after));
    let content_type = got.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let id = got.header("x-request-id").expect("a request id");
    assert!(
        got.text().contains(id),
        "page names the request id {id}: {}",
        got.text()
    );
}

// ---- `holdfast check` ----

/// `holdfast check FILE`, which must reject the file (exit 1) without a panic; its output.
pub fn check_errors(file: &std::path::Path) -> String {
    let (code, stdout, stderr) = holdfast_cmd(&[std::ffi::OsStr::new("check"), file.as_os_str()]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(1), "{stdout}");
    stdout
}

/// `check_errors` of a file holding `text`.
pub fn check_errors_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, text).unwrap();
    check_errors(&file)
}

/// The line of `check_errors` output that reports an error at `key`; fails if there is none.
pub fn error_at(output: &str, key: &str) -> String {
    output
        .lines()
        .find(|l| l.contains(&format!(": {key}: ")))
        .unwrap_or_else(|| panic!("no error at {key}:\n{output}"))
        .to_owned()
}

// ---- Helpers for bot scoring, artifacts and modules ----

impl Edge {
    /// `start_in_dir`, with modules of the test's own run after the configured ones
    /// (`holdfast::Running::start_with_modules`).
    pub fn start_with_modules(
        template: &str,
        vars: &[(&str, String)],
        files: impl FnOnce(&std::path::Path),
        modules: Vec<Arc<dyn holdfast::RequestModule>>,
    ) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
        let config_path = dir.path().join("edge.toml");
        std::fs::write(&config_path, render(template, vars)).unwrap();
        let running = holdfast::Running::start_with_modules(
            holdfast::ConfigSource::File(config_path.clone()),
            modules,
        )
        .unwrap_or_else(|e| panic!("edge did not start: {e}"));
        Edge {
            running: Some(running),
            dir,
            config_path,
        }
    }

    /// Shut the edge down and start it again from the same config file in the same folder
    /// (what is in its `state_dir` is kept). New listeners: take URLs again afterwards.
    pub fn restart(&mut self) {
        self.stop();
        let running =
            holdfast::Running::start(holdfast::ConfigSource::File(self.config_path.clone()))
                .unwrap_or_else(|e| panic!("edge did not start again: {e}"));
        self.running = Some(running);
    }

    /// A file in the edge's folder (where its config is).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Replace `path` as a generator does: write a temporary file in the same folder, then
/// rename it over `path`, so a reader never sees half a file.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The score header the bot module sends to the origin.
pub const SCORE_HEADER: &str = "x-holdfast-bot-score";

/// The shipped default feature file.
pub const EXAMPLE_FEATURES: &str = include_str!("../../../../examples/bot-features.json");

/// What the origin got in `x-holdfast-bot-score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotScore {
    Score(u8),
    Unknown,
}

/// The bot score in `headers`: exactly one header, `1`..=`99` or `unknown`; anything else
/// (absent, `0`, out of range, repeated) is an error naming what was there.
pub fn bot_score(headers: &http::HeaderMap) -> Result<BotScore, String> {
    let all: Vec<_> = headers.get_all(SCORE_HEADER).iter().collect();
    let [value] = all.as_slice() else {
        return Err(format!("{} {SCORE_HEADER} headers: {all:?}", all.len()));
    };
    match value.to_str() {
        Ok("unknown") => Ok(BotScore::Unknown),
        Ok(text) => match text.parse::<u8>() {
            Ok(n @ 1..=99) => Ok(BotScore::Score(n)),
            _ => Err(format!(
                "{SCORE_HEADER}: {text:?} is neither 1-99 nor unknown"
            )),
        },
        Err(_) => Err(format!("{SCORE_HEADER}: {value:?} is not text")),
    }
}

impl Seen {
    /// The bot score this request reached the origin with; fails the test if it is not
    /// a valid one.
    pub fn bot_score(&self) -> BotScore {
        bot_score(&self.headers).unwrap_or_else(|e| panic!("{} {}: {e}", self.method, self.uri))
    }
}

/// A valid feature file: the shipped example's bias and entries, with `version`, padded to
/// `entries` entries with `header:x-test-N` ones (as the generator's `--fill` does).
pub fn features_file(version: u64, entries: usize) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE_FEATURES).unwrap();
    v["version"] = version.into();
    let list = v["features"].as_array_mut().unwrap();
    let mut i = 0;
    while list.len() < entries {
        list.push(serde_json::json!({"name": format!("header:x-test-{i}"), "weight": 0.0}));
        i += 1;
    }
    list.truncate(entries);
    v
}

/// `file` with every feature listed twice in a row (the 18 Nov 2025 generator's mistake).
pub fn doubled(file: &serde_json::Value) -> serde_json::Value {
    let mut v = file.clone();
    let twice: Vec<serde_json::Value> = file["features"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| [e.clone(), e.clone()])
        .collect();
    v["features"] = twice.into();
    v
}

/// The `/status` entry of artifact `kind`.
pub fn artifact_status(status: &serde_json::Value, kind: &str) -> serde_json::Value {
    status["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no artifacts: {status}"))
        .iter()
        .find(|a| a["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no artifact {kind:?} in {status}"))
}

/// The `/status` entry of module `name`.
pub fn module_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["modules"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no modules: {status}"))
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no module {name:?} in {status}"))
}

/// `holdfast_artifact_rejected_total{artifact="bot-features",reason}`; 0 when not exported.
pub fn bot_rejections(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        "holdfast_artifact_rejected_total",
        &[("artifact", "bot-features"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// `holdfast_artifact_version{artifact="bot-features"}`; `None` when not exported.
pub fn bot_version(metrics: &str) -> Option<f64> {
    sample(
        metrics,
        "holdfast_artifact_version",
        &[("artifact", "bot-features")],
    )
}
