//! The TLS keys beyond certificate and names: client certificates asked of clients
//! (`client_auth`, `client_ca`), the policy of each `[[edge.tls]]` table (`min_version`,
//! `cipher_suites`, `kx_groups`), `edge.client_cert_header`, `edge.session_tickets`, and
//! the certificate a pool presents to its origins (`client_cert`, `client_key`). Shape only:
//! the suite and group names are checked against the crypto provider by `holdfast-proxy`.

use super::Errors;
use crate::config::*;
use crate::spec::*;
use http::HeaderName;
use std::path::Path;
use std::time::Duration;

/// The shortest ticket-key rotation period accepted: shorter only breaks resumption.
const MIN_TICKET_ROTATION: Duration = Duration::from_secs(60);
/// The longest: RFC 8446 §4.6.1 caps a ticket's lifetime at 7 days, and a ticket is accepted
/// for two periods.
const MAX_TICKET_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600 / 2);

/// `client_auth` and `client_ca` of `edge.tls[i]` or `edge.acme[i]`.
pub(super) fn client_auth(
    at: &str,
    t: &SiteKeys<'_>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<ClientAuth> {
    let required = match t.client_auth {
        None => {
            if t.client_ca.is_some() {
                errs.add(
                    format!("{at}.client_ca"),
                    "client_ca is set but client_auth is not",
                    "add client_auth = \"require\" (or \"optional\"), or remove client_ca",
                );
            }
            return None;
        }
        Some("require") => true,
        Some("optional") => false,
        Some(other) => {
            errs.add(
                format!("{at}.client_auth"),
                format!("unknown mode {other:?}"),
                "use \"require\" or \"optional\"",
            );
            return None;
        }
    };
    match t.client_ca {
        Some(ca) if !ca.is_empty() => Some(ClientAuth {
            required,
            ca: base_dir.join(ca),
        }),
        _ => {
            errs.add(
                format!("{at}.client_ca"),
                "client_auth needs the CA that issues the client certificates",
                "set client_ca to a PEM file of CA certificates",
            );
            None
        }
    }
}

/// `min_version`, `cipher_suites` and `kx_groups` of `edge.tls[i]` or `edge.acme[i]`.
pub(super) fn policy(at: &str, t: &SiteKeys<'_>, errs: &mut Errors) -> TlsPolicy {
    let min_version = match t.min_version {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(other) => {
            errs.add(
                format!("{at}.min_version"),
                format!("unsupported TLS version {other:?}"),
                "use \"1.2\" or \"1.3\" (older versions are not offered)",
            );
            TlsVersion::Tls12
        }
    };
    for (field, list) in [
        ("cipher_suites", &t.cipher_suites),
        ("kx_groups", &t.kx_groups),
    ] {
        if list.is_some_and(<[String]>::is_empty) {
            errs.add(
                format!("{at}.{field}"),
                "an empty list would allow no handshake at all",
                "list at least one name, or leave the key out for rustls's defaults",
            );
        }
    }
    TlsPolicy {
        min_version,
        cipher_suites: t.cipher_suites.map(<[String]>::to_vec).unwrap_or_default(),
        kx_groups: t.kx_groups.map(<[String]>::to_vec).unwrap_or_default(),
    }
}

/// `edge.client_cert_header`.
pub(super) fn client_cert_header(spec: &EdgeSpec, errs: &mut Errors) -> Option<HeaderName> {
    let text = spec.client_cert_header.as_deref()?;
    let name = HeaderName::from_bytes(text.as_bytes()).ok();
    if name.is_none() {
        errs.add(
            "edge.client_cert_header",
            format!("{text:?} is not a header name"),
            "use a name such as \"X-Client-Subject\"",
        );
    }
    let asked = spec.tls.iter().any(|t| t.client_auth.is_some())
        || spec.acme.iter().any(|a| a.client_auth.is_some());
    if !asked {
        errs.add(
            "edge.client_cert_header",
            "no [[edge.tls]] or [[edge.acme]] table asks for client certificates, so it would never be sent",
            "set client_auth and client_ca on a certificate, or remove client_cert_header",
        );
    }
    name
}

/// `edge.session_tickets`.
pub(super) fn session_tickets(spec: &EdgeSpec, errs: &mut Errors) -> SessionTickets {
    let default = SessionTickets::default();
    let Some(s) = &spec.session_tickets else {
        return default;
    };
    let rotate = s.rotate.unwrap_or(default.rotate);
    if !(MIN_TICKET_ROTATION..=MAX_TICKET_ROTATION).contains(&rotate) {
        errs.add(
            "edge.session_tickets.rotate",
            format!("{}s is out of range", rotate.as_secs()),
            "use 1m to 3d 12h (a ticket is accepted for two periods, at most 7 days)",
        );
    }
    SessionTickets {
        enabled: s.enabled.unwrap_or(default.enabled),
        rotate,
    }
}

/// `client_cert` and `client_key` of `pools[i].tls`: both or neither.
pub(super) fn origin_client_cert(
    at: &str,
    t: &UpstreamTlsSpec,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<ClientCertFiles> {
    match (t.client_cert.as_deref(), t.client_key.as_deref()) {
        (None, None) => None,
        (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => Some(ClientCertFiles {
            cert: base_dir.join(cert),
            key: base_dir.join(key),
        }),
        (cert, _) => {
            let missing = if cert.is_none_or(str::is_empty) {
                "client_cert"
            } else {
                "client_key"
            };
            errs.add(
                format!("{at}.{missing}"),
                "client_cert and client_key go together",
                "give both PEM files (the certificate chain and its private key), or neither",
            );
            None
        }
    }
}
