//! `holdfast check FILE...`, the real binary: `FILE: ok` and exit 0 for a valid file; every
//! error as `FILE: key.path: message (hint)` and exit 1 otherwise; unreadable files are one
//! clear error each, never a panic; TLS files are read and their errors named by key path.

use crate::support::*;
use expect_test::{expect, Expect};
use std::ffi::OsStr;
use std::path::Path;

/// Run `holdfast check` on `files` in `dir`; (exit code, stdout with `dir` written `$DIR`).
fn check(dir: &Path, files: &[&str]) -> (Option<i32>, String) {
    let paths: Vec<_> = files.iter().map(|f| dir.join(f)).collect();
    let mut args = vec![OsStr::new("check")];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let (code, stdout, stderr) = holdfast_cmd(&args);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = dir.display().to_string();
    (code, stdout.replace(&dir, "$DIR"))
}

fn assert_check(dir: &Path, files: &[&str], code: i32, out: Expect) {
    let (got, stdout) = check(dir, files);
    out.assert_eq(&stdout);
    assert_eq!(got, Some(code), "exit code; output:\n{stdout}");
}

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), text).unwrap();
}

const VALID: &str = r#"
[edge]
listen = ["127.0.0.1:8080"]

[[pools]]
name = "primary"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

/// Six problems, of six kinds, in one file.
const SIX_ERRORS: &str = r#"
[edge]
listen = ["127.0.0.1:80800"]
colour = "blue"

[[pools]]
name = "app"
servers = []

[[pools]]
name = "app"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "api"
timeouts = { connect = "0s" }
"#;

