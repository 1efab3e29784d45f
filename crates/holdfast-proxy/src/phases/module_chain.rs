//! Run the generation's module chain, in order, before anything goes to an origin, with one
//! `ModuleCtx` (on this function's stack) that each module may read and write. Their headers
//! are kept in the context and added to the origin request by `upstream`; a denial ends the
//! request with a 403 from the edge; a module's own page (the challenge) is sent as it is.

use crate::body::ResponseBody;
use crate::ctx::RequestCtx;
use crate::error::ProxyError;
use crate::state::State;
use holdfast_modules::ModuleAction;
use holdfast_modules::{ModuleCtx, RequestView};
use http::{Request, Response};

/// What the request does after the modules.
pub(crate) enum AfterModules {
    /// On to an origin: the route's, or (`Some(name)`) the route a rule sent it to.
    Forward(Option<std::sync::Arc<str>>),
    /// A module answered it with its own page (the challenge).
    Answered(Box<Response<ResponseBody>>),
}

pub(crate) fn run<B>(
    state: &State,
    route_name: &str,
    req: &Request<B>,
    ctx: &mut RequestCtx,
) -> Result<AfterModules, ProxyError> {
    let mut reroute = None;
    if state.modules.is_empty() {
        return Ok(AfterModules::Forward(reroute));
    }
    let view = RequestView {
        method: req.method(),
        version: req.version(),
        headers: req.headers(),
        path: req.uri().path(),
        query: req.uri().query(),
        client_ip: crate::client_ip::of_request(
            &state.config.edge,
            ctx.conn.client.ip(),
            req.headers(),
        ),
        tls: ctx.conn.tls,
        route: route_name,
    };
    let mut shared = ModuleCtx::default();
    for module in state.modules.iter() {
        match module.apply_in(&view, &mut shared) {
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
            ModuleAction::Respond(page) => {
                return Ok(AfterModules::Answered(Box::new(
                    super::reserved::edge_response(*page, ctx),
                )))
            }
        }
    }
    Ok(AfterModules::Forward(reroute))
}
