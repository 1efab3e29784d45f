//! The primary cache key (RFC 9111 §4): the target URI as the route's `cache.key` shapes
//! it — scheme and host (lower-case) always, the path as the edge normalised it, the query
//! sorted, as sent or left out, with listed parameters removed. Request headers in the key are secondary keys (`vary`).

use holdfast_config::{CacheKey, QueryKey};

/// The key of a request for `host` (no port, any case) and `path_and_query`, without the
/// scheme. The data path uses `of_request`.
pub fn primary(cfg: &CacheKey, host: &str, path_and_query: &str) -> String {
    let mut key = String::with_capacity(host.len() + path_and_query.len());
    append(&mut key, cfg, cfg.host, host, path_and_query);
    key
}

/// The key the data path stores and looks up under: `scheme://host/path?query`. Scheme and
/// host are always part of it, whatever `cfg.host` says: a key without the host lets one
/// site's response answer another's (Pingora's CVE-2026-2836), and one without the scheme
/// lets a response meant for `http` answer `https` (the config refuses `host = false`).
pub fn of_request(cfg: &CacheKey, https: bool, host: &str, path_and_query: &str) -> String {
    let scheme = scheme_prefix(https);
    let mut key = String::with_capacity(scheme.len() + host.len() + path_and_query.len());
    key.push_str(scheme);
    append(&mut key, cfg, true, host, path_and_query);
    key
}

/// `"https://"` or `"http://"`: how every key of `of_request` starts.
pub fn scheme_prefix(https: bool) -> &'static str {
    if https {
        "https://"
    } else {
        "http://"
    }
}

fn append(key: &mut String, cfg: &CacheKey, with_host: bool, host: &str, path_and_query: &str) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if with_host {
        key.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    }
    key.push_str(path);
    if cfg.query == QueryKey::Ignore || query.is_empty() {
        return;
    }
    let kept = |p: &&str| {
        let name = p.split_once('=').map_or(*p, |(n, _)| n);
        !p.is_empty() && !cfg.ignore_query.iter().any(|i| i == name)
    };
    let mut params: Vec<&str> = query.split('&').filter(kept).collect();
    if cfg.query == QueryKey::Sorted {
        params.sort_unstable();
    }
    for (i, p) in params.iter().enumerate() {
        key.push(if i == 0 { '?' } else { '&' });
        key.push_str(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(query: QueryKey) -> CacheKey {
        CacheKey {
            host: true,
            query,
            ignore_query: vec!["utm_source".into()],
            headers: vec![],
        }
    }

    #[test]
    fn sorted_queries_are_one_object() {
        let c = cfg(QueryKey::Sorted);
        assert_eq!(
            primary(&c, "Example.COM", "/a?b=1&a=2"),
            "example.com/a?a=2&b=1"
        );
        assert_eq!(
            primary(&c, "example.com", "/a?a=2&utm_source=x&b=1"),
            primary(&c, "example.com", "/a?b=1&a=2")
        );
        assert_eq!(primary(&c, "h", "/a?utm_source=x"), "h/a");
    }

    #[test]
    fn as_sent_and_ignore() {
        assert_eq!(
            primary(&cfg(QueryKey::AsSent), "h", "/a?b=1&a=2"),
            "h/a?b=1&a=2"
        );
        assert_eq!(primary(&cfg(QueryKey::Ignore), "h", "/a?b=1"), "h/a");
        let mut c = cfg(QueryKey::Sorted);
        c.host = false;
        assert_eq!(primary(&c, "h", "/a"), "/a");
    }

    #[test]
    fn request_keys_always_hold_scheme_and_host() {
        let mut c = cfg(QueryKey::Sorted);
        c.host = false;
        assert_eq!(
            of_request(&c, true, "Example.COM", "/a?b=1&a=2"),
            "https://example.com/a?a=2&b=1"
        );
        assert_ne!(
            of_request(&c, false, "a.example", "/x"),
            of_request(&c, true, "a.example", "/x")
        );
        assert_ne!(
            of_request(&c, false, "a.example", "/x"),
            of_request(&c, false, "b.example", "/x")
        );
    }
}
