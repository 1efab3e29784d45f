//! Purge targets read the way the cache key is built: a URL in any form a client would send
//! (`https://Example.COM:443/a/../b?y=2&x=1`, `example.com/b?x=1&y=2`, `//example.com/b`)
//! becomes the keys `holdfast_cache::key::of_request` would give the same request on a route:
//! scheme (both, when the URL names none), lower-case host without port, the path normalised
//! by `phases::path`, the query shaped by the route's `cache.key`, the fragment dropped.

use crate::phases::path;
use holdfast_cache::{key, Purge};
use holdfast_config::CacheKey;

/// `what` as the route with key settings `cfg` stores it: exact URLs become their keys,
/// prefixes gain the scheme(s). `None` for a URL with no host.
pub(crate) fn for_route(cfg: &CacheKey, what: &Purge) -> Option<Vec<Purge>> {
    match what {
        Purge::Exact(url) => {
            let (schemes, host, rest) = split(url)?;
            let pq = normal_path(rest)?;
            Some(
                schemes
                    .iter()
                    .map(|&https| Purge::Exact(key::of_request(cfg, https, host, &pq)))
                    .collect(),
            )
        }
        Purge::Prefix(prefix) => {
            let (schemes, host, rest) = split(prefix)?;
            let host = host.to_ascii_lowercase();
            Some(
                schemes
                    .iter()
                    .map(|&https| {
                        Purge::Prefix(format!("{}{host}{rest}", key::scheme_prefix(https)))
                    })
                    .collect(),
            )
        }
        Purge::Tag(_) | Purge::All => Some(vec![what.clone()]),
    }
}

/// `[scheme://]host[:port]rest` → the schemes it names (both when none), the host without
/// its port, and the rest (path and query; `/` when empty).
fn split(url: &str) -> Option<(&'static [bool], &str, &str)> {
    let url = url.trim();
    let (schemes, rest): (&'static [bool], &str) = if let Some(r) = strip_ci(url, "https://") {
        (&[true], r)
    } else if let Some(r) = strip_ci(url, "http://") {
        (&[false], r)
    } else {
        (&[false, true], url.strip_prefix("//").unwrap_or(url))
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h)?,
        None => authority.split(':').next()?,
    };
    if host.is_empty() {
        return None;
    }
    Some((schemes, host, rest))
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// The path as the edge forwards it (the fragment dropped, `/` when empty).
fn normal_path(rest: &str) -> Option<String> {
    let rest = rest.split('#').next().unwrap_or("");
    let rest = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    };
    let pq = http::uri::PathAndQuery::try_from(rest.as_str()).ok()?;
    // `Keep`: a key with an encoded slash exists only where the edge keeps them, and computing
    // a key takes no risk; what `Keep` still refuses was never stored.
    match path::normalise(&pq, holdfast_config::EncodedSlashes::Keep).ok()? {
        Some(normal) => Some(normal.as_str().to_string()),
        None => Some(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_config::QueryKey;

    fn cfg() -> CacheKey {
        CacheKey {
            host: true,
            query: QueryKey::Sorted,
            ignore_query: vec![],
            headers: vec![],
        }
    }

    fn exact(url: &str) -> Vec<String> {
        for_route(&cfg(), &Purge::Exact(url.into()))
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p {
                Purge::Exact(k) => k,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_form_of_one_url_is_one_key() {
        let want = vec!["https://example.com/b?x=1&y=2".to_string()];
        for url in [
            "https://example.com/b?x=1&y=2",
            "HTTPS://Example.COM:443/b?y=2&x=1",
            "https://example.com/a/../b?x=1&y=2#frag",
            "https://example.com//%62?x=1&y=2",
        ] {
            assert_eq!(exact(url), want, "{url}");
        }
    }

    #[test]
    fn a_url_without_scheme_purges_both() {
        let both = vec![
            "http://example.com/b".to_string(),
            "https://example.com/b".to_string(),
        ];
        assert_eq!(exact("Example.com/b"), both);
        assert_eq!(exact("//example.com:8080/b"), both);
        assert_eq!(
            exact("example.com"),
            vec!["http://example.com/", "https://example.com/"]
        );
    }

    #[test]
    fn a_url_without_host_purges_nothing() {
        assert!(for_route(&cfg(), &Purge::Exact("/b".into())).is_none());
        assert!(for_route(&cfg(), &Purge::Exact("https:///b".into())).is_none());
    }

    #[test]
    fn prefixes_gain_the_scheme() {
        let got = for_route(&cfg(), &Purge::Prefix("Example.com/img/".into())).unwrap();
        assert_eq!(
            got,
            vec![
                Purge::Prefix("http://example.com/img/".into()),
                Purge::Prefix("https://example.com/img/".into())
            ]
        );
    }
}
