//! `application/x-www-form-urlencoded` (the forms' bodies and the return query), just enough
//! of it: `+` is a space, `%XX` a byte, the result must be UTF-8.

/// The first value of `name` in a form body or query string.
pub fn form_value(input: &[u8], name: &str) -> Option<String> {
    input.split(|b| *b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        let k = decode(kv.next()?)?;
        if k != name {
            return None;
        }
        decode(kv.next().unwrap_or(b""))
    })
}

fn decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*it.next()?)?;
                let lo = hex(*it.next()?)?;
                out.push(hi << 4 | lo);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode `s` for a query value (everything but unreserved characters and `/`).
pub fn encode_component(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let to = "/p?a=1&b=é x";
        let body = format!("c=x&to={}&n=5", encode_component(to));
        assert_eq!(form_value(body.as_bytes(), "to").as_deref(), Some(to));
        assert_eq!(form_value(b"n=1+2", "n").as_deref(), Some("1 2"));
        assert_eq!(form_value(b"n=%zz", "n"), None);
        assert_eq!(form_value(b"n=%ff", "n"), None);
        assert_eq!(form_value(b"m=1", "n"), None);
        assert_eq!(form_value(b"n", "n").as_deref(), Some(""));
    }
}
