//! A listener's TLS policy (`min_version`, `cipher_suites`, `kx_groups` of an `[[edge.tls]]`
//! table) as a rustls crypto provider and protocol versions. Names are checked against the
//! *ring* provider's own lists, so an unknown or misspelt name is a config error that names
//! the field and lists the valid values; empty lists keep rustls's defaults.

use holdfast_config::{ConfigError, TlsPolicy, TlsVersion};
use std::sync::Arc;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider, SupportedKxGroup};
use tokio_rustls::rustls::{self, SupportedCipherSuite, SupportedProtocolVersion};

static TLS12_UP: [&SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

/// The protocol versions from `min_version` up.
pub(crate) fn versions(policy: &TlsPolicy) -> &'static [&'static SupportedProtocolVersion] {
    match policy.min_version {
        TlsVersion::Tls12 => &TLS12_UP,
        TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

/// The *ring* provider restricted to the policy's suites and groups (`at`: the table's key
/// path, for errors).
pub(crate) fn provider(policy: &TlsPolicy, at: &str) -> Result<Arc<CryptoProvider>, ConfigError> {
    let mut provider = ring::default_provider();
    if !policy.cipher_suites.is_empty() {
        provider.cipher_suites = pick(
            &policy.cipher_suites,
            ring::ALL_CIPHER_SUITES,
            suite_name,
            &format!("{at}.cipher_suites"),
        )?;
    }
    if !policy.kx_groups.is_empty() {
        provider.kx_groups = pick(
            &policy.kx_groups,
            ring::ALL_KX_GROUPS,
            group_name,
            &format!("{at}.kx_groups"),
        )?;
    }
    if policy.min_version == TlsVersion::Tls13
        && !provider
            .cipher_suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
    {
        return Err(ConfigError::new(
            format!("{at}.cipher_suites"),
            "min_version is \"1.3\" but no TLS 1.3 cipher suite is listed",
            format!(
                "add one of {}",
                valid(ring::ALL_CIPHER_SUITES, suite_name, true)
            ),
        ));
    }
    Ok(Arc::new(provider))
}

fn suite_name(s: &SupportedCipherSuite) -> &'static str {
    s.suite().as_str().unwrap_or("unknown")
}

fn group_name(g: &&'static dyn SupportedKxGroup) -> &'static str {
    g.name().as_str().unwrap_or("unknown")
}

/// The entries of `all` named in `names` (any case), in the order given.
fn pick<T: Copy>(
    names: &[String],
    all: &[T],
    name: fn(&T) -> &'static str,
    at: &str,
) -> Result<Vec<T>, ConfigError> {
    let mut out = Vec::with_capacity(names.len());
    for (i, wanted) in names.iter().enumerate() {
        match all.iter().find(|x| name(x).eq_ignore_ascii_case(wanted)) {
            Some(x) => out.push(*x),
            None => {
                return Err(ConfigError::new(
                    format!("{at}[{i}]"),
                    format!("unknown name {wanted:?}"),
                    format!("use one of {}", valid(all, name, false)),
                ))
            }
        }
    }
    Ok(out)
}

/// The names of `all`, quoted and comma-separated (`tls13_only`: TLS 1.3 suites only).
fn valid<T>(all: &[T], name: fn(&T) -> &'static str, tls13_only: bool) -> String {
    all.iter()
        .map(name)
        .filter(|n| !tls13_only || n.starts_with("TLS13_"))
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: TlsVersion, suites: &[&str], groups: &[&str]) -> TlsPolicy {
        TlsPolicy {
            min_version: min,
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
            kx_groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn empty_lists_keep_the_providers_defaults() {
        let p = provider(&TlsPolicy::default(), "edge.tls[0]").unwrap();
        let d = ring::default_provider();
        assert_eq!(p.cipher_suites, d.cipher_suites);
        assert_eq!(p.kx_groups.len(), d.kx_groups.len());
        assert_eq!(versions(&TlsPolicy::default()).len(), 2);
    }

    #[test]
    fn names_pick_suites_and_groups_in_the_order_given_in_any_case() {
        let p = provider(
            &policy(
                TlsVersion::Tls12,
                &[
                    "tls13_chacha20_poly1305_sha256",
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                ],
                &["secp384r1", "x25519"],
            ),
            "edge.tls[0]",
        )
        .unwrap();
        let suites: Vec<_> = p.cipher_suites.iter().map(suite_name).collect();
        assert_eq!(
            suites,
            [
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        let groups: Vec<_> = p.kx_groups.iter().map(group_name).collect();
        assert_eq!(groups, ["secp384r1", "X25519"]);
    }

    #[test]
    fn an_unknown_name_names_the_field_and_the_valid_values() {
        let e = provider(
            &policy(
                TlsVersion::Tls12,
                &["TLS13_AES_128_GCM_SHA256", "RC4-MD5"],
                &[],
            ),
            "edge.tls[2]",
        )
        .unwrap_err();
        assert_eq!(e.path, "edge.tls[2].cipher_suites[1]");
        assert!(e.message.contains("\"RC4-MD5\""), "{e:?}");
        assert!(e.hint.contains("\"TLS13_AES_256_GCM_SHA384\""), "{e:?}");
        assert!(
            e.hint.contains("\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\""),
            "{e:?}"
        );

        let e = provider(&policy(TlsVersion::Tls12, &[], &["X448"]), "edge.tls[0]").unwrap_err();
        assert_eq!(e.path, "edge.tls[0].kx_groups[0]");
        assert!(
            e.hint.contains("\"X25519\", \"secp256r1\", \"secp384r1\""),
            "{e:?}"
        );
    }

    #[test]
    fn tls_1_3_only_needs_a_tls_1_3_suite() {
        let e = provider(
            &policy(
                TlsVersion::Tls13,
                &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
                &[],
            ),
            "edge.tls[0]",
        )
        .unwrap_err();
        assert_eq!(e.path, "edge.tls[0].cipher_suites");
        assert!(e.hint.contains("TLS13_AES_128_GCM_SHA256"), "{e:?}");
        assert!(!e.hint.contains("ECDHE"), "{e:?}");
        assert_eq!(versions(&policy(TlsVersion::Tls13, &[], &[])).len(), 1);
    }
}
