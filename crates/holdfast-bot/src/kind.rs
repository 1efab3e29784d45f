//! `[modules.bot]` as a module kind: the feature file's public key decoded in the plan (so
//! `holdfast check` reports it), the artifact and the scorer started (or kept while the
//! file, key, shrink guard and state folder are unchanged: then only the settings change),
//! and its request step, which writes the score in the request's `ModuleCtx` (for rules
//! reading `bot.score`) and sends it to the origin as `x-holdfast-bot-score`.

use crate::{unknown_header, BotFeatures, BotScorer, Ja4h, SCORE_HEADER};
use holdfast_artifact::{Artifact, ArtifactMetrics, ArtifactOptions, VerifyingKey, Watcher};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::host::{HostedArtifact, Links, ModuleKind, Stage, Start, Step, Switch};
use holdfast_modules::{
    BotScore, BreakerSettings, ModuleAction, ModuleCtx, ModuleMetrics, ModuleSettings, ModuleSlot,
    ModuleStatus, ReadsBotScore, RequestModule, RequestView, Verdict,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the watched feature file is checked when change events are not available.
const ARTIFACT_POLL: Duration = Duration::from_secs(1);

/// The scorer in its runner.
pub type BotSlot = ModuleSlot<BotScorer<Arc<Artifact<BotFeatures>>>>;

/// What `[modules.bot]` asks: its settings, the state folder and the decoded public key.
pub struct BotPlan {
    config: holdfast_config::BotModule,
    state_dir: Option<PathBuf>,
    public_key: Option<VerifyingKey>,
}

/// One feature-file artifact and the scorer over it.
pub struct BotRunning {
    config: holdfast_config::BotModule,
    state_dir: Option<PathBuf>,
    artifact: Arc<Artifact<BotFeatures>>,
    slot: Arc<BotSlot>,
    /// In a mutex only to be `Sync`; never locked.
    _watcher: Mutex<Option<Watcher>>,
}

impl BotRunning {
    pub fn slot(&self) -> &Arc<BotSlot> {
        &self.slot
    }
}

/// The runner's settings from `[modules.bot]`.
fn settings(c: &holdfast_config::BotModule) -> ModuleSettings {
    ModuleSettings {
        enabled: c.enabled,
        fail_policy: c.fail_policy,
        time_budget: c.time_budget,
        breaker: BreakerSettings {
            error_percent: c.breaker.error_percent,
            min_requests: c.breaker.min_requests,
            window: c.breaker.window,
            cooldown: c.breaker.cooldown,
        },
        report_interval: c.report_interval,
    }
}

/// The feature file's public key, decoded.
pub fn public_key(c: &holdfast_config::BotModule) -> Result<Option<VerifyingKey>, ConfigError> {
    let Some(text) = &c.public_key else {
        return Ok(None);
    };
    holdfast_artifact::decode_public_key(text)
        .map(Some)
        .map_err(|e| {
            ConfigError::new(
                "modules.bot.public_key",
                e,
                "give the generator's ed25519 public key as base64 (32 bytes)",
            )
        })
}

/// The `bot` kind.
pub struct BotKind {
    module_metrics: ModuleMetrics,
    artifact_metrics: Arc<ArtifactMetrics>,
}

impl BotKind {
    pub fn new(module_metrics: &ModuleMetrics, artifact_metrics: Arc<ArtifactMetrics>) -> Self {
        BotKind {
            module_metrics: module_metrics.clone(),
            artifact_metrics,
        }
    }
}

impl ModuleKind for BotKind {
    const NAME: &'static str = "bot";
    type Plan = BotPlan;
    type Running = BotRunning;
    type Status = ModuleStatus;

    fn plan(&self, config: &Config) -> Result<Option<BotPlan>, Vec<ConfigError>> {
        let Some(c) = &config.modules.bot else {
            return Ok(None);
        };
        Ok(Some(BotPlan {
            public_key: public_key(c).map_err(|e| vec![e])?,
            config: c.clone(),
            state_dir: config.edge.state_dir.clone(),
        }))
    }

    /// Same artifact (file, key, shrink guard, state folder): keep it and the slot, with the
    /// new settings at install. Otherwise a new artifact, loaded now (falling back to its
    /// last-known-good; a bad or missing file is not a config error: the module answers
    /// `unknown` until a good file arrives), and a new slot.
    fn start(
        &self,
        plan: BotPlan,
        previous: Option<&BotRunning>,
        _links: &Links,
    ) -> Start<BotPlan, BotRunning> {
        let c = &plan.config;
        if previous.is_some_and(|r| {
            r.config.features == c.features
                && r.config.ja4h == c.ja4h
                && r.config.public_key == c.public_key
                && r.config.max_shrink_percent == c.max_shrink_percent
                && r.state_dir == plan.state_dir
        }) {
            return Start::Keep(plan);
        }
        let mut options = ArtifactOptions::new(&c.features);
        options.state_dir.clone_from(&plan.state_dir);
        options.public_key = plan.public_key;
        options.max_shrink_percent = c.max_shrink_percent;
        let artifact = Arc::new(Artifact::<BotFeatures>::new(
            options,
            Arc::clone(&self.artifact_metrics),
        ));
        artifact.start();
        let slot = Arc::new(ModuleSlot::new(
            BotScorer::new(Arc::clone(&artifact)).with_ja4h(if c.ja4h {
                Ja4h::On
            } else {
                Ja4h::Off
            }),
            settings(c),
            &self.module_metrics,
        ));
        let watched = Arc::clone(&artifact);
        let watcher = Watcher::start(artifact.watch_paths(), ARTIFACT_POLL, move |_| {
            watched.reload();
        })
        .map_err(|e| tracing::error!(error = %e, "cannot watch the bot feature file; POST /reload re-reads it"))
        .ok();
        Start::New(BotRunning {
            config: plan.config,
            state_dir: plan.state_dir.as_deref().map(Path::to_path_buf),
            artifact,
            slot,
            _watcher: Mutex::new(watcher),
        })
    }

    fn update(&self, running: &BotRunning, plan: BotPlan) {
        running.slot.set_settings(settings(&plan.config));
    }

    /// Before the rules when one reads `bot.score`, else last (a blocked request costs no
    /// scoring).
    fn wire(&self, running: &Arc<BotRunning>, links: &mut Links) -> Vec<Step> {
        let stage = if links.get::<ReadsBotScore>().is_some() {
            Stage::Inform
        } else {
            Stage::Annotate
        };
        vec![Step {
            stage,
            module: Arc::new(BotStep(Arc::clone(&running.slot))),
        }]
    }

    fn switch<'r>(&self, running: &'r BotRunning) -> Option<&'r dyn Switch> {
        Some(running.slot.as_ref())
    }

    fn artifacts(&self, running: &BotRunning) -> Vec<Arc<dyn HostedArtifact>> {
        vec![Arc::clone(&running.artifact) as Arc<dyn HostedArtifact>]
    }

    fn status(&self, running: &BotRunning) -> Option<ModuleStatus> {
        Some(running.slot.status())
    }
}

