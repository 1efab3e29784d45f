//! What the data path sees of a module: a `RequestModule` is a module behind its runner
//! (`ModuleSlot`: kill switch, fail policy, budget, breaker) and says what its decision means
//! for the request (`ModuleAction`: a header for the origin, an edit, a denial, a block, a
//! 429, or its own page). It cannot fail: every failure was already turned into an action by
//! the module's policy. `ModuleCtx` is what one request's modules hand each other (the bot
//! score the rules read), passed by the runner in `holdfast-proxy`'s modules phase.

use crate::RequestView;
use http::{HeaderName, HeaderValue};

/// Whether an edge-made answer should be JSON rather than an HTML page: `Accept` names JSON
/// and not HTML (API clients). The one such choice: the error pages and the challenge's.
pub fn wants_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json") && !a.contains("html"))
}

/// What `bot.score` reads: the bot module's verdict for the request being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotScore {
    /// No score (no bot module, switched off, no model, failed open): its own value.
    #[default]
    Unknown,
    /// 1 (human) to 99 (bot).
    Score(u8),
}

/// One request's data shared between its modules, in chain order: a module writes what later
/// ones read. Lives on the stack of the modules phase (no allocation, never across `.await`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleCtx {
    /// Written by the bot module when it runs before the rules (a rule reads `bot.score`).
    pub bot_score: BotScore,
}

/// Offered (through the host's `Links`) by a kind whose step reads `ModuleCtx::bot_score`:
/// the bot module then runs before it (`Stage::Inform`) instead of last.
#[derive(Debug, Clone, Copy)]
pub struct ReadsBotScore;

/// What a rule asks of the challenge: its difficulty and whether the no-JavaScript form is
/// offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeAsk {
    pub difficulty: u8,
    pub nojs: bool,
}

/// The challenge as the rules see it: pass on a valid cookie, else the edge's own answer.
/// Also the owner of the challenge's reserved paths. Implemented by `holdfast-challenge`;
/// offered to the rules of the same generation through the host's `Links`.
pub trait ChallengeGate: Send + Sync + 'static {
    /// `ModuleAction::Pass`, or `Respond` with the page (or JSON). Must not block or panic.
    fn check(&self, req: &RequestView<'_>, ask: ChallengeAsk) -> ModuleAction;
    /// The path prefix it answers itself (`/.holdfast/challenge`).
    fn reserved_prefix(&self) -> &'static str;
    /// Answer a request under `reserved_prefix`.
    fn answer(&self, req: &EdgeRequest<'_>) -> EdgeResponse;
}

/// What a module's decision does to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleAction {
    /// Go on; nothing to add.
    Pass,
    /// Go on, sending this header to the origin (it replaces any the client sent).
    Header(HeaderName, HeaderValue),
    /// Go on, with the rules' effects on the request.
    Edit(Box<Edit>),
    /// The edge answers 403 itself (a `closed` fail policy): never a 5xx.
    Deny,
    /// The edge answers itself with this status (400..=599): a rule blocked the request.
    Block(Box<Block>),
    /// The edge answers 429 itself: a rate limit was passed.
    TooMany(Box<TooMany>),
    /// The edge answers with this page itself (the challenge).
    Respond(Box<EdgeResponse>),
}

/// In an `EdgeResponse` body, replaced by the request id when it is sent.
pub const REQUEST_ID_MARK: &str = "\u{1}request-id\u{1}";

/// A response a module makes itself (always `Cache-Control: no-store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    /// `REQUEST_ID_MARK` in it becomes the request id.
    pub body: String,
}

/// A request to a module's reserved path (e.g. `/.holdfast/challenge/…`), answered before
/// route matching. Its body has been read (it is small: at most `RESERVED_BODY_LIMIT`).
#[derive(Debug)]
pub struct EdgeRequest<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub client_ip: std::net::IpAddr,
    pub tls: bool,
    pub body: &'a [u8],
}

/// What rules that decide nothing ask of the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edit {
    /// Edits of the origin request in order: set (`Some`, replacing any the client sent) or
    /// remove (`None`); applied after the `Header`s of the modules.
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The name of the route that serves the request instead of the one it matched.
    pub route: Option<std::sync::Arc<str>>,
}

/// A rule's block: its id (for the page and the log) and the status it answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub rule: String,
    pub status: http::StatusCode,
}

/// A 429 answer and the headers that explain it (RFC 6585; `RateLimit` and
/// `RateLimit-Policy` per draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooMany {
    /// The limit's name, for the page.
    pub limit: String,
    /// Whole seconds.
    pub retry_after: HeaderValue,
    pub ratelimit: Option<HeaderValue>,
    pub policy: Option<HeaderValue>,
}

/// A module as the data path sees it; each module kind's crate implements it beside its
/// `ModuleKind`.
pub trait RequestModule: Send + Sync + 'static {
    /// Its name, as in `[modules.<name>]`.
    fn name(&self) -> &'static str;
    /// Decide for one request. Must not block and must not panic (the runner catches a
    /// module's panics; this layer only maps verdicts to actions).
    fn apply(&self, req: &RequestView<'_>) -> ModuleAction;
    /// What the data path calls: `apply` with the request's `ModuleCtx`, which a module
    /// may read (what earlier modules wrote) or write (for later ones). By default `apply`.
    fn apply_in(&self, req: &RequestView<'_>, _ctx: &mut ModuleCtx) -> ModuleAction {
        self.apply(req)
    }
    /// What `/status` shows of it, if anything.
    fn status(&self) -> Option<serde_json::Value> {
        None
    }
    /// The operator's kill switch (`POST /modules/NAME/...`); `None`: this module has none
    /// of its own (the configured modules are switched by their host).
    fn set_override(&self, _o: crate::Override) -> Option<serde_json::Value> {
        None
    }
    /// A path prefix this module answers itself, before any route (`/.holdfast/…`).
    fn reserved_prefix(&self) -> Option<&'static str> {
        None
    }
    /// Answer a request under `reserved_prefix`. Must not block or panic.
    fn answer(&self, _req: &EdgeRequest<'_>) -> EdgeResponse {
        EdgeResponse {
            status: http::StatusCode::NOT_FOUND,
            headers: http::HeaderMap::new(),
            body: String::new(),
        }
    }
}
