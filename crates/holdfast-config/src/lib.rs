//! Holdfast's configuration: the TOML a user wrote (`Spec`) is parsed, checked as a whole
//! and turned into a typed, validated `Config`. Every problem is reported at once, each with
//! its key path and a hint. Nothing in this crate does I/O: callers hand it text and the
//! folder that relative paths are resolved against.

#![forbid(unsafe_code)]

mod config;
mod error;
mod fleet_split;
mod parse;
mod spec;
mod units;
mod validate;

pub use config::{
    AccessLog, Admin, Balance, BotModule, Breaker, CacheConfig, CacheDisk, CacheKey, Challenge,
    CheckKind, ClientIpHeader, Config, Dns, DnsZone, Edge, FailPolicy, Fallback, Fleet,
    FleetRollout, HashKey, HeaderOps, HealthCheck, HostMatch, IpList, Limit, LimitKey, LimitScope,
    Limits, Modules, NamedFile, Outlier, Overload, Pool, QueryKey, Redis, RetryOn, RetryPolicy,
    Route, Rule, RuleAction, RuleFields, RuleHeader, RuleList, RuleMode, ServerAddr, SteerPolicy,
    Steered, Timeouts, TlsCert, UpstreamTls, WhenAllDown, MAX_FALLBACK_BYTES,
};
pub use error::ConfigError;
pub use fleet_split::{
    is_fleet_member, local_violations, merge_fleet_version, no_version_yet, version_violations,
    CHECK_PLACEHOLDER, INSTANCE_OWNED,
};
pub use parse::{parse, state_dir_hint, MAX_CONFIG_BYTES};
pub use spec::RuleSpec;
pub use spec::Spec;
pub use units::ByteSize;
pub use validate::{check_rule_expr, check_rule_expr_with, rule_list_entries};
