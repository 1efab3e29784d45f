//! Bot scoring: request features (`features`), a JA4H-style fingerprint (`ja4h`), the client
//! request rate (`rate`), the feature file as an artifact kind (`file::BotFeatures`), the
//! compiled model and its score (`model`), the scoring module (`module::BotScorer`), and
//! `kind::BotKind`, the bot module as a kind of the module host (the feature file's
//! artifact, the step that writes the score in the request's `ModuleCtx` and the header).
//!
//! The feature file is untrusted input (R1): its capacity is checked against
//! [`MAX_FEATURES`], the same constant the model is allocated with; a file that cannot be
//! loaded is a rejection, never a panic, and a score is always 1..=99 or explicitly
//! "unknown" (R6).

#![forbid(unsafe_code)]

pub mod features;
pub mod file;
pub mod ja4h;
pub mod kind;
pub mod model;
pub mod module;
pub mod rate;

pub use features::{Family, Feature, FeatureName, Ja4h, RequestFeatures};
pub use file::{BotFeatures, MAX_ABS_BIAS, MAX_ABS_WEIGHT};
pub use ja4h::{ja4h, Ja4hA};
pub use model::{unknown_header, Full, Model, ModelBuilder, Score, MAX_FEATURES, SCORE_HEADER};
pub use module::{BotScorer, FixedModel, ModelSource};
pub use rate::{RateTable, DEFAULT_WINDOW, RATE_SLOTS};
