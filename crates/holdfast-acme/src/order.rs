//! One order, start to end (RFC 8555 §7.4): the account (created once per directory and
//! kept in `state_dir`), a new order for the set's names, each authorization's challenge
//! published in the `CertStore` and announced, the order polled until ready, a CSR for a
//! fresh key, the chain fetched. The challenges are withdrawn however it ends. In a fleet
//! they are also published in etcd (`fleet::Pending`) before the CA is told to validate.

use crate::cert::{self, Issued};
use crate::fleet::Pending;
use crate::http::AcmeHttp;
use crate::storage::Storage;
use crate::store::CertStore;
use crate::AcmeError;
use holdfast_config::{AcmeCert, AcmeChallenge};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::sync::Arc;
use std::time::Duration;

/// How long the CA may take to validate and to issue (pebble: seconds; Let's Encrypt: under
/// a minute).
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// The account for `set.directory`: the stored one, or a new one (then stored).
pub(crate) async fn account(set: &AcmeCert, storage: &Storage) -> Result<Account, AcmeError> {
    let http = || -> Result<Box<AcmeHttp>, AcmeError> {
        Ok(Box::new(AcmeHttp::new(set.ca_file.as_deref())?))
    };
    let path = storage.account_path(&set.directory);
    if let Some(bytes) = storage.read(&path)? {
        let creds: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| AcmeError::File {
                path: path.clone(),
                what: format!(
                    "not an ACME account file: {e} (move it away: a new account is made)"
                ),
            })?;
        return Ok(Account::builder_with_http(http()?)
            .from_credentials(creds)
            .await?);
    }
    let contact: Vec<&str> = set.contact.iter().map(String::as_str).collect();
    let (account, creds) = Account::builder_with_http(http()?)
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            set.directory.clone(),
            None,
        )
        .await?;
    let json = serde_json::to_vec(&creds).map_err(|e| AcmeError::Certificate(e.to_string()))?;
    storage.write_private(&path, &json)?;
    tracing::info!(directory = %set.directory, id = account.id(), "ACME account created");
    Ok(account)
}

/// Withdraws what an order published, however the order ends.
struct Published<'a> {
    store: &'a CertStore,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.store.remove_http(t);
        }
        for n in &self.names {
            self.store.remove_alpn(n);
        }
    }
}

/// Order a certificate for `set` and return it with its PEM (chain, then key).
pub(crate) async fn issue(
    account: &Account,
    set: &AcmeCert,
    store: &CertStore,
    mut fleet: Option<&mut Pending>,
) -> Result<(Issued, String), AcmeError> {
    let names = set.domains.join(",");
    let failed = |what: String| AcmeError::Order {
        names: names.clone(),
        what,
    };
    let identifiers: Vec<Identifier> = set.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut published = Published {
        store,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let kind = match set.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(failed(format!("authorization is {other:?}"))),
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
            failed(format!(
                "the CA offers no {} challenge for {name}",
                set.challenge.as_str()
            ))
        })?;
        let key_auth = challenge.key_authorization();
        match set.challenge {
            AcmeChallenge::Http01 => {
                store.put_http(&challenge.token, key_auth.as_str());
                published.tokens.push(challenge.token.clone());
                if let Some(p) = fleet.as_deref_mut() {
                    p.add_http(&challenge.token, key_auth.as_str());
                }
            }
            AcmeChallenge::TlsAlpn01 => {
                let answer = cert::alpn_challenge(&name, key_auth.digest().as_ref())?;
                store.put_alpn(&name, Arc::new(answer));
                published.names.push(name.clone());
                if let Some(p) = fleet.as_deref_mut() {
                    p.add_alpn(&name, key_auth.as_str());
                }
            }
        }
        // In a fleet, the CA may ask any instance: every one must hold the answer first.
        if let Some(p) = fleet.as_deref() {
            p.publish().await?;
        }
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&POLL).await?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .map_or_else(|| format!("order is {status:?}"), ToString::to_string);
        return Err(failed(why));
    }
    drop(published);
    let (key, csr) = cert::key_and_csr(&set.domains)?;
    order.finalize_csr(&csr).await?;
    let chain = order.poll_certificate(&POLL).await?;
    let pem = format!("{}\n{}", chain.trim_end(), key.serialize_pem());
    let issued = Issued::from_pem(pem.as_bytes())?;
    if !issued.covers(&set.domains) {
        return Err(failed(format!(
            "the CA's certificate names {:?}, not every configured domain",
            issued.names
        )));
    }
    Ok((issued, pem))
}
