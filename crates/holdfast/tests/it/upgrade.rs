//! Binary upgrades (`holdfast upgrade`, `SIGUSR2`), on the real binary: the running process
//! starts the new one on its listening sockets and drains once it is ready. Under load —
//! keep-alive clients, an upload and a download in flight, a WebSocket session — no request
//! is lost and nothing mid-request is cut: what was open finishes on the old process, new
//! connections go to the new one, the old one exits. A new process that cannot start (its
//! configuration is broken, its binary missing) is refused and the old one keeps serving;
//! the admin plane, the DNS sockets and the status page move too, and so do the HTTP/3 (UDP)
//! sockets: a request in flight over HTTP/3 finishes on the old process, new QUIC
//! connections on the same port are served by the new one.

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashSet;
use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);
const CHUNK: usize = 64 << 10;
const DOWNLOAD_CHUNKS: usize = 32;
const UPLOAD_CHUNKS: usize = 16;

type OriginBody = BoxBody<Bytes, Infallible>;

// ---- The origin: small answers, a gated download, an upload counter, a WebSocket echo ----

#[derive(Clone, Default)]
struct Seen {
    ids: Arc<Mutex<HashSet<u64>>>,
    uploaded: Arc<AtomicUsize>,
}

async fn serve_origin(listener: tokio::net::TcpListener, seen: Seen, gate: Gate) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (seen, gate) = (seen.clone(), gate.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (seen, gate) = (seen.clone(), gate.clone());
                async move { Ok::<_, Infallible>(answer(req, seen, gate).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into()).boxed()
}

async fn answer(mut req: Request<Incoming>, seen: Seen, gate: Gate) -> Response<OriginBody> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/small" => {
            let id = req.uri().query().and_then(|q| q.strip_prefix("id="));
            if let Some(id) = id.and_then(|i| i.parse().ok()) {
                seen.ids.lock().unwrap().insert(id);
            }
            Response::new(full("ok"))
        }
        // The first chunk at once, the rest once the test opens the gate.
        "/download" => {
            let chunks = futures_util::stream::unfold(0usize, move |i| {
                let gate = gate.clone();
                async move {
                    if i == DOWNLOAD_CHUNKS {
                        return None;
                    }
                    if i == 1 {
                        gate.wait().await;
                    }
                    let frame = Frame::data(Bytes::from(vec![b'd'; CHUNK]));
                    Some((Ok::<_, Infallible>(frame), i + 1))
                }
            });
            Response::new(StreamBody::new(chunks).boxed())
        }
        // Once the test opens the gate.
        "/gated" => {
            gate.wait().await;
            Response::new(full("late"))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    total += data.len();
                    seen.uploaded.fetch_add(data.len(), Ordering::SeqCst);
                }
            }
            Response::new(full(total.to_string()))
        }
        "/ws" => {
            let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let io = TokioIo::new(upgrade.await.unwrap());
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                use futures_util::{SinkExt, StreamExt};
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(m)) = rx.next().await {
                    if m.is_text() && tx.send(m).await.is_err() {
                        break;
                    }
                }
            });
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
            Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", accept)
                .body(full(""))
                .unwrap()
        }
        _ => Response::builder().status(404).body(full("")).unwrap(),
    }
}

// ---- The binary under test, and its log ----

/// What a "holdfast is serving" log line says.
#[derive(Debug, Clone, Copy)]
struct Serving {
    pid: u32,
    http: SocketAddr,
    admin: SocketAddr,
}

fn serving(line: &str) -> Option<Serving> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let f = &v["fields"];
    if f["message"] != "holdfast is serving" {
        return None;
    }
    let http = f["http"].as_str()?.trim_matches(['[', ']']);
    Some(Serving {
        pid: u32::try_from(f["pid"].as_u64()?).ok()?,
        http: http.split(',').next()?.trim().parse().ok()?,
        admin: f["admin"].as_str()?.parse().ok()?,
    })
}

