//! The shield: what protects origins from floods and bots.
//!
//! The local rate limiter ([`limit`]), global limits shared through Redis ([`global`]) and
//! both as one module ([`limits`]); the rule engine ([`rules`], CEL expressions; rule lists
//! [`rule_list`] and IP lists [`ip_list`] as artifacts). [`kind`] makes them module kinds
//! of the host (`holdfast_modules::host`): `LimitsKind`, `IpListsKind`, `RulesKind` — plan,
//! start or keep, their request steps, typed status. The challenge is `holdfast-challenge`.
//!
//! # Map
//!
//! What each part holds (moved here from ARCHITECTURE.md, which keeps the crate-level
//! map and the invariants that cross crates).
//!
//! the shield. `limit::Limiter` (local: governor's GCRA over a
//! bounded two-generation key table of hashed keys; the `RateLimit` headers), `global` (limits
//! shared through Redis: a fixed window per key, counts pre-aggregated locally and sent by a
//! sync thread of its own in one pipelined `EVALSHA` round trip per interval; while Redis is
//! down each global limit falls back to its local limiter) and `limits::RateLimits`, the
//! `limits` module that checks a request against the limits of its route. `rules::Rules`, the
//! `rules` module: CEL expressions (`cel-interpreter`) compiled once per config generation (the
//! config check in `holdfast-config` walks each syntax tree for unknown names and bad
//! `matches` patterns), evaluated in file order per request over the rules listed for its
//! route; `matches` runs on the `regex` crate (linear time). `rules::native` compiles the common
//! shapes (string tests, `==`, `in [..]`, `matches` over request fields, `&&`/`||`/`!`) to
//! predicates read straight off the `RequestView`; only the other rules build `cel-interpreter`'s
//! request map, lazily. **Invariant:** native and CEL evaluation agree, errors included (a unit
//! test compares them). `ip_list::IpListKind` is the `ip-list` artifact kind (CIDRs into
//! `prefix-trie` tries) behind `[[ip_lists]]`; named artifacts (`ArtifactOptions::name`) label
//! metrics, `/status` and LKG files `ip-list:<name>`; the host keeps each list's artifact across
//! reloads while its file is unchanged. `rule_list::RuleListKind` (`rule-list`) ships rules as
//! files: checked by the config's own rule check (`holdfast_config::rule_list_entries`) plus a
//! consumer check against `[[rules]]` ids (`Artifact::with_check`), compiled by
//! `rules::ListRules` after each swap (off the request path) and run after `[[rules]]`.
//! `set_header`/`remove_header`/`route` rules return effects
//! (`ModuleAction::Edit`): header edits the proxy applies to the origin request after the other
//! modules' headers, and a route name the service switches to (`phases::route::reroute`) before
//! the upstream phase. `rate_limit` rules name `rules_only` limits, which the rules' step checks through the
//! limits module of the same generation (`kind::LimitsLink`, offered by `LimitsKind`:
//! `RateLimits::check_named`). When a rule reads `bot.score`, `RulesKind` offers
//! `ReadsBotScore` and the bot module's step runs before the rules (`Stage::Inform`) and writes
//! its score in the request's `ModuleCtx`, which `Rules::decide_in` reads. When a rule (or a rule list's) reads
//! `client.rate`, `Rules::decide` counts the request once, before any rule runs, in a
//! `holdfast_bot::RateTable` (fixed 1 s windows, bounded) the rule set owns. A `challenge` rule's outcome
//! (`RuleOutcome::Challenge`, with its difficulty, no-JS flag and the effects of the rules before
//! it) goes to the challenge module (`ChallengeGate`, offered by `ChallengeKind`); a client with a valid cookie passes with those effects.
//!
//! **Invariant:** a rule's run-time error is that rule's miss (counted), never a block or a 5xx.
//!
//! **Invariant:** Redis is never on the request path: a request reads and bumps local state
//! only; a slow or dead Redis changes how exact a global limit is, never a response's status
//! beyond 429.

#![forbid(unsafe_code)]

pub mod global;
pub mod ip_list;
pub mod kind;
pub mod limit;
pub mod limits;
pub mod rule_list;
pub mod rules;
