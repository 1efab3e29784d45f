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

/// One file with a problem for each stage a start runs: the access log's folder, a TLS file,
/// a fallback page and the challenge's key file.
const EVERY_STAGE: &str = r#"
[edge]
listen = []
tls_listen = ["127.0.0.1:8443"]
access_log = "logs/access.log"

[[edge.tls]]
names = ["example.com"]
cert = "missing.pem"
key = "missing.key"

[[pools]]
name = "primary"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
fallback = { status = 503, file = "pages/missing.html" }

[challenge]
keys = "missing.keys"

[[rules]]
id = "guard"
expr = 'request.path.startsWith("/protected")'
action = "challenge"
"#;

#[test]
fn check_reports_the_errors_of_every_stage_together() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "edge.toml", EVERY_STAGE);
    let (code, stdout) = check(dir.path(), &["edge.toml"]);
    assert_eq!(code, Some(1), "{stdout}");
    for key in [
        "edge.access_log: cannot open: $DIR/logs/access.log: ",
        "edge.tls[0].cert: ",
        "routes[0].fallback.file: ",
        "challenge.keys: $DIR/missing.keys: ",
    ] {
        let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(key)).collect();
        assert_eq!(lines.len(), 1, "{key:?} once in:\n{stdout}");
    }
    // The access log's error names the file and says the OS error once.
    let log = stdout
        .lines()
        .find(|l| l.contains("edge.access_log"))
        .unwrap();
    assert!(
        log.starts_with("$DIR/edge.toml: edge.access_log: "),
        "{log}"
    );
    assert_eq!(log.matches("(os error 2)").count(), 1, "{log}");
    // Nothing was created by the check.
    assert!(!dir.path().join("logs").exists());
}

/// The docs' example log path without its folder: `check` says so (it passed before, and
/// `run` then failed), and passes once the folder exists, without creating the file.
#[test]
fn check_fails_where_the_access_log_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let config = VALID.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\naccess_log = \"logs/access.log\"",
    );
    write(dir.path(), "edge.toml", &config);
    assert_check(
        dir.path(),
        &["edge.toml"],
        1,
        expect![[r#"
        $DIR/edge.toml: edge.access_log: cannot open: $DIR/logs/access.log: No such file or directory (os error 2) (create its folder, or give a path Holdfast can write to (or "stdout", "off"))
    "#]],
    );
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    assert_check(
        dir.path(),
        &["edge.toml"],
        0,
        expect![[r#"
        $DIR/edge.toml: ok
    "#]],
    );
    assert!(!dir.path().join("logs/access.log").exists());

    // `run` refuses it the same way (path named, the OS error once) instead of exiting with
    // a bare, doubled io error.
    std::fs::remove_dir(dir.path().join("logs")).unwrap();
    let path = dir.path().join("edge.toml");
    let (code, _, stderr) =
        holdfast_cmd(&[OsStr::new("run"), OsStr::new("--config"), path.as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("edge.access_log: cannot open: ")
            && stderr.contains("logs/access.log")
            && stderr.matches("(os error 2)").count() == 1,
        "{stderr}"
    );
}

/// A module's preparation that a reload rejects fails `check` too: the challenge's generated
/// key in `state_dir`, damaged after the edge made it.
#[test]
fn check_fails_on_a_module_preparation_error_that_a_reload_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{VALID}\n[[rules]]\nid = \"guard\"\nexpr = 'request.path.startsWith(\"/protected\")'\naction = \"challenge\"\n"
    )
    .replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\naccess_log = \"off\"\n\n[admin]\nlisten = \"127.0.0.1:0\"",
    );
    write(dir.path(), "edge.toml", &config);
    assert_check(
        dir.path(),
        &["edge.toml"],
        0,
        expect![[r#"
        $DIR/edge.toml: ok
    "#]],
    );
    let running =
        holdfast::Running::start(holdfast::ConfigSource::File(dir.path().join("edge.toml")))
            .unwrap();
    let key = dir.path().join("state/challenge-key");
    assert!(key.exists(), "the edge keeps its generated key");
    std::fs::write(&key, "not a key\n").unwrap();

    let rejected = match running.reload() {
        holdfast::ReloadOutcome::Rejected { errors, .. } => errors,
        other => panic!("the reload was not rejected: {other:?}"),
    };
    running.shutdown();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].contains("edge.state_dir: ") && rejected[0].contains("challenge-key"),
        "{rejected:?}"
    );
    let (code, stdout) = check(dir.path(), &["edge.toml"]);
    assert_eq!(code, Some(1), "{stdout}");
    let dir_text = dir.path().display().to_string();
    assert_eq!(
        stdout.trim_end(),
        rejected[0].replace(&dir_text, "$DIR"),
        "check and reload say the same"
    );
}
