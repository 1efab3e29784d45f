//! `Alt-Svc: h3=":PORT"; ma=86400` (RFC 7838) on responses over TLS (TCP) while the edge has
//! HTTP/3 listeners, so browsers move to HTTP/3; a route turns it off with `alt_svc = false`.
//! The value is set once per worker thread when the listeners are bound (their port is only
//! known then: `h3_listen` may say port 0).

use crate::ctx::RequestCtx;
use crate::state::State;
use http::{HeaderMap, HeaderValue, Version};
use std::cell::RefCell;
use std::net::SocketAddr;

/// How long a client may remember the alternative (one day, as the common CDNs send).
const MAX_AGE_SECONDS: u32 = 86_400;

thread_local! {
    static VALUE: RefCell<Option<HeaderValue>> = const { RefCell::new(None) };
}

/// The header value for the first HTTP/3 listener, `None` without one.
pub(crate) fn value(h3: &[SocketAddr]) -> Option<HeaderValue> {
    let port = h3.first()?.port();
    HeaderValue::try_from(format!("h3=\":{port}\"; ma={MAX_AGE_SECONDS}")).ok()
}

/// Called once by each worker thread, before it serves.
pub(crate) fn set_for_thread(value: Option<HeaderValue>) {
    VALUE.with(|v| *v.borrow_mut() = value);
}

/// Add `Alt-Svc` to a response over TLS (not already HTTP/3) whose route allows it.
pub(crate) fn add(state: &State, ctx: &RequestCtx, headers: &mut HeaderMap) {
    if !ctx.conn.tls || ctx.version == Version::HTTP_3 {
        return;
    }
    let allowed = ctx
        .route
        .index
        .and_then(|i| state.config.routes.get(i))
        .is_none_or(|r| r.alt_svc);
    if !allowed || headers.contains_key(http::header::ALT_SVC) {
        return;
    }
    VALUE.with(|v| {
        if let Some(value) = v.borrow().as_ref() {
            headers.insert(http::header::ALT_SVC, value.clone());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_listener_port() {
        let addrs: Vec<SocketAddr> =
            vec!["0.0.0.0:443".parse().unwrap(), "[::]:8443".parse().unwrap()];
        assert_eq!(value(&addrs).unwrap(), "h3=\":443\"; ma=86400");
        assert!(value(&[]).is_none());
    }
}
