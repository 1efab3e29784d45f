//! `ProxyError`: why the edge answered a request itself, and whose side failed.

use http::StatusCode;

/// Whose side failed, as shown on error pages and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Edge,
    Origin,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Edge => "edge",
            Side::Origin => "origin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{}", .0.message())]
    Refused(crate::refusal::Refusal),
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("this host needs a TLS connection made for its name with a client certificate; connect again to it by name")]
    Misdirected,
    #[error("the request was refused by the edge's {module} module")]
    Denied { module: &'static str },
    #[error("the request was blocked by the edge's rule {:?}", .0.rule)]
    Blocked(Box<holdfast_modules::Block>),
    #[error("too many requests: the rate limit {:?} was passed; try again later", .0.limit)]
    TooMany(Box<holdfast_modules::TooMany>),
    #[error("the origin pool is at its concurrency limit; try again shortly")]
    Overloaded { retry_after: http::HeaderValue },
    #[error("request body is larger than the edge accepts")]
    BodyTooLarge,
    #[error("the request body could not be read from the client")]
    ClientBody(#[source] hyper::Error),
    #[error("the client's request stream failed")]
    ClientStream(#[source] crate::body::BodyError),
    #[error("the client stopped sending its request body")]
    ClientTimeout,
    #[error("the origin could not be reached")]
    Connect(#[source] std::io::Error),
    #[error("the origin did not answer in time")]
    Timeout,
    #[error("the origin failed during the exchange")]
    Upstream(#[source] hyper::Error),
    #[error("the TLS handshake with the origin failed")]
    UpstreamTls(#[source] std::io::Error),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Refused(r) => r.status(),
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::Denied { .. } => StatusCode::FORBIDDEN,
            ProxyError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Blocked(b) => b.status,
            ProxyError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) | ProxyError::ClientStream(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::UpstreamTls(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute | ProxyError::Denied { .. } | ProxyError::Overloaded { .. } => {
                Side::Edge
            }
            ProxyError::Refused(_)
            | ProxyError::Misdirected
            | ProxyError::BodyTooLarge
            | ProxyError::ClientBody(_)
            | ProxyError::ClientStream(_)
            | ProxyError::ClientTimeout
            | ProxyError::TooMany(_)
            | ProxyError::Blocked(_) => Side::Client,
            ProxyError::Connect(_)
            | ProxyError::Timeout
            | ProxyError::Upstream(_)
            | ProxyError::UpstreamTls(_) => Side::Origin,
        }
    }
}

/// The error and its sources, `a: b: c`: "the origin could not be reached" alone does not
/// tell an operator whether the port was closed, the host unreachable or a name unknown.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
