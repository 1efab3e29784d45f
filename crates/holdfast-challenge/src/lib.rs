//! The self-hosted challenge (R12): what a client must do to pass a `challenge` rule, and
//! the proof that it did. Keys come from a file (the first signs, every one verifies: key
//! rotation) or are generated at start; `Signer` makes and checks the three signed values —
//! the proof-of-work token on the page, the no-JavaScript token, and the pass cookie bound
//! to the client's address prefix and `User-Agent`. `page` renders the pages (inline JS and
//! CSS only, nothing from another host); `target` keeps the return path on the same host.
//! Only `module` does I/O: `ChallengeKind`, the challenge as a module kind of the edge
//! (reads the key file, bounded, and keeps the generated key in `state_dir`).

#![forbid(unsafe_code)]

mod error;
mod form;
mod keys;
pub mod module;
mod page;
mod pow;
mod signer;
mod target;

pub use error::{KeyFileError, Reject};
pub use form::{encode_component, form_value};
pub use keys::{Keys, MAX_KEYS, MAX_KEY_BYTES, MAX_KEY_FILE_BYTES, MIN_KEY_BYTES};
pub use module::{ChallengeKind, ChallengeRunning, ChallengeStatus};
pub use page::{
    challenge_page, json_body, loop_page, wait_page, PageInput, NOJS_PATH, VERIFY_PATH,
};
pub use pow::{leading_zero_bits, solve, solves};
pub use signer::{Settings, Signer};
pub use target::safe_target;
