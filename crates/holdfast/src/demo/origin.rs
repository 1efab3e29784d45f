//! The demo origin: a few pages, a slow endpoint and one that fails on demand, served by
//! hyper on its own thread.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest delay `/slow?ms=` accepts.
const MAX_DELAY_MS: u64 = 10_000;

pub struct DemoOrigin {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DemoOrigin {
    pub fn start() -> std::io::Result<DemoOrigin> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("holdfast-demo-origin".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        let accepted = tokio::select! {
                            a = listener.accept() => a,
                            _ = &mut stopped => break,
                        };
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service_fn(page))
                                .await;
                        });
                    }
                });
            })?;
        Ok(DemoOrigin {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

fn html(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let page = format!(
        "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}\
         <p><a href=\"/\">home</a> · <a href=\"/about\">about</a></p></body></html>\n"
    );
    let mut resp = Response::new(Full::new(Bytes::from(page)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

async fn page(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match req.uri().path() {
        "/" => html(
            StatusCode::OK,
            "Holdfast demo origin",
            "<p>This page came from the demo origin, through the Holdfast edge.</p>",
        ),
        "/about" => html(
            StatusCode::OK,
            "About",
            "<p>Holdfast keeps serving when config, artifacts, modules or origins fail.</p>",
        ),
        "/cached" => {
            let mut resp = html(
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
                code,
                "Failing on demand",
                "<p>The origin was asked to fail.</p>",
            )
        }
        p if p.starts_with("/failover") || p.starts_with("/limited") => html(
            StatusCode::OK,
            "Served by the demo origin",
            "<p>This route's request reached the demo origin.</p>",
        ),
        _ => html(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>No such demo page.</p>",
        ),
    };
    Ok(resp)
}
