//! Holdfast's configuration: the TOML a user wrote (`Spec`) is parsed, checked as a whole
//! and turned into a typed, validated `Config`. Every problem is reported at once, each with
//! its key path and a hint. Nothing in this crate does I/O: callers hand it text and the
//! folder that relative paths are resolved against.

mod config;
mod error;
mod parse;
mod spec;
mod units;
mod validate;

pub use config::{
    AccessLog, Admin, AdminAuth, AdminTls, Balance, BotModule, Breaker, CacheConfig, CacheDisk,
    CacheKey, Challenge, CheckKind, ClientIpHeader, Component, Config, Dns, DnsZone, Edge,
    FailPolicy, Fallback, HashKey, HeaderOps, HealthCheck, HostMatch, IpList, Limit, LimitKey,
    LimitScope, Limits, Modules, NamedFile, Outlier, Overload, Pool, QueryKey, Redis, RetryOn,
    RetryPolicy, Route, Rule, RuleAction, RuleFields, RuleHeader, RuleList, RuleMode, ServerAddr,
    StatusPage, SteerPolicy, Steered, Timeouts, TlsCert, UpstreamTls, WhenAllDown,
    MAX_FALLBACK_BYTES,
};
pub use error::ConfigError;
pub use parse::{parse, state_dir_hint, MAX_CONFIG_BYTES};
pub use spec::RuleSpec;
pub use spec::Spec;
pub use units::ByteSize;
pub use validate::{check_rule_expr, rule_list_entries};
