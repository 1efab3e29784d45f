//! `[[edge.acme]]`: certificates the edge orders from an ACME server. Each table names a set
//! of DNS names (no wildcards: those need DNS-01, which the edge does not answer), each name
//! on one table only and on no `[[edge.tls]]`; the challenge needs a listener of its kind, and
//! the account key and certificates need `edge.state_dir`. Each table is also a TLS site: the
//! client-certificate and policy keys of `[[edge.tls]]` apply to its names.

use super::Errors;
use crate::config::{AcmeCert, AcmeChallenge, LETS_ENCRYPT_DIRECTORY};
use crate::spec::EdgeSpec;
use std::collections::HashMap;
use std::path::Path;

pub(super) fn acme(spec: &EdgeSpec, base_dir: &Path, errs: &mut Errors) -> Vec<AcmeCert> {
    if spec.acme.is_empty() {
        return Vec::new();
    }
    if spec.state_dir.is_none() {
        errs.add(
            "edge.acme",
            "ACME needs a folder for its account key and certificates, and edge.state_dir is not set",
            "set state_dir = \"/var/lib/holdfast\" (any folder Holdfast may write) in [edge]",
        );
    }
    if spec.tls_listen.is_empty() {
        errs.add(
            "edge.acme",
            "certificates are ordered but there is no TLS listener to serve them",
            "add tls_listen = [\"0.0.0.0:443\"] to [edge]",
        );
    }
    let manual = manual_names(spec);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, a) in spec.acme.iter().enumerate() {
        let at = format!("edge.acme[{i}]");
        let domains = domains(&at, i, &a.domains, &manual, &mut seen, errs);
        let challenge = challenge(&at, a.challenge.as_deref(), spec, errs);
        let contact = a.contact.as_deref().and_then(|c| contact(&at, c, errs));
        let directory = a
            .directory
            .as_deref()
            .map_or(Some(LETS_ENCRYPT_DIRECTORY.to_string()), |d| {
                directory(&at, d, errs)
            });
        let ca_file = a.ca_file.as_deref().and_then(|f| {
            if f.is_empty() {
                errs.add(
                    format!("{at}.ca_file"),
                    "empty path",
                    "name a PEM file of the CA certificates the ACME server's TLS chains to, or leave it out to trust the system's",
                );
                return None;
            }
            Some(base_dir.join(f))
        });
        let client_auth = super::tls::client_auth(&at, &a.site_keys(), base_dir, errs);
        let policy = super::tls::policy(&at, &a.site_keys(), errs);
        if let (Some(challenge), Some(directory)) = (challenge, directory) {
            out.push(AcmeCert {
                domains,
                contact,
                directory,
                challenge,
                ca_file,
                client_auth,
                policy,
            });
        }
    }
    out
}

/// Every name an `[[edge.tls]]` table serves, lower-cased, with its table's index.
fn manual_names(spec: &EdgeSpec) -> HashMap<String, usize> {
    let mut names = HashMap::new();
    for (i, t) in spec.tls.iter().enumerate() {
        for n in &t.names {
            names.entry(n.to_ascii_lowercase()).or_insert(i);
        }
    }
    names
}

