//! Holdfast's configuration: the TOML a user wrote (`Spec`) is parsed, checked as a whole
//! and turned into a typed, validated `Config`. Every problem is reported at once, each with
//! its key path and a hint. Nothing in this crate does I/O: callers hand it text and the
//! folder that relative paths are resolved against.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! `Spec` mirrors the TOML; `validate` turns it into `Config`
//! (typed: `SocketAddr`, `Duration`, `HeaderName`, indices instead of names) and collects
//! every error as `ConfigError { path, message, hint }`. Unknown keys are collected with
//! `serde_ignored` (all of them, with paths) instead of `deny_unknown_fields` (first one only);
//! type errors carry their path through `serde_path_to_error`.
//!
//! **Invariant:** nothing in `holdfast-config` does I/O; relative paths are joined to a base
//! folder the caller passes in.

#![forbid(unsafe_code)]

mod config;
mod error;
mod fleet_split;
mod parse;
mod spec;
mod units;
mod validate;

pub use config::{
    AccessLog, AcmeCert, AcmeChallenge, Admin, AdminAuth, AdminTls, Balance, BotModule, Breaker,
    CacheConfig, CacheDisk, CacheKey, Challenge, CheckKind, ClientAuth, ClientCertFiles,
    ClientIpHeader, Component, Config, Dns, DnsZone, Edge, EncodedSlashes, FailPolicy, Fallback,
    Fleet, FleetRollout, HashKey, HeaderOps, HealthCheck, HostMatch, IpList, Limit, LimitKey,
    LimitScope, Limits, Modules, NamedFile, Outlier, Overload, Pool, QueryKey, Redis, RetryOn,
    RetryPolicy, Route, Rule, RuleAction, RuleFields, RuleHeader, RuleList, RuleMode, ServerAddr,
    SessionTickets, StatusPage, SteerPolicy, Steered, Timeouts, TlsCert, TlsPolicy, TlsVersion,
    UpstreamTls, WhenAllDown, H3, LETS_ENCRYPT_DIRECTORY, MAX_FALLBACK_BYTES,
};
pub use error::ConfigError;
pub use fleet_split::{
    check_placeholder, has_tls_listener, is_fleet_member, local_violations, merge_fleet_version,
    no_version_yet, version_violations, CHECK_PLACEHOLDER, INSTANCE_OWNED,
};
pub use parse::{parse, state_dir_hint, MAX_CONFIG_BYTES};
pub use spec::RuleSpec;
pub use spec::Spec;
pub use units::ByteSize;
pub use validate::{check_rule_expr, check_rule_expr_with, rule_list_entries};
