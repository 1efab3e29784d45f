//! `h3-load`: a small HTTP/3 load client for `bench/h3.sh`, in the manner of h2load (whose
//! Debian build has no HTTP/3). `-c` clients, each its own UDP socket and QUIC connection,
//! `-m` requests in flight on each, `-n` requests in all; or, with `--new-connections`, every
//! request on a fresh connection (a full QUIC + TLS 1.3 handshake: handshakes per second).
//! quinn + h3 + h3-quinn, the crates the edge itself serves HTTP/3 with, on one tokio
//! current-thread runtime by default (h2load's `-t 1`). Bench-only, not a test of the edge.
//!
//! Output: a human summary, then one machine-readable line starting `h3-load:` with
//! `key=value` fields. Bounded: it ends after `-n` requests or `--timeout` seconds.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::{Buf, Bytes};
use clap::Parser;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::rustls;
use quinn::rustls::pki_types::pem::PemObject;
use quinn::rustls::pki_types::CertificateDer;
use tokio::task::JoinSet;

/// HTTP/3 load client (h2load-like flags).
#[derive(Parser, Debug)]
#[command(name = "h3-load", version)]
struct Args {
    /// Requests in all (each attempt counts, failed ones too).
    #[arg(short = 'n', long = "requests", default_value_t = 1)]
    requests: u64,
    /// Concurrent clients: each has its own UDP socket and QUIC connection.
    #[arg(short = 'c', long = "clients", default_value_t = 1)]
    clients: u64,
    /// Requests in flight on each connection (ignored with --new-connections).
    #[arg(short = 'm', long = "max-concurrent-streams", default_value_t = 1)]
    streams: u64,
    /// Worker threads of the runtime (1: a current-thread runtime, as h2load -t 1).
    #[arg(short = 't', long = "threads", default_value_t = 1)]
    threads: usize,
    /// PEM file of the certificate authority (or authorities) to trust.
    #[arg(long = "ca")]
    ca: PathBuf,
    /// Name to verify and send as SNI (default: the URL's host).
    #[arg(long = "server-name")]
    server_name: Option<String>,
    /// Every request on a fresh connection (handshake + one request + close).
    #[arg(long = "new-connections")]
    new_connections: bool,
    /// Let rustls resume TLS sessions (off by default: every handshake is a full one, as h2load's).
    #[arg(long = "resume")]
    resume: bool,
    /// Give up after this many seconds; what did not finish by then counts as failed.
    #[arg(long = "timeout", default_value_t = 60.0)]
    timeout: f64,
    /// https:// URL to GET.
    url: String,
}

/// What the clients share: the ticket counter and the results.
struct Shared {
    next: AtomicU64,
    total: u64,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    succeeded: u64,
    failed: u64,
    connections: u64,
    connect_failures: u64,
    body_bytes: u64,
    /// Per successful request: from its start (the connection's, with --new-connections) to
    /// the last body byte.
    latencies_us: Vec<u64>,
    /// The same from the request alone (after the handshake): equal without --new-connections.
    request_us: Vec<u64>,
    /// The first few distinct error messages, with a count each.
    errors: Vec<(String, u64)>,
    statuses: [u64; 6],
}

