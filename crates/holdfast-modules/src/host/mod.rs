//! The module host: a registry of `ModuleKind`s that plans, starts, wires and installs every
//! kind the same way, keeps the operator's overrides in `state_dir`, and answers the admin
//! plane (status, kill switch, forced artifact reloads). It knows the contract, never a
//! kind: adding a kind is one `register` call in the binary.
//!
//! One lock (`installed`), held briefly: a reload reads the previous instances, starts the
//! new ones without it, and takes it again only to install.

mod kind;
mod overrides;
#[cfg(test)]
mod tests;

pub use kind::{HostedArtifact, Links, ModuleKind, Stage, Start, Step, Switch};
pub use overrides::OVERRIDES_FILE;

use crate::{ModuleStatus, Override, RequestModule};
use holdfast_artifact::ArtifactStatus;
use holdfast_config::{Config, ConfigError};
use overrides::Overrides;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// A kind's running instance, type-erased (each kind downcasts its own).
type AnyRunning = Arc<dyn Any + Send + Sync>;

/// The contract, type-erased so one list holds every kind.
trait Registered: Send + Sync {
    fn name(&self) -> &'static str;
    fn unconfigured(&self) -> &'static str;
    fn plan(&self, config: &Config) -> Result<Option<Box<dyn Any + Send>>, Vec<ConfigError>>;
    fn start(
        &self,
        plan: Box<dyn Any + Send>,
        previous: Option<&AnyRunning>,
        links: &Links,
    ) -> Option<Started>;
    fn wire(&self, running: &AnyRunning, links: &mut Links) -> Vec<Step>;
    fn update(&self, running: &AnyRunning, plan: Box<dyn Any + Send>);
    fn switch(&self, running: &AnyRunning, o: Option<Override>) -> Option<ModuleStatus>;
    fn artifacts(&self, running: &AnyRunning) -> Vec<Arc<dyn HostedArtifact>>;
    fn status(&self, running: &AnyRunning) -> Option<serde_json::Value>;
}

/// One kind's instance in a prepared generation.
struct Started {
    running: AnyRunning,
    /// Kept: the plan whose settings apply at install.
    update: Option<Box<dyn Any + Send>>,
    /// Started now (an operator override from `state_dir` applies to it).
    new: bool,
}

struct Kind<K>(K);

fn typed<K: ModuleKind>(running: &AnyRunning) -> Option<&K::Running> {
    running.as_ref().downcast_ref::<K::Running>()
}

impl<K: ModuleKind> Registered for Kind<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn unconfigured(&self) -> &'static str {
        K::UNCONFIGURED
    }

    fn plan(&self, config: &Config) -> Result<Option<Box<dyn Any + Send>>, Vec<ConfigError>> {
        Ok(self
            .0
            .plan(config)?
            .map(|p| Box::new(p) as Box<dyn Any + Send>))
    }

    fn start(
        &self,
        plan: Box<dyn Any + Send>,
        previous: Option<&AnyRunning>,
        links: &Links,
    ) -> Option<Started> {
        let plan = *plan.downcast::<K::Plan>().ok()?;
        let kept = previous.and_then(typed::<K>);
        match self.0.start(plan, kept, links) {
            Start::New(running) => Some(Started {
                running: Arc::new(running),
                update: None,
                new: true,
            }),
            Start::Keep(plan) => previous.map(|p| Started {
                running: Arc::clone(p),
                update: Some(Box::new(plan)),
                new: false,
            }),
        }
    }

    fn wire(&self, running: &AnyRunning, links: &mut Links) -> Vec<Step> {
        match Arc::clone(running).downcast::<K::Running>() {
            Ok(r) => self.0.wire(&r, links),
            Err(_) => Vec::new(),
        }
    }

    fn update(&self, running: &AnyRunning, plan: Box<dyn Any + Send>) {
        if let (Some(r), Ok(plan)) = (typed::<K>(running), plan.downcast::<K::Plan>()) {
            self.0.update(r, *plan);
        }
    }

    fn switch(&self, running: &AnyRunning, o: Option<Override>) -> Option<ModuleStatus> {
        let switch = self.0.switch(typed::<K>(running)?)?;
        if let Some(o) = o {
            switch.set_override(o);
        }
        Some(switch.status())
    }

    fn artifacts(&self, running: &AnyRunning) -> Vec<Arc<dyn HostedArtifact>> {
        typed::<K>(running).map_or_else(Vec::new, |r| self.0.artifacts(r))
    }

    fn status(&self, running: &AnyRunning) -> Option<serde_json::Value> {
        let status = self.0.status(typed::<K>(running)?)?;
        Some(serde_json::to_value(status).unwrap_or_default())
    }
}

/// What a config asks of every kind (`holdfast check` stops here).
pub struct Plan {
    plans: Vec<Option<Box<dyn Any + Send>>>,
    state_dir: Option<PathBuf>,
}

/// A generation ready to install once the rest of its config is accepted: each kind's
/// instance (kept or new) and the request chain over them.
pub struct Prepared {
    started: Vec<Option<Started>>,
    chain: Vec<Arc<dyn RequestModule>>,
    state_dir: Option<PathBuf>,
}

