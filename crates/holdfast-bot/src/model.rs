//! The compiled model and the score.
//!
//! score = 1 + 98 · sigmoid(bias + Σ wᵢ·xᵢ), rounded and clamped to 1..=99 (low = likely
//! bot). 0 is never a score: "could not score" is [`unknown_header`] (R6).
//!
//! NaN: with the loader's bounds (|w| ≤ 1000, |bias| ≤ 1000, at most [`MAX_FEATURES`]
//! entries, every feature value finite and ≤ 100) the sum is always finite. Should it still be
//! NaN, [`Model::score`] returns `None` and the module reports an error (`non_finite_score`),
//! which its fail policy turns into `unknown` — never a made-up mid value.

use crate::features::{
    class_tokens, ua_automaton, Family, Feature, FeatureName, Ja4h, RequestFeatures, UaClasses,
    UaLower, CLASS_TOKEN_COUNT,
};
use aho_corasick::AhoCorasick;
use holdfast_modules::RequestView;
use http::header::HeaderName;
use http::HeaderValue;

/// The most entries (fixed and family together) a model has room for. The model's family
/// lists are allocated with this capacity and never grow; the loader rejects a file with more
/// entries using this same constant (the 18 Nov 2025 lesson).
pub const MAX_FEATURES: usize = 200;

/// A loaded feature file, ready for scoring: fixed-feature weights in an array indexed by
/// [`Feature::index`], family entries in lists allocated for [`MAX_FEATURES`] at load, and
/// one automaton over the user-agent class tokens and every `ua_contains:` token (one pass
/// over the lower-cased user agent finds them all).
#[derive(Debug, Clone)]
pub struct Model {
    version: u64,
    bias: f64,
    /// Weight of each fixed feature; 0 for features not listed.
    fixed: [f64; Feature::COUNT],
    listed: [bool; Feature::COUNT],
    /// Every family entry in file order (for `/status`, tools and tests).
    families: Vec<(Family, f64)>,
    headers: Vec<(HeaderName, f64)>,
    prefixes: Vec<(String, f64)>,
    /// Weight of each `ua_contains:` token, by pattern id of `ua_search` minus
    /// `CLASS_TOKEN_COUNT`.
    ua_weights: Vec<f64>,
    ua_search: AhoCorasick,
    entries: usize,
}

/// Room for a bit per automaton pattern in a stack bitset.
const _: () = assert!(CLASS_TOKEN_COUNT + MAX_FEATURES <= 256);

/// The model is full: [`MAX_FEATURES`] entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Builds a [`Model`] entry by entry, within [`MAX_FEATURES`].
#[derive(Debug)]
pub struct ModelBuilder {
    version: u64,
    bias: f64,
    fixed: [f64; Feature::COUNT],
    listed: [bool; Feature::COUNT],
    families: Vec<(Family, f64)>,
    headers: Vec<(HeaderName, f64)>,
    prefixes: Vec<(String, f64)>,
    ua_tokens: Vec<String>,
    ua_weights: Vec<f64>,
    entries: usize,
}

impl ModelBuilder {
    /// An empty model with room for [`MAX_FEATURES`] entries.
    pub fn new(version: u64, bias: f64) -> ModelBuilder {
        ModelBuilder {
            version,
            bias,
            fixed: [0.0; Feature::COUNT],
            listed: [false; Feature::COUNT],
            families: Vec::with_capacity(MAX_FEATURES),
            headers: Vec::with_capacity(MAX_FEATURES),
            prefixes: Vec::with_capacity(MAX_FEATURES),
            ua_tokens: Vec::with_capacity(MAX_FEATURES),
            ua_weights: Vec::with_capacity(MAX_FEATURES),
            entries: 0,
        }
    }

    /// Add one entry; `Err(Full)` past [`MAX_FEATURES`] (the loader checks the count first;
    /// this is the second guard, on the same constant). A fixed feature added twice keeps the
    /// last weight (the loader rejects duplicates before this).
    pub fn push(&mut self, name: FeatureName, weight: f64) -> Result<(), Full> {
        let m = self;
        if m.entries >= MAX_FEATURES {
            return Err(Full);
        }
        match name {
            FeatureName::Fixed(f) => {
                if let (Some(w), Some(l)) =
                    (m.fixed.get_mut(f.index()), m.listed.get_mut(f.index()))
                {
                    *w = weight;
                    *l = true;
                }
            }
            FeatureName::Family(fam) => {
                match &fam {
                    Family::Header(h) => m.headers.push((h.clone(), weight)),
                    Family::PathPrefix(p) => m.prefixes.push((p.clone(), weight)),
                    Family::UaContains(t) => {
                        m.ua_tokens.push(t.clone());
                        m.ua_weights.push(weight);
                    }
                }
                m.families.push((fam, weight));
            }
        }
        m.entries += 1;
        Ok(())
    }

