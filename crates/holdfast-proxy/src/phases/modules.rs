//! Run the configured modules, in order, before anything goes to an origin. Their headers
//! are kept in the context and added to the origin request by `upstream`; a denial ends the
//! request with a 403 from the edge.

use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::modules::ModuleAction;
use crate::state::State;
use holdfast_modules::RequestView;
use http::Request;

/// `Ok(Some(name))`: a rule sent the request to route `name`.
pub(crate) fn run<B>(
    state: &State,
    route_name: &str,
    req: &Request<B>,
    ctx: &mut RequestCtx,
) -> Result<Option<std::sync::Arc<str>>, ProxyError> {
    let mut reroute = None;
    if state.modules.is_empty() {
        return Ok(reroute);
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
            ModuleAction::Edit(edit) => {
                let edit = *edit;
                ctx.module_header_edits.extend(edit.headers);
                if reroute.is_none() {
                    reroute = edit.route;
                }
            }
            ModuleAction::Deny => {
                return Err(ProxyError::Denied {
                    module: module.name(),
                })
            }
            ModuleAction::TooMany(too_many) => return Err(ProxyError::TooMany(too_many)),
            ModuleAction::Block(block) => return Err(ProxyError::Blocked(block)),
        }
    }
    Ok(reroute)
}
