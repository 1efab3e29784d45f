//! The public status page (`[status_page]`): its own listener, thread and current-thread
//! runtime (never a data-path worker, never the admin plane's), serving `GET /` and
//! `GET /status.json`; components judged from the `/status` document, incidents posted on
//! the admin plane; the same snapshot exported to `export_dir` / `export_put` after every
//! change, so the page outlives this machine.

pub mod components;
mod export;
pub mod incidents;
mod render;

use crate::server::Backend;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use export::{ExportState, Exporter};
use holdfast_common::lock;
use incidents::{IncidentPost, Incidents};
use render::Snapshot;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the components are judged again (an incident post exports at once).
const TICK: Duration = Duration::from_millis(500);

struct Shared {
    config: holdfast_config::StatusPage,
    backend: Arc<dyn Backend>,
    incidents: Incidents,
    export: Mutex<ExportState>,
    /// The latest snapshot, for `/status` (which must not ask the backend again: the backend's
    /// `/status` is what asks for it).
    latest: Mutex<Option<Snapshot>>,
    changed: tokio::sync::Notify,
}

impl Shared {
    fn snapshot(&self) -> Snapshot {
        let status = self.backend.status();
        let components = components::components(&status, &self.config.components);
        let overall = components
            .iter()
            .map(|c| c.state)
            .max()
            .unwrap_or(components::ComponentState::Operational);
        let snapshot = Snapshot {
            title: self.config.title.clone(),
            overall,
            components,
            incidents: self.incidents.snapshot(),
        };
        *lock(&self.latest) = Some(snapshot.clone());
        snapshot
    }

    fn export_state(&self) -> std::sync::MutexGuard<'_, ExportState> {
        lock(&self.export)
    }
}

/// The running status page.
pub struct StatusPageHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn json_of(snapshot: &Snapshot, generated_at: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(snapshot).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("generated_at".into(), generated_at.into());
    }
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

/// Bind now (a busy port is reported at start), load the incidents, serve and export on a
/// new thread.
pub fn start(
    config: &holdfast_config::StatusPage,
    state_dir: Option<&std::path::Path>,
    backend: Arc<dyn Backend>,
) -> std::io::Result<StatusPageHandle> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    start_on(config, listener, state_dir, backend)
}

/// `start` on a listener bound (or inherited from the process before a binary upgrade) by
/// the caller.
pub fn start_on(
    config: &holdfast_config::StatusPage,
    listener: std::net::TcpListener,
    state_dir: Option<&std::path::Path>,
    backend: Arc<dyn Backend>,
) -> std::io::Result<StatusPageHandle> {
    let exporter = Exporter::new(
        config.export_dir.clone(),
        config.export_put.clone(),
        config.export_ca_file.as_deref(),
        backend.registry(),
    )
    .map_err(std::io::Error::other)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        backend,
        incidents: Incidents::load(state_dir),
        export: Mutex::new(ExportState::default()),
        latest: Mutex::new(None),
        changed: tokio::sync::Notify::new(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let inner = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("holdfast-status-page".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "status page listener failed");
                        return;
                    }
                };
                let exporting = tokio::spawn(export_loop(Arc::clone(&inner), exporter));
                let app = Router::new()
                    .route("/", get(index))
                    .route("/index.html", get(index))
                    .route("/status.json", get(status_json))
                    .with_state(inner);
                // At shutdown the page stops at once: an open or half-open browser connection
                // must never hold up the edge's shutdown.
                tokio::select! {
                    served = axum::serve(listener, app) => {
                        if let Err(e) = served {
                            tracing::error!(error = %e, "status page server stopped");
                        }
                    }
                    _ = stopped => {}
                }
                exporting.abort();
            });
        })?;
    Ok(StatusPageHandle {
        addr,
        shared,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl StatusPageHandle {
    /// `POST /incidents` (`id` None) or `POST /incidents/ID`; the page is exported at once.
    pub fn post_incident(
        &self,
        id: Option<u64>,
        post: IncidentPost,
    ) -> Result<serde_json::Value, (u16, String)> {
        let incident = self.shared.incidents.post(id, post)?;
        self.shared.changed.notify_one();
        serde_json::to_value(incident).map_err(|e| (500, e.to_string()))
    }

    /// For `/status`: the address, the components as last judged (every `TICK`), the open
    /// incidents and the last export.
    pub fn status(&self) -> serde_json::Value {
        let latest = lock(&self.shared.latest).clone();
        let open = self
            .shared
            .incidents
            .snapshot()
            .iter()
            .filter(|i| i.state != incidents::IncidentState::Resolved)
            .count();
        serde_json::json!({
            "listen": self.addr,
            "overall": latest.as_ref().map(|s| s.overall),
            "components": latest.map(|s| s.components).unwrap_or_default(),
            "open_incidents": open,
            "export": *self.shared.export_state(),
        })
    }

    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Judge the components every `TICK` (or at once after an incident post), for `/status`;
/// export when the snapshot changed, and again after a failed export.
async fn export_loop(shared: Arc<Shared>, exporter: Exporter) {
    let mut last: Option<Snapshot> = None;
    loop {
        let snapshot = shared.snapshot();
        let retry = shared.export_state().failing;
        if exporter.enabled() && (last.as_ref() != Some(&snapshot) || retry) {
            let at = now();
            let html = render::page(&snapshot, &at, false);
            let errors = exporter.export(&html, &json_of(&snapshot, &at)).await;
            let mut state = shared.export_state();
            state.exports += 1;
            if errors.is_empty() {
                state.last_ok = Some(at);
                state.failing = false;
            } else {
                let message = errors.join("; ");
                tracing::warn!(error = %message, "status page export failed; serving is not affected");
                state.failures += 1;
                state.failing = true;
                state.last_error_at = Some(at);
                state.last_error = Some(message);
            }
            drop(state);
            last = Some(snapshot);
        }
        let wait = if retry { TICK * 10 } else { TICK };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.changed.notified() => {}
        }
    }
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.snapshot();
    let html = render::page(&snapshot, &now(), true);
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

async fn status_json(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.snapshot();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json_of(&snapshot, &now()),
    )
        .into_response()
}
