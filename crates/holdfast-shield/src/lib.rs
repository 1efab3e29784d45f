//! The shield: what protects origins from floods and bots.
//!
//! The local rate limiter ([`limit`]), global limits shared through Redis ([`global`]) and
//! both as one module ([`limits`]); the rule engine ([`rules`], CEL expressions); the
//! self-hosted challenge comes later (issue 7).

#![forbid(unsafe_code)]

pub mod global;
pub mod ip_list;
pub mod kind;
pub mod limit;
pub mod limits;
pub mod rule_list;
pub mod rules;
