//! A JA4H-style HTTP client fingerprint, after FoxIO's public JA4H description:
//! `a_b_c_d` where
//! - `a` (12 characters, readable): method (first 2 letters, lower case; `ge`, `po`, ...),
//!   HTTP version (`09`, `10`, `11`, `20`, `30`), `c`/`n` cookie present, `r`/`n` referer
//!   present, number of header fields other than `cookie` and `referer` (2 digits, at most
//!   99), then the first 4 characters of the first `accept-language` entry, lower-cased with
//!   `-` and non-ASCII/space characters dropped, padded with `0` (`0000` when absent);
//! - `b`: the first 12 hex digits of SHA-256 over the header names in order, comma-separated,
//!   without `cookie` and `referer`;
//! - `c`: the same over the cookie names, sorted, comma-separated;
//! - `d`: the same over the cookie `name=value` pairs, sorted, comma-separated.
//!
//! An empty list hashes to `000000000000` (no cookie: `c` and `d` are zeros).
//! Differences from the reference: header names are those `http::HeaderMap` holds (lower
//! case; so `b` matches the reference for HTTP/2 clients, not for HTTP/1.1 clients that send
//! capitalised names), and a header with several values is listed once per value, grouped
//! where its first value was. JA4+ methods are FoxIO's; this is an independent "JA4H-style"
//! implementation of the published description, not the reference code.
//!
//! [`ja4h`] allocates and hashes; the scoring path only needs [`Ja4hA`], computed on the
//! stack.

use holdfast_modules::RequestView;
use http::header;
use http::Version;
use sha2::{Digest, Sha256};

/// The readable `a` section, computed without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ja4hA {
    pub method: [u8; 2],
    pub version: [u8; 2],
    pub cookie: bool,
    pub referer: bool,
    /// Header fields other than `cookie` and `referer`, at most 99.
    pub header_count: u8,
    pub language: [u8; 4],
}

impl Ja4hA {
    pub fn of(req: &RequestView<'_>) -> Ja4hA {
        let h = req.headers;
        let mut method = [b'0'; 2];
        for (d, s) in method.iter_mut().zip(req.method.as_str().bytes()) {
            *d = s.to_ascii_lowercase();
        }
        let version = match req.version {
            Version::HTTP_09 => *b"09",
            Version::HTTP_10 => *b"10",
            Version::HTTP_2 => *b"20",
            Version::HTTP_3 => *b"30",
            _ => *b"11",
        };
        let cookies = h.get_all(header::COOKIE).iter().count();
        let referers = h.get_all(header::REFERER).iter().count();
        let others = h.len().saturating_sub(cookies + referers).min(99);
        let mut language = *b"0000";
        if let Some(v) = h.get(header::ACCEPT_LANGUAGE) {
            let first = v
                .as_bytes()
                .split(|b| *b == b',' || *b == b';')
                .next()
                .unwrap_or_default();
            let kept = first
                .iter()
                .filter(|b| b.is_ascii_graphic() && **b != b'-')
                .map(u8::to_ascii_lowercase);
            for (d, s) in language.iter_mut().zip(kept) {
                *d = s;
            }
        }
        Ja4hA {
            method,
            version,
            cookie: cookies > 0,
            referer: referers > 0,
            header_count: u8::try_from(others).unwrap_or(99),
            language,
        }
    }

    /// The 12 characters of the section, e.g. `ge11cn14enus`.
    pub fn to_bytes(&self) -> [u8; 12] {
        let [m0, m1] = self.method;
        let [v0, v1] = self.version;
        let [l0, l1, l2, l3] = self.language;
        [
            m0,
            m1,
            v0,
            v1,
            if self.cookie { b'c' } else { b'n' },
            if self.referer { b'r' } else { b'n' },
            b'0' + self.header_count / 10,
            b'0' + self.header_count % 10,
            l0,
            l1,
            l2,
            l3,
        ]
    }

    /// What `ja4h_browser_like` means: HTTP/1.1 or later, an `accept-language` and at least 6
    /// other header fields. curl, wget and most libraries send 2–5 headers and no language;
    /// browsers send 8–20 with a language.
    pub fn browser_like(&self) -> bool {
        self.version != *b"09"
            && self.version != *b"10"
            && self.language != *b"0000"
            && self.header_count >= 6
    }
}

