//! Client certificates, right after the front door: the header named by
//! `edge.client_cert_header` is removed from whatever the client sent, always; then, when
//! some site asks for client certificates, the request's host is checked against its
//! connection. A host whose site *requires* a certificate, reached over a connection made for
//! another site (another SNI, or plain HTTP), is refused with 421 (the client connects again
//! by name); a request whose host is its connection's site gets the verified subject in the
//! header, where the rules read it and the origin receives it.

use crate::ctx::{RequestCtx, TlsPeer};
use crate::error::ProxyError;
use crate::state::State;
use http::Request;
use std::sync::Arc;

pub(crate) fn check<B>(
    state: &State,
    req: &mut Request<B>,
    ctx: &mut RequestCtx,
) -> Result<(), ProxyError> {
    let header = state.config.edge.client_cert_header.as_ref();
    if let Some(name) = header {
        req.headers_mut().remove(name);
    }
    let Some(sites) = state.tls_sites.as_deref().filter(|s| s.checks_clients) else {
        return Ok(());
    };
    let Some(site) = sites.site_of(ctx.host_name()) else {
        return Ok(());
    };
    let peer = req
        .extensions()
        .get::<Arc<TlsPeer>>()
        .filter(|p| p.site == Some(site))
        .cloned();
    let Some(peer) = peer else {
        if sites.requires_client_cert(site) {
            return Err(ProxyError::Misdirected);
        }
        return Ok(());
    };
    if let (Some(name), Some(subject)) = (header, &peer.subject) {
        req.headers_mut().insert(name.clone(), subject.clone());
        // Sent to the origin after hop-by-hop removal, so `Connection: <name>` cannot drop it.
        ctx.module_headers.push((name.clone(), subject.clone()));
    }
    Ok(())
}
