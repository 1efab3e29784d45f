//! Cache-Control directives (RFC 9111 §5.2), parsed from every field line without
//! allocating. Unknown directives are ignored; a directive with a value that does not parse
//! as a number is treated as the RFC says for each (e.g. an invalid `max-age` is stale).

use http::header::{HeaderMap, HeaderName, CACHE_CONTROL};

/// Directives of a response, as a shared cache reads them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// A directive's value was invalid: the response is treated as stale (§4.2.1).
    pub invalid_age: bool,
}

/// Directives of a request (§5.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestDirectives {
    pub max_age: Option<u64>,
    /// `max-stale` with no value accepts any staleness.
    pub max_stale: Option<u64>,
    pub min_fresh: Option<u64>,
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
}

/// Calls `f(name, value)` for every directive of every line of `name` in `headers`; names
/// are as sent (compare case-insensitively), values without quotes.
pub fn each_directive<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) {
    for line in headers.get_all(name) {
        let Ok(line) = line.to_str() else { continue };
        for item in split_items(line) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match item.split_once('=') {
                Some((n, v)) => f(n.trim(), Some(unquote(v.trim()))),
                None => f(item, None),
            }
        }
    }
}

/// Splits at commas outside quoted strings.
fn split_items(line: &str) -> Items<'_> {
    Items { rest: Some(line) }
}

struct Items<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let line = self.rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, b) in line.bytes().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    self.rest = line.get(i + 1..);
                    return line.get(..i);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(line)
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// A delta-seconds value (§1.2.2): digits only; too large saturates.
pub fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::MAX))
}

impl ResponseDirectives {
    /// Reads the directives from `field` (Cache-Control or a targeted field).
    pub fn parse(headers: &HeaderMap, field: &HeaderName) -> Self {
        let mut d = ResponseDirectives::default();
        each_directive(headers, field, |name, value| {
            let seconds = || value.and_then(delta_seconds);
            let n = name;
            if n.eq_ignore_ascii_case("max-age") {
                // §4.2.1: with several, the first occurrence counts.
                match seconds() {
                    Some(s) => d.max_age = d.max_age.or(Some(s)),
                    None => d.invalid_age = true,
                }
            } else if n.eq_ignore_ascii_case("s-maxage") {
                match seconds() {
                    Some(s) => d.s_maxage = d.s_maxage.or(Some(s)),
                    None => d.invalid_age = true,
                }
            } else if n.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
            } else if n.eq_ignore_ascii_case("no-cache") {
                // The qualified form (`no-cache="Set-Cookie"`) is treated as unqualified,
                // which §5.2.2.4 allows.
                d.no_cache = true;
            } else if n.eq_ignore_ascii_case("private") {
                // Qualified too: a shared cache does not store it (§5.2.2.7 allows this).
                d.private = true;
            } else if n.eq_ignore_ascii_case("public") {
                d.public = true;
            } else if n.eq_ignore_ascii_case("must-revalidate") {
                d.must_revalidate = true;
            } else if n.eq_ignore_ascii_case("proxy-revalidate") {
                d.proxy_revalidate = true;
            } else if n.eq_ignore_ascii_case("must-understand") {
                d.must_understand = true;
            } else if n.eq_ignore_ascii_case("stale-while-revalidate") {
                d.stale_while_revalidate = seconds();
            } else if n.eq_ignore_ascii_case("stale-if-error") {
                d.stale_if_error = seconds();
            }
        });
        d
    }

    /// Whether any directive was present at all (a targeted field with none is ignored).
    pub fn present(headers: &HeaderMap, field: &HeaderName) -> bool {
        let mut any = false;
        each_directive(headers, field, |_, _| any = true);
        any
    }
}

impl RequestDirectives {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = RequestDirectives::default();
        each_directive(headers, &CACHE_CONTROL, |n, value| {
            let seconds = || value.and_then(delta_seconds);
            if n.eq_ignore_ascii_case("max-age") {
                // An invalid value is ignored (§5.2.1.1 gives no rule; ignoring is safest
                // for the origin... and for the client, who still gets a valid response).
                if let Some(s) = seconds() {
                    d.max_age = Some(s);
                }
            } else if n.eq_ignore_ascii_case("max-stale") {
                d.max_stale = Some(match value {
                    None => u64::MAX,
                    Some(_) => seconds().unwrap_or(0),
                });
            } else if n.eq_ignore_ascii_case("min-fresh") {
                if let Some(s) = seconds() {
                    d.min_fresh = Some(s);
                }
            } else if n.eq_ignore_ascii_case("no-cache") {
                d.no_cache = true;
            } else if n.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
            } else if n.eq_ignore_ascii_case("only-if-cached") {
                d.only_if_cached = true;
            }
        });
        // §5.4: `Pragma: no-cache` counts only when the request has no Cache-Control.
        if !headers.contains_key(CACHE_CONTROL) {
            let pragma = headers
                .get_all(http::header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("no-cache"))
                });
            d.no_cache |= pragma;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn parses_response_directives_across_lines() {
        let h = headers(&["public, Max-Age=60", "s-maxage=\"30\", must-revalidate"]);
        let d = ResponseDirectives::parse(&h, &CACHE_CONTROL);
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(30));
        assert!(d.public && d.must_revalidate && !d.private);
    }

    #[test]
    fn the_first_of_duplicate_directives_counts() {
        let d = ResponseDirectives::parse(&headers(&["max-age=60", "max-age=5"]), &CACHE_CONTROL);
        assert_eq!(d.max_age, Some(60));
    }

    #[test]
    fn quoted_commas_do_not_split() {
        let h = headers(&["private=\"a, b\", max-age=5"]);
        let d = ResponseDirectives::parse(&h, &CACHE_CONTROL);
        assert!(d.private);
        assert_eq!(d.max_age, Some(5));
    }

    #[test]
    fn invalid_max_age_is_stale() {
        let d = ResponseDirectives::parse(&headers(&["max-age=abc"]), &CACHE_CONTROL);
        assert!(d.invalid_age);
        assert_eq!(d.max_age, None);
    }

    #[test]
    fn request_max_stale_without_value_is_unbounded() {
        let d = RequestDirectives::parse(&headers(&["max-stale, min-fresh=3, only-if-cached"]));
        assert_eq!(d.max_stale, Some(u64::MAX));
        assert_eq!(d.min_fresh, Some(3));
        assert!(d.only_if_cached);
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(RequestDirectives::parse(&h).no_cache);
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!RequestDirectives::parse(&h).no_cache);
    }

    #[test]
    fn huge_delta_saturates() {
        assert_eq!(delta_seconds("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(delta_seconds("-1"), None);
    }
}
