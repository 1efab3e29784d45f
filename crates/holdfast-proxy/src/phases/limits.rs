//! Request limits checked before anything is sent to an origin. (Header size and count
//! limits are enforced by hyper's parser, configured in `server`.)

use super::headers::content_length;
use crate::error::ProxyError;
use crate::state::State;
use http::Request;

pub(crate) fn check<B>(state: &State, req: &Request<B>) -> Result<(), ProxyError> {
    match content_length(req.headers()) {
        Some(n) if n > state.config.edge.limits.max_request_body => {
            state.metrics.bad_request("body_too_large");
            Err(ProxyError::BodyTooLarge)
        }
        _ => Ok(()),
    }
}
