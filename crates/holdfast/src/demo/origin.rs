//! A demo origin: a few pages, a slow endpoint and one that fails on demand, served by hyper
//! on its own thread. It can be stopped (its port closed, its open connections cut, as a
//! crashed server would) and started again on the same address, from the operator page.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Longest delay `/slow?ms=` accepts.
const MAX_DELAY_MS: u64 = 10_000;
/// The longest a stop or start waits for the origin's thread.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

enum Command {
    Stop,
    Start,
}

type Reply = std::sync::mpsc::SyncSender<std::io::Result<()>>;

pub struct DemoOrigin {
    /// Its name, shown on its pages (`x-demo-origin`) and used by `/demo/origins/NAME/…`.
    pub name: String,
    pub addr: SocketAddr,
    commands: Option<tokio::sync::mpsc::UnboundedSender<(Command, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DemoOrigin {
    /// An origin named `name` on `ip`, port chosen by the system, started.
    pub fn start_on(name: &str, ip: IpAddr) -> std::io::Result<DemoOrigin> {
        let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (commands, received) = tokio::sync::mpsc::unbounded_channel();
        let origin: Arc<str> = Arc::from(name);
        let thread = std::thread::Builder::new()
            .name(format!("holdfast-demo-origin-{name}"))
            .spawn(move || rt.block_on(serve(listener, addr, origin, received)))?;
        Ok(DemoOrigin {
            name: name.to_string(),
            addr,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// An origin named `demo` on 127.0.0.1.
    pub fn start() -> std::io::Result<DemoOrigin> {
        DemoOrigin::start_on("demo", IpAddr::from([127, 0, 0, 1]))
    }

    /// Close the port and cut the open connections; `Ok` once done (also if already stopped).
    pub fn stop(&self) -> std::io::Result<()> {
        self.control(Command::Stop)
    }

    /// Listen again on the same address; `Ok` once listening (also if already running).
    pub fn resume(&self) -> std::io::Result<()> {
        self.control(Command::Start)
    }

    fn control(&self, command: Command) -> std::io::Result<()> {
        let gone = || std::io::Error::other("the demo origin's thread has stopped");
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send((command, reply))
            .map_err(|_| gone())?;
        answer.recv_timeout(CONTROL_TIMEOUT).map_err(|_| gone())?
    }
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        // Closing the channel ends the thread.
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accept while listening; obey commands until the channel closes.
async fn serve(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    origin: Arc<str>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<(Command, Reply)>,
) {
    let mut listener = tokio::net::TcpListener::from_std(listener).ok();
    // Bumped at every stop: the connections of the earlier run end.
    let (cut, _) = tokio::sync::watch::channel(0u64);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some((command, reply)) = command else { break };
                let result = match command {
                    Command::Stop => {
                        listener = None;
                        cut.send_modify(|run| *run += 1);
                        Ok(())
                    }
                    Command::Start if listener.is_some() => Ok(()),
                    Command::Start => tokio::net::TcpListener::bind(addr).await.map(|l| {
                        listener = Some(l);
                    }),
                };
                let _ = reply.send(result);
            }
            accepted = accept(listener.as_ref()) => {
                let Ok((stream, _)) = accepted else { continue };
                let mut cut = cut.subscribe();
                let run = *cut.borrow_and_update();
                let origin = Arc::clone(&origin);
                tokio::spawn(async move {
                    let service = service_fn(move |req| page(Arc::clone(&origin), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = cut.wait_for(|r| *r != run) => {}
                    }
                });
            }
        }
    }
}

/// The next connection, or never while stopped.
async fn accept(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

fn html(origin: &str, status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let page = format!(
        "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}\
         <p>Served by demo origin <b>{origin}</b>.</p>\
         <p><a href=\"/\">home</a> · <a href=\"/about\">about</a></p></body></html>\n"
    );
    let mut resp = Response::new(Full::new(Bytes::from(page)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = header::HeaderValue::from_str(origin) {
        h.insert(header::HeaderName::from_static("x-demo-origin"), v);
    }
    resp
}

async fn page(
    origin: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let o = &*origin;
    let resp = match req.uri().path() {
        "/" => html(
            o,
            StatusCode::OK,
            "Holdfast demo origin",
            "<p>This page came from the demo origin, through the Holdfast edge.</p>",
        ),
        "/about" => html(
            o,
            StatusCode::OK,
            "About",
            "<p>Holdfast keeps serving when config, artifacts, modules or origins fail.</p>",
        ),
        "/healthz" => html(o, StatusCode::OK, "Healthy", "<p>ok</p>"),
        "/cached" => {
            let mut resp = html(
                o,
                StatusCode::OK,
                "Cached",
                "<p>Cacheable for 30 s: the edge answers repeats itself (see Cache-Status).</p>",
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("max-age=30"),
            );
            resp
        }
        "/slow" => {
            let ms = query_u64(&req, "ms").unwrap_or(2000).min(MAX_DELAY_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            html(
                o,
                StatusCode::OK,
                "Slow",
                &format!("<p>Answered after {ms} ms.</p>"),
            )
        }
        "/fail" => {
            let code = query_u64(&req, "status")
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            html(
                o,
                code,
                "Failing on demand",
                "<p>The origin was asked to fail.</p>",
            )
        }
        p if p.starts_with("/limited") || p.starts_with("/protected") => html(
            o,
            StatusCode::OK,
            "Served by the demo origin",
            "<p>This route's request reached the demo origin.</p>",
        ),
        _ => html(
            o,
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>No such demo page.</p>",
        ),
    };
    Ok(resp)
}
