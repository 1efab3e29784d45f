//! From TOML text to a `Config`: syntax, then shape (every unknown key, with its path), then
//! meaning (`validate`). All errors found are returned together.

use crate::error::ConfigError;
use crate::spec::Spec;
use crate::validate::validate;
use crate::Config;
use std::path::Path;

/// The largest configuration file accepted; callers enforce it while reading.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Parse and validate a configuration. Relative paths in it are resolved against `base_dir`
/// (the folder of the file it came from).
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let (spec, mut errors) = parse_spec(text)?;
    match validate(spec, base_dir) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(errors),
        Err(semantic) => {
            errors.extend(semantic);
            Err(errors)
        }
    }
}

/// `[edge] state_dir` of a file that may be invalid otherwise (where to look for the
/// last-known-good configuration when this one is rejected at start): `None` if the TOML
/// cannot be read as far as that key.
pub fn state_dir_hint(text: &str, base_dir: &Path) -> Option<std::path::PathBuf> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let dir = table.get("edge")?.get("state_dir")?.as_str()?;
    (!dir.is_empty()).then(|| base_dir.join(dir))
}

/// The `Spec` and its unknown keys, or (syntax or type error) the errors found so far.
fn parse_spec(text: &str) -> Result<(Spec, Vec<ConfigError>), Vec<ConfigError>> {
    let de = toml::Deserializer::parse(text).map_err(|e| vec![syntax_error(text, &e)])?;
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let de = serde_path_to_error::Deserializer::new(de, &mut track);
        serde_ignored::deserialize(de, |path| unknown.push(unknown_key(&path)))
    };
    match result {
        Ok(spec) => Ok((spec, unknown)),
        Err(e) => {
            let path = tracked_path(&track.path());
            let path = if path.is_empty() {
                "(top level)".to_string()
            } else {
                path
            };
            unknown.push(ConfigError::new(
                path,
                e.message().to_string(),
                "see docs/config.md for the expected type",
            ));
            Err(unknown)
        }
    }
}

/// `routes[2].pool` from serde_path_to_error's path, keys quoted as `key_path` does (its own
/// display writes the key `""` as nothing, which named no place).
fn tracked_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&quoted_key(key));
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// A key as written in the file: bare when it can be, else quoted (`""`, `"a b"`).
fn quoted_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn unknown_key(path: &serde_ignored::Path<'_>) -> ConfigError {
    ConfigError::new(
        key_path(path),
        "unknown key",
        "remove it or check its spelling against docs/config.md",
    )
}

/// `routes[2].pool` from serde_ignored's path (which writes `routes.2.pool`).
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            // A key that is not bare (`""`, `"a b"`) is written quoted, as in the file.
            let key = quoted_key(key);
            if parent.is_empty() {
                key
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            // Characters, not bytes: editors count a non-ASCII character as one column.
            let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}")
        }
        None => "(document)".to_string(),
    };
    ConfigError::new(
        at,
        format!("TOML syntax error: {}", e.message().trim()),
        "fix the TOML syntax at that position",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn an_unknown_key_that_is_not_bare_is_named_quoted() {
        // Found by fuzz/config_parse: `""=""` gave an error with an empty path.
        let errs = parse("\"\" = \"\"\n", std::path::Path::new("/etc/holdfast")).unwrap_err();
        let e = errs.iter().find(|e| e.message == "unknown key").unwrap();
        assert_eq!(e.path, "\"\"");
        let errs = parse("\"a b\" = 1\n", std::path::Path::new("/etc/holdfast")).unwrap_err();
        assert!(errs.iter().any(|e| e.path == "\"a b\""), "{errs:?}");
    }

    #[test]
    fn a_type_error_under_a_key_that_is_not_bare_names_it_quoted() {
        // Found by fuzz/config_parse (7 Dec): an overflowing integer under `""` gave an error
        // with an empty path.
        let text = "\"\"=99999999999990000000000000000129\n";
        let errs = parse(text, std::path::Path::new("/etc/holdfast")).unwrap_err();
        assert!(errs.iter().all(|e| !e.path.is_empty()), "{errs:?}");
        let errs = parse("[edge]\nthreads = \"x\"\n", std::path::Path::new("/")).unwrap_err();
        assert!(errs.iter().any(|e| e.path == "edge.threads"), "{errs:?}");
    }
}
