//! Shared by the targets that reach the CEL parser (`#[path]`-included, not a target).

use std::sync::OnceLock;

/// The CEL parser panics on some inputs and the checks catch that (`catch_unwind`);
/// libFuzzer's panic hook would abort on the caught panic. This hook only prints the
/// message of other panics: an uncaught panic still aborts, as libfuzzer-sys catches it at
/// the top of each run.
pub fn quiet_expected_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            let file = info.location().map(|l| l.file()).unwrap_or("");
            if !(file.contains("antlr")
                || file.contains("cel-parser")
                || file.contains("cel_parser"))
            {
                eprintln!("{info}");
            }
        }));
    });
}