impl Prepared {
    /// The request chain a `State` built for this generation runs, in order.
    pub fn chain(&self) -> Vec<Arc<dyn RequestModule>> {
        self.chain.clone()
    }
}

/// The installed generation.
#[derive(Default)]
struct Installed {
    running: Vec<Option<AnyRunning>>,
    state_dir: Option<PathBuf>,
}

/// What `/status` shows of the modules and their artifacts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostStatus {
    pub artifacts: Vec<ArtifactStatus>,
    pub modules: Vec<serde_json::Value>,
}

/// An admin request the host refused: the HTTP status and why.
pub type AdminError = (u16, String);

pub struct ModuleHost {
    kinds: Vec<Box<dyn Registered>>,
    /// Modules added by the embedding program (tests), run after the configured ones.
    extra: Vec<Arc<dyn RequestModule>>,
    installed: Mutex<Installed>,
}

impl ModuleHost {
    pub fn new(extra: Vec<Arc<dyn RequestModule>>) -> Self {
        ModuleHost {
            kinds: Vec::new(),
            extra,
            installed: Mutex::new(Installed::default()),
        }
    }

    /// Add a kind. Order matters once: a kind sees in `Links` what the kinds registered
    /// before it offer. The chain's order is the steps' `Stage`, then registration.
    #[must_use]
    pub fn register<K: ModuleKind>(mut self, kind: K) -> Self {
        self.kinds.push(Box::new(Kind(kind)));
        self
    }

