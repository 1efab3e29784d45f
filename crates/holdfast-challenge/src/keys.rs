//! The challenge keys: parsed from an untrusted file, or generated.

use crate::error::KeyFileError;

/// Largest key file read (a few keys and comments).
pub const MAX_KEY_FILE_BYTES: u64 = 4096;
/// Shortest key: HMAC-SHA256 keys shorter than the hash weaken it.
pub const MIN_KEY_BYTES: usize = 32;
/// Longest key (HMAC hashes longer keys down anyway).
pub const MAX_KEY_BYTES: usize = 256;
/// The signing key and one older key still accepted during a rotation.
pub const MAX_KEYS: usize = 2;

/// One or two keys; the first signs, each verifies.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    signing: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Keys({} key(s))", self.count())
    }
}

impl Keys {
    /// Parse a key file: one hex key per line, `#` comments and blank lines ignored.
    pub fn parse(text: &str) -> Result<Keys, KeyFileError> {
        let mut keys = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let key =
                decode_hex(line).map_err(|detail| KeyFileError::NotHex { line: n, detail })?;
            if key.len() < MIN_KEY_BYTES {
                return Err(KeyFileError::TooShort {
                    line: n,
                    bytes: key.len(),
                    min: MIN_KEY_BYTES,
                });
            }
            if key.len() > MAX_KEY_BYTES {
                return Err(KeyFileError::TooLong {
                    line: n,
                    bytes: key.len(),
                    max: MAX_KEY_BYTES,
                });
            }
            keys.push(key);
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyFileError::TooMany {
                count: keys.len(),
                max: MAX_KEYS,
            });
        }
        let mut it = keys.into_iter();
        let signing = it.next().ok_or(KeyFileError::Empty)?;
        Ok(Keys {
            signing,
            previous: it.next(),
        })
    }

    /// A fresh random 32-byte key from the OS.
    pub fn generate() -> Result<Keys, KeyFileError> {
        let mut key = vec![0u8; MIN_KEY_BYTES];
        getrandom::getrandom(&mut key).map_err(|e| KeyFileError::Random(e.to_string()))?;
        Ok(Keys {
            signing: key,
            previous: None,
        })
    }

    /// The file form of these keys (what `parse` reads back).
    pub fn to_file_text(&self) -> String {
        let mut s = String::from("# Holdfast challenge keys: the first signs, each verifies.\n");
        for k in self.all() {
            s.push_str(&encode_hex(k));
            s.push('\n');
        }
        s
    }

    pub fn count(&self) -> usize {
        1 + usize::from(self.previous.is_some())
    }

    pub(crate) fn signing(&self) -> &[u8] {
        &self.signing
    }

    /// Every key, the signing key first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.signing.as_slice()).chain(self.previous.as_deref())
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("{} hex digits, an odd number", s.len()));
    }
    let digit = |c: u8, at: usize| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!("character {} is not a hex digit", at + 1)),
        }
    };
    s.as_bytes()
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| match pair {
            [hi, lo] => Ok(digit(*hi, 2 * i)? << 4 | digit(*lo, 2 * i + 1)?),
            _ => Err("odd number of hex digits".to_string()),
        })
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn one_or_two_keys_with_comments() {
        let k = Keys::parse(&format!("# c\n\n{K1}\n")).unwrap();
        assert_eq!(k.count(), 1);
        let k2 = Keys::parse(&format!("{K1}\n  {}  \n", K1.to_uppercase())).unwrap();
        assert_eq!(k2.count(), 2);
        assert_eq!(Keys::parse(&k2.to_file_text()).unwrap(), k2);
    }

    #[test]
    fn bad_files_say_why() {
        assert_eq!(Keys::parse("# only\n"), Err(KeyFileError::Empty));
        assert!(matches!(
            Keys::parse("zz11"),
            Err(KeyFileError::NotHex { line: 1, .. })
        ));
        assert!(matches!(
            Keys::parse("abc"),
            Err(KeyFileError::NotHex { line: 1, .. })
        ));
        assert_eq!(
            Keys::parse("\n0011"),
            Err(KeyFileError::TooShort {
                line: 2,
                bytes: 2,
                min: 32
            })
        );
        let long = "ab".repeat(257);
        assert!(matches!(
            Keys::parse(&long),
            Err(KeyFileError::TooLong { bytes: 257, .. })
        ));
        assert!(matches!(
            Keys::parse(&format!("{K1}\n{K1}\n{K1}\n")),
            Err(KeyFileError::TooMany { count: 3, .. })
        ));
        // Multi-byte text is refused, not sliced.
        assert!(matches!(
            Keys::parse("éé"),
            Err(KeyFileError::NotHex { .. })
        ));
    }

    #[test]
    fn generated_keys_differ_and_never_print() {
        let a = Keys::generate().unwrap();
        let b = Keys::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Keys(1 key(s))");
    }
}
