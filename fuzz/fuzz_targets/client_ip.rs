//! `X-Forwarded-For` and RFC 7239 `Forwarded` behind trusted proxies. Never a panic, and the
//! contract: from an untrusted peer (or with no trusted proxies) the peer is the client,
//! whatever the headers say; behind a trusted peer, the answer is the peer or an address the
//! headers name; and a trusted proxy's entry appended last (the nearest hop) naming an
//! untrusted address decides, whatever a client wrote before it.
#![no_main]

use holdfast_config::ClientIpHeader;
use holdfast_proxy::fuzzing::client_ip;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let [sel, a, b, rest @ ..] = data else { return };
    let which = if sel & 1 == 0 {
        ClientIpHeader::XForwardedFor
    } else {
        ClientIpHeader::Forwarded
    };
    let name = match which {
        ClientIpHeader::XForwardedFor => "x-forwarded-for",
        ClientIpHeader::Forwarded => "forwarded",
    };
    let trusted: Vec<IpNet> = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let trusted_peer: IpAddr = IpAddr::from([10, *a, *b, 1]);
    let untrusted_peer: IpAddr = IpAddr::from([203, 0, *a, *b]);
    let mut headers = HeaderMap::new();
    for line in rest.split(|&c| c == b'\n').take(8) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(name, v);
        }
    }
    let text = String::from_utf8_lossy(rest).to_ascii_lowercase();

    assert_eq!(
        client_ip(&trusted, which, untrusted_peer, &headers),
        untrusted_peer
    );
    assert_eq!(client_ip(&[], which, trusted_peer, &headers), trusted_peer);

    let got = client_ip(&trusted, which, trusted_peer, &headers);
    if got != trusted_peer {
        assert!(named(&text, got), "{got} is not in {text:?}");
    }

    // The nearest hop names an untrusted client: that client wins.
    let client = IpAddr::from([198, 51, *a, *b]);
    let entry = match which {
        ClientIpHeader::XForwardedFor => client.to_string(),
        ClientIpHeader::Forwarded => format!("for={client}"),
    };
    let mut appended = headers.clone();
    appended.append(name, HeaderValue::from_str(&entry).unwrap());
    assert_eq!(client_ip(&trusted, which, trusted_peer, &appended), client);
});

/// Whether `text` spells `ip` somewhere, bare, bracketed or with a port.
fn named(text: &str, ip: IpAddr) -> bool {
    text.split(|c: char| !(c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '[' | ']')))
        .any(|t| {
            let inner = t
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .map(|(a, _)| a);
            let no_port = t.rsplit_once(':').map(|(a, _)| a);
            [Some(t), inner, no_port]
                .into_iter()
                .flatten()
                .any(|c| c.parse::<IpAddr>().ok() == Some(ip))
        })
}
