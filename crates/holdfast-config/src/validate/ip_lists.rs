//! `[[ip_lists]]` (IP-list artifacts that rules read with `ip_in_list(client.ip, "name")`)
//! and `[[rule_lists]]` (rule-list artifacts run after `[[rules]]`): unique names of letters,
//! digits, `-` and `_`, a file.

use super::{Errors, UniqueNames};
use crate::config::NamedFile;
use crate::spec::NamedFileSpec;
use std::path::Path;

pub(super) fn ip_lists(
    specs: &[NamedFileSpec],
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<NamedFile> {
    let names = UniqueNames::new(
        "IP list",
        "name",
        "give the list a name, e.g. name = \"office\"",
        "IP list names must be unique: rules name them in ip_in_list(...)",
    );
    named_files(
        "ip_lists",
        "one CIDR per line",
        names,
        specs,
        base_dir,
        errs,
    )
}

pub(super) fn rule_lists(
    specs: &[NamedFileSpec],
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<NamedFile> {
    let names = UniqueNames::new(
        "rule list",
        "name",
        "give the list a name, e.g. name = \"waf\"",
        "rule list names must be unique: they label the artifact in metrics and /status",
    );
    named_files("rule_lists", "JSON rules", names, specs, base_dir, errs)
}

fn named_files<'a>(
    table: &str,
    what: &str,
    mut names: UniqueNames<'a>,
    specs: &'a [NamedFileSpec],
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<NamedFile> {
    specs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let at = format!("{table}[{i}]");
            names.check(&at, &l.name, errs);
            if !l
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errs.add(
                    format!("{at}.name"),
                    format!(
                        "{:?} has characters other than letters, digits, - and _",
                        l.name
                    ),
                    "use letters, digits, - and _ (the name labels metrics and the LKG file)",
                );
            }
            if l.file.is_empty() {
                errs.add(
                    format!("{at}.file"),
                    "empty path",
                    &format!("name the list's file ({what}), e.g. file = \"list.txt\""),
                );
            }
            NamedFile {
                name: l.name.clone(),
                file: base_dir.join(&l.file),
            }
        })
        .collect()
}
