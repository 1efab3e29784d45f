//! Detached ed25519 signatures. With a public key configured, an artifact `FILE` must come
//! with `FILE.sig`: the 64-byte signature over the exact bytes of `FILE`, either raw or as
//! base64 text (surrounding whitespace ignored). Verification is `verify_strict` (no
//! malleable or small-order signatures).

use crate::kind::{Reason, Rejection};
use crate::read::read_bounded;
use crate::ReadError;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey, PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A signature file is 64 raw bytes or about 90 bytes of base64; anything much larger is not one.
pub const MAX_SIGNATURE_BYTES: u64 = 1024;

/// Standard base64 alphabet, padding optional.
const BASE64: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;

/// `FILE.sig` for `FILE`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".sig");
    PathBuf::from(name)
}

/// A public key from its configured form: base64 of the 32 raw key bytes.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the public key is empty (expected base64 of the 32-byte ed25519 key)".into());
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("the public key is not valid base64: {e}"))?;
    let bytes: [u8; PUBLIC_KEY_LENGTH] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "the public key is {} bytes, expected {PUBLIC_KEY_LENGTH} (base64 of a raw ed25519 public key, not PEM or a signature)",
            bytes.len()
        )
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "the public key is not a valid ed25519 public key".to_string())
}

/// The bytes of `FILE.sig`; a missing or unreadable signature file is a `Signature` rejection.
pub(crate) fn read_signature(path: &Path) -> Result<Vec<u8>, Rejection> {
    let sig_path = signature_path(path);
    let name = sig_path.display();
    match read_bounded(&sig_path, MAX_SIGNATURE_BYTES) {
        Ok(source) => Ok(source.content),
        Err(ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Rejection::new(
                Reason::Signature,
                format!("no signature file {name}: a public key is configured, so every file must come with a detached signature"),
            ))
        }
        Err(ReadError::TooLarge { limit, .. }) => Err(Rejection::new(
            Reason::Signature,
            format!("the signature file {name} is larger than {limit} bytes (expected 64 raw bytes or their base64)"),
        )),
        Err(e) => Err(Rejection::new(
            Reason::Signature,
            format!("signature file {name}: {e}"),
        )),
    }
}

/// 64 raw bytes, or base64 text of them.
fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
    if let Ok(raw) = <[u8; SIGNATURE_LENGTH]>::try_from(bytes) {
        return Ok(Signature::from_bytes(&raw));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "the signature is neither 64 raw bytes nor base64 text".to_string())?;
    // `base64` wraps its output at 76 columns unless told `-w0`: line breaks are not data.
    let text: String = text.split_whitespace().collect();
    let decoded = BASE64
        .decode(text)
        .map_err(|e| format!("the signature is not valid base64: {e}"))?;
    let raw: [u8; SIGNATURE_LENGTH] = decoded.as_slice().try_into().map_err(|_| {
        format!(
            "the signature is {} bytes, expected {SIGNATURE_LENGTH}",
            decoded.len()
        )
    })?;
    Ok(Signature::from_bytes(&raw))
}

/// `bytes` (the artifact) against `signature` (the contents of `FILE.sig`).
pub(crate) fn verify(
    path: &Path,
    bytes: &[u8],
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<(), Rejection> {
    let sig_path = signature_path(path);
    let signature = decode_signature(signature)
        .map_err(|e| Rejection::new(Reason::Signature, format!("{}: {e}", sig_path.display())))?;
    key.verify_strict(bytes, &signature).map_err(|_| {
        Rejection::new(
            Reason::Signature,
            format!(
                "{} does not match the file for the configured public key (signed with another key, or the file changed after signing)",
                sig_path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn public_key_round_trip_and_errors() {
        let vk = key().verifying_key();
        let text = BASE64.encode(vk.as_bytes());
        assert_eq!(decode_public_key(&format!("  {text}\n")).unwrap(), vk);
        assert!(decode_public_key("").unwrap_err().contains("empty"));
        assert!(decode_public_key("not base64!")
            .unwrap_err()
            .contains("base64"));
        let short = BASE64.encode([1u8; 16]);
        assert!(decode_public_key(&short).unwrap_err().contains("16 bytes"));
    }

    #[test]
    fn signature_raw_or_base64() {
        let sk = key();
        let sig = sk.sign(b"hello");
        let vk = sk.verifying_key();
        let p = Path::new("/x/a.json");
        verify(p, b"hello", &sig.to_bytes(), &vk).unwrap();
        let text = format!("{}\n", BASE64.encode(sig.to_bytes()));
        verify(p, b"hello", text.as_bytes(), &vk).unwrap();
        let err = verify(p, b"hellO", &sig.to_bytes(), &vk).unwrap_err();
        assert_eq!(err.reason, Reason::Signature);
        assert!(err.detail.contains("/x/a.json.sig"), "{}", err.detail);
        let err = verify(p, b"hello", b"garbage", &vk).unwrap_err();
        assert_eq!(err.reason, Reason::Signature);
    }

    #[test]
    fn signature_path_appends() {
        assert_eq!(
            signature_path(Path::new("/a/b.json")),
            Path::new("/a/b.json.sig")
        );
    }
}
