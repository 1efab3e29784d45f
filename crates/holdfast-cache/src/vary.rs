//! Secondary keys (RFC 9111 §4.1): the request values of the fields a response varies on,
//! normalised so that equivalent requests match — lines combined, list members trimmed,
//! and case folded for fields whose values are case-insensitive (`Accept*`).

use http::header::{HeaderMap, HeaderName, VARY};

/// The normalised request values a stored response was selected by.
pub type Selected = Vec<(HeaderName, Option<Box<str>>)>;

/// What a new response to `req` is selected by: the fields of its `Vary` plus the route's
/// key headers.
pub fn select(resp: &HeaderMap, key_headers: &[HeaderName], req: &HeaderMap) -> Selected {
    let mut out: Selected = Vec::new();
    let named = resp
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok());
    for name in key_headers.iter().cloned().chain(named) {
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let value = normalise(&name, req);
        out.push((name, value));
    }
    out
}

/// Whether `req` carries the same normalised values.
pub fn matches(selected: &Selected, req: &HeaderMap) -> bool {
    selected
        .iter()
        .all(|(name, want)| normalise(name, req).as_deref() == want.as_deref())
}

/// The field's lines combined into one normalised value; `None` when absent.
pub fn normalise(name: &HeaderName, req: &HeaderMap) -> Option<Box<str>> {
    let mut lines = req.get_all(name).iter().peekable();
    lines.peek()?;
    let fold = name.as_str().starts_with("accept");
    let mut out = String::new();
    for line in lines {
        let text = String::from_utf8_lossy(line.as_bytes());
        for member in text.split(',') {
            let member = member.trim();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            // Whitespace around parameters (`gzip ;q=1`) carries no meaning either.
            for part in member.split(';') {
                if !out.is_empty() && !out.ends_with(',') {
                    out.push(';');
                }
                if fold {
                    out.push_str(&part.trim().to_ascii_lowercase());
                } else {
                    out.push_str(part.trim());
                }
            }
        }
    }
    Some(out.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn equivalent_requests_match() {
        let mut resp = HeaderMap::new();
        resp.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        let stored = select(&resp, &[], &req(&[("accept-encoding", "gzip, br")]));
        assert!(matches(&stored, &req(&[("accept-encoding", "GZIP,br")])));
        assert!(matches(
            &stored,
            &req(&[("accept-encoding", "gzip"), ("accept-encoding", " br")])
        ));
        assert!(!matches(&stored, &req(&[("accept-encoding", "br, gzip")])));
        assert!(!matches(&stored, &req(&[])));
    }

    #[test]
    fn absent_matches_absent_only() {
        let mut resp = HeaderMap::new();
        resp.insert(VARY, HeaderValue::from_static("x-lang"));
        let stored = select(&resp, &[], &req(&[]));
        assert!(matches(&stored, &req(&[])));
        assert!(!matches(&stored, &req(&[("x-lang", "")])));
    }

    #[test]
    fn key_headers_count_like_vary() {
        let key = [HeaderName::from_static("x-device")];
        let stored = select(&HeaderMap::new(), &key, &req(&[("x-device", "mobile")]));
        assert!(!matches(&stored, &req(&[("x-device", "desktop")])));
        assert!(matches(&stored, &req(&[("x-device", "mobile")])));
    }
}
