//! `ModuleSlot`: one module with its kill switch, fail policy, time budget, circuit breaker,
//! stale table and rate-limited reports. `run` is the hot path: lock-free for a healthy
//! module (settings through `ArcSwap`, override and breaker in atomics); the failure path
//! takes only short, uncontended-in-practice locks (`try_lock` for the last error).

use holdfast_common::lock;
use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGauge};
use serde::Serialize;

use crate::breaker::{Admit, Breaker, Transition};
use crate::clock::{ticks, Clock, SystemClock};
use crate::metrics::ModuleMetrics;
use crate::panic_hook::payload_str;
use crate::report::{Kinds, PANIC_KIND, TIMEOUT_KIND};
use crate::stale::StaleTable;
use crate::{
    FailPolicy, Module, ModuleCtx, ModuleError, ModuleSettings, ModuleState, Override, RequestView,
    Verdict,
};

/// A module and everything the runner keeps for it. Built once per module and kept across
/// config reloads (`set_settings`), so breaker state, stale decisions and counters survive.
pub struct ModuleSlot<M: Module> {
    module: M,
    settings: ArcSwap<ModuleSettings>,
    override_: AtomicU8,
    breaker: Breaker,
    stale: OnceLock<StaleTable<M::Output>>,
    kinds: Kinds,
    clock: Arc<dyn Clock>,
    anchor: Instant,
    /// Module invocations; also what `/status` shows.
    calls_total: IntCounter,
    /// Failure reports left out by the rate limit; also what `/status` shows.
    suppressed_total: IntCounter,
    state_gauge: IntGauge,
    /// Serialises gauge updates so the last writer sees the latest state.
    gauge_lock: Mutex<()>,
    last_error: Mutex<Option<LastError>>,
}

