//! The host over two scripted kinds: plan errors collected from every kind, keep vs replace
//! across reloads, nothing changed before `install`, overrides persisted and restored, a
//! kind whose start panics does not stop the others, the chain ordered by stage, `Links`
//! between kinds, status as the kind's typed data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use crate::{Module, ModuleAction, ModuleError, ModuleMetrics, ModuleSettings, ModuleSlot};
use crate::{ModuleState, RequestView};
use std::sync::atomic::{AtomicU32, Ordering};

/// What a scripted kind's next plan and start do.
#[derive(Default)]
struct Script {
    /// `Ok(None)`: not configured; `Ok(Some(n))`: configured with setting `n`.
    plan: Mutex<Option<Result<Option<u32>, String>>>,
    panic_on_start: Mutex<bool>,
    starts: AtomicU32,
    updates: Mutex<Vec<u32>>,
}

impl Script {
    fn set(&self, plan: Result<Option<u32>, &str>) {
        *self.plan.lock().unwrap() = Some(plan.map_err(str::to_string));
    }
}

struct Noop;

impl Module for Noop {
    type Output = ();
    const NAME: &'static str = "noop";

    fn decide(&self, _req: &RequestView<'_>) -> Result<(), ModuleError> {
        Ok(())
    }
}

struct TestRunning {
    setting: u32,
    /// What an earlier kind offered when this one started.
    linked: Option<u32>,
    slot: ModuleSlot<Noop>,
}

#[derive(serde::Serialize)]
struct TestStatus {
    setting: u32,
    #[serde(flatten)]
    module: ModuleStatus,
}

/// A step that says which kind it belongs to.
struct TestStep {
    name: &'static str,
}

impl RequestModule for TestStep {
    fn name(&self) -> &'static str {
        self.name
    }

    fn apply(&self, _req: &RequestView<'_>) -> ModuleAction {
        ModuleAction::Pass
    }
}

/// What `Beta` offers the kinds registered after it.
struct BetaOffer(u32);

macro_rules! scripted_kind {
    ($kind:ident, $name:literal, $stage:expr) => {
        struct $kind(Arc<Script>, ModuleMetrics);

        impl ModuleKind for $kind {
            const NAME: &'static str = $name;
            type Plan = u32;
            type Running = TestRunning;
            type Status = TestStatus;

            fn plan(&self, _config: &Config) -> Result<Option<u32>, Vec<ConfigError>> {
                match self.0.plan.lock().unwrap().clone().unwrap_or(Ok(None)) {
                    Ok(p) => Ok(p),
                    Err(e) => Err(vec![ConfigError::new(
                        concat!("modules.", $name),
                        e,
                        "fix it",
                    )]),
                }
            }

            fn start(
                &self,
                plan: u32,
                previous: Option<&TestRunning>,
                links: &Links,
            ) -> Start<u32, TestRunning> {
                if *self.0.panic_on_start.lock().unwrap() {
                    panic!("scripted start failure");
                }
                if previous.is_some_and(|p| p.setting == plan) {
                    return Start::Keep(plan);
                }
                self.0.starts.fetch_add(1, Ordering::SeqCst);
                Start::New(TestRunning {
                    setting: plan,
                    linked: links.get::<BetaOffer>().map(|o| o.0),
                    slot: ModuleSlot::new(Noop, ModuleSettings::default(), &self.1),
                })
            }

            fn update(&self, _running: &TestRunning, plan: u32) {
                self.0.updates.lock().unwrap().push(plan);
            }

            fn wire(&self, running: &Arc<TestRunning>, links: &mut Links) -> Vec<Step> {
                if $name == "beta" {
                    links.offer(BetaOffer(running.setting));
                }
                vec![Step {
                    stage: $stage,
                    module: Arc::new(TestStep { name: $name }),
                }]
            }

            fn switch<'r>(&self, running: &'r TestRunning) -> Option<&'r dyn Switch> {
                Some(&running.slot)
            }

            fn status(&self, running: &TestRunning) -> Option<TestStatus> {
                Some(TestStatus {
                    setting: running.setting,
                    module: running.slot.status(),
                })
            }
        }
    };
}

scripted_kind!(Beta, "beta", Stage::Annotate);
scripted_kind!(Alpha, "alpha", Stage::Limit);

struct Fixture {
    host: ModuleHost,
    beta: Arc<Script>,
    alpha: Arc<Script>,
}