impl Shared {
    /// Takes the next request's ticket: false once `-n` have been handed out.
    fn take(&self) -> bool {
        self.next.fetch_add(1, Ordering::Relaxed) < self.total
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ok(&self, started: Instant, request_started: Instant, status: u16, bytes: u64) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let request_us = u64::try_from(request_started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut s = self.stats();
        let class = usize::from(status / 100).min(5);
        if let Some(slot) = s.statuses.get_mut(class) {
            *slot += 1;
        }
        s.body_bytes += bytes;
        if (200..400).contains(&status) {
            s.succeeded += 1;
            s.latencies_us.push(us);
            s.request_us.push(request_us);
        } else {
            s.failed += 1;
            drop(s);
            self.error(format!("status {status}"));
        }
    }

    fn fail(&self, e: &anyhow::Error) {
        self.stats().failed += 1;
        self.error(format!("{e:#}"));
    }

    fn error(&self, msg: String) {
        let mut s = self.stats();
        if let Some(entry) = s.errors.iter_mut().find(|(m, _)| *m == msg) {
            entry.1 += 1;
        } else if s.errors.len() < 8 {
            s.errors.push((msg, 1));
        }
    }
}

struct Target {
    addr: SocketAddr,
    server_name: String,
    uri: http::Uri,
    client: quinn::ClientConfig,
    streams: u64,
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.streams == 0 || args.threads == 0 {
        bail!("-c, -m and -t must be at least 1");
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let code = runtime.block_on(run(args))?;
    // Spawned tasks still parked on a timed-out connection are dropped here.
    runtime.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

async fn run(args: Args) -> Result<i32> {
    let uri: http::Uri = args.url.parse().context("URL")?;
    if uri.scheme_str() != Some("https") {
        bail!("the URL must be https://");
    }
    let host = uri.host().ok_or_else(|| anyhow!("the URL has no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((host_for_lookup, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
    let server_name = args
        .server_name
        .clone()
        .unwrap_or_else(|| host_for_lookup.to_owned());
    let client = client_config(&args)?;
    let target = Arc::new(Target {
        addr,
        server_name,
        uri,
        client,
        streams: args.streams,
    });
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        total: args.requests,
        stats: Mutex::new(Stats::default()),
    });

    let bind: SocketAddr = if addr.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let mut endpoints = Vec::new();
    let mut clients = JoinSet::new();
    let started = Instant::now();
    for _ in 0..args.clients {
        let endpoint = quinn::Endpoint::client(bind).context("UDP socket")?;
        endpoints.push(endpoint.clone());
        let (t, s) = (target.clone(), shared.clone());
        if args.new_connections {
            clients.spawn(new_connection_client(endpoint, t, s));
        } else {
            clients.spawn(keepalive_client(endpoint, t, s));
        }
    }
    let deadline = Duration::from_secs_f64(args.timeout);
    let timed_out = tokio::time::timeout(deadline, async {
        while clients.join_next().await.is_some() {}
    })
    .await
    .is_err();
    let elapsed = started.elapsed().as_secs_f64();
    clients.abort_all();
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"done");
    }
    // Let the CONNECTION_CLOSE frames go out, briefly.
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        for endpoint in &endpoints {
            endpoint.wait_idle().await;
        }
    })
    .await;

    let mut s = std::mem::take(&mut *shared.stats());
    let done = s.succeeded + s.failed;
    let unfinished = args.requests.saturating_sub(done);
    s.failed += unfinished;
    s.latencies_us.sort_unstable();
    let p50 = percentile(&s.latencies_us, 50.0);
    let p99 = percentile(&s.latencies_us, 99.0);
    s.request_us.sort_unstable();
    let req_p50 = percentile(&s.request_us, 50.0);
    let req_p99 = percentile(&s.request_us, 99.0);
    let rps = if elapsed > 0.0 {
        s.succeeded as f64 / elapsed
    } else {
        0.0
    };
    let mode = if args.new_connections {
        "new-connections"
    } else {
        "keepalive"
    };

    println!(
        "{} requests to {} ({}), {} clients x {} streams, {mode}",
        args.requests, target.uri, target.addr, args.clients, args.streams
    );
    println!(
        "finished in {elapsed:.3} s, {rps:.2} req/s{}",
        if timed_out {
            " (timed out: unfinished requests count as failed)"
        } else {
            ""
        }
    );
    println!(
        "requests: {} total, {} succeeded, {} failed ({} unfinished), {} connections ({} failed to connect), {} body bytes",
        args.requests, s.succeeded, s.failed, unfinished, s.connections, s.connect_failures, s.body_bytes
    );
    let [x0, x1, x2, x3, x4, x5] = s.statuses;
    println!(
        "status codes: {x2} 2xx, {x3} 3xx, {x4} 4xx, {x5} 5xx, {} other",
        x0 + x1
    );
    println!(
        "latency (request start to last body byte{}): p50 {:.3} ms, p99 {:.3} ms",
        if args.new_connections {
            ", handshake included"
        } else {
            ""
        },
        p50,
        p99
    );
    if args.new_connections {
        println!("latency (request alone, after the handshake): p50 {req_p50:.3} ms, p99 {req_p99:.3} ms");
    }
    for (msg, n) in &s.errors {
        eprintln!("error x{n}: {msg}");
    }
    println!(
        "h3-load: mode={mode} requests={} succeeded={} failed={} unfinished={unfinished} connections={} elapsed_s={elapsed:.3} req_per_s={rps:.1} p50_ms={p50:.3} p99_ms={p99:.3} req_p50_ms={req_p50:.3} req_p99_ms={req_p99:.3} timed_out={}",
        args.requests,
        s.succeeded,
        s.failed,
        s.connections,
        u8::from(timed_out)
    );
    Ok(if s.succeeded == 0 && args.requests > 0 {
        1
    } else {
        0
    })
}

