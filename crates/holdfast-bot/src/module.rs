//! The scoring module: `decide` computes the request's features and scores them with the
//! active model.
//!
//! Cost (measured once in a release build with the example model on a shared 2-core VM, not
//! asserted; `bench/bot.sh` measures it in the edge): ≈0.5 µs per `decide` for a 15-header
//! browser request, ≈0.3 µs for a curl-like one, including the clock read and the rate-table
//! update. Nothing is allocated:
//! the fixed features live in stack arrays, the user agent is lower-cased into a stack buffer
//! and searched once by the model's automaton, family headers are map look-ups.

use crate::features::{Feature, Ja4h};
use crate::model::{Model, Score};
use crate::rate::RateTable;
use holdfast_modules::{Module, ModuleError, RequestView};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the module finds the active model. The edge implements this over the artifact
/// pipeline (`Artifact<BotFeatures>::current()`); `None`: no feature file was ever accepted.
pub trait ModelSource: Send + Sync + 'static {
    fn with_model<R>(&self, f: impl FnOnce(Option<&Model>) -> R) -> R;
}

/// A fixed model (or none): for tests, `holdfast check` and tools.
#[derive(Debug, Clone, Default)]
pub struct FixedModel(pub Option<Arc<Model>>);

impl ModelSource for FixedModel {
    fn with_model<R>(&self, f: impl FnOnce(Option<&Model>) -> R) -> R {
        f(self.0.as_deref())
    }
}

/// The edge's source: the model the artifact pipeline has active (lock-free read).
impl ModelSource for holdfast_artifact::Artifact<crate::BotFeatures> {
    fn with_model<R>(&self, f: impl FnOnce(Option<&Model>) -> R) -> R {
        let current = self.current();
        f(current.as_deref().map(|active| &active.value))
    }
}

impl<S: ModelSource> ModelSource for Arc<S> {
    fn with_model<R>(&self, f: impl FnOnce(Option<&Model>) -> R) -> R {
        (**self).with_model(f)
    }
}

/// Bot scoring as a [`Module`]: `Output` is a [`Score`]; no model → `ModuleError::NoData`.
pub struct BotScorer<S> {
    source: S,
    rate: RateTable,
    ja4h: Ja4h,
}

impl<S: ModelSource> BotScorer<S> {
    /// A module counting `client_rate` over the default window (10 s).
    pub fn new(source: S) -> Self {
        BotScorer {
            source,
            rate: RateTable::default(),
            ja4h: Ja4h::Off,
        }
    }

    /// A module counting `client_rate` over `window`.
    pub fn with_rate_window(source: S, window: Duration) -> Self {
        BotScorer {
            source,
            rate: RateTable::new(window),
            ja4h: Ja4h::Off,
        }
    }

    /// Whether `ja4h_browser_like` is computed (`[modules.bot] ja4h`; off by default, see
    /// [`Ja4h`]).
    pub fn with_ja4h(mut self, ja4h: Ja4h) -> Self {
        self.ja4h = ja4h;
        self
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    pub fn rate_table(&self) -> &RateTable {
        &self.rate
    }

    /// Score `req` with `model` at `now`. The rate table is only counted when the model uses
    /// `client_rate`.
    pub fn score_with(
        &self,
        model: &Model,
        req: &RequestView<'_>,
        now: Instant,
    ) -> Result<Score, ModuleError> {
        let rate = if model.uses(Feature::ClientRate) {
            self.rate.observe(req.client_ip, now)
        } else {
            0
        };
        model
            .score(req, rate, self.ja4h)
            .ok_or_else(|| ModuleError::Failed {
                kind: "non_finite_score",
                detail: format!("model version {} gave a NaN sum", model.version()),
            })
    }
}

impl<S: ModelSource> Module for BotScorer<S> {
    type Output = Score;
    const NAME: &'static str = "bot";

    fn decide(&self, req: &RequestView<'_>) -> Result<Score, ModuleError> {
        self.source.with_model(|model| match model {
            Some(model) => self.score_with(model, req, Instant::now()),
            None => Err(ModuleError::NoData),
        })
    }

