//! Integration tests for `holdfast-config`: one binary, one module per concern. `valid`
//! checks what accepted files turn into (defaults included); `errors` checks each semantic
//! error on its own and many at once; `shape` checks what goes wrong before validation
//! (TOML syntax, types, unknown keys); `docs` keeps the reference's example honest.
//! Error lists are `expect-test` snapshots: `UPDATE_EXPECT=1 cargo test -p holdfast-config`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod dns;
mod docs;
mod errors;
mod h3;
mod shape;
mod tls_keys;
mod valid;

use expect_test::Expect;
use holdfast_config::{Config, ConfigError};
use std::path::Path;

/// Where relative paths in test files resolve to.
pub const BASE_DIR: &str = "/etc/holdfast";

pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    holdfast_config::parse(text, Path::new(BASE_DIR))
}

/// The file must be accepted; on failure the message lists every error.
pub fn accept(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(errs) => panic!("expected the file to be accepted, got:\n{}", render(&errs)),
    }
}

/// The file must be rejected; its errors, one per line, as `holdfast check` prints them.
pub fn reject(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected errors, the file was accepted as {config:#?}"),
        Err(errs) => render(&errs),
    }
}

pub fn check_errors(text: &str, expect: Expect) {
    expect.assert_eq(&reject(text));
}

/// Each of `cases` (lines `with` adds to a valid file) must be rejected on its own; the
/// snapshot lists every case followed, indented, by its whole error list.
pub fn check_each(with: impl Fn(&str) -> String, cases: &[&str], expect: Expect) {
    let mut out = String::new();
    for case in cases {
        out.push_str(case);
        out.push('\n');
        for error in reject(&with(case)).lines() {
            out.push_str("    ");
            out.push_str(error);
            out.push('\n');
        }
    }
    expect.assert_eq(&out);
}

fn render(errs: &[ConfigError]) -> String {
    errs.iter().map(|e| format!("{e}\n")).collect()
}

/// A valid file with extra lines added to `[edge]`, the one pool and the one route.
/// Lines may be keys or, for `edge`, whole sub-tables such as `[[edge.tls]]`.
pub fn file_with(edge: &str, pool: &str, route: &str) -> String {
    format!(
        r#"
[edge]
listen = ["127.0.0.1:8080"]
{edge}

[[pools]]
name = "primary"
servers = ["127.0.0.1:9000"]
{pool}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
pool = "primary"
{route}
"#
    )
}

pub fn edge_with(lines: &str) -> String {
    file_with(lines, "", "")
}

pub fn pool_with(lines: &str) -> String {
    file_with("", lines, "")
}

pub fn route_with(lines: &str) -> String {
    file_with("", "", lines)
}
