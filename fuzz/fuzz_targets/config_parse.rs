//! The configuration parser must never panic, whatever the bytes: it returns a `Config`
//! or a non-empty list of errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match holdfast_config::parse(text, std::path::Path::new("/etc/holdfast")) {
            Ok(_) => {}
            Err(errors) => assert!(!errors.is_empty()),
        }
    }
});
