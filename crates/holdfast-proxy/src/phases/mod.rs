//! The request phases, in the order `service::handle` runs them: `route` (which route and
//! pool), `limits` (refuse what must not reach an origin), `upstream` (forward, with the
//! proxy header rules of `headers`), and `respond` (pages the edge makes itself).

pub(crate) mod headers;
pub(crate) mod limits;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod upstream;
