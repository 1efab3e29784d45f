//! The zone-file loader must never panic: a zone (with its SOA serial as version) or a
//! rejection with a reason.
#![no_main]

use holdfast_artifact::ArtifactKind;
use holdfast_dns::ZoneFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(zone) = ZoneFile::load_in("example.test.\nwww.example.test.", data) {
        assert!(ZoneFile::entries(&zone) >= 1, "a zone has at least its SOA");
    }
});
