//! `[[rules]]` and `[[rule_lists]]` as a module kind: the `rules` module planned (and
//! compile-checked) from the config, kept across a reload while its rules (by route name),
//! lists and IP lists are unchanged, and its request step: a block answers with its status,
//! a challenge goes to the challenge (`ChallengeGate`, offered by the challenge kind, whose
//! reserved paths this step serves too), `rate_limit` rules ask the limits (`LimitsLink`).
//! `bot.score` is read from the request's `ModuleCtx`, where the bot module (which then runs
//! first: this kind offers `ReadsBotScore`) wrote it.

use super::limits::LimitsLink;
use crate::rule_list::{no_config_ids, RuleListKind};
use crate::rules::{
    CompiledRule, Effects, IpLists, ListRules, RuleDef, RuleMetrics, RuleOutcome, Rules,
};
use holdfast_artifact::{Artifact, ArtifactMetrics, ArtifactOptions, LoadOutcome, Watcher};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::host::{HostedArtifact, Links, ModuleKind, Stage, Start, Step, Switch};
use holdfast_modules::{
    Block, ChallengeAsk, ChallengeGate, EdgeRequest, EdgeResponse, Edit, ModuleAction, ModuleCtx,
    ModuleMetrics, ModuleSettings, ModuleSlot, ModuleStatus, ReadsBotScore, RequestModule,
    RequestView, Verdict,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The per-request evaluation budget of all rules together; past it the call counts as the
/// module's failure (fail policy `open`: the request passes).
const RULES_BUDGET: Duration = Duration::from_millis(100);

/// The rules module in its runner.
pub type RulesSlot = ModuleSlot<Rules>;

/// The rules as configured, with route names instead of indices: an unchanged set keeps its
/// compiled programs and hit counts across a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesPlan {
    rules: Vec<(holdfast_config::Rule, Vec<String>)>,
    /// `[[rule_lists]]` and the state folder their artifacts are built for.
    rule_lists: Vec<holdfast_config::RuleList>,
    state_dir: Option<PathBuf>,
}

/// One generation's rules: the slot, its rule lists' watchers, the IP lists they were
/// compiled against (a new artifact means new rules).
pub struct RulesRunning {
    plan: RulesPlan,
    lists: IpLists,
    slot: Arc<RulesSlot>,
    /// In a mutex only to be `Sync`; never locked.
    _watchers: std::sync::Mutex<Vec<Watcher>>,
}

impl RulesRunning {
    pub fn slot(&self) -> &Arc<RulesSlot> {
        &self.slot
    }
}

/// The `rules` kind.
pub struct RulesKind {
    module_metrics: ModuleMetrics,
    rule_metrics: RuleMetrics,
    artifact_metrics: Arc<ArtifactMetrics>,
    /// For `plan`'s trial compile: metrics nobody reads, so a plan changes nothing.
    trial_rule_metrics: RuleMetrics,
    trial_artifact_metrics: Arc<ArtifactMetrics>,
}

impl RulesKind {
    pub fn new(
        registry: &prometheus::Registry,
        module_metrics: &ModuleMetrics,
        artifact_metrics: Arc<ArtifactMetrics>,
    ) -> Result<Self, prometheus::Error> {
        let trial = prometheus::Registry::new();
        Ok(RulesKind {
            module_metrics: module_metrics.clone(),
            rule_metrics: RuleMetrics::new(registry)?,
            artifact_metrics,
            trial_rule_metrics: RuleMetrics::new(&trial)?,
            trial_artifact_metrics: Arc::new(ArtifactMetrics::new(&trial)?),
        })
    }

    fn specs(plan: &RulesPlan) -> Vec<RuleDef> {
        plan.rules
            .iter()
            .map(|(r, routes)| RuleDef::from_config(r, routes.clone()))
            .collect()
    }

    /// A `[[rule_lists]]` entry: its artifact (loaded now, or its last-known-good; ids of
    /// `[[rules]]` rejected before a swap), compiled after each load, watched.
    fn new_rule_list(
        &self,
        l: &holdfast_config::RuleList,
        state_dir: Option<&Path>,
        config_ids: &[String],
        ip_lists: &IpLists,
    ) -> (Arc<ListRules>, Option<Watcher>) {
        let mut options = ArtifactOptions::new(&l.file);
        options.state_dir = state_dir.map(Path::to_path_buf);
        options.name = Some(l.name.clone());
        let ids = config_ids.to_vec();
        let artifact = Arc::new(
            Artifact::<RuleListKind>::new(options, Arc::clone(&self.artifact_metrics))
                .with_check(move |list| no_config_ids(list, &ids)),
        );
        artifact.start();
        let list = Arc::new(ListRules::new(
            l.name.clone(),
            artifact,
            &self.rule_metrics,
            ip_lists,
        ));
        let watched = Arc::clone(&list);
        let name = l.name.clone();
        let watcher = Watcher::start(list.artifact.watch_paths(), super::ARTIFACT_POLL, move |_| {
            watched.artifact.reload();
            watched.refresh();
        })
        .map_err(|e| tracing::error!(list = %name, error = %e, "cannot watch the rule list; POST /reload re-reads it"))
        .ok();
        (list, watcher)
    }
}

