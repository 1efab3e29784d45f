//! Pages the edge makes itself: small HTML or JSON (by `Accept`) that name the status, the
//! request id and which side failed, never cached.

use crate::body::ResponseBody;
use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use http::{header, HeaderValue, Response};

pub(crate) fn error(err: &ProxyError, ctx: &RequestCtx) -> Response<ResponseBody> {
    let status = err.status();
    let side = err.side().as_str();
    let reason = status.canonical_reason().unwrap_or("Error");
    // The request id is checked to be `[A-Za-z0-9._:-]` (or generated), so it needs no escaping.
    let id = ctx.request_id.to_str().unwrap_or("-");
    let (content_type, body) = if ctx.wants_json {
        let json = serde_json::json!({
            "status": status.as_u16(),
            "error": reason,
            "detail": err.to_string(),
            "failed": side,
            "request_id": id,
        });
        ("application/json", json.to_string())
    } else {
        let code = status.as_u16();
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><title>{code} {reason}</title></head><body>\
                 <h1>{code} {reason}</h1><p>{err}.</p><p>Failed: <b>{side}</b> \
                 (served by the Holdfast edge)</p><p>Request ID: <code>{id}</code></p></body></html>\n"
            ),
        )
    };
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match err {
        ProxyError::Overloaded { retry_after } => {
            h.insert(header::RETRY_AFTER, retry_after.clone());
        }
        ProxyError::TooMany(too_many) => {
            h.insert(header::RETRY_AFTER, too_many.retry_after.clone());
            if let Some(v) = &too_many.ratelimit {
                h.insert(http::HeaderName::from_static("ratelimit"), v.clone());
            }
            if let Some(v) = &too_many.policy {
                h.insert(http::HeaderName::from_static("ratelimit-policy"), v.clone());
            }
        }
        // The front door's refusals end the connection: what follows the head on it
        // (a body, a pipelined request) was framed by rules the edge just refused.
        ProxyError::Refused(_) => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    resp
}