    /// A hash of the client address (stable within one build), so `stale` reuses the
    /// client's own last score.
    fn stale_key(&self, req: &RequestView<'_>) -> Option<u64> {
        let mut h = std::hash::DefaultHasher::new();
        req.client_ip.hash(&mut h);
        Some(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests::{headers, view, CHROME, CURL};
    use crate::file::BotFeatures;
    use holdfast_artifact::ArtifactKind;
    use http::{Method, Version};
    use std::net::{IpAddr, Ipv4Addr};

    const DEFAULT: &[u8] = include_bytes!("../../../examples/bot-features.json");

    fn module() -> BotScorer<FixedModel> {
        let model = BotFeatures::load(DEFAULT).unwrap();
        BotScorer::new(FixedModel(Some(Arc::new(model))))
    }

    #[test]
    fn no_model_is_no_data() {
        let m = BotScorer::new(FixedModel(None));
        let h = headers(CURL);
        let get = Method::GET;
        let req = view(&get, Version::HTTP_11, &h, "/", None, false);
        assert_eq!(m.decide(&req), Err(ModuleError::NoData));
        assert_eq!(BotScorer::<FixedModel>::NAME, "bot");
    }

    #[test]
    fn default_model_curl_low_browser_high() {
        let m = module();
        let get = Method::GET;
        let h = headers(CURL);
        let curl = view(&get, Version::HTTP_11, &h, "/", None, false);
        let low = m.decide(&curl).unwrap();
        assert!(low.get() <= 10, "curl scored {low}");

        let h = headers(CHROME);
        let chrome = view(&get, Version::HTTP_2, &h, "/products/42", None, true);
        let high = m.decide(&chrome).unwrap();
        assert!(high.get() >= 90, "browser scored {high}");

        let h = headers(&[
            ("host", "example.com"),
            ("user-agent", "python-requests/2.31.0"),
            ("accept-encoding", "gzip, deflate"),
            ("accept", "*/*"),
            ("connection", "keep-alive"),
        ]);
        let py = view(&get, Version::HTTP_11, &h, "/wp-login.php", None, false);
        assert!(m.decide(&py).unwrap().get() <= 10);
    }

    #[test]
    fn a_flooding_client_scores_lower() {
        let m = module();
        let get = Method::GET;
        let h = headers(CHROME);
        let req = view(&get, Version::HTTP_2, &h, "/", None, true);
        let first = m.decide(&req).unwrap();
        let mut last = first;
        for _ in 0..5000 {
            last = m.decide(&req).unwrap();
        }
        assert!(last < first, "{first} → {last}");
    }

    #[test]
    fn stale_key_is_the_client() {
        let m = module();
        let get = Method::GET;
        let h = headers(CURL);
        let mut a = view(&get, Version::HTTP_11, &h, "/", None, false);
        let mut b = a;
        b.path = "/other";
        assert_eq!(m.stale_key(&a), m.stale_key(&b));
        a.client_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));
        assert_ne!(m.stale_key(&a), m.stale_key(&b));
    }

    #[test]
    fn the_source_is_read_per_request() {
        use std::sync::Mutex;
        struct Swappable(Mutex<Option<Arc<Model>>>);
        impl ModelSource for Swappable {
            fn with_model<R>(&self, f: impl FnOnce(Option<&Model>) -> R) -> R {
                let current = self.0.lock().unwrap().clone();
                f(current.as_deref())
            }
        }
        let src = Arc::new(Swappable(Mutex::new(None)));
        let m = BotScorer::new(src.clone());
        let get = Method::GET;
        let h = headers(CURL);
        let req = view(&get, Version::HTTP_11, &h, "/", None, false);
        assert_eq!(m.decide(&req), Err(ModuleError::NoData));
        *src.0.lock().unwrap() = Some(Arc::new(BotFeatures::load(DEFAULT).unwrap()));
        assert!(m.decide(&req).is_ok());
    }
}