    fn installed(&self) -> MutexGuard<'_, Installed> {
        holdfast_common::lock(&self.installed)
    }

    /// Every kind's plan for `config`, with no side effects; every kind's errors together.
    pub fn plan(&self, config: &Config) -> Result<Plan, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut plans = Vec::with_capacity(self.kinds.len());
        for kind in &self.kinds {
            match kind.plan(config) {
                Ok(plan) => plans.push(plan),
                Err(e) => {
                    errors.extend(e);
                    plans.push(None);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Plan {
            plans,
            state_dir: config.edge.state_dir.clone(),
        })
    }

    /// Plan, then start (or keep) every kind and wire the request chain. Nothing changes for
    /// requests until `install`. A kind whose start panics keeps its previous instance (or
    /// is left out) and the others go on.
    pub fn prepare(&self, config: &Config) -> Result<Prepared, Vec<ConfigError>> {
        Ok(self.start(self.plan(config)?))
    }

    /// Start (or keep) every kind of a plan and wire the request chain: `prepare` after the
    /// plan passed.
    pub fn start(&self, plan: Plan) -> Prepared {
        let previous = self.installed().running.clone();
        let overrides = overrides::read(plan.state_dir.as_deref());
        let mut links = Links::default();
        let mut steps: Vec<Step> = Vec::new();
        let mut started = Vec::with_capacity(self.kinds.len());
        for (i, (kind, plan)) in self.kinds.iter().zip(plan.plans).enumerate() {
            let previous = previous.get(i).and_then(Option::as_ref);
            let one = plan
                .and_then(|plan| self.start_one(kind.as_ref(), plan, previous, &links, &overrides));
            if let Some(s) = &one {
                let wired = catch_unwind(AssertUnwindSafe(|| kind.wire(&s.running, &mut links)));
                match wired {
                    Ok(w) => steps.extend(w),
                    Err(_) => tracing::error!(
                        module = kind.name(),
                        "module wiring panicked; it has no step in this generation"
                    ),
                }
            }
            started.push(one);
        }
        // Stable: steps of one stage keep the kinds' order.
        steps.sort_by_key(|s| s.stage);
        let chain = steps
            .into_iter()
            .map(|s| s.module)
            .chain(self.extra.iter().cloned())
            .collect();
        Prepared {
            started,
            chain,
            state_dir: plan.state_dir,
        }
    }

    fn start_one(
        &self,
        kind: &dyn Registered,
        plan: Box<dyn Any + Send>,
        previous: Option<&AnyRunning>,
        links: &Links,
        overrides: &Overrides,
    ) -> Option<Started> {
        match catch_unwind(AssertUnwindSafe(|| kind.start(plan, previous, links))) {
            Ok(Some(s)) => {
                if s.new {
                    if let Some(o) = overrides.get(kind.name()) {
                        kind.switch(&s.running, Some(*o));
                    }
                }
                Some(s)
            }
            Ok(None) => None,
            Err(_) => {
                tracing::error!(
                    module = kind.name(),
                    "module start panicked; its previous instance (if any) stays"
                );
                previous.map(|p| Started {
                    running: Arc::clone(p),
                    update: None,
                    new: false,
                })
            }
        }
    }

    /// Make a prepared generation current (its `State` was accepted): kept instances take
    /// their new settings, replaced and unconfigured ones end.
    pub fn install(&self, prepared: Prepared) {
        let mut running = Vec::with_capacity(self.kinds.len());
        for (kind, started) in self.kinds.iter().zip(prepared.started) {
            running.push(started.map(|s| {
                if let Some(plan) = s.update {
                    kind.update(&s.running, plan);
                }
                s.running
            }));
        }
        let old = {
            let mut installed = self.installed();
            installed.state_dir = prepared.state_dir;
            std::mem::replace(&mut installed.running, running)
        };
        // Replaced instances (threads, watchers) end here, outside the lock.
        drop(old);
    }

    /// The installed instance of kind `K`, if configured.
    pub fn running<K: ModuleKind>(&self) -> Option<Arc<K::Running>> {
        let installed = self.installed();
        let i = self.kinds.iter().position(|k| k.name() == K::NAME)?;
        let r = installed.running.get(i)?.as_ref()?;
        Arc::clone(r).downcast::<K::Running>().ok()
    }

    /// Every installed kind with its instance, in registration order.
    fn each(&self) -> Vec<(&dyn Registered, AnyRunning)> {
        let installed = self.installed();
        self.kinds
            .iter()
            .zip(installed.running.iter())
            .filter_map(|(k, r)| Some((k.as_ref(), Arc::clone(r.as_ref()?))))
            .collect()
    }

    fn artifacts(&self) -> Vec<Arc<dyn HostedArtifact>> {
        self.each()
            .iter()
            .flat_map(|(k, r)| k.artifacts(r))
            .collect()
    }

    /// Re-read every artifact now (`POST /reload`, `SIGHUP`).
    pub fn reload_artifacts(&self) {
        for a in self.artifacts() {
            a.reload();
        }
    }

    /// `POST /artifacts/NAME/force`: apply the file now even if it shrinks sharply.
    pub fn force_artifact(&self, name: &str) -> Result<serde_json::Value, AdminError> {
        let all = self.artifacts();
        let labels: Vec<String> = all
            .iter()
            .map(|a| kind::artifact_label(&a.status()))
            .collect();
        let Some(a) = all
            .iter()
            .zip(&labels)
            .find_map(|(a, l)| (l == name).then_some(a))
        else {
            return Err((
                404,
                format!("no artifact {name:?} is loaded (loaded: {labels:?})"),
            ));
        };
        a.force_next();
        let outcome = a.reload();
        tracing::warn!(artifact = name, outcome = ?outcome, "operator forced a reload");
        Ok(serde_json::to_value(a.status()).unwrap_or_default())
    }

    /// The operator's kill switch for module `name`, kept in `state_dir`; the answer is the
    /// module's status.
    pub fn set_override(&self, name: &str, o: Override) -> Result<serde_json::Value, AdminError> {
        if let Some(extra) = self.extra.iter().find(|m| m.name() == name) {
            tracing::warn!(module = name, state = o.as_str(), "operator override");
            return extra
                .set_override(o)
                .ok_or_else(|| (404, format!("module {name:?} has no kill switch")));
        }
        let each = self.each();
        let Some((kind, running)) = each.iter().find(|(k, _)| k.name() == name) else {
            let hint = self
                .kinds
                .iter()
                .find(|k| k.name() == name)
                .map_or("", |k| k.unconfigured());
            if !hint.is_empty() {
                return Err((404, hint.to_string()));
            }
            let configured: Vec<&str> = each
                .iter()
                .filter(|(k, r)| k.switch(r, None).is_some())
                .map(|(k, _)| k.name())
                .chain(self.extra.iter().map(|m| m.name()))
                .collect();
            return Err((
                404,
                format!("no module {name:?} is configured (configured: {configured:?})"),
            ));
        };
        let Some(status) = kind.switch(running, Some(o)) else {
            return Err((404, format!("module {name:?} has no kill switch")));
        };
        tracing::warn!(module = name, state = o.as_str(), "operator override");
        let mut status = serde_json::to_value(status).unwrap_or_default();
        let persisted = self.persist_override(name, o)?;
        if let Some(map) = status.as_object_mut() {
            map.insert("override_persisted".into(), persisted.into());
        }
        Ok(status)
    }

    /// Keep an override in `state_dir` (`false`: there is none).
    fn persist_override(&self, name: &str, o: Override) -> Result<bool, AdminError> {
        let installed = self.installed();
        let Some(dir) = &installed.state_dir else {
            return Ok(false);
        };
        let mut all = overrides::read(Some(dir));
        match o {
            Override::None => all.remove(name),
            o => all.insert(name.to_string(), o),
        };
        overrides::write(dir, &all).map_err(|e| {
            (
                500,
                format!("override applied but not saved in {}: {e}", dir.display()),
            )
        })?;
        Ok(true)
    }

    /// `/status`: every artifact and every module.
    pub fn status(&self) -> HostStatus {
        let each = self.each();
        HostStatus {
            artifacts: each
                .iter()
                .flat_map(|(k, r)| k.artifacts(r))
                .map(|a| a.status())
                .collect(),
            modules: each
                .iter()
                .filter_map(|(k, r)| k.status(r))
                .chain(self.extra.iter().filter_map(|m| m.status()))
                .collect(),
        }
    }
}
