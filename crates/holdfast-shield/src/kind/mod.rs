//! The shield's module kinds (`holdfast_modules::host::ModuleKind`): `limits`, `ip_lists`
//! (artifacts the rules read) and `rules`. Registered with the host in that order: the
//! rules read what the other two offer.

mod ip_lists;
mod limits;
mod rules;

pub use ip_lists::{IpListsKind, IpListsPlan, IpListsRunning};
pub use limits::{
    GlobalStatus, LimitStatus, LimitsKind, LimitsLink, LimitsPlan, LimitsRunning, LimitsSlot,
    LimitsStatus, RedisStatus,
};
pub use rules::{RuleStatus, RulesKind, RulesPlan, RulesRunning, RulesSlot, RulesStatus};

/// How often watched artifact files are checked when change events are not available.
const ARTIFACT_POLL: std::time::Duration = std::time::Duration::from_secs(1);
