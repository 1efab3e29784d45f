use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_modules::{
    ManualClock, Module, ModuleError, ModuleMetrics, ModuleSettings, ModuleSlot, RequestView,
    Verdict,
};
use prometheus::Registry;

/// What the test module does on its next calls.
#[derive(Debug, Clone)]
pub enum Behave {
    Decide(u32),
    Fail(&'static str),
    NoData,
    Panic,
    /// Moves the shared clock forward by this much, then decides 1 (a slow call).
    Slow(Duration),
    /// Really sleeps, then decides 1 (for the one test on the real clock).
    Sleep(Duration),
}

pub struct TestModule {
    behave: Mutex<Behave>,
    calls: AtomicU64,
    clock: Arc<ManualClock>,
}

impl TestModule {
    pub fn new(clock: Arc<ManualClock>) -> Self {
        TestModule {
            behave: Mutex::new(Behave::Decide(42)),
            calls: AtomicU64::new(0),
            clock,
        }
    }

    pub fn set(&self, b: Behave) {
        *self.behave.lock().unwrap() = b;
    }

    /// How many times `decide` ran.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

pub const PANIC_MESSAGE: &str = "test module panics on purpose";

impl Module for TestModule {
    type Output = u32;
    const NAME: &'static str = "test";

    fn decide(&self, _req: &RequestView<'_>) -> Result<u32, ModuleError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let b = self.behave.lock().unwrap().clone();
        match b {
            Behave::Decide(v) => Ok(v),
            Behave::Fail(kind) => Err(ModuleError::Failed {
                kind,
                detail: format!("told to fail with {kind}"),
            }),
            Behave::NoData => Err(ModuleError::NoData),
            Behave::Panic => panic!("{PANIC_MESSAGE}"),
            Behave::Slow(d) => {
                self.clock.advance(d);
                Ok(1)
            }
            Behave::Sleep(d) => {
                std::thread::sleep(d);
                Ok(1)
            }
        }
    }

    /// The `x-key` header, as the stale key.
    fn stale_key(&self, req: &RequestView<'_>) -> Option<u64> {
        req.headers.get("x-key")?.to_str().ok()?.parse().ok()
    }
}

pub struct Harness {
    pub slot: ModuleSlot<TestModule>,
    pub clock: Arc<ManualClock>,
    pub registry: Registry,
}

impl Harness {
    pub fn new(settings: ModuleSettings) -> Self {
        let clock = Arc::new(ManualClock::new());
        let registry = Registry::new();
        let metrics = ModuleMetrics::new(&registry).unwrap();
        let module = TestModule::new(Arc::clone(&clock));
        let slot = ModuleSlot::with_clock(module, settings, &metrics, clock.clone());
        Harness {
            slot,
            clock,
            registry,
        }
    }

    pub fn module(&self) -> &TestModule {
        self.slot.module()
    }

    pub fn set(&self, b: Behave) {
        self.module().set(b);
    }

    pub fn run(&self, key: Option<u64>) -> Verdict<u32> {
        run(&self.slot, key)
    }

    /// A metric's value, 0 when the series does not exist.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            for m in family.get_metric() {
                let matches = labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                });
                if matches {
                    return match family.get_field_type() {
                        prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                        _ => m.get_gauge().get_value(),
                    };
                }
            }
        }
        0.0
    }

    pub fn errors(&self, kind: &str) -> f64 {
        self.metric(
            "holdfast_module_errors_total",
            &[("module", "test"), ("kind", kind)],
        )
    }

    pub fn state_gauge(&self) -> f64 {
        self.metric("holdfast_module_state", &[("module", "test")])
    }
}

/// One request through `slot`, with `key` in the `x-key` header (the stale key).
pub fn run(slot: &ModuleSlot<TestModule>, key: Option<u64>) -> Verdict<u32> {
    let mut headers = http::HeaderMap::new();
    if let Some(k) = key {
        headers.insert("x-key", k.to_string().parse().unwrap());
    }
    let req = RequestView {
        method: &http::Method::GET,
        version: http::Version::HTTP_11,
        headers: &headers,
        path: "/",
        query: None,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls: false,
        route: "all",
    };
    slot.run(&req)
}

/// Settings whose breaker never trips (for tests of one failure at a time).
pub fn no_breaker() -> ModuleSettings {
    let mut s = ModuleSettings::default();
    s.breaker.min_requests = u32::MAX;
    s
}
