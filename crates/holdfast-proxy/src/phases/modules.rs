//! Run the configured modules, in order, before anything goes to an origin. Their headers
//! are kept in the context and added to the origin request by `upstream`; a denial ends the
//! request with a 403 from the edge.

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::modules::ModuleAction;
use crate::state::State;
use holdfast_modules::RequestView;
use http::Request;

pub(crate) fn run<B>(
    state: &State,
    route_name: &str,
    req: &Request<B>,
    ctx: &mut RequestCtx,
) -> Result<(), ProxyError> {
    if state.modules.is_empty() {
        return Ok(());
    }
    let view = RequestView {
        method: req.method(),
        version: req.version(),
        headers: req.headers(),
        path: req.uri().path(),
        query: req.uri().query(),
        client_ip: crate::client_ip::client_ip(
            &state.config.edge.trusted_proxies,
            ctx.conn.client.ip(),
            req.headers(),
        ),
        tls: ctx.conn.tls,
        route: route_name,
    };
    for module in state.modules.iter() {
        match module.apply(&view) {
            ModuleAction::Pass => {}
            ModuleAction::Header(name, value) => ctx.module_headers.push((name, value)),
            ModuleAction::Headers(edits) => ctx.module_header_edits.extend(edits.into_vec()),
            ModuleAction::Deny => {
                return Err(ProxyError::Denied {
                    module: module.name(),
                })
            }
            ModuleAction::TooMany(too_many) => return Err(ProxyError::TooMany(too_many)),
            ModuleAction::Block(block) => return Err(ProxyError::Blocked(block)),
        }
    }
    Ok(())
}