/// Beta registered first (it offers to Alpha); Alpha's steps run first (`Stage::Limit`).
fn fixture() -> Fixture {
    let metrics = ModuleMetrics::new(&prometheus::Registry::new()).unwrap();
    let beta = Arc::new(Script::default());
    let alpha = Arc::new(Script::default());
    let host = ModuleHost::new(Vec::new())
        .register(Beta(Arc::clone(&beta), metrics.clone()))
        .register(Alpha(Arc::clone(&alpha), metrics));
    Fixture { host, beta, alpha }
}

fn config(state_dir: Option<&std::path::Path>) -> Config {
    let mut text = String::from("[edge]\nlisten = [\"127.0.0.1:8080\"]\n");
    if let Some(dir) = state_dir {
        text.push_str(&format!("state_dir = {:?}\n", dir.display().to_string()));
    }
    text.push_str(
        "[admin]\nlisten = \"127.0.0.1:9901\"\n\
         [[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n\
         [[routes]]\nname = \"all\"\nmatch = { path_prefix = \"/\" }\npool = \"p\"\n",
    );
    holdfast_config::parse(&text, std::path::Path::new(".")).unwrap()
}

fn apply(host: &ModuleHost, config: &Config) -> Vec<Arc<dyn RequestModule>> {
    let prepared = host.prepare(config).unwrap();
    let chain = prepared.chain();
    host.install(prepared);
    chain
}

#[test]
fn plan_errors_of_every_kind_come_together_and_nothing_starts() {
    let f = fixture();
    f.beta.set(Err("beta is wrong"));
    f.alpha.set(Err("alpha is wrong"));
    let errors = f.host.plan(&config(None)).err().unwrap();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["modules.beta", "modules.alpha"]);
    assert_eq!(f.host.prepare(&config(None)).err().unwrap().len(), 2);
    assert_eq!(f.beta.starts.load(Ordering::SeqCst), 0);
    assert_eq!(f.alpha.starts.load(Ordering::SeqCst), 0);
    assert!(f.host.running::<Beta>().is_none());
}

#[test]
fn a_reload_keeps_an_unchanged_instance_and_replaces_a_changed_one() {
    let f = fixture();
    f.beta.set(Ok(Some(1)));
    f.alpha.set(Ok(Some(1)));
    apply(&f.host, &config(None));
    let beta1 = f.host.running::<Beta>().unwrap();
    let alpha1 = f.host.running::<Alpha>().unwrap();

    // Beta unchanged: kept, with the plan's settings applied at install. Alpha changed: new.
    f.alpha.set(Ok(Some(2)));
    let prepared = f.host.prepare(&config(None)).unwrap();
    // Nothing changes for requests before install.
    assert!(f.beta.updates.lock().unwrap().is_empty());
    assert!(Arc::ptr_eq(&f.host.running::<Alpha>().unwrap(), &alpha1));
    f.host.install(prepared);
    assert!(Arc::ptr_eq(&f.host.running::<Beta>().unwrap(), &beta1));
    assert_eq!(*f.beta.updates.lock().unwrap(), [1]);
    let alpha2 = f.host.running::<Alpha>().unwrap();
    assert!(!Arc::ptr_eq(&alpha2, &alpha1));
    assert_eq!(alpha2.setting, 2);
    assert_eq!(f.alpha.starts.load(Ordering::SeqCst), 2);

    // No longer configured: gone after install.
    f.beta.set(Ok(None));
    apply(&f.host, &config(None));
    assert!(f.host.running::<Beta>().is_none());
    assert!(f.host.running::<Alpha>().is_some());
}

#[test]
fn the_chain_follows_the_stages_and_kinds_see_what_earlier_kinds_offer() {
    let f = fixture();
    f.beta.set(Ok(Some(7)));
    f.alpha.set(Ok(Some(1)));
    let chain = apply(&f.host, &config(None));
    let names: Vec<&str> = chain.iter().map(|m| m.name()).collect();
    // Alpha registered last but runs first (Stage::Limit < Stage::Annotate).
    assert_eq!(names, ["alpha", "beta"]);
    // Alpha (registered after Beta) found Beta's offer of the same generation; Beta none.
    assert_eq!(f.host.running::<Alpha>().unwrap().linked, Some(7));
    assert_eq!(f.host.running::<Beta>().unwrap().linked, None);
}

