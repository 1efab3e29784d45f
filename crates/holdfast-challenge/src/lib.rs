//! The self-hosted challenge (R12): what a client must do to pass a `challenge` rule, and
//! the proof that it did. Keys come from a file (the first signs, every one verifies: key
//! rotation) or are generated at start; `Signer` makes and checks the three signed values —
//! the proof-of-work token on the page, the no-JavaScript token, and the pass cookie bound
//! to the client's address prefix and `User-Agent`. `page` renders the pages (inline JS and
//! CSS only, nothing from another host); `target` keeps the return path on the same host.
//! Only `module` does I/O: `ChallengeKind`, the challenge as a module kind of the edge
//! (reads the key file, bounded, and keeps the generated key in `state_dir`).
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the self-hosted challenge's pieces, no I/O: `Keys` (the key
//! file parsed as untrusted text: 1–2 hex keys ≥ 32 bytes; or generated), `Signer` (the pass
//! cookie `c1.…`, the proof-of-work token `p1.…` and the no-JS token `n1.…`, HMAC-SHA256 over
//! keyed hashes of the address prefix and `User-Agent`; the first key signs, all verify), `pow`
//! (leading zero bits of SHA-256), `page` (the pages: inline script with its own SHA-256 beside
//! `crypto.subtle`, `<noscript>` form, wait and loop pages, the API JSON), `safe_target` (return
//! paths stay on the host) and `form_value`. The wiring is `module/` (kind, gate, status, metrics), the only part with I/O: `ChallengeKind` (plan: the
//! key file read and checked, or the generated key read; start: a generated key written to
//! `state_dir`), `ChallengeModule` (decides: valid / missing / refused cookie) in a
//! `ModuleSlot`, `ChallengeRunning` (the `ChallengeGate` the rules call: the page or JSON for a
//! challenged request; the reserved paths), metrics and the typed `ChallengeStatus`. See `docs/shield.md#challenge`.
//!
//! **Invariant:** a failing challenge never locks a `critical` route (fail open there) and is
//! never a 5xx elsewhere (403 or pass, by `fail_policy`); the return target is always a
//! same-host path.

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
