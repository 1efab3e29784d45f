//! Every TOML example in the README and `docs/` goes through the real `holdfast check`, with
//! the files it names provided (certificates made at run time, the shipped feature file, a
//! zone, lists, keys, the access log's folder), so the docs cannot drift from the code.
//!
//! Two substitutions, because this machine is not the one the examples describe: host names
//! of origins (not in any DNS here) become 127.0.0.1, and an absolute `state_dir` becomes a
//! folder of the test's own. A new example that names another host fails here until its
//! name is added to `UNRESOLVABLE`.
//!
//! Two kinds of partial examples are completed the way Holdfast completes them: a fleet
//! version (no `[edge]`: the instance's local file supplies it) gets a local `[edge]`, and an
//! addition to the example before it (no `[[routes]]`, e.g. "the same file plus a rule") is
//! checked appended to that example.

use crate::support::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Origin host names the examples use; none resolves on a test machine.
const UNRESOLVABLE: &[&str] = &[
    "app-3.internal",
    "api-origin.cdn-b.example.net",
    "static.internal",
];

/// What a fleet member's local file holds for a version that, as it must, has no `[edge]`.
const FLEET_MEMBER_EDGE: &str = "[edge]\nlisten = [\"127.0.0.1:8080\"]\n";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(file, first line, text)` of every ```toml block in the README and docs/*.md.
fn toml_blocks() -> Vec<(String, usize, String)> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new("md")))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut current: Option<(usize, String)> = None;
        for (n, line) in text.lines().enumerate() {
            match current.as_mut() {
                None if line.trim_start() == "```toml" => current = Some((n + 2, String::new())),
                None => {}
                Some(_) if line.trim_start().starts_with("```") => {
                    let (at, body) = current.take().unwrap();
                    blocks.push((name.clone(), at, body));
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
        assert!(current.is_none(), "{name}: a ```toml block is not closed");
    }
    blocks
}

fn write(dir: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    assert!(
        Path::new(rel).is_relative(),
        "{rel}: examples name their files relative to the config's folder, so this test \
         can provide them"
    );
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn str_at<'a>(v: &'a toml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(toml::Value::as_str)
}

fn each<'a>(v: &'a toml::Value, key: &str) -> impl Iterator<Item = &'a toml::Value> {
    v.get(key)
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
}

/// Create every file the example names, with content its checks accept.
fn provide_files(dir: &Path, spec: &toml::Value) {
    let ca = TestCa::new("docs example CA");
    if let Some(edge) = spec.get("edge") {
        for tls in each(edge, "tls") {
            let names: Vec<&str> = each(tls, "names").filter_map(toml::Value::as_str).collect();
            let leaf = ca.leaf(if names.is_empty() {
                &["default.example"]
            } else {
                &names
            });
            write(dir, str_at(tls, "cert").unwrap(), &leaf.cert_pem);
            write(dir, str_at(tls, "key").unwrap(), &leaf.key_pem);
        }
        if let Some(log) = str_at(edge, "access_log").filter(|l| !["stdout", "off"].contains(l)) {
            std::fs::create_dir_all(dir.join(log).parent().unwrap()).unwrap();
        }
    }
    for pool in each(spec, "pools") {
        if let Some(ca_file) = pool.get("tls").and_then(|t| str_at(t, "ca_file")) {
            write(dir, ca_file, &ca.pem);
        }
    }
    for route in each(spec, "routes") {
        if let Some(page) = route.get("fallback").and_then(|f| str_at(f, "file")) {
            write(dir, page, "<!doctype html><title>Maintenance</title>\n");
        }
    }
    if let Some(features) = spec
        .get("modules")
        .and_then(|m| m.get("bot"))
        .and_then(|b| str_at(b, "features"))
    {
        let shipped = std::fs::read(workspace_root().join("examples/bot-features.json")).unwrap();
        write(dir, features, shipped);
    }
    for list in each(spec, "ip_lists") {
        write(
            dir,
            str_at(list, "file").unwrap(),
            "# version: 1\n10.0.0.0/8\n",
        );
    }
    for list in each(spec, "rule_lists") {
        let rules = r#"{"version": 1, "rules": [{"id": "feed-1", "expr": "request.path == \"/x\"", "action": "block"}]}"#;
        write(dir, str_at(list, "file").unwrap(), rules);
    }
    if let Some(keys) = spec.get("challenge").and_then(|c| str_at(c, "keys")) {
        write(dir, keys, format!("{}\n", "ab".repeat(32)));
    }
    if let Some(dns) = spec.get("dns") {
        for zone in each(dns, "zones") {
            let origin = str_at(zone, "origin").unwrap();
            let text = format!(
                "$ORIGIN {origin}\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 900 1209600 60\n\
                 @ IN NS ns1\nns1 IN A 192.0.2.1\n"
            );
            write(dir, str_at(zone, "file").unwrap(), text);
        }
    }
}

/// The example as this machine can check it (see the module doc).
fn localise(example: &str, dir: &Path) -> String {
    let mut text = example.to_string();
    for host in UNRESOLVABLE {
        text = text.replace(host, "127.0.0.1");
    }
    let spec: toml::Value = toml::from_str(&text).unwrap();
    if let Some(state_dir) = spec.get("edge").and_then(|e| str_at(e, "state_dir")) {
        if Path::new(state_dir).is_absolute() {
            let local = dir.join("state");
            text = text.replace(
                &format!("state_dir = \"{state_dir}\""),
                &format!("state_dir = \"{}\"", local.display()),
            );
        }
    }
    text
}

#[test]
fn every_toml_example_in_the_docs_passes_holdfast_check() {
    let blocks = toml_blocks();
    // README's complete file, config.md's complete example and its smallest file at least.
    assert!(blocks.len() >= 3, "found only {} examples", blocks.len());
    let mut failures = Vec::new();
    let mut previous: Option<(&str, String)> = None;
    for (file, line, example) in &blocks {
        let dir = tempfile::tempdir().unwrap();
        let mut example = example.clone();
        if !example.contains("[[routes]]") {
            if let Some((_, before)) = previous.as_ref().filter(|(f, _)| f == file) {
                example = format!("{before}\n{example}");
            }
        }
        previous = Some((file, example.clone()));
        if !example.contains("[edge]") {
            example = format!("{FLEET_MEMBER_EDGE}\n{example}");
        }
        let text = localise(&example, dir.path());
        let spec: toml::Value = match toml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{file}:{line}: not TOML: {e}"));
                continue;
            }
        };
        provide_files(dir.path(), &spec);
        let config = dir.path().join("edge.toml");
        std::fs::write(&config, &text).unwrap();
        let (code, stdout, stderr) = holdfast_cmd(&[OsStr::new("check"), config.as_os_str()]);
        if code != Some(0) {
            failures.push(format!(
                "{file}:{line}: holdfast check exited {code:?}:\n{stdout}{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_broken_example_fails_this_check() {
    // The check above is only worth something if `holdfast check` can say no to an example.
    let dir = tempfile::tempdir().unwrap();
    let example =
        "[edge]\nlisten = [\"127.0.0.1:8080\"]\n\n[[routes]]\nname = \"all\"\npool = \"missing\"\n";
    let text = localise(example, dir.path());
    provide_files(dir.path(), &toml::from_str(&text).unwrap());
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, &text).unwrap();
    let (code, stdout, _) = holdfast_cmd(&[OsStr::new("check"), config.as_os_str()]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("routes[0]"), "{stdout}");
}
