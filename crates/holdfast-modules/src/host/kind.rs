//! The module contract: `ModuleKind`, what every kind of module (limits, rules, bot,
//! challenge, IP lists) implements in its own crate so the host can plan, start, wire,
//! switch and show it without knowing it. `Links` carries what one kind of a generation
//! offers the kinds registered after it; `Step` is one entry of the request chain.

use crate::{ModuleSlot, ModuleStatus, Override, RequestModule};
use holdfast_artifact::{ArtifactStatus, LoadOutcome};
use holdfast_config::{Config, ConfigError};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// One kind of module, registered once with the `ModuleHost`.
///
/// A generation goes `plan` (pure: what the config asks, every error found) → `start` (keep
/// the previous generation's instance, or start a new one: artifacts, threads, watchers) →
/// `wire` (its steps in the request chain, and what it offers later kinds) → accepted with
/// the rest of the config: `update` of a kept instance, or the new one replaces the old.
pub trait ModuleKind: Send + Sync + 'static {
    /// `[modules.<NAME>]`, the kill switch's path segment and the overrides file's key.
    const NAME: &'static str;
    /// What the operator is told when switching it while the config does not use it
    /// (e.g. "no [[limits]] are configured"); empty: the configured modules are listed.
    const UNCONFIGURED: &'static str = "";
    /// What a config asks of this kind, computed without side effects.
    type Plan: Send + 'static;
    /// One generation's instance (slot, artifacts, threads), shared with its steps.
    type Running: Send + Sync + 'static;
    /// What `/status` shows of a running instance.
    type Status: serde::Serialize;

    /// `None`: the config does not use this kind. Reads files (never writes, never starts
    /// anything): `holdfast check` runs it, so whatever fails here fails a check too. Every
    /// error is returned, each with its key path and a hint.
    fn plan(&self, config: &Config) -> Result<Option<Self::Plan>, Vec<ConfigError>>;

    /// Keep `previous` (same artifact, same compiled state; its settings change at
    /// `update`) or start a new instance. Cannot fail: `plan` found every error. `links`
    /// holds what the kinds registered before this one offer in the same generation.
    fn start(
        &self,
        plan: Self::Plan,
        previous: Option<&Self::Running>,
        links: &Links,
    ) -> Start<Self::Plan, Self::Running>;

    /// A kept instance takes the new plan's settings (its config was accepted).
    fn update(&self, _running: &Self::Running, _plan: Self::Plan) {}

    /// Its steps in the request chain (none: it only serves other kinds) and what it offers
    /// the kinds registered after it (`links.offer`).
    fn wire(&self, running: &Arc<Self::Running>, links: &mut Links) -> Vec<Step>;

    /// The runner the operator's kill switch acts on; `None`: it has none.
    fn switch<'r>(&self, _running: &'r Self::Running) -> Option<&'r dyn Switch> {
        None
    }

    /// Its artifacts (re-read on reload, forced by the operator, shown on `/status`).
    fn artifacts(&self, _running: &Self::Running) -> Vec<Arc<dyn HostedArtifact>> {
        Vec::new()
    }

    /// Its `/status` entry; `None`: not listed under `modules`.
    fn status(&self, running: &Self::Running) -> Option<Self::Status>;
}

/// `ModuleKind::start`'s answer.
pub enum Start<P, R> {
    /// The previous instance goes on; this plan's settings apply once accepted.
    Keep(P),
    /// A new instance (the previous one, if any, ends when the new one is installed).
    New(R),
}

/// Where a step runs in the chain: cheap refusals first, the modules whose results later
/// ones read (through `ModuleCtx`) before those, header-only modules last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Rate limits: a request over a limit costs nothing else.
    Limit,
    /// Writes what a later `Decide` reads (the bot score when a rule reads it).
    Inform,
    /// Blocks, challenges, edits (the rules).
    Decide,
    /// Only adds to the origin request (the bot header when no rule reads the score).
    Annotate,
}

/// One step of the request chain.
pub struct Step {
    pub stage: Stage,
    pub module: Arc<dyn RequestModule>,
}

/// What the kinds of one generation offer each other, by type (built once per generation,
/// never on the request path).
#[derive(Default)]
pub struct Links {
    offered: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Links {
    /// Offer `value` to the kinds registered after this one (replaces one of the same type).
    pub fn offer<T: Any + Send + Sync>(&mut self, value: T) {
        self.offered.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// What an earlier kind offered of type `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.offered.get(&TypeId::of::<T>())?.downcast_ref()
    }
}

/// The operator's kill switch of one module (its runner).
pub trait Switch: Send + Sync {
    fn set_override(&self, o: Override);
    fn status(&self) -> ModuleStatus;
}

impl<M: crate::Module> Switch for ModuleSlot<M> {
    fn set_override(&self, o: Override) {
        ModuleSlot::set_override(self, o);
    }

    fn status(&self) -> ModuleStatus {
        ModuleSlot::status(self)
    }
}

/// An artifact a kind owns, as the host handles it.
pub trait HostedArtifact: Send + Sync {
    /// Re-read the file now (after it is applied, whatever depends on it is refreshed).
    fn reload(&self) -> LoadOutcome;
    /// Apply the next file even if it shrinks sharply (`POST /artifacts/NAME/force`).
    fn force_next(&self);
    fn status(&self) -> ArtifactStatus;
}

impl<K: holdfast_artifact::ArtifactKind> HostedArtifact for holdfast_artifact::Artifact<K> {
    fn reload(&self) -> LoadOutcome {
        holdfast_artifact::Artifact::reload(self)
    }

    fn force_next(&self) {
        holdfast_artifact::Artifact::force_next(self);
    }

    fn status(&self) -> ArtifactStatus {
        holdfast_artifact::Artifact::status(self)
    }
}

/// The name the operator gives an artifact: its kind, or `kind:name` for a named one.
pub(crate) fn artifact_label(status: &ArtifactStatus) -> String {
    match &status.name {
        Some(name) => format!("{}:{name}", status.kind),
        None => status.kind.to_string(),
    }
}
