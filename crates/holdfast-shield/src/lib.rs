//! The shield: what protects origins from floods and bots.
//!
//! For now the local rate limiter ([`limit`]); global limits (Redis), the rule engine and the
//! self-hosted challenge come later (issue 7).

pub mod limit;
pub mod limits;
