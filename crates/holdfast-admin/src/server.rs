//! The axum router and the thread it runs on.

use crate::access::{self, Access};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the admin plane asks of the running edge.
pub trait Backend: Send + Sync + 'static {
    /// True while the data path is serving.
    fn healthy(&self) -> bool;
    /// The `/status` document.
    fn status(&self) -> serde_json::Value;
    /// Re-read the configuration; blocking (file and name look-ups), called off the runtime.
    fn reload(&self) -> ReloadOutcome;
    /// The metrics registry to expose.
    fn registry(&self) -> &prometheus::Registry;
    /// The operator's kill switch for module `name`, persisted. `Err` is (status, message).
    fn set_module(
        &self,
        name: &str,
        switch: ModuleSwitch,
    ) -> Result<serde_json::Value, (u16, String)>;
    /// Re-read artifact `name` now, applying it even if it shrinks sharply.
    fn force_artifact(&self, name: &str) -> Result<serde_json::Value, (u16, String)>;
    /// Purge the cache of every cached route.
    fn purge_cache(&self, purge: &PurgeRequest) -> Result<serde_json::Value, (u16, String)>;
    /// `GET /dns/peer`: this instance's own view of the steered targets' health, for DNS
    /// peers (quorum); `authorization` is the request's `Authorization` header. The default
    /// (no DNS server): 404.
    fn dns_peer_view(
        &self,
        authorization: Option<&str>,
    ) -> Result<serde_json::Value, (u16, String)> {
        let _ = authorization;
        Err((404, "no DNS server with peers here".into()))
    }
    /// `POST /dns/targets/IP/{up,down,drain,clear}`: an operator override of a steered
    /// target, persisted. The default (no DNS server): 404.
    fn dns_override(&self, target: &str, action: &str) -> Result<serde_json::Value, (u16, String)> {
        let _ = (target, action);
        Err((404, "no DNS server here".into()))
    }
    /// `POST /incidents` (`id` None: open one) or `POST /incidents/ID` (an update) for the
    /// public status page. The default (no status page): 404.
    fn incident(
        &self,
        id: Option<u64>,
        post: crate::public::incidents::IncidentPost,
    ) -> Result<serde_json::Value, (u16, String)> {
        let _ = (id, post);
        Err((404, "no [status_page] configured here".into()))
    }
    /// `POST /demo/origins/NAME/{stop,start}` and `POST /demo/replay`: the controls of
    /// `holdfast demo`. The default (not the demo): 404.
    fn demo(&self, action: DemoAction) -> Result<serde_json::Value, (u16, String)> {
        let _ = action;
        Err((404, "only `holdfast demo` has demo controls".into()))
    }
    /// `POST /upgrade`: start the new binary on this process's listening sockets; answers
    /// once the new process said it is ready (this one then drains and exits) or failed
    /// (this one keeps serving). Blocking. The default (no upgrade support): 404.
    fn upgrade(&self, request: &UpgradeRequest) -> Result<serde_json::Value, (u16, String)> {
        let _ = request;
        Err((404, "binary upgrades are not supported here".into()))
    }
}

/// What the demo's controls ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoAction {
    /// Stop (`start: false`) or start a demo origin.
    Origin { name: String, start: bool },
    /// Write the 18 Nov 2025 feature file into the watched path.
    Replay,
}

/// `POST /upgrade` body (optional, JSON): `{"binary": "/path/to/holdfast"}`; without it,
/// the path this process was started from.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    pub binary: Option<std::path::PathBuf>,
}

/// `POST /cache/purge?url=…|prefix=…|tag=…|all=true[&soft=true]`: exactly one target.
/// `url` and `prefix` are `host/path?query` as the route's cache key writes them; `soft`
/// marks entries stale (still served when the origin fails) instead of removing them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PurgeRequest {
    pub url: Option<String>,
    pub prefix: Option<String>,
    pub tag: Option<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub soft: bool,
}

