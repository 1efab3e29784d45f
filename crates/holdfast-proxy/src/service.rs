//! The hyper service. `handle` reads as the phases in order; the response body carries a
//! `Completion` that records metrics and the access-log line when the body is done.

use crate::body::{ClientBody, OnComplete, ResponseBody};
use crate::ctx::{ConnInfo, RequestCtx};
use crate::error::ProxyError;
use crate::phases;
use crate::phases::module_chain::AfterModules;
use crate::state::State;
use http::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One request of any protocol: hyper's bodies (HTTP/1.1, HTTP/2) and the HTTP/3 listener's
/// take the same path.
pub(crate) async fn handle<B: Into<ClientBody>>(
    state: Arc<State>,
    conn: ConnInfo,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Infallible> {
    let req = req.map(Into::into);
    let mut ctx = RequestCtx::new(&req, conn);
    let mut resp = match proxy(&state, req, &mut ctx).await {
        Ok(resp) => resp,
        Err(e) => phases::respond::error(&e, &ctx),
    };
    ctx.status = resp.status().as_u16();
    resp.headers_mut()
        .insert(crate::request_id::HEADER, ctx.request_id.clone());
    crate::h3::alt_svc::add(&state, &ctx, resp.headers_mut());
    resp.body_mut()
        .set_completion(Box::new(Completion { state, ctx }));
    Ok(resp)
}

async fn proxy(
    state: &Arc<State>,
    mut req: Request<ClientBody>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    phases::strict::check(state, &mut req, ctx)?;
    // Before the client-certificate check: the CA validates over plain HTTP, also for a
    // site that requires client certificates.
    if let Some(page) = phases::reserved::acme_challenge(state, req.uri().path(), ctx) {
        return Ok(page);
    }
    phases::client_cert::check(state, &mut req, ctx)?;
    if let Some(module) = phases::reserved::owner(state, req.uri().path()) {
        // Boxed for the same reason as the exchange below; rare.
        return Ok(Box::pin(phases::reserved::answer(state, module, req, ctx)).await);
    }
    let route = phases::route::select(state, ctx)?;
    phases::limits::check(state, &req)?;
    let route = match phases::module_chain::run(state, &route.name, &req, ctx)? {
        AfterModules::Answered(page) => return Ok(*page),
        AfterModules::Forward(Some(name)) => {
            phases::route::reroute(state, ctx, &name).unwrap_or(route)
        }
        AfterModules::Forward(None) => route,
    };
    // Boxed: the exchange with the origin is the large part of this future, and hyper moves
    // the service future into its dispatcher on every request; one small allocation is
    // cheaper than copying kilobytes (see the size test below).
    if let Some(cache) = &route.cache {
        return boxed(|| phases::cache::handle(state, route, cache, req, ctx)).await;
    }
    boxed(|| phases::upstream::forward(state, route, req.map(Some), ctx)).await
}

/// `Box::pin(make())`, with the box allocated before the future is made: the compiler can
/// then build the future in the box instead of on the stack and copy it in (`Box::new` takes
/// a finished value), which for these futures of kilobytes was a `memcpy` per request.
#[inline(always)]
fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// Runs when the response body is finished or dropped: metrics, then the access-log line.
pub(crate) struct Completion {
    state: Arc<State>,
    ctx: RequestCtx,
}

impl OnComplete for Completion {
    fn complete(self: Box<Self>, bytes: u64, failed: bool) {
        let Completion { state, ctx } = *self;
        let elapsed = ctx.start.elapsed();
        let route = ctx.route.index.and_then(|i| state.routes.get(i));
        let metrics = route.map_or(&state.no_route, |r| &r.metrics);
        metrics.observe(ctx.status, elapsed.as_secs_f64());
        state.metrics.count_protocol(ctx.version);
        if let Some(log) = &state.access_log {
            let route_name = route.map_or("-", |r| &*r.name);
            log.record(&ctx, route_name, bytes, elapsed, failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Arc<State>, ConnInfo, Request<Incoming>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// hyper moves the service future into its dispatcher on every request, so its size is
    /// a per-request memcpy: the origin exchange is boxed to keep it small. (1600: the
    /// context's inline module header added 40 bytes to the 1536 this guarded before; a
    /// heap allocation per request would cost more than copying them.)
    #[test]
    fn handle_future_stays_small() {
        let size = future_size(handle::<Incoming>);
        assert!(size <= 1600, "handle's future is {size} bytes");
    }
}
