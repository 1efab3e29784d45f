//! The shield: what protects origins from floods and bots.
//!
//! The local rate limiter ([`limit`]), global limits shared through Redis ([`global`]) and
//! both as one module ([`limits`]); the rule engine ([`rules`], CEL expressions; rule lists
//! [`rule_list`] and IP lists [`ip_list`] as artifacts). [`kind`] makes them module kinds
//! of the host (`holdfast_modules::host`): `LimitsKind`, `IpListsKind`, `RulesKind` — plan,
//! start or keep, their request steps, typed status. The challenge is `holdfast-challenge`.

#![forbid(unsafe_code)]

pub mod global;
pub mod ip_list;
pub mod kind;
pub mod limit;
pub mod limits;
pub mod rule_list;
pub mod rules;
