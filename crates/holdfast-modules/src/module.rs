//! The `Module` trait and the values that cross the module boundary.

use std::net::IpAddr;

/// What a module sees of a request: borrowed, nothing copied.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
    /// The path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub client_ip: IpAddr,
    /// The request came over TLS.
    pub tls: bool,
    /// The name of the route the request matched.
    pub route: &'a str,
}

/// A per-request decision maker. Implementations must not block; the runner times each call
/// against the module's budget and catches panics at this boundary.
pub trait Module: Send + Sync + 'static {
    /// The decision, e.g. a bot score.
    type Output: Clone + Send + Sync + 'static;
    /// Config table (`[modules.<NAME>]`), metric label and admin path segment.
    const NAME: &'static str;

    fn decide(&self, req: &RequestView<'_>) -> Result<Self::Output, ModuleError>;

    /// `decide`, given what earlier modules of the same request wrote (`ModuleCtx`: the bot
    /// score for the rules). By default `decide`.
    fn decide_in(
        &self,
        req: &RequestView<'_>,
        _ctx: &crate::ModuleCtx,
    ) -> Result<Self::Output, ModuleError> {
        self.decide(req)
    }

    /// A key under which a decision may be reused by the `stale` fail policy (e.g. the client
    /// address); `None`: stale has nothing to reuse and acts as `open`.
    fn stale_key(&self, _req: &RequestView<'_>) -> Option<u64> {
        None
    }
}

/// Why a module could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// The module has no usable data (e.g. no feature file was ever accepted).
    #[error("no data to decide with")]
    NoData,
    /// Anything else the module reports; `kind` is a short metric label (`[a-z_]+`).
    #[error("{kind}: {detail}")]
    Failed { kind: &'static str, detail: String },
}

impl ModuleError {
    /// The `kind` label of `holdfast_module_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModuleError::NoData => "no_data",
            ModuleError::Failed { kind, .. } => kind,
        }
    }
}

/// What a module's failure means for the request: the config's type, one for both.
pub use holdfast_config::FailPolicy;

/// The runner's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<T> {
    /// The module decided.
    Decided(T),
    /// The module failed (or is tripped) and the policy is `stale`: an earlier decision.
    Stale(T),
    /// No decision: the module is disabled, or failed/tripped under `open` (or `stale` with
    /// nothing to reuse). Consumers must handle this as a normal state.
    Unknown,
    /// The module failed or is tripped under `closed`.
    Deny,
}
