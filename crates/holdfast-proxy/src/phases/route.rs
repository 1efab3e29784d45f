//! Route selection: the first route whose host and path prefix match wins. `OPTIONS *`
//! (the whole server's options, RFC 9110 §9.3.7) goes to the host's route for `/`.

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::state::{RouteRt, State};

pub(crate) fn select<'s>(
    state: &'s State,
    ctx: &mut RequestCtx,
) -> Result<&'s RouteRt, ProxyError> {
    let host = ctx.host_name();
    let path = match ctx.path.path() {
        "*" => "/",
        path => path,
    };
    let found = state.routes.iter().enumerate().find(|(_, r)| {
        path.starts_with(&*r.path_prefix)
            && (r.hosts.is_empty() || r.hosts.iter().any(|h| h.matches(host)))
    });
    match found {
        Some((i, route)) => {
            ctx.route.index = Some(i);
            Ok(route)
        }
        None => Err(ProxyError::NoRoute),
    }
}

/// A rule's `route` action: serve the request with route `name` instead (its pools, its
/// header rules, its metrics). `None` (the current route stays) if no route has that name.
pub(crate) fn reroute<'s>(
    state: &'s State,
    ctx: &mut RequestCtx,
    name: &str,
) -> Option<&'s RouteRt> {
    let (i, route) = state
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| &*r.name == name)?;
    ctx.route.index = Some(i);
    Some(route)
}