/// The first process (our child) and every process it is replaced by (its children, which
/// write to the same stderr): each "serving" line arrives on `serving`. Every pid seen is
/// killed at drop, so a failing test leaves nothing running.
struct Edge {
    child: Child,
    serving: std::sync::mpsc::Receiver<Serving>,
    pids: Arc<Mutex<Vec<u32>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Edge {
    fn start(config: &Path) -> (Edge, Serving) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("HOLDFAST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let pids = Arc::new(Mutex::new(vec![child.id()]));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (pids2, log2) = (pids.clone(), log.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let serves = serving(&line);
                // Logged before it is announced: a test that reads the log after
                // `next_serving` finds the line there.
                log2.lock().unwrap().push(line);
                if let Some(s) = serves {
                    pids2.lock().unwrap().push(s.pid);
                    let _ = tx.send(s);
                }
            }
        });
        let mut edge = Edge {
            child,
            serving: rx,
            pids,
            log,
        };
        let first = edge.next_serving("the edge to start");
        (edge, first)
    }

    fn next_serving(&mut self, what: &str) -> Serving {
        match self.serving.recv_timeout(WAIT) {
            Ok(s) => s,
            Err(_) => panic!("timed out waiting for {what}; log:\n{}", self.log()),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The first process's exit status, waited for (bounded).
    async fn old_exits(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        eventually("the old process to exit", WAIT, || {
            status = status.or_else(|| self.child.try_wait().unwrap());
            let done = status.is_some();
            async move { done }
        })
        .await;
        status.unwrap()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap().iter() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// `holdfast upgrade ARGS`: (success, stdout, stderr).
fn upgrade_cmd(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .arg("upgrade")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn admin_pid(admin: SocketAddr) -> Option<u64> {
    let url = format!("http://{admin}/status");
    let resp = tokio::time::timeout(Duration::from_secs(5), hyper_get(&url)).await;
    let body = resp.ok()??;
    serde_json::from_slice::<serde_json::Value>(&body).ok()?["pid"].as_u64()
}

/// A GET on a new connection: the body, or `None` on any error.
async fn hyper_get(url: &str) -> Option<Bytes> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let resp = client.get(url.parse().ok()?).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(resp.into_body().collect().await.ok()?.to_bytes())
}

// ---- Keep-alive clients ----

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// A reused connection closed before any answer to a request the origin never saw: the
    /// idle keep-alive race every server has at a close (RFC 9112 §9.3.1 lets a client
    /// retry such a request). Retried on a new connection.
    idle_close_retries: AtomicU64,
    failures: Mutex<Vec<String>>,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Loop GET /small?id=N on one keep-alive connection (a new one when the edge closes it)
/// until `stop`. Every request must get its 200; see `Tally` for the one retry allowed.
async fn keep_alive_client(
    addr: SocketAddr,
    first_id: u64,
    tally: Arc<Tally>,
    seen: Seen,
    stop: Arc<AtomicBool>,
) {
    let mut sender = connect(addr).await;
    let mut id = first_id;
    while !stop.load(Ordering::SeqCst) {
        if sender.ready().await.is_err() {
            sender = connect(addr).await;
        }
        let req = Request::get(format!("/small?id={id}"))
            .header("host", "edge.test")
            .body(Empty::new())
            .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await;
        let outcome = match sent {
            Ok(Ok(resp)) => {
                let status = resp.status();
                match resp.into_body().collect().await.map(|b| b.to_bytes()) {
                    Ok(b) if status == 200 && b == "ok" => Ok(()),
                    Ok(_) => Err(format!("id {id}: status {status}")),
                    Err(e) => Err(format!("id {id}: body cut: {e}")),
                }
            }
            Ok(Err(e)) => {
                if seen.ids.lock().unwrap().contains(&id) {
                    Err(format!("id {id}: reached the origin, then {e}"))
                } else {
                    tally.idle_close_retries.fetch_add(1, Ordering::SeqCst);
                    sender = connect(addr).await;
                    continue;
                }
            }
            Err(_) => Err(format!("id {id}: no answer in 10 s")),
        };
        match outcome {
            Ok(()) => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => tally.failures.lock().unwrap().push(e),
        }
        id += 1;
    }
}

fn edge_toml(origin: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[edge]
listen = ["127.0.0.1:0"]
threads = 2
access_log = "off"
drain_timeout = "20s"

[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "app"
servers = ["{origin}"]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
pools = ["app"]
{extra}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_under_load_loses_no_request_and_cuts_nothing_in_flight() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (seen, gate) = (Seen::default(), Gate::new());
    tokio::spawn(serve_origin(listener, seen.clone(), gate.clone()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, edge_toml(origin, "")).unwrap();
    let (mut edge, old) = blocking(|| Edge::start(&config));

    // Keep-alive clients, looping.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let (t, s, st) = (tally.clone(), seen.clone(), stop.clone());
            tokio::spawn(keep_alive_client(old.http, c << 32, t, s, st))
        })
        .collect();
    let served = |n: u64| {
        let tally = tally.clone();
        move || {
            let tally = tally.clone();
            async move { tally.ok.load(Ordering::SeqCst) >= n }
        }
    };
    eventually("keep-alive clients served", WAIT, served(40)).await;

    // A download whose first bytes arrived; the rest waits at the origin's gate.
    let download = tokio::spawn(async move {
        let mut sender = connect(old.http).await;
        let req = Request::get("/download")
            .header("host", "edge.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("the download is not cut");
            total += frame.data_ref().map_or(0, |d| d.len());
        }
        total
    });

    // An upload: half sent now, the rest after the upgrade.
    let upload_conn = tokio::net::TcpStream::connect(old.http).await.unwrap();
    let (mut up_sender, up_conn) = hyper::client::conn::http1::handshake::<
        _,
        BoxBody<Bytes, Infallible>,
    >(TokioIo::new(upload_conn))
    .await
    .unwrap();
    tokio::spawn(up_conn);
    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel::<Bytes>(UPLOAD_CHUNKS);
    let stream = futures_util::stream::unfold(chunks_rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let upload_req = Request::post("/upload")
        .header("host", "edge.test")
        .header("content-length", (UPLOAD_CHUNKS * CHUNK).to_string())
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap();
    let upload = tokio::spawn(async move {
        let resp = up_sender.send_request(upload_req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    for _ in 0..UPLOAD_CHUNKS / 2 {
        chunks_tx
            .send(Bytes::from(vec![b'u'; CHUNK]))
            .await
            .unwrap();
    }
    eventually("the first half of the upload at the origin", WAIT, || {
        let n = seen.uploaded.load(Ordering::SeqCst);
        async move { n > 0 }
    })
    .await;

    // A WebSocket session.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", old.http))
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(Message::text("before")).await.unwrap();
    let echo = within("the echo before", ws.next()).await.unwrap().unwrap();
    assert_eq!(echo.to_text().unwrap(), "before");

    // The upgrade, through the admin plane, by `holdfast upgrade`.
    let served_before = tally.ok.load(Ordering::SeqCst);
    // The configuration's admin address has port 0: the CLI is told the real one.
    let cfg = config.clone().into_os_string();
    let admin = old.admin.to_string();
    let args = [
        "--config".as_ref(),
        cfg.as_os_str(),
        "--admin".as_ref(),
        admin.as_ref(),
    ];
    let (ok, out, err) = blocking(|| upgrade_cmd(&args));
    assert!(ok, "holdfast upgrade failed: {out}{err}\n{}", edge.log());
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["result"], "upgraded", "{answer}");
    assert_eq!(answer["old_pid"], old.pid, "{answer}");
    let new = blocking(|| edge.next_serving("the new process to serve"));
    assert_eq!(answer["new_pid"], new.pid, "{answer}");
    assert_ne!(new.pid, old.pid);
    // Same sockets: the same addresses.
    assert_eq!((new.http, new.admin), (old.http, old.admin));
    let new_pid = u64::from(new.pid);
    eventually(
        "the admin plane to answer from the new process",
        WAIT,
        || async move { admin_pid(new.admin).await == Some(new_pid) },
    )
    .await;

    // The old process is draining: what was open on it goes on there.
    ws.send(Message::text("during")).await.unwrap();
    let echo = within("the echo during the drain", ws.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echo.to_text().unwrap(), "during");
    for _ in UPLOAD_CHUNKS / 2..UPLOAD_CHUNKS {
        chunks_tx
            .send(Bytes::from(vec![b'u'; CHUNK]))
            .await
            .unwrap();
    }
    drop(chunks_tx);
    let (status, body) = within("the upload's answer", upload).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, (UPLOAD_CHUNKS * CHUNK).to_string());
    gate.open();
    let downloaded = within("the download", download).await.unwrap();
    assert_eq!(downloaded, DOWNLOAD_CHUNKS * CHUNK);
    assert!(
        edge.child.try_wait().unwrap().is_none(),
        "the old process waits for its WebSocket session (drain_timeout 20s)"
    );
    ws.close(None).await.unwrap();

    // The old process exits once drained; the clients go on against the new one.
    let status = edge.old_exits().await;
    assert!(status.success(), "old process: {status}\n{}", edge.log());
    eventually(
        "keep-alive clients served after the old process left",
        WAIT,
        served(served_before + 200),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        within("a keep-alive client to stop", c).await.unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "lost requests: {failures:?}\n{}",
        edge.log()
    );
    assert_eq!(admin_pid(new.admin).await, Some(new_pid));
    assert!(hyper_get(&format!("http://{}/small", new.http))
        .await
        .is_some());
    eprintln!(
        "upgrade under load: {} requests ok, {} idle keep-alive closes retried",
        tally.ok.load(Ordering::SeqCst),
        tally.idle_close_retries.load(Ordering::SeqCst)
    );
    signal(new.pid, "TERM");
}

const ZONE: &str = "$TTL 300
@    IN SOA ns1 hostmaster 1 7200 900 1209600 60
@    IN NS  ns1
ns1  IN A   192.0.2.1
";

const DNS_AND_PAGE: &str = r#"
[dns]
listen = "127.0.0.1:0"

[[dns.zones]]
origin = "example.test."
file = "example.test.zone"

[status_page]
listen = "127.0.0.1:0"
title = "Example status"
"#;

async fn resolve_ns1(dns: SocketAddr) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("ns1.example.test.").unwrap(),
        RecordType::A,
    ));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    if r.metadata.response_code != ResponseCode::NoError {
        return None;
    }
    r.answers.iter().find_map(|rec| match &rec.data {
        RData::A(a) => Some(a.0.octets().to_vec()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upgrade_is_refused_and_a_good_one_moves_admin_dns_and_status_page() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(serve_origin(listener, Seen::default(), Gate::new()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.test.zone"), ZONE).unwrap();
    let config = dir.path().join("edge.toml");
    let good = edge_toml(origin, DNS_AND_PAGE);
    std::fs::write(&config, &good).unwrap();
    let (mut edge, old) = blocking(|| Edge::start(&config));
    let status = within(
        "the status",
        hyper_get(&format!("http://{}/status", old.admin)),
    )
    .await
    .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    let dns: SocketAddr = status["dns"]["listen"].as_str().unwrap().parse().unwrap();
    let page: SocketAddr = status["status_page"]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(resolve_ns1(dns).await, Some(vec![192, 0, 2, 1]));

    // The new process reads a broken configuration: it exits, the upgrade is refused with
    // the reason, and the old process keeps serving.
    std::fs::write(
        &config,
        good.replace("pools = [\"app\"]", "pools = [\"nope\"]"),
    )
    .unwrap();
    let admin = old.admin.to_string();
    let args = [
        "--config".as_ref(),
        config.as_os_str(),
        "--admin".as_ref(),
        admin.as_ref(),
    ];
    let (ok, out, err) = blocking(|| upgrade_cmd(&args));
    assert!(!ok, "an upgrade to a broken configuration succeeded: {out}");
    assert!(err.contains("still serving"), "{err}");
    assert!(err.contains("routes[0].pool"), "the reason is given: {err}");
    // A binary that is not there is refused before anything starts.
    let (ok, _, err) = blocking(|| {
        upgrade_cmd(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--admin".as_ref(),
            admin.as_ref(),
            "--binary".as_ref(),
            "/nonexistent/holdfast".as_ref(),
        ])
    });
    assert!(!ok);
    assert!(err.contains("/nonexistent/holdfast"), "{err}");
    assert_eq!(admin_pid(old.admin).await, Some(u64::from(old.pid)));
    assert!(hyper_get(&format!("http://{}/small", old.http))
        .await
        .is_some());
    assert_eq!(resolve_ns1(dns).await, Some(vec![192, 0, 2, 1]));
    assert!(edge.child.try_wait().unwrap().is_none());

    // Fixed, and by SIGUSR2: the new process takes every socket; the old one exits.
    std::fs::write(&config, &good).unwrap();
    signal(old.pid, "USR2");
    let new = blocking(|| edge.next_serving("the new process to serve"));
    assert_ne!(new.pid, old.pid);
    let status = edge.old_exits().await;
    assert!(status.success(), "old process: {status}\n{}", edge.log());
    assert_eq!(admin_pid(old.admin).await, Some(u64::from(new.pid)));
    assert_eq!(resolve_ns1(dns).await, Some(vec![192, 0, 2, 1]));
    let page = hyper_get(&format!("http://{page}/status.json")).await;
    assert!(
        page.is_some(),
        "the status page answers from the new process"
    );
    assert!(hyper_get(&format!("http://{}/small", old.http))
        .await
        .is_some());
    signal(new.pid, "TERM");
}

/// `edge_toml` with a TLS and an HTTP/3 listener (the certificate `site` in the folder).
/// `edge_toml` with TLS and HTTP/3 listeners, and a drain longer than the test's limit for
/// any one step (`LIMIT`), so that a slow step fails as itself, not as a request the drain cut.
fn h3_edge_toml(origin: SocketAddr) -> String {
    let tls = "[[edge.tls]]\ncert = \"site.pem\"\nkey = \"site.key\"\n";
    edge_toml(origin, tls)
        .replacen(
            "listen = [\"127.0.0.1:0\"]\n",
            "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\nh3_listen = [\"127.0.0.1:0\"]\n",
            1,
        )
        .replacen("drain_timeout = \"20s\"", "drain_timeout = \"60s\"", 1)
}

/// `GET /small` on a new HTTP/3 connection to `h3`, each try on a connection of its own and
/// bounded in time, at most `TRIES` tries; how many it took. Panics with every failure when
/// none answered 200.
async fn get_on_new_connections(endpoint: &quinn::Endpoint, h3: SocketAddr, when: &str) -> usize {
    use crate::h3::{h3_connect, h3_request};
    const TRIES: usize = 4;
    let mut failures = Vec::new();
    for attempt in 1..=TRIES {
        let endpoint = endpoint.clone();
        let try_once = tokio::spawn(async move {
            let mut sender = h3_connect(&endpoint, h3).await;
            h3_request(&mut sender, "GET", "/small", b"").await
        });
        let abort = try_once.abort_handle();
        match tokio::time::timeout(Duration::from_secs(8), try_once).await {
            Ok(Ok(got)) if got.status == 200 && &got.body[..] == b"ok" => return attempt,
            Ok(Ok(got)) => failures.push(format!("{} {:?}", got.status, got.body)),
            Ok(Err(e)) => failures.push(format!("failed: {e}")),
            Err(_) => {
                abort.abort();
                failures.push("no answer within 8s".to_owned());
            }
        }
    }
    panic!("GET on a new HTTP/3 connection {when}: every try failed: {failures:?}");
}

async fn metrics_of(admin: SocketAddr) -> String {
    let body = within("metrics", hyper_get(&format!("http://{admin}/metrics"))).await;
    String::from_utf8(body.unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_over_the_http3_socket() {
    use crate::h3::{h3_connect, h3_request, loopback_client_endpoint};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let gate = Gate::new();
    tokio::spawn(serve_origin(listener, Seen::default(), gate.clone()));
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Holdfast test CA");
    ca.leaf(&["example.com"]).write(dir.path(), "site");
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, h3_edge_toml(origin)).unwrap();
    let (mut edge, old) = blocking(|| Edge::start(&config));
    let status = within(
        "the status",
        hyper_get(&format!("http://{}/status", old.admin)),
    )
    .await
    .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    let h3: SocketAddr = status["listeners"]["h3"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Served by the old process: one idle connection, and one with a request left in
    // flight (the origin holds it).
    // Both processes read the socket while the old one drains, so a datagram the client
    // sends may reach the one that does not know its connection and be dropped; QUIC sends
    // it again after its probe timeout, which doubles with each loss. A loopback first round
    // trip keeps a run of such losses well inside the test's limits.
    let endpoint = loopback_client_endpoint(&ca);
    let idle = within(
        "QUIC handshake",
        endpoint.connect(h3, "example.com").unwrap(),
    )
    .await
    .unwrap();
    let (mut driver, _idle_sender) = within(
        "HTTP/3 set-up",
        h3::client::new(h3_quinn::Connection::new(idle.clone())),
    )
    .await
    .unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let mut before = within("HTTP/3 handshake", h3_connect(&endpoint, h3)).await;
    let got = within("GET", h3_request(&mut before, "GET", "/small", b"")).await;
    assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"ok"[..]));
    let mut held = before.clone();
    let in_flight = tokio::spawn(async move { h3_request(&mut held, "GET", "/gated", b"").await });
    eventually("the request to be in flight", WAIT, || async {
        metric(&metrics_of(old.admin).await, "holdfast_quic_streams_total") == Some(2.0)
    })
    .await;

    // The upgrade hands the UDP socket over: the new process takes it, binds nothing.
    signal(old.pid, "USR2");
    let new = blocking(|| edge.next_serving("the new process to serve"));
    assert_ne!(new.pid, old.pid);
    let log = edge.log();
    let took_udp = log
        .lines()
        .any(|l| l.contains("listening on inherited sockets") && l.contains(r#""proto":"Udp""#));
    let serves_h3 = format!(r#""h3":"[{h3}]""#);
    let new_serves_h3 = log.lines().any(|l| {
        l.contains("holdfast is serving")
            && l.contains(&serves_h3)
            && l.contains(&format!(r#""pid":{}"#, new.pid))
    });
    assert!(took_udp && new_serves_h3, "{log}");
    // Draining, the old process sends GOAWAY everywhere and closes the idle connection
    // cleanly (H3_NO_ERROR); from then on it admits no new connection.
    match within("the idle connection to be closed", idle.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 0x100, "H3_NO_ERROR: {close}")
        }
        other => panic!("the idle connection ended with {other}"),
    }
    // While the old process drains, both read the socket, so a datagram may reach the one
    // that does not know its connection (dropped; a stateless reset under the wrong key,
    // which the client ignores) and QUIC sends it again; a connection attempt in that window
    // may stall or be closed (see the closing note of session 10): a client tries again on a
    // new connection, and so does this test, a bounded number of times.
    let tries = get_on_new_connections(&endpoint, h3, "during the drain").await;

    // The request in flight on the old process finishes there, then the old process exits.
    gate.open();
    let late = within("the request in flight", in_flight).await.unwrap();
    assert_eq!((late.status.as_u16(), &late.body[..]), (200, &b"late"[..]));
    let status = edge.old_exits().await;
    assert!(status.success(), "old process: {status}\n{}", edge.log());
    // Alone on the socket, the new process serves a new connection at the first try.
    let once = get_on_new_connections(&endpoint, h3, "after the old process exited").await;
    assert_eq!(once, 1, "with the old process gone no attempt may fail");
    assert_eq!(admin_pid(old.admin).await, Some(u64::from(new.pid)));
    let m = metrics_of(old.admin).await;
    let handshakes = metric(&m, "holdfast_quic_handshakes_total").unwrap_or(0.0);
    assert!(
        (2.0..=(tries + once) as f64).contains(&handshakes),
        "the new process shook hands with the connections made after the upgrade, \
         at most one per try ({tries} + {once}): {m}"
    );
    signal(new.pid, "TERM");
}