/// `POST /modules/NAME/{disable,enable,clear}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleSwitch {
    /// Off, whatever the config says.
    Disable,
    /// On, whatever the config says.
    Enable,
    /// No override: the config's `enabled` decides again.
    Clear,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReloadOutcome {
    Applied {
        generation: u64,
    },
    Rejected {
        generation: u64,
        errors: Vec<String>,
    },
}

pub struct AdminHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminHandle {
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind `listen` now (so a busy port is reported at start) and serve on a new thread; every
/// route but the open ones (see `access`) needs what `access` asks for.
pub fn start(
    listen: SocketAddr,
    backend: Arc<dyn Backend>,
    access: Access,
) -> std::io::Result<AdminHandle> {
    start_on(std::net::TcpListener::bind(listen)?, backend, access)
}

/// `start` on a listener bound (or inherited from the process before a binary upgrade) by
/// the caller.
pub fn start_on(
    listener: std::net::TcpListener,
    backend: Arc<dyn Backend>,
    access: Access,
) -> std::io::Result<AdminHandle> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("holdfast-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "admin listener failed");
                        return;
                    }
                };
                // Open event streams end when shutdown begins, so they never hold it up.
                let (closing, closed) = tokio::sync::watch::channel(false);
                let tls = access.tls.clone();
                let app = router(backend, access).layer(axum::Extension(Closing(closed)));
                let stopping = async move {
                    let _ = stopped.await;
                    let _ = closing.send(true);
                };
                if let Some(config) = tls {
                    crate::tls::serve(listener, config, app, stopping).await;
                    return;
                }
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "admin server stopped");
                }
            });
        })?;
    Ok(AdminHandle {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

type Shared = Arc<dyn Backend>;

fn router(backend: Shared, access: Access) -> Router {
    let login = Router::new()
        .route("/login", get(access::login_form).post(access::login))
        .with_state(access.clone());
    Router::new()
        .route("/", get(index))
        .route("/events", get(events))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/upgrade", post(upgrade))
        .route("/modules/{name}/{action}", post(module_switch))
        .route("/artifacts/{name}/force", post(force_artifact))
        .route("/cache/purge", post(purge_cache))
        .route("/dns/peer", get(dns_peer))
        .route("/dns/targets/{target}/{action}", post(dns_override))
        .route("/incidents", post(open_incident))
        .route("/incidents/{id}", post(update_incident))
        .route("/demo/origins/{name}/{action}", post(demo_origin))
        .route("/demo/replay", post(demo_replay))
        .with_state(backend)
        .merge(login)
        .layer(axum::middleware::from_fn_with_state(access, access::check))
}

/// `GET /`: the operator page, rendered from the `/status` document.
async fn index(State(b): State<Shared>) -> Response {
    let page = crate::page::page(&b.status());
    let mut resp = Html(page).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// How often `GET /events` sends the page's `<main>` again.
const EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// `GET /events`: Server-Sent Events, one `page` event (the operator page's `<main>`
/// content) at once and then whenever it changes, checked every `EVENT_INTERVAL`.
/// Set when the admin plane begins to shut down.
#[derive(Clone)]
struct Closing(tokio::sync::watch::Receiver<bool>);

async fn events(
    State(b): State<Shared>,
    axum::Extension(Closing(mut closing)): axum::Extension<Closing>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let stream = futures_util::stream::unfold((b, None::<String>), |(b, last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(EVENT_INTERVAL).await;
            }
            let live = crate::page::live(&b.status()).into_string();
            // An SSE data line may not hold a carriage return; the page needs none.
            let live = live.replace('\r', "");
            if last.as_deref() != Some(live.as_str()) {
                let event = Event::default().event("page").data(live.clone());
                return Some((Ok::<_, std::convert::Infallible>(event), (b, Some(live))));
            }
        }
    });
    let ended = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    Sse::new(stream.take_until(ended))
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn health(State(b): State<Shared>) -> Response {
    if b.healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving\n").into_response()
    }
}

async fn metrics(State(b): State<Shared>) -> Response {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut out = Vec::new();
    match encoder.encode(&b.registry().gather(), &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn status(State(b): State<Shared>) -> Json<serde_json::Value> {
    Json(b.status())
}

async fn reload(State(b): State<Shared>) -> Response {
    let outcome = tokio::task::spawn_blocking(move || b.reload()).await;
    match outcome {
        Ok(o @ ReloadOutcome::Applied { .. }) => (StatusCode::OK, Json(o)).into_response(),
        Ok(o @ ReloadOutcome::Rejected { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(o)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn upgrade(State(b): State<Shared>, body: axum::body::Bytes) -> Response {
    let request: UpgradeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        UpgradeRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                let hint = "expected {\"binary\": \"/path/to/holdfast\"} or an empty body";
                return (StatusCode::BAD_REQUEST, format!("{e} ({hint})")).into_response();
            }
        }
    };
    // Waits for the new process (bounded): off the admin runtime.
    blocking_json(move || b.upgrade(&request)).await
}

async fn module_switch(
    State(b): State<Shared>,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
) -> Response {
    let switch = match action.as_str() {
        "enable" => ModuleSwitch::Enable,
        "disable" => ModuleSwitch::Disable,
        "clear" => ModuleSwitch::Clear,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "use POST /modules/NAME/enable, /disable or /clear\n",
            )
                .into_response()
        }
    };
    // Persisting the override writes a file: off the admin runtime.
    blocking_json(move || b.set_module(&name, switch)).await
}

async fn force_artifact(
    State(b): State<Shared>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    blocking_json(move || b.force_artifact(&name)).await
}

async fn purge_cache(
    State(b): State<Shared>,
    axum::extract::Query(purge): axum::extract::Query<PurgeRequest>,
) -> Response {
    // Purge walks the stores: off the admin runtime.
    blocking_json(move || b.purge_cache(&purge)).await
}

async fn dns_peer(State(b): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match b.dns_peer_view(auth) {
        Ok(view) => (StatusCode::OK, Json(view)).into_response(),
        Err((code, message)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            format!("{message}\n"),
        )
            .into_response(),
    }
}

async fn dns_override(
    State(b): State<Shared>,
    axum::extract::Path((target, action)): axum::extract::Path<(String, String)>,
) -> Response {
    // Persisting the override writes a file: off the admin runtime.
    blocking_json(move || b.dns_override(&target, &action)).await
}

async fn open_incident(
    State(b): State<Shared>,
    Json(post): Json<crate::public::incidents::IncidentPost>,
) -> Response {
    // Saving the incidents writes a file: off the admin runtime.
    blocking_json(move || b.incident(None, post)).await
}

async fn update_incident(
    State(b): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<u64>,
    Json(post): Json<crate::public::incidents::IncidentPost>,
) -> Response {
    blocking_json(move || b.incident(Some(id), post)).await
}

async fn demo_origin(
    State(b): State<Shared>,
    headers: axum::http::HeaderMap,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
) -> Response {
    let start = match action.as_str() {
        "start" => true,
        "stop" => false,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "use POST /demo/origins/NAME/stop or /start\n",
            )
                .into_response()
        }
    };
    let done = blocking_json(move || b.demo(DemoAction::Origin { name, start })).await;
    back_to_page(&headers, done)
}

async fn demo_replay(State(b): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    // Writes a file and waits (bounded) for the edge's verdict: off the admin runtime.
    let done = blocking_json(move || b.demo(DemoAction::Replay)).await;
    back_to_page(&headers, done)
}

/// A form posted from the operator page (a browser, `Accept: text/html`) goes back to the
/// page once done (303), so the buttons work without JavaScript; other clients get the JSON.
fn back_to_page(headers: &axum::http::HeaderMap, done: Response) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser && done.status().is_success() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    }
    done
}

async fn blocking_json(
    work: impl FnOnce() -> Result<serde_json::Value, (u16, String)> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(status)) => (StatusCode::OK, Json(status)).into_response(),
        Ok(Err((code, message))) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            format!("{message}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