fn percentile(sorted_us: &[u64], pct: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((pct / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.saturating_sub(1).min(sorted_us.len() - 1);
    sorted_us.get(i).map_or(0.0, |&us| us as f64 / 1000.0)
}

fn client_config(args: &Args) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca)
        .with_context(|| format!("reading {}", args.ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("a certificate in {}", args.ca.display()))?)
            .context("adding a CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", args.ca.display());
    }
    // TLS_AES_128_GCM_SHA256 first, as h2load (OpenSSL) offers it; X25519 first (rustls' default).
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    if !args.resume {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let crypto = QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// A QUIC connection and its HTTP/3 sender; the h3 driver runs in its own task.
async fn connect(
    endpoint: &quinn::Endpoint,
    target: &Target,
    shared: &Shared,
) -> Result<(quinn::Connection, Sender)> {
    let conn = endpoint
        .connect_with(target.client.clone(), target.addr, &target.server_name)?
        .await
        .context("QUIC handshake")?;
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .context("HTTP/3 setup")?;
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    shared.stats().connections += 1;
    Ok((conn, sender))
}

/// One GET: status and body bytes.
async fn request(sender: &mut Sender, uri: &http::Uri) -> Result<(u16, u64)> {
    let req = http::Request::get(uri.clone()).body(())?;
    let mut stream = sender.send_request(req).await.context("send request")?;
    stream.finish().await.context("finish request")?;
    let resp = stream.recv_response().await.context("response head")?;
    let mut bytes = 0u64;
    while let Some(mut chunk) = stream.recv_data().await.context("response body")? {
        let n = chunk.remaining();
        bytes += n as u64;
        chunk.advance(n);
    }
    Ok((resp.status().as_u16(), bytes))
}

/// `-m` requests in flight on one connection; a new connection when it closes under them.
async fn keepalive_client(endpoint: quinn::Endpoint, target: Arc<Target>, shared: Arc<Shared>) {
    loop {
        if shared.next.load(Ordering::Relaxed) >= shared.total {
            return;
        }
        let (conn, sender) = match connect(&endpoint, &target, &shared).await {
            Ok(c) => c,
            Err(e) => {
                // A failed connection costs a request, so that a dead server ends the run.
                shared.stats().connect_failures += 1;
                if shared.take() {
                    shared.fail(&e);
                }
                continue;
            }
        };
        let mut streams = JoinSet::new();
        for _ in 0..target.streams {
            let (mut sender, conn) = (sender.clone(), conn.clone());
            let (target, shared) = (target.clone(), shared.clone());
            streams.spawn(async move {
                while conn.close_reason().is_none() && shared.take() {
                    let started = Instant::now();
                    match request(&mut sender, &target.uri).await {
                        Ok((status, bytes)) => shared.ok(started, started, status, bytes),
                        Err(e) => shared.fail(&e),
                    }
                }
            });
        }
        drop(sender);
        while streams.join_next().await.is_some() {}
        conn.close(0u32.into(), b"done");
    }
}

/// One request per connection: handshake, GET, close, again.
async fn new_connection_client(
    endpoint: quinn::Endpoint,
    target: Arc<Target>,
    shared: Arc<Shared>,
) {
    while shared.take() {
        let started = Instant::now();
        let outcome = async {
            let (conn, mut sender) = match connect(&endpoint, &target, &shared).await {
                Ok(c) => c,
                Err(e) => {
                    shared.stats().connect_failures += 1;
                    return Err(e);
                }
            };
            let request_started = Instant::now();
            let got = request(&mut sender, &target.uri).await;
            conn.close(0u32.into(), b"done");
            got.map(|(status, bytes)| (request_started, status, bytes))
        }
        .await;
        match outcome {
            Ok((request_started, status, bytes)) => {
                shared.ok(started, request_started, status, bytes)
            }
            Err(e) => shared.fail(&e),
        }
    }
}
