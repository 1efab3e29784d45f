//! Where a client goes back after passing: only a path on the same host.

/// Longest return path kept.
const MAX_TARGET: usize = 2048;

/// `to` if it is a same-host path (`/…`, not `//host` or `/\host`, no control characters,
/// no backslash), else `None`: the caller falls back to `/`. This is what stops the
/// challenge from being an open redirect.
pub fn safe_target(to: &str) -> Option<&str> {
    let b = to.as_bytes();
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && b.len() <= MAX_TARGET
        && b.iter().all(|c| (0x21..0x7f).contains(c) && *c != b'\\');
    ok.then_some(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_host_paths() {
        for good in ["/", "/protected/a?b=c", "/a/%2F%2Fevil"] {
            assert_eq!(safe_target(good), Some(good));
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/a\\b",
            "/a b",
            "/a\r\nLocation: x",
            "javascript:alert(1)",
            "evil.example",
            &format!("/{}", "a".repeat(3000)),
        ] {
            assert_eq!(safe_target(bad), None, "{bad:?}");
        }
    }
}
