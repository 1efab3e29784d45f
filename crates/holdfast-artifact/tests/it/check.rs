//! `check_file`: the offline check runs the same checks as a load (R4).

use crate::support::{list, Env, List, CAPACITY};
use ed25519_dalek::{Signer, SigningKey};
use holdfast_artifact::{check_file, signature_path, ArtifactKind, LoadOutcome, Reason};
use std::fs;

#[test]
fn same_verdicts_as_a_load() {
    let files: Vec<(Vec<u8>, Option<Reason>)> = vec![
        (list(1, 2).into_bytes(), None),
        (list(1, CAPACITY + 1).into_bytes(), Some(Reason::Capacity)),
        (b"{\"version\": 1".to_vec(), Some(Reason::Parse)),
        (Vec::new(), Some(Reason::Parse)),
        (b"\xfe".to_vec(), Some(Reason::NotUtf8)),
        (
            br#"{"version": 1, "items": [], "x": 0}"#.to_vec(),
            Some(Reason::Schema),
        ),
        (
            vec![b' '; List::MAX_BYTES as usize + 1],
            Some(Reason::TooLarge),
        ),
    ];
    for (bytes, expected) in files {
        let env = Env::new();
        env.write(&bytes);
        let offline = check_file::<List>(&env.path, None).map(|v| v.version);
        let online = env.artifact().start();
        match (expected, offline, online) {
            (None, Ok(1), LoadOutcome::Applied { version: 1 }) => {}
            (Some(reason), Err(a), LoadOutcome::Rejected(b)) => {
                assert_eq!(a.reason, reason);
                assert_eq!(a, b);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn missing_file_and_signature() {
    let env = Env::new();
    assert_eq!(
        check_file::<List>(&env.path, None).unwrap_err().reason,
        Reason::Io
    );
    env.write(list(1, 1));
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let vk = key.verifying_key();
    assert_eq!(
        check_file::<List>(&env.path, Some(&vk)).unwrap_err().reason,
        Reason::Signature
    );
    fs::write(
        signature_path(&env.path),
        key.sign(list(1, 1).as_bytes()).to_bytes(),
    )
    .unwrap();
    assert_eq!(check_file::<List>(&env.path, Some(&vk)).unwrap().version, 1);
    assert_eq!(List::NAME, "test-list");
}