/// Why one call failed.
enum Failure {
    Error(ModuleError),
    Timeout { elapsed: Duration, budget: Duration },
    Panic(Box<dyn Any + Send>),
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Error(e) => e.kind(),
            Failure::Timeout { .. } => TIMEOUT_KIND,
            Failure::Panic(_) => PANIC_KIND,
        }
    }

    fn into_detail(self) -> String {
        match self {
            Failure::Error(ModuleError::Failed { detail, .. }) => detail,
            Failure::Error(e @ ModuleError::NoData) => e.to_string(),
            Failure::Timeout { elapsed, budget } => {
                format!("took {elapsed:?}, over the budget of {budget:?}")
            }
            Failure::Panic(payload) => match payload.downcast::<String>() {
                Ok(s) => *s,
                Err(payload) => payload_str(&*payload).to_owned(),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct LastError {
    kind: &'static str,
    detail: String,
    at: SystemTime,
}

/// `/status` for one module.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleStatus {
    pub name: &'static str,
    pub state: ModuleState,
    /// The config's kill switch (the override may say otherwise).
    pub enabled: bool,
    #[serde(rename = "override")]
    pub override_: Override,
    pub fail_policy: FailPolicy,
    /// RFC 3339; set while the state is `tripped`.
    pub tripped_until: Option<String>,
    /// Module invocations.
    pub calls: u64,
    /// Failures by kind.
    pub errors: BTreeMap<&'static str, u64>,
    pub suppressed_reports: u64,
    pub last_error: Option<LastErrorStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastErrorStatus {
    pub kind: &'static str,
    pub detail: String,
    /// RFC 3339.
    pub at: String,
}

impl<M: Module> ModuleSlot<M> {
    pub fn new(module: M, settings: ModuleSettings, metrics: &ModuleMetrics) -> Self {
        Self::with_clock(module, settings, metrics, Arc::new(SystemClock))
    }

    /// As `new`, with a time source (tests: `ManualClock`).
    pub fn with_clock(
        module: M,
        settings: ModuleSettings,
        metrics: &ModuleMetrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let slot = ModuleSlot {
            module,
            settings: ArcSwap::from_pointee(settings),
            override_: AtomicU8::new(Override::None.to_u8()),
            breaker: Breaker::new(),
            stale: OnceLock::new(),
            kinds: Kinds::new(M::NAME, metrics),
            anchor: clock.now(),
            clock,
            calls_total: metrics.calls(M::NAME),
            suppressed_total: metrics.suppressed(M::NAME),
            state_gauge: metrics.state(M::NAME),
            gauge_lock: Mutex::new(()),
            last_error: Mutex::new(None),
        };
        slot.refresh_gauge();
        slot
    }

    /// The module's verdict for one request; never panics, never blocks beyond the module's
    /// own call. See the crate documentation for the order of checks.
    pub fn run(&self, req: &RequestView<'_>) -> Verdict<M::Output> {
        self.run_in(req, &ModuleCtx::default())
    }

    /// `run`, with what earlier modules of the request wrote (`Module::decide_in`).
    pub fn run_in(&self, req: &RequestView<'_>, ctx: &ModuleCtx) -> Verdict<M::Output> {
        let settings = self.settings.load();
        if !self.override_().applied_to(settings.enabled) {
            return Verdict::Unknown;
        }
        let start = self.clock.now();
        let admit = self.breaker.admit(ticks(self.anchor, start));
        if admit == Admit::Reject {
            return self.fallback(settings.fail_policy, req);
        }
        self.calls_total.inc();
        let result = catch_unwind(AssertUnwindSafe(|| self.module.decide_in(req, ctx)));
        let end = self.clock.now();
        let elapsed = end.saturating_duration_since(start);
        let outcome = match result {
            Ok(Ok(v)) if elapsed <= settings.time_budget => Ok(v),
            Ok(Ok(_)) => Err(Failure::Timeout {
                elapsed,
                budget: settings.time_budget,
            }),
            Ok(Err(e)) => Err(Failure::Error(e)),
            Err(payload) => Err(Failure::Panic(payload)),
        };
        let now = ticks(self.anchor, end);
        // "No data yet" is a state, not a malfunction: it must not trip the breaker, or the
        // first good data would wait out a cool-down before it is used.
        let working = matches!(outcome, Ok(_) | Err(Failure::Error(ModuleError::NoData)));
        let transition = self.breaker.record(now, admit, working, &settings.breaker);
        self.on_transition(transition);
        match outcome {
            Ok(v) => {
                if settings.fail_policy == FailPolicy::Stale {
                    if let Some(key) = self.stale_key(req) {
                        self.stale.get_or_init(StaleTable::new).put(key, &v);
                    }
                }
                Verdict::Decided(v)
            }
            Err(failure) => {
                self.failed(failure, now, &settings);
                self.fallback(settings.fail_policy, req)
            }
        }
    }

    /// Replaces the settings (config reload); `run` never waits for this.
    pub fn set_settings(&self, settings: ModuleSettings) {
        self.settings.store(Arc::new(settings));
        self.refresh_gauge();
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<ModuleSettings> {
        self.settings.load_full()
    }

    pub fn set_override(&self, o: Override) {
        self.override_.store(o.to_u8(), Ordering::Relaxed);
        self.refresh_gauge();
    }

    pub fn override_(&self) -> Override {
        Override::from_u8(self.override_.load(Ordering::Relaxed))
    }

    pub fn state(&self) -> ModuleState {
        if !self.override_().applied_to(self.settings.load().enabled) {
            ModuleState::Disabled
        } else if self.breaker.is_tripped() {
            ModuleState::Tripped
        } else {
            ModuleState::Ok
        }
    }

    pub fn status(&self) -> ModuleStatus {
        let settings = self.settings.load();
        let state = self.state();
        let tripped_until = match (state, self.breaker.tripped_until()) {
            (ModuleState::Tripped, Some(until)) => {
                let now = ticks(self.anchor, self.clock.now());
                let wall = SystemTime::now();
                let at = if until >= now {
                    wall.checked_add(Duration::from_nanos(until.saturating_sub(now)))
                } else {
                    wall.checked_sub(Duration::from_nanos(now.saturating_sub(until)))
                };
                at.map(rfc3339)
            }
            _ => None,
        };
        let last_error = lock(&self.last_error).as_ref().map(|e| LastErrorStatus {
            kind: e.kind,
            detail: e.detail.clone(),
            at: rfc3339(e.at),
        });
        ModuleStatus {
            name: M::NAME,
            state,
            enabled: settings.enabled,
            override_: self.override_(),
            fail_policy: settings.fail_policy,
            tripped_until,
            calls: self.calls_total.get(),
            errors: self.kinds.counts().into_iter().collect(),
            suppressed_reports: self.suppressed_total.get(),
            last_error,
        }
    }

    pub fn module(&self) -> &M {
        &self.module
    }

    /// The policy's answer when the module failed or was not called (tripped).
    fn fallback(&self, policy: FailPolicy, req: &RequestView<'_>) -> Verdict<M::Output> {
        match policy {
            FailPolicy::Open => Verdict::Unknown,
            FailPolicy::Closed => Verdict::Deny,
            FailPolicy::Stale => self
                .stale
                .get()
                .zip(self.stale_key(req))
                .and_then(|(table, key)| table.get(key))
                .map_or(Verdict::Unknown, Verdict::Stale),
        }
    }

    /// The module's stale key; module code too, so a panic there means "no key" (it is not
    /// counted as a failure: `stale_key` is expected to be a trivial read of the request).
    fn stale_key(&self, req: &RequestView<'_>) -> Option<u64> {
        catch_unwind(AssertUnwindSafe(|| self.module.stale_key(req)))
            .ok()
            .flatten()
    }

    fn failed(&self, failure: Failure, now: u64, settings: &ModuleSettings) {
        let stats = self.kinds.get(failure.kind());
        stats.counter.inc();
        let report = stats.limiter.check(now, settings.report_interval);
        if report.is_none() {
            self.suppressed_total.inc();
        }
        let detail = failure.into_detail();
        if let Some(suppressed) = report {
            tracing::warn!(
                module = M::NAME,
                kind = stats.kind,
                detail = detail.as_str(),
                fail_policy = settings.fail_policy.as_str(),
                suppressed_since_last = suppressed,
                "module failed; its fail policy applies (at most one line per module and kind per {:?})",
                settings.report_interval,
            );
        }
        // The latest error for /status; skipped if another failing request holds the lock.
        if let Ok(mut last) = self.last_error.try_lock() {
            *last = Some(LastError {
                kind: stats.kind,
                detail,
                at: SystemTime::now(),
            });
        }
    }

    fn on_transition(&self, t: Transition) {
        match t {
            Transition::None => return,
            Transition::Tripped {
                cooldown,
                calls,
                failures,
                reprobe: false,
            } => tracing::warn!(
                module = M::NAME,
                calls,
                failures,
                cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX),
                "module tripped: its fail policy applies without calling it until the cool-down ends"
            ),
            Transition::Tripped {
                cooldown,
                reprobe: true,
                ..
            } => tracing::warn!(
                module = M::NAME,
                cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX),
                "module probe failed: tripped again for a longer cool-down"
            ),
            Transition::Closed => {
                tracing::info!(module = M::NAME, "module probe succeeded: module back in use")
            }
        }
        self.refresh_gauge();
    }

    fn refresh_gauge(&self) {
        let _g = lock(&self.gauge_lock);
        self.state_gauge.set(self.state().gauge());
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