#[test]
fn a_valid_file_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", VALID);
    assert_check(
        dir.path(),
        &["edge.toml"],
        0,
        expect![[r#"
        $DIR/edge.toml: ok
    "#]],
    );
}

#[test]
fn every_error_is_printed_with_its_key_path_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", SIX_ERRORS);
    assert_check(
        dir.path(),
        &["edge.toml"],
        1,
        expect![[r#"
        $DIR/edge.toml: edge.colour: unknown key (remove it or check its spelling against docs/config.md)
        $DIR/edge.toml: edge.listen[0]: invalid listen address "127.0.0.1:80800" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
        $DIR/edge.toml: pools[0].servers: pool "app" has no servers (list at least one origin, e.g. servers = ["127.0.0.1:9000"])
        $DIR/edge.toml: pools[1].name: duplicate pool name "app" (pool names must be unique)
        $DIR/edge.toml: routes[0].pool: unknown pool "api" (define it under [[pools]] or use one of ["app", "app"])
        $DIR/edge.toml: routes[0].timeouts.connect: must be greater than zero (write a duration such as "5s" or "250ms")
    "#]],
    );
}

#[test]
fn unreadable_files_are_one_clear_error_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = VALID.to_string();
    big.push_str(&format!("# {}\n", "x".repeat(1 << 20)));
    write(dir.path(), "big.toml", big);
    write(
        dir.path(),
        "latin1.toml",
        b"[edge]\nlisten = [\"caf\xe9\"]\n",
    );
    // Exactly at the limit is still read (and then fails as TOML, not as too large).
    write(dir.path(), "limit.toml", "#".repeat(1 << 20));
    assert_check(
        dir.path(),
        &["big.toml"],
        1,
        expect![[r#"
        $DIR/big.toml: the file is larger than the 1048576-byte limit (is this the right file?)
    "#]],
    );
    assert_check(
        dir.path(),
        &["latin1.toml"],
        1,
        expect![[r#"
        $DIR/latin1.toml: the file is not valid UTF-8 at byte 21 (save it as UTF-8 text)
    "#]],
    );
    assert_check(
        dir.path(),
        &["limit.toml"],
        1,
        expect![[r#"
        $DIR/limit.toml: (top level): missing field `edge` (see docs/config.md for the expected type)
    "#]],
    );
    let (code, out) = check(dir.path(), &["missing.toml"]);
    assert_eq!(code, Some(1));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("$DIR/missing.toml: cannot read the file: "),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with("(check that it exists and is readable)"),
        "{out}"
    );
    let (code, out) = check(dir.path(), &["."]);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("$DIR/.: cannot read the file: "),
        "a folder: {out}"
    );
}

#[test]
fn several_files_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", VALID);
    write(
        dir.path(),
        "b.toml",
        VALID.replace("pool = \"primary\"", "pool = \"other\""),
    );
    write(dir.path(), "c.toml", VALID);
    assert_check(
        dir.path(),
        &["a.toml", "b.toml", "c.toml", "d.toml"],
        1,
        expect![[r#"
        $DIR/a.toml: ok
        $DIR/b.toml: routes[0].pool: unknown pool "other" (define it under [[pools]] or use one of ["primary"])
        $DIR/c.toml: ok
        $DIR/d.toml: cannot read the file: No such file or directory (os error 2) (check that it exists and is readable)
    "#]],
    );
    assert_check(
        dir.path(),
        &["a.toml", "c.toml"],
        0,
        expect![[r#"
        $DIR/a.toml: ok
        $DIR/c.toml: ok
    "#]],
    );
}

const TLS: &str = r#"
[edge]
listen = []
tls_listen = ["127.0.0.1:8443"]

[[edge.tls]]
names = ["example.com"]
cert = "{cert}"
key = "{key}"

[[pools]]
name = "primary"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "all"
match = {}
pool = "primary"
"#;

fn tls_config(cert: &str, key: &str) -> String {
    TLS.replace("{cert}", cert).replace("{key}", key)
}

#[test]
fn tls_files_are_read_and_their_errors_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Holdfast test CA");
    ca.leaf(&["example.com"]).write(dir.path(), "example");
    ca.leaf(&["other.example"]).write(dir.path(), "other");
    write(dir.path(), "garbage.key", "not a key\n");
    write(
        dir.path(),
        "good.toml",
        tls_config("example.pem", "example.key"),
    );
    write(
        dir.path(),
        "no-cert.toml",
        tls_config("missing.pem", "example.key"),
    );
    write(
        dir.path(),
        "neither.toml",
        tls_config("missing.pem", "missing.key"),
    );
    write(
        dir.path(),
        "mismatch.toml",
        tls_config("example.pem", "other.key"),
    );
    write(
        dir.path(),
        "garbage.toml",
        tls_config("example.pem", "garbage.key"),
    );
    write(
        dir.path(),
        "key-as-cert.toml",
        tls_config("example.key", "example.key"),
    );

    assert_check(
        dir.path(),
        &["good.toml"],
        0,
        expect![[r#"
        $DIR/good.toml: ok
    "#]],
    );
    let (code, out) = check(dir.path(), &["no-cert.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with(
            "$DIR/no-cert.toml: edge.tls[0].cert: $DIR/missing.pem: cannot read the file"
        ),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    // Both files missing: both reported, not just the first.
    let (code, out) = check(dir.path(), &["neither.toml"]);
    assert_eq!(code, Some(1));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("$DIR/neither.toml: edge.tls[0].cert: $DIR/missing.pem: cannot read"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("$DIR/neither.toml: edge.tls[0].key: $DIR/missing.key: cannot read"),
        "{out}"
    );
    assert_check(
        dir.path(),
        &["mismatch.toml"],
        1,
        expect![[r#"
        $DIR/mismatch.toml: edge.tls[0].key: $DIR/other.key does not fit $DIR/example.pem: keys may not be consistent: KeyMismatch (use the private key that belongs to this certificate)
    "#]],
    );
    assert_check(
        dir.path(),
        &["garbage.toml"],
        1,
        expect![[r#"
        $DIR/garbage.toml: edge.tls[0].key: $DIR/garbage.key: no usable private key: no items found (give a PEM file with a PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1))
    "#]],
    );
    assert_check(
        dir.path(),
        &["key-as-cert.toml"],
        1,
        expect![[r#"
        $DIR/key-as-cert.toml: edge.tls[0].cert: $DIR/example.key: no certificate found (give a PEM file with one or more CERTIFICATE blocks)
    "#]],
    );
}

#[test]
fn public_key_with_a_config_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", VALID);
    let file = dir.path().join("edge.toml");
    let (code, stdout, _) = holdfast_cmd(&[
        OsStr::new("check"),
        OsStr::new("--public-key"),
        OsStr::new("dfXXTVddwUNkO6mP6/KLN0tP5hq2L6rQtlX+/TtIpvk="),
        file.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("--public-key: not used with --kind config"),
        "{stdout}"
    );
}

#[test]
fn check_help_lists_every_kind() {
    let (code, stdout, _) = holdfast_cmd(&[OsStr::new("check"), OsStr::new("--help")]);
    assert_eq!(code, Some(0));
    for kind in ["config", "bot-features", "ip-list", "rule-list"] {
        assert!(stdout.contains(kind), "{kind} missing from:\n{stdout}");
    }
}