fn compile_error(config: &Config, e: &crate::rules::CompileError) -> ConfigError {
    let at = config
        .rules
        .iter()
        .position(|r| r.id == e.id)
        .map_or("rules".to_string(), |i| format!("rules[{i}].expr"));
    ConfigError::new(
        at,
        e.detail.clone(),
        "fix the expression (it passed the config check but did not compile)",
    )
}

impl ModuleKind for RulesKind {
    const NAME: &'static str = "rules";
    const UNCONFIGURED: &'static str = "no [[rules]] are configured";
    type Plan = RulesPlan;
    type Running = RulesRunning;
    type Status = RulesStatus;

    /// The rules by route name, compiled once on trial (against IP lists not loaded) so a
    /// rule that would not compile fails here, in `holdfast check` too.
    fn plan(&self, config: &Config) -> Result<Option<RulesPlan>, Vec<ConfigError>> {
        if config.rules.is_empty() && config.rule_lists.is_empty() {
            return Ok(None);
        }
        let plan = RulesPlan {
            rules: config
                .rules
                .iter()
                .map(|r| {
                    let entry = holdfast_config::Rule {
                        routes: Vec::new(),
                        ..r.clone()
                    };
                    (entry, config.route_names(&r.routes))
                })
                .collect(),
            rule_lists: config.rule_lists.clone(),
            state_dir: config.edge.state_dir.clone(),
        };
        let trial_lists: IpLists = config
            .ip_lists
            .iter()
            .map(|l| {
                let mut options = ArtifactOptions::new(&l.file);
                options.name = Some(l.name.clone());
                let a = Artifact::new(options, Arc::clone(&self.trial_artifact_metrics));
                (l.name.clone(), Arc::new(a))
            })
            .collect();
        Rules::new(Self::specs(&plan), &self.trial_rule_metrics, &trial_lists)
            .map_err(|e| vec![compile_error(config, &e)])?;
        Ok(Some(plan))
    }

    /// Rules unchanged (same entries, same route names, same lists): keep the compiled set
    /// and its counts; otherwise compile a new one.
    fn start(
        &self,
        plan: RulesPlan,
        previous: Option<&RulesRunning>,
        links: &Links,
    ) -> Start<RulesPlan, RulesRunning> {
        let lists = links.get::<IpLists>().cloned().unwrap_or_default();
        let same_lists = |old: &IpLists| {
            old.len() == lists.len()
                && old
                    .iter()
                    .all(|(name, a)| lists.get(name).is_some_and(|b| Arc::ptr_eq(a, b)))
        };
        if previous.is_some_and(|p| p.plan == plan && same_lists(&p.lists)) {
            return Start::Keep(plan);
        }
        let mut rules = match Rules::new(Self::specs(&plan), &self.rule_metrics, &lists) {
            Ok(rules) => rules,
            Err(e) => {
                // `plan` compiled the same rules: this cannot happen. Run none rather than
                // stop the other modules.
                tracing::error!(error = %e, "rules that compiled in the plan did not compile");
                Rules::empty(&lists)
            }
        };
        let ids: Vec<String> = plan.rules.iter().map(|(r, _)| r.id.clone()).collect();
        let mut watchers = Vec::new();
        for l in &plan.rule_lists {
            let (list, watcher) = self.new_rule_list(l, plan.state_dir.as_deref(), &ids, &lists);
            rules.lists.push(list);
            watchers.extend(watcher);
        }
        let settings = ModuleSettings {
            time_budget: RULES_BUDGET,
            ..ModuleSettings::default()
        };
        let slot = Arc::new(ModuleSlot::new(rules, settings, &self.module_metrics));
        Start::New(RulesRunning {
            plan,
            lists,
            slot,
            _watchers: std::sync::Mutex::new(watchers),
        })
    }