    /// The model; an error only if the token automaton cannot be built (it can for any
    /// [`MAX_FEATURES`] tokens of the allowed length).
    pub fn build(self) -> Result<Model, String> {
        let mut patterns: Vec<&str> = class_tokens().collect();
        patterns.extend(self.ua_tokens.iter().map(String::as_str));
        let ua_search = ua_automaton(patterns)
            .map_err(|e| format!("the ua_contains: tokens cannot be compiled: {e}"))?;
        Ok(Model {
            version: self.version,
            bias: self.bias,
            fixed: self.fixed,
            listed: self.listed,
            families: self.families,
            headers: self.headers,
            prefixes: self.prefixes,
            ua_weights: self.ua_weights,
            ua_search,
            entries: self.entries,
        })
    }
}

impl Model {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn bias(&self) -> f64 {
        self.bias
    }

    /// Number of entries in the file.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The file lists this fixed feature.
    pub fn uses(&self, f: Feature) -> bool {
        self.listed.get(f.index()).copied().unwrap_or(false)
    }

    /// The weight of a fixed feature, if listed.
    pub fn weight(&self, f: Feature) -> Option<f64> {
        self.uses(f)
            .then(|| self.fixed.get(f.index()).copied())
            .flatten()
    }

    /// The family entries and their weights, in file order.
    pub fn families(&self) -> &[(Family, f64)] {
        &self.families
    }

    /// The request's fixed features and its logit, bias + Σ wᵢ·xᵢ. No allocation: a stack
    /// copy of the user agent, one automaton pass over it for the class tokens and every
    /// `ua_contains:` token (a stack bitset counts each token once), header look-ups and
    /// prefix compares.
    pub fn evaluate(
        &self,
        req: &RequestView<'_>,
        client_rate: u32,
        ja4h: Ja4h,
    ) -> (RequestFeatures, f64) {
        let ua = UaLower::of(req);
        let mut classes = UaClasses::default();
        let mut z = self.bias;
        if let Ok(matches) = self.ua_search.try_find_overlapping_iter(ua.bytes()) {
            let mut seen = [0u64; 4];
            for m in matches {
                let id = m.pattern().as_usize();
                let bit = 1u64 << (id % 64);
                let Some(word) = seen.get_mut(id / 64) else {
                    continue;
                };
                if *word & bit != 0 {
                    continue;
                }
                *word |= bit;
                match id.checked_sub(CLASS_TOKEN_COUNT) {
                    None => classes.add(id),
                    Some(i) => z += self.ua_weights.get(i).copied().unwrap_or(0.0),
                }
            }
        }
        let ja4h = if self.uses(Feature::Ja4hBrowserLike) {
            ja4h
        } else {
            Ja4h::Off
        };
        let x = RequestFeatures::compute_with(req, client_rate, ja4h, &ua, classes);
        for (w, v) in self.fixed.iter().zip(x.values()) {
            z += w * v;
        }
        for (name, w) in &self.headers {
            if req.headers.contains_key(name) {
                z += w;
            }
        }
        for (prefix, w) in &self.prefixes {
            if req.path.starts_with(prefix.as_str()) {
                z += w;
            }
        }
        (x, z)
    }

    /// The score of a request; `None` only if the sum is NaN.
    pub fn score(&self, req: &RequestView<'_>, client_rate: u32, ja4h: Ja4h) -> Option<Score> {
        Score::from_logit(self.evaluate(req, client_rate, ja4h).1)
    }
}

/// A bot score, 1..=99 (low = likely bot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Score(u8);

impl Score {
    pub const MIN: Score = Score(1);
    pub const MAX: Score = Score(99);

    /// `None` outside 1..=99.
    pub fn new(v: u8) -> Option<Score> {
        (1..=99).contains(&v).then_some(Score(v))
    }

