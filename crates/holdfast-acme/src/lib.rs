//! Certificates the edge obtains itself from an ACME server (RFC 8555) for `[[edge.acme]]`:
//! the account, one order at a time per name set, the challenges the edge answers
//! (`http-01` on the plain listeners, `tls-alpn-01` on the TLS ones), renewal, and the
//! files in `state_dir`. The data path sees only `CertStore`, read lock-free; everything
//! else runs on the manager's own thread and runtime.
//!
//! # Map
//!
//! - `manager.rs`: `AcmeManager` — at start, each name set's stored certificate (or a
//!   self-signed placeholder) is served before the first handshake; then one task per set
//!   waits for its due time, orders (`order`), stores, serves, and schedules the next order
//!   (`schedule`), or counts and records the failure and backs off. `follow` takes a reload;
//!   `status` and `expiries` feed `/status` and `holdfast_tls_certificate_expiry_seconds`;
//!   `AcmeMetrics` is `holdfast_acme_orders_total{result}`.
//! - `order.rs`: the account (created once per directory URL, kept in `state_dir`) and one
//!   order: authorizations, challenges published in the store and withdrawn however the
//!   order ends, polling, a CSR for a fresh key, the chain.
//! - `store.rs`: `CertStore` — what the certificate resolver and the `reserved` phase read:
//!   certificates by name (and the first set's as the default), `http-01` key
//!   authorizations by token, `tls-alpn-01` certificates by name; each table swapped whole.
//! - `cert.rs`: `Issued` (chain and key parsed, validity and names); the placeholder, the
//!   `tls-alpn-01` certificate (critical acmeIdentifier extension), a key and CSR (`rcgen`).
//! - `schedule.rs`: renewal at two thirds of the lifetime less a jitter (or a random point of
//!   the CA's renewal information window), back-off after failures, longer after
//!   `rateLimited`. Pure functions.
//! - `storage.rs`: `state_dir/acme/`: `account-<hash>.json` and `<name>-<hash>.pem` (chain
//!   then key in one file), written whole with mode 0600, read with
//!   `holdfast_artifact::read_bounded`.
//! - `http.rs`: instant-acme's `HttpClient` over hyper and tokio-rustls (ring), trusting
//!   `ca_file` or the system store; connect, handshake, exchange and answer size bounded.
//!
//! **Invariant:** a failed order never takes away a certificate that serves: `CertStore`
//! changes only when a new certificate was issued, parsed, checked against the set's names
//! and stored.
//!
//! **Invariant:** at most one order at a time per name set (one task per set).
//!
//! - `fleet.rs`: with `[fleet]`, one certificate per name set for the whole fleet: only the
//!   instance holding the fleet election orders; it stores the chain and key at
//!   `acme/certs/SET` and a pending order's challenges at `acme/challenges/SET` (under a
//!   lease), and every instance installs the certificate (same checks as from `state_dir`,
//!   then written there) and answers the challenges, acknowledging them at `acme/seen/ID`.
//!
//! **Invariant:** in a fleet, only the instance holding the election orders; a certificate
//! from etcd that fails a check never replaces one that serves (counted, logged).

#![forbid(unsafe_code)]

mod cert;
mod error;
mod fleet;
mod http;
mod manager;
mod order;
mod schedule;
mod storage;
mod store;

pub use cert::placeholder_pem;
pub use error::AcmeError;
pub use fleet::{AcmeFleet, ConnectFuture};
pub use manager::{AcmeManager, AcmeMetrics, SetStatus};
pub use store::{CertStore, ACME_TLS_ALPN, HTTP_CHALLENGE_PREFIX};

use holdfast_config::{AcmeCert, ConfigError};
use tokio_rustls::rustls::pki_types::CertificateDer;

/// The `notAfter` of a certificate (for the expiry metric of certificates from files too).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let secs = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// What `holdfast check`, a start and a reload verify of `[[edge.acme]]` beyond the
/// config's own checks: each `ca_file` is a readable PEM file of CA certificates.
pub fn check(sets: &[AcmeCert]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        if set.ca_file.is_some() {
            if let Err(e) = http::AcmeHttp::new(set.ca_file.as_deref()) {
                errors.push(ConfigError::new(
                    format!("edge.acme[{i}].ca_file"),
                    e.to_string(),
                    "give a PEM file of the CA certificates the ACME server's TLS certificate chains to",
                ));
            }
        }
    }
    errors
}
