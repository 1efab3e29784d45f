//! The shield: what protects origins from floods and bots.
//!
//! The local rate limiter ([`limit`]), global limits shared through Redis ([`global`]) and
//! both as one module ([`limits`]); the rule engine and the self-hosted challenge come later
//! (issue 7).

pub mod global;
pub mod limit;
pub mod limits;