/// The bot module as the data path runs it: the score (or `unknown`) for the later modules
/// and, as a header, for the origin.
struct BotStep(Arc<BotSlot>);

impl RequestModule for BotStep {
    fn name(&self) -> &'static str {
        "bot"
    }

    fn apply(&self, req: &RequestView<'_>) -> ModuleAction {
        self.apply_in(req, &mut ModuleCtx::default())
    }

    fn apply_in(&self, req: &RequestView<'_>, ctx: &mut ModuleCtx) -> ModuleAction {
        match self.0.run_in(req, ctx) {
            Verdict::Decided(score) | Verdict::Stale(score) => {
                ctx.bot_score = BotScore::Score(score.get());
                ModuleAction::Header(SCORE_HEADER, score.header_value())
            }
            Verdict::Unknown => {
                ctx.bot_score = BotScore::Unknown;
                ModuleAction::Header(SCORE_HEADER, unknown_header())
            }
            Verdict::Deny => ModuleAction::Deny,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The bot kind: a bad public key is a plan error with its key path; its step writes the
    //! score in the request's `ModuleCtx` (and the header) and runs before the rules only
    //! when they read the score; a changed setting keeps the artifact.
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn config(bot: &str) -> Config {
        let features = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/bot-features.json"
        );
        let text = format!(
            "[edge]\nlisten = [\"127.0.0.1:8080\"]\n\
             [[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nname = \"main\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n\
             [modules.bot]\nfeatures = {features:?}\n{bot}"
        );
        holdfast_config::parse(&text, Path::new(".")).unwrap()
    }

    fn kind() -> BotKind {
        let registry = prometheus::Registry::new();
        BotKind::new(
            &ModuleMetrics::new(&registry).unwrap(),
            Arc::new(ArtifactMetrics::new(&registry).unwrap()),
        )
    }

    #[test]
    fn a_bad_public_key_is_a_plan_error() {
        let errors = kind()
            .plan(&config("public_key = \"not base64\"\n"))
            .err()
            .unwrap();
        assert_eq!(errors[0].path, "modules.bot.public_key");
    }

    #[test]
    fn the_step_writes_the_score_for_later_modules() {
        let kind = kind();
        let c = config("");
        let Start::New(running) =
            kind.start(kind.plan(&c).unwrap().unwrap(), None, &Links::default())
        else {
            panic!("not new");
        };
        let running = Arc::new(running);
        // No rule reads the score: last.
        let steps = kind.wire(&running, &mut Links::default());
        assert_eq!(steps[0].stage, Stage::Annotate);
        let mut links = Links::default();
        links.offer(ReadsBotScore);
        let steps = kind.wire(&running, &mut links);
        assert_eq!(steps[0].stage, Stage::Inform);

        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("curl/8.5.0"),
        );
        let req = RequestView {
            method: &http::Method::GET,
            version: http::Version::HTTP_11,
            headers: &headers,
            path: "/",
            query: None,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            tls: false,
            route: "main",
        };
        let mut ctx = ModuleCtx::default();
        let action = steps[0].module.apply_in(&req, &mut ctx);
        let BotScore::Score(n) = ctx.bot_score else {
            panic!("no score written: {ctx:?}");
        };
        assert_eq!(
            action,
            ModuleAction::Header(SCORE_HEADER, http::HeaderValue::from(u16::from(n)))
        );

        // Switched off: `unknown`, written as such.
        running
            .slot()
            .set_override(holdfast_modules::Override::Disabled);
        let mut ctx = ModuleCtx {
            bot_score: BotScore::Score(50),
        };
        let action = steps[0].module.apply_in(&req, &mut ctx);
        assert_eq!(ctx.bot_score, BotScore::Unknown);
        assert_eq!(action, ModuleAction::Header(SCORE_HEADER, unknown_header()));

        // A changed setting keeps the artifact (and the slot), with the new settings at
        // `update`.
        let plan = kind
            .plan(&config("fail_policy = \"closed\"\n"))
            .unwrap()
            .unwrap();
        let Start::Keep(plan) = kind.start(plan, Some(&running), &Links::default()) else {
            panic!("a settings change replaced the artifact");
        };
        kind.update(&running, plan);
        assert_eq!(
            running.slot().settings().fail_policy,
            holdfast_modules::FailPolicy::Closed
        );
    }
}