    fn wire(&self, running: &Arc<RulesRunning>, links: &mut Links) -> Vec<Step> {
        if running.slot.module().reads_bot() {
            links.offer(ReadsBotScore);
        }
        vec![Step {
            stage: Stage::Decide,
            module: Arc::new(RulesStep {
                rules: Arc::clone(&running.slot),
                limits: links.get::<LimitsLink>().cloned(),
                challenge: links.get::<Arc<dyn ChallengeGate>>().cloned(),
            }),
        }]
    }

    fn switch<'r>(&self, running: &'r RulesRunning) -> Option<&'r dyn Switch> {
        Some(running.slot.as_ref())
    }

    fn artifacts(&self, running: &RulesRunning) -> Vec<Arc<dyn HostedArtifact>> {
        running
            .slot
            .module()
            .lists
            .iter()
            .map(|l| Arc::clone(l) as Arc<dyn HostedArtifact>)
            .collect()
    }

    fn status(&self, running: &RulesRunning) -> Option<RulesStatus> {
        let module = running.slot.module();
        let mut rules: Vec<RuleStatus> = module
            .rules
            .iter()
            .map(|r| RuleStatus::of(r, None))
            .collect();
        for list in &module.lists {
            if let Some(c) = list.compiled() {
                rules.extend(
                    c.rules
                        .rules
                        .iter()
                        .map(|r| RuleStatus::of(r, Some(&list.name))),
                );
            }
        }
        Some(RulesStatus {
            module: running.slot.status(),
            rules,
        })
    }
}

/// A rule list re-reads its file, then compiles the version it applied.
impl HostedArtifact for ListRules {
    fn reload(&self) -> LoadOutcome {
        let outcome = self.artifact.reload();
        self.refresh();
        outcome
    }

    fn force_next(&self) {
        self.artifact.force_next();
    }

    fn status(&self) -> holdfast_artifact::ArtifactStatus {
        self.artifact.status()
    }
}

/// `/status` of the rules module.
#[derive(Debug, serde::Serialize)]
pub struct RulesStatus {
    #[serde(flatten)]
    pub module: ModuleStatus,
    pub rules: Vec<RuleStatus>,
}

#[derive(Debug, serde::Serialize)]
pub struct RuleStatus {
    pub id: String,
    pub action: &'static str,
    /// `enforce` or `log`.
    pub mode: &'static str,
    pub routes: Vec<String>,
    pub hits: u64,
    pub errors: u64,
    pub engine: &'static str,
    /// The rule list it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
}

impl RuleStatus {
    fn of(rule: &CompiledRule, list: Option<&str>) -> Self {
        RuleStatus {
            id: rule.spec.id.clone(),
            action: rule.spec.action.label(),
            mode: if rule.spec.shadow { "log" } else { "enforce" },
            routes: rule.spec.routes.clone(),
            hits: rule.hits(),
            errors: rule.errors(),
            engine: rule.engine(),
            list: list.map(str::to_string),
        }
    }
}

/// The rules as the data path runs them.
struct RulesStep {
    rules: Arc<RulesSlot>,
    limits: Option<LimitsLink>,
    challenge: Option<Arc<dyn ChallengeGate>>,
}

impl RulesStep {
    /// A passing request with the matched rules' effects: their limits checked, their header
    /// edits and route.
    fn effects(&self, effects: &Effects, req: &RequestView<'_>) -> ModuleAction {
        if let Some(too_many) = self
            .limits
            .as_ref()
            .and_then(|l| l.over(&effects.limits, req))
        {
            return too_many;
        }
        if effects.headers.is_empty() && effects.route.is_none() {
            return ModuleAction::Pass;
        }
        ModuleAction::Edit(Box::new(Edit {
            headers: effects
                .headers
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
            route: effects.route.clone(),
        }))
    }
}

impl RequestModule for RulesStep {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn apply(&self, req: &RequestView<'_>) -> ModuleAction {
        self.apply_in(req, &mut ModuleCtx::default())
    }

    fn apply_in(&self, req: &RequestView<'_>, ctx: &mut ModuleCtx) -> ModuleAction {
        match self.rules.run_in(req, ctx) {
            Verdict::Decided(RuleOutcome::Block(b)) | Verdict::Stale(RuleOutcome::Block(b)) => {
                ModuleAction::Block(Box::new(Block {
                    status: http::StatusCode::from_u16(b.status)
                        .unwrap_or(http::StatusCode::FORBIDDEN),
                    rule: b.rule,
                }))
            }
            Verdict::Decided(RuleOutcome::Challenge(c))
            | Verdict::Stale(RuleOutcome::Challenge(c)) => {
                let ask = ChallengeAsk {
                    difficulty: c.difficulty,
                    nojs: c.nojs,
                };
                let action = match &self.challenge {
                    Some(challenge) => challenge.check(req, ask),
                    None => ModuleAction::Pass,
                };
                match action {
                    ModuleAction::Pass => self.effects(&c.effects, req),
                    answered => answered,
                }
            }
            Verdict::Decided(RuleOutcome::Edit(effects))
            | Verdict::Stale(RuleOutcome::Edit(effects)) => self.effects(&effects, req),
            Verdict::Decided(RuleOutcome::Pass)
            | Verdict::Stale(RuleOutcome::Pass)
            | Verdict::Unknown => ModuleAction::Pass,
            Verdict::Deny => ModuleAction::Deny,
        }
    }