#[test]
fn overrides_are_persisted_in_state_dir_and_restored_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    f.beta.set(Ok(Some(1)));
    f.alpha.set(Ok(Some(1)));
    apply(&f.host, &config(Some(dir.path())));
    let answer = f.host.set_override("alpha", Override::Disabled).unwrap();
    assert_eq!(answer["override_persisted"], true, "{answer}");
    assert_eq!(answer["state"], "disabled", "{answer}");
    let saved = std::fs::read_to_string(dir.path().join(OVERRIDES_FILE)).unwrap();
    assert!(saved.contains("\"alpha\": \"disabled\""), "{saved}");

    // Unknown module: 404 naming the configured ones.
    let (code, message) = f
        .host
        .set_override("gamma", Override::Disabled)
        .unwrap_err();
    assert_eq!(code, 404);
    assert!(message.contains("[\"beta\", \"alpha\"]"), "{message}");

    // A new process: the new instance starts switched off.
    let g = fixture();
    g.beta.set(Ok(Some(1)));
    g.alpha.set(Ok(Some(1)));
    apply(&g.host, &config(Some(dir.path())));
    assert_eq!(
        g.host.running::<Alpha>().unwrap().slot.state(),
        ModuleState::Disabled
    );
    assert_ne!(
        g.host.running::<Beta>().unwrap().slot.state(),
        ModuleState::Disabled
    );

    // Cleared: removed from the file.
    g.host.set_override("alpha", Override::None).unwrap();
    let saved = std::fs::read_to_string(dir.path().join(OVERRIDES_FILE)).unwrap();
    assert!(!saved.contains("alpha"), "{saved}");
}

#[test]
fn without_state_dir_an_override_applies_but_is_not_persisted() {
    let f = fixture();
    f.alpha.set(Ok(Some(1)));
    apply(&f.host, &config(None));
    let answer = f.host.set_override("alpha", Override::Disabled).unwrap();
    assert_eq!(answer["override_persisted"], false, "{answer}");
    assert_eq!(
        f.host.running::<Alpha>().unwrap().slot.state(),
        ModuleState::Disabled
    );
}

#[test]
fn a_kind_whose_start_panics_does_not_stop_the_others() {
    let f = fixture();
    f.beta.set(Ok(Some(1)));
    f.alpha.set(Ok(Some(1)));
    apply(&f.host, &config(None));
    let beta1 = f.host.running::<Beta>().unwrap();

    // Beta's start panics on a changed setting: its previous instance stays, Alpha moves on.
    *f.beta.panic_on_start.lock().unwrap() = true;
    f.beta.set(Ok(Some(2)));
    f.alpha.set(Ok(Some(2)));
    let chain = apply(&f.host, &config(None));
    assert!(Arc::ptr_eq(&f.host.running::<Beta>().unwrap(), &beta1));
    assert_eq!(f.host.running::<Alpha>().unwrap().setting, 2);
    assert_eq!(chain.len(), 2);

    // With no previous instance, it is left out and the others still run.
    let g = fixture();
    *g.beta.panic_on_start.lock().unwrap() = true;
    g.beta.set(Ok(Some(1)));
    g.alpha.set(Ok(Some(1)));
    let chain = apply(&g.host, &config(None));
    let names: Vec<&str> = chain.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["alpha"]);
    assert!(g.host.running::<Beta>().is_none());
}

#[test]
fn status_is_each_kinds_typed_status() {
    let f = fixture();
    f.beta.set(Ok(Some(3)));
    f.alpha.set(Ok(Some(4)));
    apply(&f.host, &config(None));
    let status = f.host.status();
    let settings: Vec<&serde_json::Value> = status.modules.iter().map(|m| &m["setting"]).collect();
    assert_eq!(settings, [3, 4]);
    // The runner's own status is flattened in.
    assert!(status
        .modules
        .iter()
        .all(|m| m["state"] == "ok" && m["name"] == "noop"));
    assert!(status.artifacts.is_empty());
}

#[test]
fn switching_a_registered_kind_the_config_does_not_use_says_so() {
    let f = fixture();
    f.alpha.set(Ok(Some(1)));
    apply(&f.host, &config(None));
    // Beta is registered but not configured, and has no hint: the configured ones are named.
    let (code, message) = f.host.set_override("beta", Override::Disabled).unwrap_err();
    assert_eq!(code, 404);
    assert!(message.contains("configured: [\"alpha\"]"), "{message}");
}
