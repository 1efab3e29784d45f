//! `minimal-proxy`: the "bare library" baseline for `bench/run.sh`. One tokio
//! current-thread runtime, an HTTP/1.1 hyper server, every request forwarded to one
//! upstream over a small keep-alive pool, bodies streamed. It has no routing, no config,
//! no logging, no timeouts and no metrics on purpose: the gap between it and Holdfast in
//! the same run is what Holdfast's features cost. Not for production.

#![forbid(unsafe_code)]

mod pool;
mod proxy;

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::pool::Pool;

// Same global allocator as Holdfast, so the allocator is not part of the difference.
#[global_allocator]
static GLOBAL: holdfast_alloc::Mimalloc = holdfast_alloc::Mimalloc;

/// Read buffer cap for both the client and the upstream side (hyper's default is ~400 KiB).
const MAX_BUF_SIZE: usize = 64 * 1024;

const USAGE: &str = "usage: minimal-proxy --listen ADDR:PORT --upstream ADDR:PORT [--max-idle N]
  --listen    where to accept HTTP/1.1 (e.g. 127.0.0.1:18091)
  --upstream  the one origin every request goes to (e.g. 127.0.0.1:18080)
  --max-idle  idle keep-alive connections kept to the upstream (default 256)";

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    max_idle: usize,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut listen = None;
    let mut upstream = None;
    let mut max_idle = 256;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse()?),
            "--upstream" => upstream = Some(value.parse()?),
            "--max-idle" => max_idle = value.parse()?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}").into()),
        }
    }
    Ok(Args {
        listen: listen.ok_or(format!("--listen is required\n{USAGE}"))?,
        upstream: upstream.ok_or(format!("--upstream is required\n{USAGE}"))?,
        max_idle,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind(args.listen).await?;
    let pool = Arc::new(Pool::new(args.upstream, args.max_idle, MAX_BUF_SIZE));
    eprintln!(
        "minimal-proxy: listening on {}, upstream {}",
        args.listen, args.upstream
    );
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                eprintln!("minimal-proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Best effort: without it small responses wait on Nagle + delayed ACK.
        let _ = stream.set_nodelay(true);
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            let service = service_fn(move |req| proxy::forward(Arc::clone(&pool), req));
            // Client resets and half-read requests end here; the baseline logs nothing.
            let _ = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_BUF_SIZE)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