    fn reserved_prefix(&self) -> Option<&'static str> {
        self.challenge.as_ref().map(|c| c.reserved_prefix())
    }

    fn answer(&self, req: &EdgeRequest<'_>) -> EdgeResponse {
        match &self.challenge {
            Some(challenge) => challenge.answer(req),
            None => EdgeResponse {
                status: http::StatusCode::NOT_FOUND,
                headers: http::HeaderMap::new(),
                body: String::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rules kind: a plan that would not compile is an error with its key path; a rule
    //! reading `bot.score` makes the kind offer `ReadsBotScore` and its step read the score
    //! the request's `ModuleCtx` carries (no thread-local); an unchanged plan keeps the
    //! instance.
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use holdfast_modules::BotScore;
    use std::net::{IpAddr, Ipv4Addr};

    fn config(rules: &str) -> Config {
        let text = format!(
            "[edge]\nlisten = [\"127.0.0.1:8080\"]\n\
             [[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nname = \"main\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n{rules}"
        );
        holdfast_config::parse(&text, Path::new(".")).unwrap()
    }

    fn kind() -> RulesKind {
        let registry = prometheus::Registry::new();
        let modules = ModuleMetrics::new(&registry).unwrap();
        let artifacts = Arc::new(ArtifactMetrics::new(&registry).unwrap());
        RulesKind::new(&registry, &modules, artifacts).unwrap()
    }

    const BOTS: &str = "[[rules]]\nid = \"bots\"\nexpr = 'bot.score >= 80'\naction = \"block\"\n";

    #[test]
    fn the_bot_score_comes_from_the_requests_module_ctx() {
        let kind = kind();
        let c = config(BOTS);
        let plan = kind.plan(&c).unwrap().unwrap();
        let Start::New(running) = kind.start(plan, None, &Links::default()) else {
            panic!("not new");
        };
        let running = Arc::new(running);
        let mut links = Links::default();
        let steps = kind.wire(&running, &mut links);
        assert!(links.get::<ReadsBotScore>().is_some(), "the bot runs first");
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].stage, Stage::Decide);
        let headers = http::HeaderMap::new();
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
        let mut bot = ModuleCtx {
            bot_score: BotScore::Score(90),
        };
        assert!(matches!(
            steps[0].module.apply_in(&req, &mut bot),
            ModuleAction::Block(b) if b.rule == "bots"
        ));
        let mut human = ModuleCtx {
            bot_score: BotScore::Score(10),
        };
        assert_eq!(
            steps[0].module.apply_in(&req, &mut human),
            ModuleAction::Pass
        );
        // Without a score (no bot module): unknown, the rule's error, a pass.
        assert_eq!(steps[0].module.apply(&req), ModuleAction::Pass);

        // The same rules again: the compiled set (and its counts) is kept.
        let again = kind.plan(&c).unwrap().unwrap();
        assert!(matches!(
            kind.start(again, Some(&running), &Links::default()),
            Start::Keep(_)
        ));
        let changed = kind
            .plan(&config(&BOTS.replace(">= 80", ">= 70")))
            .unwrap()
            .unwrap();
        assert!(matches!(
            kind.start(changed, Some(&running), &Links::default()),
            Start::New(_)
        ));
    }

    #[test]
    fn rules_that_read_no_score_offer_nothing() {
        let kind = kind();
        let c = config("[[rules]]\nid = \"admin\"\nexpr = 'request.path.startsWith(\"/admin\")'\naction = \"block\"\n");
        let plan = kind.plan(&c).unwrap().unwrap();
        let Start::New(running) = kind.start(plan, None, &Links::default()) else {
            panic!("not new");
        };
        let mut links = Links::default();
        kind.wire(&Arc::new(running), &mut links);
        assert!(links.get::<ReadsBotScore>().is_none());
        assert!(kind.plan(&config("")).unwrap().is_none());
    }
}
