//! Paths the edge answers itself, before any route: a module's reserved prefix (the
//! challenge's `/.holdfast/challenge/…`) on every host, and with `[[edge.acme]]` the ACME
//! `http-01` challenge (`/.well-known/acme-challenge/<token>`). A POST body there is small
//! and read whole, within `RESERVED_BODY_LIMIT` and `BODY_TIMEOUT`.

use crate::body::{BodyError, ClientBody, ResponseBody};
use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::state::State;
use holdfast_modules::{EdgeRequest, EdgeResponse, RequestModule, REQUEST_ID_MARK};
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::Duration;

/// Largest body a reserved path reads (a form with a token and a path).
pub(crate) const RESERVED_BODY_LIMIT: usize = 8 << 10;
/// The longest a client may take to send that body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// With `[[edge.acme]]`, the edge owns `/.well-known/acme-challenge/`: a token of an order in
/// flight gets its key authorization (RFC 8555 §8.3), any other path under it a 404.
pub(crate) fn acme_challenge(
    state: &State,
    path: &str,
    ctx: &RequestCtx,
) -> Option<Response<ResponseBody>> {
    let acme = state.acme.as_ref()?;
    let token = path.strip_prefix(holdfast_acme::HTTP_CHALLENGE_PREFIX)?;
    let (status, body) = match acme.http_challenge(token) {
        Some(key_authorization) => (http::StatusCode::OK, key_authorization.to_string()),
        None => (
            http::StatusCode::NOT_FOUND,
            "no such ACME challenge\n".to_string(),
        ),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(edge_response(
        EdgeResponse {
            status,
            headers,
            body,
        },
        ctx,
    ))
}

/// The module whose reserved prefix `path` is under, if any (one byte compared for every
/// other request).
pub(crate) fn owner<'s>(state: &'s State, path: &str) -> Option<&'s Arc<dyn RequestModule>> {
    if path.as_bytes().get(1) != Some(&b'.') {
        return None;
    }
    state.modules.iter().find(|m| {
        m.reserved_prefix()
            .and_then(|p| path.strip_prefix(p))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

pub(crate) async fn answer(
    state: &State,
    module: &Arc<dyn RequestModule>,
    req: Request<ClientBody>,
    ctx: &mut RequestCtx,
) -> Response<ResponseBody> {
    let module = Arc::clone(module);
    let (parts, body) = req.into_parts();
    let body = if parts.method == http::Method::POST {
        match tokio::time::timeout(
            BODY_TIMEOUT,
            Limited::new(body, RESERVED_BODY_LIMIT).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => {
                let err = match e.downcast::<BodyError>().map(|e| *e) {
                    Ok(BodyError::Hyper(e)) => ProxyError::ClientBody(e),
                    Ok(e) => ProxyError::ClientStream(e),
                    Err(_) => ProxyError::BodyTooLarge,
                };
                return super::respond::error(&err, ctx);
            }
            Err(_) => return super::respond::error(&ProxyError::ClientTimeout, ctx),
        }
    } else {
        bytes::Bytes::new()
    };
    let client_ip =
        crate::client_ip::of_request(&state.config.edge, ctx.conn.client.ip(), &parts.headers);
    let page = module.answer(&EdgeRequest {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        client_ip,
        tls: ctx.conn.tls,
        body: &body,
    });
    edge_response(page, ctx)
}

/// A module's own response, with the request id filled in; never cached.
pub(crate) fn edge_response(page: EdgeResponse, ctx: &RequestCtx) -> Response<ResponseBody> {
    let id = ctx.request_id.to_str().unwrap_or("-");
    let body = if page.body.contains(REQUEST_ID_MARK) {
        page.body.replace(REQUEST_ID_MARK, id)
    } else {
        page.body
    };
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = page.status;
    *resp.headers_mut() = page.headers;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
