//! The bot feature-file loader must never panic, whatever the bytes: it returns a model
//! within `MAX_FEATURES` or a rejection with a reason.
#![no_main]

use holdfast_artifact::ArtifactKind;
use holdfast_bot::{BotFeatures, MAX_FEATURES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = BotFeatures::load(data) {
        assert!(BotFeatures::entries(&model) <= MAX_FEATURES);
        assert!(BotFeatures::version(&model) >= 1);
    }
});
