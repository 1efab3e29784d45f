//! The configuration parser (TOML → Spec → Config) must never panic, whatever the bytes: it
//! returns a `Config` or a non-empty list of errors, each naming where (a key path or a
//! line), what and how to fix it.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // Rules' expressions reach the CEL parser, whose caught panics must not abort the run.
    common::quiet_expected_panics();
    if let Ok(text) = std::str::from_utf8(data) {
        match holdfast_config::parse(text, std::path::Path::new("/etc/holdfast")) {
            Ok(_) => {}
            Err(errors) => {
                assert!(!errors.is_empty());
                for e in &errors {
                    assert!(!e.path.is_empty(), "an error names where: {e:?}");
                    assert!(!e.message.is_empty(), "an error says what: {e:?}");
                    assert!(!e.hint.is_empty(), "an error says how to fix it: {e:?}");
                }
            }
        }
    }
});