fn domains(
    at: &str,
    index: usize,
    list: &[String],
    manual: &HashMap<String, usize>,
    seen: &mut HashMap<String, usize>,
    errs: &mut Errors,
) -> Vec<String> {
    if list.is_empty() {
        errs.add(
            format!("{at}.domains"),
            "no domain listed",
            "list the names the certificate is for, e.g. domains = [\"example.com\", \"www.example.com\"]",
        );
    }
    let mut out = Vec::new();
    for (j, d) in list.iter().enumerate() {
        let path = format!("{at}.domains[{j}]");
        let name = d.to_ascii_lowercase();
        if name.starts_with("*.") {
            errs.add(
                path,
                format!("{d:?} is a wildcard; a wildcard certificate needs the dns-01 challenge, which the edge does not answer"),
                "list each name (\"www.example.com\"), or use an [[edge.tls]] table with a wildcard certificate you obtain yourself",
            );
            continue;
        }
        if !is_dns_name(&name) {
            errs.add(
                path,
                format!("invalid domain {d:?}"),
                "write a DNS name such as \"example.com\" (no port, no scheme, no IP address)",
            );
            continue;
        }
        if let Some(t) = manual.get(&name) {
            errs.add(
                path,
                format!("{name:?} is also served by edge.tls[{t}]"),
                "serve a name either from a certificate file ([[edge.tls]]) or from ACME, not both: remove it from one",
            );
            continue;
        }
        match seen.get(&name) {
            Some(&first) if first == index => errs.add(
                path,
                format!("{name:?} is listed twice"),
                "list each name once",
            ),
            Some(&first) => errs.add(
                path,
                format!("{name:?} is also in edge.acme[{first}]"),
                "each name may be in one [[edge.acme]] table only",
            ),
            None => {
                seen.insert(name.clone(), index);
                out.push(name);
            }
        }
    }
    out
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn challenge(
    at: &str,
    text: Option<&str>,
    spec: &EdgeSpec,
    errs: &mut Errors,
) -> Option<AcmeChallenge> {
    let path = format!("{at}.challenge");
    let challenge = match text {
        None | Some("http-01") => AcmeChallenge::Http01,
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some(other) => {
            errs.add(
                path,
                format!("unknown challenge {other:?}"),
                "use \"http-01\" (answered on the plain listeners) or \"tls-alpn-01\" (answered on the TLS listeners)",
            );
            return None;
        }
    };
    if challenge == AcmeChallenge::Http01 && spec.listen.is_empty() {
        errs.add(
            path,
            "http-01 is answered on a plain listener, and edge.listen is empty",
            "add listen = [\"0.0.0.0:80\"] to [edge], or use challenge = \"tls-alpn-01\"",
        );
    }
    Some(challenge)
}

fn contact(at: &str, text: &str, errs: &mut Errors) -> Option<String> {
    let address = text.strip_prefix("mailto:").unwrap_or("");
    if address.contains('@') && !address.contains(char::is_whitespace) {
        return Some(text.to_string());
    }
    errs.add(
        format!("{at}.contact"),
        format!("{text:?} is not a mailto: address"),
        "write contact = \"mailto:ops@example.com\", or leave it out",
    );
    None
}

fn directory(at: &str, text: &str, errs: &mut Errors) -> Option<String> {
    let valid = text
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
    if valid {
        return Some(text.to_string());
    }
    errs.add(
        format!("{at}.directory"),
        format!("{text:?} is not an https:// URL"),
        "give the ACME server's directory URL, e.g. \"https://acme-staging-v02.api.letsencrypt.org/directory\", or leave it out for Let's Encrypt",
    );
    None
}

#[cfg(test)]
mod tests {
    use crate::ConfigError;
    use std::path::Path;

    fn errors(edge_extra: &str) -> Vec<ConfigError> {
        let text = format!(
            "[edge]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\nstate_dir = \"state\"\n{edge_extra}\n[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n"
        );
        match crate::parse(&text, Path::new("/etc/holdfast")) {
            Ok(_) => Vec::new(),
            Err(e) => e,
        }
    }

    fn parsed(edge_extra: &str) -> crate::Config {
        let text = format!(
            "[edge]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\nstate_dir = \"state\"\n{edge_extra}\n[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nname = \"r\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n"
        );
        match crate::parse(&text, Path::new("/etc/holdfast")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e:?}"),
        }
    }

    #[test]
    fn a_table_with_domains_alone_needs_no_certificate_file_and_takes_the_defaults() {
        let config = parsed("[[edge.acme]]\ndomains = [\"Example.com\", \"www.example.com\"]\n");
        let a = &config.edge.acme[0];
        assert_eq!(a.domains, ["example.com", "www.example.com"]);
        assert_eq!(a.directory, crate::LETS_ENCRYPT_DIRECTORY);
        assert_eq!(a.challenge, crate::AcmeChallenge::Http01);
        assert_eq!(a.contact, None);
        assert!(config.edge.tls.is_empty());
    }

    #[test]
    fn every_field_is_read() {
        let config = parsed(
            "[[edge.acme]]\ndomains = [\"a.test\"]\ncontact = \"mailto:ops@a.test\"\ndirectory = \"https://localhost:14000/dir\"\nchallenge = \"tls-alpn-01\"\nca_file = \"pebble.pem\"\n",
        );
        let a = &config.edge.acme[0];
        assert_eq!(a.contact.as_deref(), Some("mailto:ops@a.test"));
        assert_eq!(a.directory, "https://localhost:14000/dir");
        assert_eq!(a.challenge, crate::AcmeChallenge::TlsAlpn01);
        assert_eq!(
            a.ca_file.as_deref(),
            Some(Path::new("/etc/holdfast/pebble.pem"))
        );
    }

    #[test]
    fn a_table_takes_the_site_keys_of_edge_tls() {
        let config = parsed(
            "[[edge.acme]]\ndomains = [\"a.test\"]\nclient_auth = \"optional\"\nclient_ca = \"clients.pem\"\nmin_version = \"1.3\"\ncipher_suites = [\"TLS13_AES_256_GCM_SHA384\"]\nkx_groups = [\"X25519\"]\n",
        );
        let a = &config.edge.acme[0];
        assert_eq!(
            a.client_auth,
            Some(crate::ClientAuth {
                required: false,
                ca: "/etc/holdfast/clients.pem".into(),
            })
        );
        assert_eq!(a.policy.min_version, crate::TlsVersion::Tls13);
        assert_eq!(a.policy.cipher_suites, ["TLS13_AES_256_GCM_SHA384"]);
        assert_eq!(a.policy.kx_groups, ["X25519"]);
        let plain = parsed("[[edge.acme]]\ndomains = [\"a.test\"]\n");
        assert_eq!(plain.edge.acme[0].client_auth, None);
        assert_eq!(plain.edge.acme[0].policy, crate::TlsPolicy::default());
        // A change of the site keys alone is the same order.
        assert!(a.same_order(&plain.edge.acme[0]));
        let other = parsed("[[edge.acme]]\ndomains = [\"a.test\"]\nchallenge = \"tls-alpn-01\"\n");
        assert!(!other.edge.acme[0].same_order(&plain.edge.acme[0]));
    }

    #[test]
    fn bad_site_keys_are_reported_under_the_acme_table() {
        let errs = errors(
            "client_cert_header = \"X-Client\"\n[[edge.acme]]\ndomains = [\"a.test\"]\nclient_auth = \"always\"\nmin_version = \"1.1\"\nkx_groups = []\n[[edge.acme]]\ndomains = [\"b.test\"]\nclient_ca = \"c.pem\"\n",
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "edge.acme[0].client_auth",
                "edge.acme[0].min_version",
                "edge.acme[0].kx_groups",
                "edge.acme[1].client_ca",
            ],
            "{errs:#?}"
        );
        assert!(errs.iter().all(|e| !e.hint.is_empty()), "{errs:#?}");
    }

    #[test]
    fn bad_tables_are_reported_with_their_field_and_a_fix() {
        let errs = errors(
            "[[edge.acme]]\ndomains = [\"*.a.test\", \"a.test\", \"a.test\", \"x y\"]\ncontact = \"ops@a.test\"\ndirectory = \"http://ca.test/dir\"\nchallenge = \"dns-01\"\n[[edge.acme]]\ndomains = []\n[[edge.acme]]\ndomains = [\"a.test\", \"m.test\"]\n[[edge.tls]]\nnames = [\"m.test\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "edge.acme[0].domains[0]",
                "edge.acme[0].domains[2]",
                "edge.acme[0].domains[3]",
                "edge.acme[0].challenge",
                "edge.acme[0].contact",
                "edge.acme[0].directory",
                "edge.acme[1].domains",
                "edge.acme[2].domains[0]",
                "edge.acme[2].domains[1]",
            ],
            "{errs:#?}"
        );
        assert!(errs.iter().all(|e| !e.hint.is_empty()), "{errs:#?}");
        assert!(errs[0].message.contains("dns-01"), "{errs:#?}");
        assert!(errs[8].message.contains("edge.tls[0]"), "{errs:#?}");
    }

    #[test]
    fn acme_needs_a_state_dir_and_the_listener_its_challenge_uses() {
        let text = "[edge]\nlisten = []\ntls_listen = [\"127.0.0.1:8443\"]\n[[edge.acme]]\ndomains = [\"a.test\"]\n[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\npool = \"p\"\n";
        let errs = crate::parse(text, Path::new(".")).err().unwrap_or_default();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["edge.acme", "edge.acme[0].challenge"], "{errs:#?}");
        assert!(errs[0].hint.contains("state_dir"));
        assert!(errs[1].hint.contains("tls-alpn-01"));
    }
}
