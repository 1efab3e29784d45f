//! The request phases, in the order `service::handle` runs them: `strict` (the front door:
//! refuse ambiguous requests, normalise the rest, the path with `path`), with `[[edge.acme]]`
//! the `http-01` challenge (`reserved::acme_challenge`, before `client_cert` so the CA's
//! plain-HTTP validation reaches a site that requires certificates), `client_cert` (the
//! client-certificate subject header: stripped from input, set from the handshake; a host
//! whose site requires a certificate refused on another site's connection), `reserved` (paths the
//! edge answers itself before any route, e.g. the challenge's), `route` (which route and
//! pool), `limits` (refuse what must not reach an origin), `module_chain` (per-request decision
//! modules: headers for the origin, a denial or their own page), `cache` (on cached routes:
//! answer from the store, or forward and store), `upstream` (forward along the
//! route's failover chain; the walk of attempts and retries is `retry`'s `RetryPlan`, one
//! exchange with one server is `exchange`'s; proxy header rules are `headers`'), and
//! `respond` (pages the edge makes itself).

pub(crate) mod cache;
pub(crate) mod client_cert;
pub(crate) mod exchange;
pub(crate) mod headers;
pub(crate) mod limits;
pub(crate) mod module_chain;
pub(crate) mod path;
pub(crate) mod reserved;
pub(crate) mod respond;
pub(crate) mod retry;
pub(crate) mod route;
pub(crate) mod strict;
pub(crate) mod upstream;
