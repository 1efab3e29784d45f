//! The primary cache key (RFC 9111 §4): the target URI as the route's `cache.key` shapes
//! it — host (lower-case) or not, path as sent, the query sorted, as sent or left out, with
//! listed parameters removed. Request headers in the key are secondary keys (`vary`).

use holdfast_config::{CacheKey, QueryKey};

/// The key of a request for `host` (no port, any case) and `path_and_query`.
pub fn primary(cfg: &CacheKey, host: &str, path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut key = String::with_capacity(host.len() + path_and_query.len());
    if cfg.host {
        key.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    }
    key.push_str(path);
    if cfg.query == QueryKey::Ignore || query.is_empty() {
        return key;
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
    key
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
}
