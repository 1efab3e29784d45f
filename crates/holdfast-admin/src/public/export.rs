//! The status page's static snapshot: `index.html` and `status.json` written to
//! `export_dir` and/or `PUT` to `export_put` after every change, so the page can be hosted
//! away from this machine. A failing export never affects serving: it is logged, counted in
//! `holdfast_status_page_exports_total{target,result="failed"}` and shown on `/status`.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// How long one `PUT` may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The last export's outcome, for `/status` and the operator page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportState {
    /// RFC 3339 time of the last export that fully succeeded.
    pub last_ok: Option<String>,
    /// RFC 3339 time and message of the last failure.
    pub last_error_at: Option<String>,
    pub last_error: Option<String>,
    /// Whether the last attempt failed (cleared by the next success).
    pub failing: bool,
    pub exports: u64,
    pub failures: u64,
}

pub struct Exporter {
    dir: Option<PathBuf>,
    put: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    counter: IntCounterVec,
}

impl Exporter {
    pub fn new(
        dir: Option<PathBuf>,
        put: Option<String>,
        registry: &Registry,
    ) -> Result<Exporter, prometheus::Error> {
        let counter = IntCounterVec::new(
            Opts::new(
                "holdfast_status_page_exports_total",
                "Status page snapshot exports, by target (dir, put) and result (ok, failed).",
            ),
            &["target", "result"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for target in ["dir", "put"] {
            for result in ["ok", "failed"] {
                counter.with_label_values(&[target, result]);
            }
        }
        Ok(Exporter {
            dir,
            put,
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            counter,
        })
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some() || self.put.is_some()
    }

    /// Write and send both files; every failure, as `target: message`.
    pub async fn export(&self, html: &str, json: &[u8]) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(dir) = &self.dir {
            let written = write_dir(dir.clone(), html.as_bytes().to_vec(), json.to_vec()).await;
            self.count("dir", &written);
            if let Err(e) = written {
                errors.push(format!("export_dir {}: {e}", dir.display()));
            }
        }
        if let Some(base) = &self.put {
            let mut sent = self
                .put_one(
                    &format!("{base}index.html"),
                    "text/html; charset=utf-8",
                    html.as_bytes(),
                )
                .await;
            if sent.is_ok() {
                sent = self
                    .put_one(&format!("{base}status.json"), "application/json", json)
                    .await;
            }
            self.count("put", &sent);
            if let Err(e) = sent {
                errors.push(format!("export_put {base}: {e}"));
            }
        }
        errors
    }

    fn count(&self, target: &str, result: &Result<(), String>) {
        let word = if result.is_ok() { "ok" } else { "failed" };
        self.counter.with_label_values(&[target, word]).inc();
    }

    async fn put_one(&self, url: &str, content_type: &str, body: &[u8]) -> Result<(), String> {
        let req = http::Request::put(url)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(PUT_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("PUT {url}: no answer within {PUT_TIMEOUT:?}"))?
            .map_err(|e| format!("PUT {url}: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("PUT {url}: answered {}", resp.status()))
        }
    }
}

async fn write_dir(dir: PathBuf, html: Vec<u8>, json: Vec<u8>) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the folder: {e}"))?;
        // The page first: whoever sees the new status.json finds the page of that state too.
        holdfast_artifact::write_atomic(&dir.join("index.html"), &html)
            .map_err(|e| format!("index.html: {e}"))?;
        holdfast_artifact::write_atomic(&dir.join("status.json"), &json)
            .map_err(|e| format!("status.json: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}
