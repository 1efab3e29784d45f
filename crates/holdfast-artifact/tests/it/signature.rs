//! Detached signatures, required when a public key is configured.

use crate::support::{active_version, list, reason, Env, List};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use holdfast_artifact::{
    decode_public_key, signature_path, Artifact, ArtifactOptions, LoadOutcome, Reason,
};
use std::fs;

fn signer() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn signed(env: &Env) -> Artifact<List> {
    Artifact::new(
        ArtifactOptions {
            public_key: Some(signer().verifying_key()),
            ..env.options()
        },
        env.metrics.clone(),
    )
}

fn sign(env: &Env, key: &SigningKey) {
    let bytes = fs::read(&env.path).unwrap();
    fs::write(signature_path(&env.path), key.sign(&bytes).to_bytes()).unwrap();
}

#[test]
fn missing_wrong_and_right() {
    let env = Env::new();
    let a = signed(&env);
    env.write(list(1, 2));
    match a.start() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::Signature);
            assert!(r.detail.contains("no signature file"), "{}", r.detail);
            assert!(r.detail.contains("list.json.sig"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    assert!(a.current().is_none());

    // Signed with another key.
    sign(&env, &SigningKey::from_bytes(&[1u8; 32]));
    match a.reload() {
        LoadOutcome::Rejected(r) => {
            assert_eq!(r.reason, Reason::Signature);
            assert!(r.detail.contains("does not match"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    // The right signature for the same file arrives after it: applied (a rejection is
    // remembered for the file *and* its signature).
    sign(&env, &signer());
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 1 });
    assert_eq!(env.rejected(Reason::Signature), 2);

    // Base64 text with a trailing newline.
    env.write(list(2, 2));
    let sig = signer().sign(list(2, 2).as_bytes()).to_bytes();
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(sig)
    );
    fs::write(signature_path(&env.path), text).unwrap();
    assert_eq!(a.reload(), LoadOutcome::Applied { version: 2 });

    // The file changes after signing: rejected, the signed version stays.
    env.write(list(3, 2));
    assert_eq!(reason(a.reload()), Reason::Signature);
    assert_eq!(active_version(&a), 2);
    // A garbage signature file.
    fs::write(signature_path(&env.path), b"not a signature").unwrap();
    assert_eq!(reason(a.reload()), Reason::Signature);
    assert_eq!(env.rejected(Reason::Signature), 4);
}

#[test]
fn the_signature_is_checked_before_the_contents() {
    let env = Env::new();
    let a = signed(&env);
    env.write("{ not even json");
    assert_eq!(reason(a.start()), Reason::Signature);
    assert_eq!(env.rejected(Reason::Parse), 0);
}

#[test]
fn without_a_key_signatures_are_ignored() {
    let env = Env::new();
    env.write(list(1, 1));
    fs::write(signature_path(&env.path), b"garbage").unwrap();
    assert_eq!(env.artifact().start(), LoadOutcome::Applied { version: 1 });
}

#[test]
fn watch_paths_include_the_signature_when_a_key_is_set() {
    let env = Env::new();
    assert_eq!(env.artifact().watch_paths(), vec![env.path.clone()]);
    assert_eq!(
        signed(&env).watch_paths(),
        vec![env.path.clone(), env.dir.path().join("list.json.sig")]
    );
}

#[test]
fn public_keys_decode_from_base64() {
    let vk = signer().verifying_key();
    let text = base64::engine::general_purpose::STANDARD.encode(vk.as_bytes());
    assert_eq!(decode_public_key(&text).unwrap(), vk);
    let err = decode_public_key("AAAA").unwrap_err();
    assert!(err.contains("3 bytes, expected 32"), "{err}");
    assert!(decode_public_key("%%%").unwrap_err().contains("base64"));
}