    /// 1 + 98 · sigmoid(z), rounded, clamped to 1..=99; `None` for NaN. ±∞ give 99 and 1.
    pub fn from_logit(z: f64) -> Option<Score> {
        if z.is_nan() {
            return None;
        }
        let s = 1.0 / (1.0 + (-z).exp());
        let v = (1.0 + 98.0 * s).round().clamp(1.0, 99.0);
        // v is an integer in 1..=99.
        Some(Score(v as u8))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// `"1"`..`"99"` from a static table: no allocation.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_static(
            SCORE_TEXT
                .get(usize::from(self.0))
                .copied()
                .unwrap_or("unknown"),
        )
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The request header that carries the score to the origin.
pub const SCORE_HEADER: http::HeaderName = http::HeaderName::from_static("x-holdfast-bot-score");

/// The header value when no score could be computed (module disabled, tripped or failed).
pub fn unknown_header() -> HeaderValue {
    HeaderValue::from_static("unknown")
}

/// Index = score; index 0 is never used (a score is never 0).
const SCORE_TEXT: [&str; 100] = [
    "unknown", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
    "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47",
    "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63",
    "64", "65", "66", "67", "68", "69", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79",
    "80", "81", "82", "83", "84", "85", "86", "87", "88", "89", "90", "91", "92", "93", "94", "95",
    "96", "97", "98", "99",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests::{headers, view, CHROME, CURL};
    use http::{Method, Version};

    #[test]
    fn header_values_match_the_number() {
        for v in 1..=99u8 {
            let s = Score::new(v).unwrap();
            assert_eq!(s.header_value().to_str().unwrap(), v.to_string());
        }
        assert_eq!(Score::new(0), None);
        assert_eq!(Score::new(100), None);
        assert_eq!(unknown_header(), "unknown");
        assert_eq!(SCORE_HEADER.as_str(), "x-holdfast-bot-score");
    }

    #[test]
    fn score_bounds() {
        assert_eq!(Score::from_logit(0.0), Some(Score(50)));
        assert_eq!(Score::from_logit(1e9), Some(Score::MAX));
        assert_eq!(Score::from_logit(-1e9), Some(Score::MIN));
        assert_eq!(Score::from_logit(f64::INFINITY), Some(Score::MAX));
        assert_eq!(Score::from_logit(f64::NEG_INFINITY), Some(Score::MIN));
        assert_eq!(Score::from_logit(f64::NAN), None);
        let mut z = -50.0;
        while z <= 50.0 {
            let s = Score::from_logit(z).unwrap().get();
            assert!((1..=99).contains(&s), "{z} → {s}");
            z += 0.01;
        }
    }

    fn extreme(weight: f64, bias: f64) -> Model {
        let mut m = ModelBuilder::new(1, bias);
        for f in Feature::ALL {
            m.push(FeatureName::Fixed(f), weight).unwrap();
        }
        for fam in [
            "header:host",
            "ua_contains:curl",
            "ua_contains:mozilla",
            "path_prefix:/",
        ] {
            m.push(FeatureName::parse(fam).unwrap(), weight).unwrap();
        }
        m.build().unwrap()
    }

    #[test]
    fn huge_weights_stay_in_range() {
        let m = Method::GET;
        for set in [CURL, CHROME, &[]] {
            let h = headers(set);
            let req = view(&m, Version::HTTP_2, &h, "/a/b", Some("x=1"), true);
            assert_eq!(
                extreme(1000.0, 1000.0).score(&req, u32::MAX, Ja4h::On),
                Some(Score::MAX)
            );
            assert_eq!(
                extreme(-1000.0, -1000.0).score(&req, u32::MAX, Ja4h::On),
                Some(Score::MIN)
            );
        }
    }

    #[test]
    fn capacity_is_enforced_by_the_model_too() {
        let mut b = ModelBuilder::new(1, 0.0);
        for i in 0..MAX_FEATURES {
            let name = FeatureName::parse(&format!("ua_contains:t{i}")).unwrap();
            b.push(name, 1.0).unwrap();
        }
        assert_eq!(b.push(FeatureName::Fixed(Feature::Tls), 1.0), Err(Full));
        let m = b.build().unwrap();
        assert_eq!(m.families().len(), MAX_FEATURES);
        assert!(m.families.capacity() >= MAX_FEATURES);
        assert_eq!(m.entries(), MAX_FEATURES);
    }

    /// The compiled look-ups give the same sum as the plain definitions, each token counted
    /// once however often it occurs.
    #[test]
    fn compiled_families_match_the_definition() {
        let names = [
            "header:cookie",
            "header:x-absent",
            "ua_contains:Chrome",
            "ua_contains:chrome/124",
            "ua_contains:hrom",
            "ua_contains:safari",
            "ua_contains:curl",
            "ua_contains:a",
            "path_prefix:/a",
            "path_prefix:/a/b/c/d",
        ];
        let mut b = ModelBuilder::new(1, 0.25);
        for (i, n) in names.iter().enumerate() {
            b.push(FeatureName::parse(n).unwrap(), 0.5 + i as f64)
                .unwrap();
        }
        b.push(FeatureName::Fixed(Feature::HeaderCount), 0.1)
            .unwrap();
        let m = b.build().unwrap();
        let get = Method::GET;
        for set in [CURL, CHROME, &[]] {
            let h = headers(set);
            let req = view(&get, Version::HTTP_11, &h, "/a/b", None, false);
            // The model does not list ja4h_browser_like, so evaluate never computes it.
            let x = RequestFeatures::compute(&req, 0, Ja4h::Off);
            let mut expected = 0.25 + 0.1 * x.value(Feature::HeaderCount);
            for (f, w) in m.families() {
                if f.matches(&req) {
                    expected += w;
                }
            }
            let (mx, z) = m.evaluate(&req, 0, Ja4h::On);
            assert_eq!(mx, x, "{set:?}");
            assert!((z - expected).abs() < 1e-9, "{set:?}");
        }
    }
}
