//! Why the front door (`phases::strict`) refused a request: the `reason` label of
//! `holdfast_http_bad_requests_total`, the status and the sentence on the error page. Its own
//! module, below `error`, so that `error` does not import a phase (no import cycle).

use crate::phases::path::PathError;
use http::StatusCode;

/// Why the front door refused a request: the `reason` label of
/// `holdfast_http_bad_requests_total` and the sentence on the error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    HostMissing,
    HostRepeated,
    HostInvalid,
    HostMismatch,
    TargetForm,
    TargetScheme,
    TargetUserinfo,
    Connect,
    MethodCase,
    TransferEncoding,
    LookalikeHeader,
    Path(PathError),
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::HostMissing => "host_missing",
            Refusal::HostRepeated => "host_repeated",
            Refusal::HostInvalid => "host_invalid",
            Refusal::HostMismatch => "host_mismatch",
            Refusal::TargetForm => "target_form",
            Refusal::TargetScheme => "target_scheme",
            Refusal::TargetUserinfo => "target_userinfo",
            Refusal::Connect => "connect",
            Refusal::MethodCase => "method_case",
            Refusal::TransferEncoding => "transfer_encoding",
            Refusal::LookalikeHeader => "lookalike_header",
            Refusal::Path(_) => "path",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Connect => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::HostMissing => "the request has no Host (HTTP/1.x needs exactly one)",
            Refusal::HostRepeated => "the request has more than one Host",
            Refusal::HostInvalid => "the Host is not a host name or address with an optional port",
            Refusal::HostMismatch => "the Host disagrees with the host in the request target",
            Refusal::TargetForm => "the request target's form does not fit its method",
            Refusal::TargetScheme => "the request target's scheme is not http or https",
            Refusal::TargetUserinfo => "the request target carries user information",
            Refusal::Connect => "the edge does not tunnel CONNECT requests",
            Refusal::MethodCase => {
                "methods are case-sensitive: this one imitates a standard method"
            }
            Refusal::TransferEncoding => "the only Transfer-Encoding accepted is a single chunked",
            Refusal::LookalikeHeader => "a header name with _ imitates a framing or routing header",
            Refusal::Path(e) => e.as_str(),
        }
    }
}
