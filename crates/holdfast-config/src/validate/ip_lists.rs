//! `[[ip_lists]]`: named IP-list artifacts (one CIDR per line) that rules read with
//! `ip_in_list(client.ip, "name")`: unique names of letters, digits, `-` and `_`, a file.

use super::{Errors, UniqueNames};
use crate::config::IpList;
use crate::spec::IpListSpec;
use std::path::Path;

pub(super) fn ip_lists(specs: &[IpListSpec], base_dir: &Path, errs: &mut Errors) -> Vec<IpList> {
    let mut names = UniqueNames::new(
        "IP list",
        "name",
        "give the list a name, e.g. name = \"office\"",
        "IP list names must be unique: rules name them in ip_in_list(...)",
    );
    specs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let at = format!("ip_lists[{i}]");
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
                    "name the list's file, e.g. file = \"office.txt\" (one CIDR per line)",
                );
            }
            IpList {
                name: l.name.clone(),
                file: base_dir.join(&l.file),
            }
        })
        .collect()
}
