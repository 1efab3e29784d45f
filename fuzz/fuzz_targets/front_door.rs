//! The front door's strict checks on a request as hyper hands it over: raw HTTP/1.1 bytes
//! parsed with `httparse` (hyper's parser) into a `Request`, with hyper's `Content-Length`
//! checks, or the same read as an HTTP/2 request when the first byte is odd. Never a panic,
//! and what it lets through is unambiguous: exactly one valid `Host` (equal to the target's
//! host when both are given), no `_` header names, no `HTTP2-Settings`, no `Upgrade: h2c`,
//! at most one `Transfer-Encoding` that is exactly `chunked`, `Content-Length` without
//! leading zeros, a normal path (normalising again changes nothing), not `CONNECT`; and
//! passing it again changes nothing.
#![no_main]

use holdfast_proxy::fuzzing::{front_door, normalise_path, valid_host};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use libfuzzer_sys::fuzz_target;

fn request(raw: &[u8], h2: bool) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(raw).ok()?;
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri: Uri = parsed.path?.parse().ok()?;
    let version = match (h2, parsed.version?) {
        (true, _) => Version::HTTP_2,
        (false, 0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(())
        .ok()?;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        req.headers_mut().append(name, value);
    }
    // hyper refuses (400) a Content-Length that is not a u64 of digits, or copies that
    // differ, before any phase runs: so does this harness.
    let mut lengths = req
        .headers()
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .map(|v| {
            let b = v.as_bytes();
            (!b.is_empty() && b.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
                .flatten()
        });
    if let Some(first) = lengths.next() {
        let first = first?;
        if !lengths.all(|n| n == Some(first)) {
            return None;
        }
    }
    Some(req)
}

fuzz_target!(|data: &[u8]| {
    let [sel, raw @ ..] = data else { return };
    let Some(mut req) = request(raw, sel & 1 == 1) else {
        return;
    };
    let target_host = req.uri().authority().map(|a| a.as_str().to_string());
    let Ok((host, path)) = front_door(&mut req) else {
        return;
    };

    let h = req.headers();
    assert_ne!(req.method(), Method::CONNECT);
    let hosts: Vec<&HeaderValue> = h.get_all(header::HOST).iter().collect();
    assert_eq!(hosts.len(), 1, "exactly one Host: {h:?}");
    assert!(valid_host(hosts[0].as_bytes()), "{:?}", hosts[0]);
    if let Some(t) = &target_host {
        assert!(valid_host(t.as_bytes()));
    }
    assert!(h.keys().all(|n| !n.as_str().contains('_')), "{h:?}");
    assert!(!h.contains_key("http2-settings"));
    for u in h.get_all(header::UPGRADE) {
        let u = u.to_str().expect("an h2c check reads the value");
        assert!(!u.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")));
    }
    let te: Vec<&HeaderValue> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    assert!(te.len() <= 1);
    if let Some(te) = te.first() {
        assert!(te
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked")));
    }
    if let Some(cl) = h.get(header::CONTENT_LENGTH) {
        let b = cl.as_bytes();
        if b.iter().all(u8::is_ascii_digit) && !b.is_empty() {
            assert!(b == b"0" || b[0] != b'0', "{cl:?}");
        }
    }
    if let Some(pq) = req.uri().path_and_query() {
        assert_eq!(normalise_path(pq), Ok(None), "{pq}");
        assert_eq!(pq, &path);
    }
    assert!(host.is_some());

    // Passing it again changes nothing.
    let before = (req.uri().clone(), req.headers().clone());
    let again = front_door(&mut req);
    assert!(again.is_ok(), "{again:?}");
    assert_eq!((req.uri().clone(), req.headers().clone()), before);
});