impl std::fmt::Display for Ja4hA {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_bytes();
        // Every byte is ASCII by construction.
        f.write_str(std::str::from_utf8(&bytes).unwrap_or("000000000000"))
    }
}

/// The full fingerprint `a_b_c_d`. Allocates; for logs and for `holdfast check`, not for the
/// per-request score.
pub fn ja4h(req: &RequestView<'_>) -> String {
    let a = Ja4hA::of(req);
    let names: Vec<&str> = req
        .headers
        .iter()
        .map(|(n, _)| n)
        .filter(|n| *n != header::COOKIE && *n != header::REFERER)
        .map(|n| n.as_str())
        .collect();
    let mut pairs: Vec<(String, Option<String>)> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| match c.split_once('=') {
                    Some((n, v)) => (n.trim().to_owned(), Some(v.trim().to_owned())),
                    None => (c.to_owned(), None),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    pairs.sort_unstable();
    let mut cookie_names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    cookie_names.sort_unstable();
    let cookie_pairs: Vec<String> = pairs
        .iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n.clone(),
        })
        .collect();
    format!(
        "{a}_{}_{}_{}",
        hash12(&names.join(",")),
        hash12(&cookie_names.join(",")),
        hash12(&cookie_pairs.join(","))
    )
}

/// The first 12 hex digits of SHA-256 of `s`; `000000000000` for an empty string.
pub fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    let digest = Sha256::digest(s.as_bytes());
    digest
        .iter()
        .take(6)
        .fold(String::with_capacity(12), |mut out, b| {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
            out
        })
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests::{headers, view, CHROME, CURL};
    use http::Method;

    fn sha12(s: &str) -> String {
        let d = Sha256::digest(s.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()[..12].to_owned()
    }

    #[test]
    fn hash12_is_truncated_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(hash12("abc"), "ba7816bf8f01");
        assert_eq!(hash12(""), "000000000000");
    }

    #[test]
    fn curl_fingerprint() {
        let h = headers(CURL);
        let m = Method::GET;
        let req = view(&m, Version::HTTP_11, &h, "/", None, false);
        let a = Ja4hA::of(&req);
        assert_eq!(a.to_string(), "ge11nn030000");
        assert!(!a.browser_like());
        assert_eq!(
            ja4h(&req),
            format!(
                "ge11nn030000_{}_000000000000_000000000000",
                sha12("host,user-agent,accept")
            )
        );
    }

    #[test]
    fn browser_fingerprint_by_hand() {
        let mut h = headers(CHROME);
        h.append(header::REFERER, "https://example.com/".parse().unwrap());
        h.append(header::COOKIE, "a=1".parse().unwrap());
        let m = Method::POST;
        let req = view(&m, Version::HTTP_2, &h, "/", None, true);
        let a = Ja4hA::of(&req);
        // 17 fields, minus 2 cookie values and 1 referer = 14; "en-US,..." → "enus".
        assert_eq!(a.to_string(), "po20cr14enus");
        assert!(a.browser_like());
        let names = "host,connection,sec-ch-ua,sec-ch-ua-mobile,sec-ch-ua-platform,\
                     upgrade-insecure-requests,user-agent,accept,sec-fetch-site,sec-fetch-mode,\
                     sec-fetch-user,sec-fetch-dest,accept-encoding,accept-language";
        // CHROME's cookie "session=abc; theme=dark" plus "a=1": sorted.
        let expected = format!(
            "po20cr14enus_{}_{}_{}",
            sha12(names),
            sha12("a,session,theme"),
            sha12("a=1,session=abc,theme=dark")
        );
        assert_eq!(ja4h(&req), expected);
    }

    #[test]
    fn odd_inputs() {
        let h = headers(&[("accept-language", "*"), ("cookie", "flag; ;x=")]);
        let m = Method::from_bytes(b"X").unwrap();
        let req = view(&m, Version::HTTP_10, &h, "/", None, false);
        let a = Ja4hA::of(&req);
        assert_eq!(a.to_string(), "x010cn01*000");
        assert!(!a.browser_like());
        assert_eq!(
            ja4h(&req),
            format!(
                "x010cn01*000_{}_{}_{}",
                sha12("accept-language"),
                sha12("flag,x"),
                sha12("flag,x=")
            )
        );
    }
}
