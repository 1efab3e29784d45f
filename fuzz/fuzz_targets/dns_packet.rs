//! The DNS packet path (hickory's decoding, then Holdfast's handler: steered names and the
//! catalog) must never panic, whatever arrives on the socket; anything it answers must
//! decode as a DNS message.
#![no_main]

use holdfast_dns::fuzzing::PacketPath;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static PATH: OnceLock<Option<PacketPath>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(path) = PATH.get_or_init(PacketPath::new) else {
        panic!("the sample zone must load");
    };
    if let Some(answer) = path.answer(data) {
        assert!(answer.len() >= 12, "an answer has at least a header");
    }
});
