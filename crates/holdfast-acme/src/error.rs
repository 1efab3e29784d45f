//! The one error type of the ACME crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with a problem document (RFC 8555 §6.7).
    #[error("the CA refused: {0}")]
    Ca(instant_acme::Problem),
    /// Anything else the ACME client reports (network, TLS, JSON, a timeout).
    #[error("{0}")]
    Client(instant_acme::Error),
    #[error("order for {names}: {what}")]
    Order { names: String, what: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    File { path: PathBuf, what: String },
    #[error("certificate: {0}")]
    Certificate(String),
    /// The fleet's etcd failed while an order needed it (its challenges are published there).
    #[error("fleet etcd: {0}")]
    Fleet(String),
}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(p) => AcmeError::Ca(p),
            other => AcmeError::Client(other),
        }
    }
}

impl AcmeError {
    /// The CA said `rateLimited`: wait longer before the next order for these names.
    pub fn is_rate_limited(&self) -> bool {
        let limited =
            |t: &Option<String>| t.as_deref().is_some_and(|t| t.ends_with(":rateLimited"));
        match self {
            AcmeError::Ca(p) => {
                limited(&p.r#type) || p.subproblems.iter().any(|s| limited(&s.r#type))
            }
            _ => false,
        }
    }
}
