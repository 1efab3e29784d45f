//! The one path normalisation (RFC 3986 §6.2.2), applied once before routing, rules, limits,
//! the challenge and the cache key, and forwarded to the origin: percent-encoded unreserved
//! characters decoded, other percent-encodings' hex upper-cased, dot segments removed (`..`
//! stops at the root), runs of `/` merged. What cannot be normalised without guessing how the
//! origin decodes it is refused: an encoded `/` or `\`, a raw `\`, encoded control bytes,
//! a bad `%` escape, raw bytes outside ASCII, and `.`/`..` segments carrying `;` parameters,
//! raw or encoded (Tomcat reads `/..;/` as `/../`). With `edge.encoded_slashes = "keep"` an
//! encoded `/` or `\` stays encoded instead (never decoded here), and a `.`/`..` piece between
//! encoded separators is refused, since an origin that decodes them would climb with it. Case is left alone (paths are case-sensitive); the query
//! is kept exactly as sent. A path that is already normal costs one scan and no allocation.

use holdfast_config::EncodedSlashes;
use http::uri::PathAndQuery;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%2F` or `%5C`: origins disagree on whether it separates segments.
    EncodedSeparator,
    /// A raw `\`: some origins read it as `/`.
    Backslash,
    /// `%00`–`%1F` or `%7F`.
    EncodedControl,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A raw byte outside printable ASCII.
    RawByte,
    /// `.;x` or `..;x` (or `..%3Bx`): a dot segment with a path parameter.
    DotParameter,
    /// With encoded slashes kept: `.` or `..` between `%2F`/`%5C` (`/a%2F..%2Fadmin`).
    EncodedDotSegment,
}

impl PathError {
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::EncodedSeparator => "an encoded / or \\ (%2F, %5C)",
            PathError::Backslash => "a raw \\",
            PathError::EncodedControl => "an encoded control byte",
            PathError::BadEscape => "a % not followed by two hex digits",
            PathError::RawByte => "a byte outside printable ASCII",
            PathError::DotParameter => "a . or .. segment with a ;parameter",
            PathError::EncodedDotSegment => "a . or .. between encoded slashes",
        }
    }
}

/// The normalised form of `pq`, or `None` when it is already normal (the common case: one
/// scan, no allocation). `*` (OPTIONS) is left as it is.
pub(crate) fn normalise(
    pq: &PathAndQuery,
    slashes: EncodedSlashes,
) -> Result<Option<PathAndQuery>, PathError> {
    let path = pq.path();
    if path == "*" || !needs_work(path.as_bytes())? {
        return Ok(None);
    }
    let decoded = decode(path.as_bytes(), slashes)?;
    let mut out = remove_dots_and_merge(&decoded)?;
    if let Some(q) = pq.query() {
        out.push('?');
        out.push_str(q);
    }
    // Escapes that stay as they are (`%20`, `%C3%A9`) made the scan look: normal after all.
    if out == pq.as_str() {
        return Ok(None);
    }
    match PathAndQuery::try_from(out) {
        Ok(p) => Ok(Some(p)),
        // Every byte written came from a target `http` accepted or is an upper-case escape.
        Err(_) => Err(PathError::RawByte),
    }
}

/// One pass: refuse what is never allowed, and say whether anything must change.
fn needs_work(path: &[u8]) -> Result<bool, PathError> {
    let mut work = false;
    let mut prev = 0u8;
    for &b in path {
        match b {
            b'\\' => return Err(PathError::Backslash),
            0x80..=0xFF | 0..=0x20 | 0x7F => return Err(PathError::RawByte),
            b'%' => work = true,
            b'/' if prev == b'/' => work = true,
            _ => {}
        }
        prev = b;
    }
    Ok(work || has_dot_segment(path))
}

/// A segment that is `.`, `..`, or starts with `.;`/`..;`.
fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(is_dotty)
}

fn is_dotty(seg: &[u8]) -> bool {
    let rest = match seg {
        [b'.', b'.', rest @ ..] | [b'.', rest @ ..] => rest,
        _ => return false,
    };
    // `.`, `..`, then nothing or a path parameter, raw or encoded (`%3B`).
    matches!(rest, [] | [b';', ..] | [b'%', b'3', b'B' | b'b', ..])
}

/// With encoded separators kept: a segment one of whose `%2F`/`%5C`-separated pieces is a dot
/// segment.
fn has_encoded_dot_piece(seg: &[u8]) -> bool {
    let mut start = 0;
    let mut i = 0;
    let mut split = false;
    while let Some(window) = seg.get(i..i + 3) {
        if matches!(window, [b'%', b'2', b'F'] | [b'%', b'5', b'C']) {
            split = true;
            if seg.get(start..i).is_some_and(is_dotty) {
                return true;
            }
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    split && seg.get(start..).is_some_and(is_dotty)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode escapes of unreserved characters; upper-case the hex of the others.
fn decode(path: &[u8], slashes: EncodedSlashes) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut bytes = path.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let (Some(h), Some(l)) = (bytes.next(), bytes.next()) else {
            return Err(PathError::BadEscape);
        };
        let (Some(hi), Some(lo)) = (hex(h), hex(l)) else {
            return Err(PathError::BadEscape);
        };
        let c = hi * 16 + lo;
        match c {
            b'/' | b'\\' if slashes == EncodedSlashes::Refuse => {
                return Err(PathError::EncodedSeparator)
            }
            0..=0x1F | 0x7F => return Err(PathError::EncodedControl),
            c if is_unreserved(c) => out.push(c),
            _ => {
                out.push(b'%');
                out.push(h.to_ascii_uppercase());
                out.push(l.to_ascii_uppercase());
            }
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 over segments, with empty segments (from `//`) dropped; a trailing `/`,
/// `/.` or `/..` leaves a trailing `/`.
fn remove_dots_and_merge(path: &[u8]) -> Result<String, PathError> {
    let rest = path.strip_prefix(b"/").unwrap_or(path);
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for seg in rest.split(|&b| b == b'/') {
        trailing = true;
        match seg {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            s if is_dotty(s) => return Err(PathError::DotParameter),
            s if has_encoded_dot_piece(s) => return Err(PathError::EncodedDotSegment),
            s => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        // Only ASCII reaches here: raw bytes ≥ 0x80 were refused, escapes stay escaped.
        out.push_str(std::str::from_utf8(seg).map_err(|_| PathError::RawByte)?);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, PathError> {
        let pq = PathAndQuery::try_from(s).unwrap();
        Ok(normalise(&pq, EncodedSlashes::Refuse)?
            .map_or_else(|| s.to_string(), |p| p.as_str().to_string()))
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b.c?x=1&y=/../",
            "*",
            "/.well-known/x",
            "/a..b/c.",
        ] {
            let pq = PathAndQuery::try_from(p).unwrap();
            assert_eq!(normalise(&pq, EncodedSlashes::Refuse), Ok(None), "{p}");
        }
    }

    #[test]
    fn normal_paths_with_escapes_are_left_alone() {
        // Found by fuzz/path_normalise: these came back as `Some` of themselves.
        for p in [
            "/%25252e",
            "/a%20b?q=%2f",
            "/caf%C3%A9/",
            "/%252e%252e/wp-admin",
        ] {
            let pq = PathAndQuery::try_from(p).unwrap();
            assert_eq!(normalise(&pq, EncodedSlashes::Refuse), Ok(None), "{p}");
        }
        let pq = PathAndQuery::from_static("/caf%c3%a9");
        assert_eq!(
            normalise(&pq, EncodedSlashes::Refuse)
                .unwrap()
                .unwrap()
                .as_str(),
            "/caf%C3%A9"
        );
    }

    #[test]
    fn bypass_forms_become_the_protected_path() {
        for p in [
            "/x/../wp-admin",
            "/%77p-admin",
            "//wp-admin",
            "/./wp-admin",
            "/%2e%2e/wp-admin",
            "/x/%2E%2E/wp-admin",
            "/a/b/../../wp-admin",
            "/../wp-admin",
            "///wp-admin",
            "/%2e/wp-admin",
        ] {
            assert_eq!(norm(p).unwrap(), "/wp-admin", "{p}");
        }
        assert_eq!(norm("/wp-admin/.").unwrap(), "/wp-admin/");
        assert_eq!(norm("/wp-admin//x").unwrap(), "/wp-admin/x");
        assert_eq!(norm("/wp-admin/x/..").unwrap(), "/wp-admin/");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("//").unwrap(), "/");
    }

    #[test]
    fn the_query_is_kept_as_sent() {
        assert_eq!(norm("//a/./b?x=%2F&y=/../").unwrap(), "/a/b?x=%2F&y=/../");
    }

    #[test]
    fn other_escapes_stay_escaped_in_upper_case() {
        assert_eq!(norm("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
        assert_eq!(norm("/%25252e").unwrap(), "/%25252e");
        assert_eq!(norm("/%41%7e").unwrap(), "/A~");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases = [
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/a%00b", PathError::EncodedControl),
            ("/a%0d%0ab", PathError::EncodedControl),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/public/..;/wp-admin", PathError::DotParameter),
            ("/public/.;x/wp-admin", PathError::DotParameter),
            ("/public/%2e%2e;/wp-admin", PathError::DotParameter),
            ("/public/..%3B/wp-admin", PathError::DotParameter),
            ("/public/.%3bx/wp-admin", PathError::DotParameter),
            ("/public/%2E%2E%3b/wp-admin", PathError::DotParameter),
            ("/caf\u{e9}", PathError::RawByte),
        ];
        for (p, want) in cases {
            assert_eq!(norm(p), Err(want), "{p}");
        }
    }

    fn keep(s: &str) -> Result<String, PathError> {
        let pq = PathAndQuery::try_from(s).unwrap();
        let out = normalise(&pq, EncodedSlashes::Keep)?;
        Ok(out.map_or_else(|| s.to_string(), |p| p.as_str().to_string()))
    }

    #[test]
    fn kept_encoded_slashes_stay_encoded_and_never_hide_a_dot_segment() {
        assert_eq!(keep("/repo/a%2fb/raw").unwrap(), "/repo/a%2Fb/raw");
        assert_eq!(keep("/a%5Cb").unwrap(), "/a%5Cb");
        assert_eq!(keep("/x/%2E%2E/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(keep("/a%2F..b").unwrap(), "/a%2F..b");
        for p in [
            "/a%2F..%2Fadmin",
            "/a%2F%2e%2e%2Fadmin",
            "/a%2F.",
            "/%2F..",
            "/a%5C..%5Cadmin",
            "/a%2F..;x%2Fadmin",
        ] {
            assert_eq!(keep(p), Err(PathError::EncodedDotSegment), "{p}");
        }
        // Everything else is refused as without `keep`.
        assert_eq!(keep("/a%00"), Err(PathError::EncodedControl));
        assert_eq!(keep("/a\\b"), Err(PathError::Backslash));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/x/../a//b/./c/", "/%61%2e/..", "/a/%c3%a9/../b"] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{p}");
        }
    }
}
