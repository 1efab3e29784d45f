//! The bot feature file, an artifact kind:
//!
//! ```json
//! {"version": 42, "bias": -1.5,
//!  "features": [{"name": "header_count", "weight": -0.08}, {"name": "ua_is_browser", "weight": 2.1}]}
//! ```
//!
//! Checks, in order (the first failure is the rejection): JSON syntax (`Parse`); shape —
//! unknown or missing fields, wrong types, on both levels (`Schema`); more than
//! [`MAX_FEATURES`] entries (`Capacity`, checked before anything else so a doubled file is
//! named for what it is); no entries (`Empty`); `version` ≥ 1 and |`bias`| ≤ [`MAX_ABS_BIAS`]
//! (`Range`); then each entry in order: a known name (`Unknown`), a finite weight with
//! |weight| ≤ [`MAX_ABS_WEIGHT`] (`Range`), not the same feature as an earlier entry
//! (`Duplicate`).

use crate::features::{Feature, FeatureName};
use crate::model::{Model, ModelBuilder, MAX_FEATURES};
use holdfast_artifact::{parse_json, ArtifactKind, Reason, Rejection};
use serde::Deserialize;
use std::collections::HashMap;

/// Largest |weight| accepted.
pub const MAX_ABS_WEIGHT: f64 = 1000.0;
/// Largest |bias| accepted.
pub const MAX_ABS_BIAS: f64 = 1000.0;

/// The bot feature file kind (`holdfast check --kind bot-features`).
pub struct BotFeatures;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureFileJson {
    version: u64,
    bias: f64,
    features: Vec<FeatureJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureJson {
    name: String,
    weight: f64,
}

impl ArtifactKind for BotFeatures {
    type Value = Model;
    const NAME: &'static str = "bot-features";
    const MAX_BYTES: u64 = 1024 * 1024;

    fn load(bytes: &[u8]) -> Result<Model, Rejection> {
        let spec: FeatureFileJson = parse_json(bytes)?;
        let version = spec.version;
        compile(spec).map_err(|r| r.with_version(version))
    }

    fn version(value: &Model) -> u64 {
        value.version()
    }

    fn entries(value: &Model) -> usize {
        value.entries()
    }
}

fn compile(spec: FeatureFileJson) -> Result<Model, Rejection> {
    let n = spec.features.len();
    if n > MAX_FEATURES {
        return Err(Rejection::new(
            Reason::Capacity,
            format!(
                "features: {n} entries, more than the {MAX_FEATURES} this build has room for \
                 (MAX_FEATURES); remove entries — a generator that lists every feature twice \
                 produces exactly this"
            ),
        ));
    }
    if n == 0 {
        return Err(Rejection::new(
            Reason::Empty,
            "features: no entries; list at least one feature (an empty model would give every \
             request the same score)",
        ));
    }
    if spec.version == 0 {
        return Err(Rejection::new(
            Reason::Range,
            "version: 0 is not a version; use 1 or more (e.g. the generation time in unix \
             seconds), higher than the active file's",
        ));
    }
    if !in_range(spec.bias, MAX_ABS_BIAS) {
        return Err(Rejection::new(
            Reason::Range,
            format!(
                "bias: {} is out of range; use a finite number from -{MAX_ABS_BIAS} to \
                 {MAX_ABS_BIAS}",
                spec.bias
            ),
        ));
    }

    let mut model = ModelBuilder::new(spec.version, spec.bias);
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(n);
    for (i, entry) in spec.features.into_iter().enumerate() {
        let name = FeatureName::parse(&entry.name).map_err(|why| {
            Rejection::new(
                Reason::Unknown,
                format!(
                    "features[{i}].name: unknown feature \"{}\" ({why}); use a fixed feature \
                     ({}) or a family entry (header:<name>, ua_contains:<token>, \
                     path_prefix:/<prefix>), or remove the entry",
                    entry.name,
                    fixed_names()
                ),
            )
        })?;
        if !in_range(entry.weight, MAX_ABS_WEIGHT) {
            return Err(Rejection::new(
                Reason::Range,
                format!(
                    "features[{i}].weight: {} for \"{}\" is out of range; use a finite number \
                     from -{MAX_ABS_WEIGHT} to {MAX_ABS_WEIGHT}",
                    entry.weight, entry.name
                ),
            ));
        }
        let key = name.key();
        if let Some(first) = seen.get(&key) {
            return Err(Rejection::new(
                Reason::Duplicate,
                format!(
                    "features[{i}].name: \"{}\" is the same feature as features[{first}] \
                     ({key}); list each feature once",
                    entry.name
                ),
            ));
        }
        seen.insert(key, i);
        model.push(name, entry.weight).map_err(|_| {
            Rejection::new(
                Reason::Capacity,
                format!(
                    "features[{i}]: more than {MAX_FEATURES} entries (MAX_FEATURES); remove \
                     entries"
                ),
            )
        })?;
    }
    model
        .build()
        .map_err(|e| Rejection::new(Reason::Capacity, format!("features: {e}")))
}

fn in_range(v: f64, max: f64) -> bool {
    v.is_finite() && v.abs() <= max
}

fn fixed_names() -> String {
    Feature::ALL
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const DEFAULT: &[u8] = include_bytes!("../../../examples/bot-features.json");

    fn load(v: &Value) -> Result<Model, Rejection> {
        BotFeatures::load(v.to_string().as_bytes())
    }

    fn reject(v: &Value) -> Rejection {
        match load(v) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(r) => r,
        }
    }

    fn entries(v: &Value) -> Vec<Value> {
        v["features"].as_array().unwrap().clone()
    }

    /// A valid file of `n` distinct entries: every fixed feature, then family entries.
    fn file_of(n: usize) -> Value {
        let mut feats: Vec<Value> = Feature::ALL
            .iter()
            .take(n)
            .map(|f| json!({"name": f.name(), "weight": 0.5}))
            .collect();
        let mut i = 0;
        while feats.len() < n {
            let name = match i % 3 {
                0 => format!("header:x-test-{i}"),
                1 => format!("ua_contains:token{i}"),
                _ => format!("path_prefix:/p{i}"),
            };
            feats.push(json!({"name": name, "weight": -0.25}));
            i += 1;
        }
        json!({"version": 7, "bias": -1.5, "features": feats})
    }

    #[test]
    fn the_example_file_is_accepted() {
        let m = BotFeatures::load(DEFAULT).unwrap();
        assert_eq!(m.version(), 1);
        assert!((20..=60).contains(&m.entries()), "{}", m.entries());
        assert!(m.families().iter().len() > 0);
        assert_eq!(BotFeatures::entries(&m), m.entries());
        assert_eq!(BotFeatures::version(&m), 1);
        assert!(DEFAULT.len() as u64 <= BotFeatures::MAX_BYTES);
        assert_eq!(BotFeatures::NAME, "bot-features");
    }

    #[test]
    fn the_example_file_doubled_is_rejected() {
        let v: Value = serde_json::from_slice(DEFAULT).unwrap();
        let one = entries(&v);
        // Doubled once: still within capacity, so the duplicate is what is wrong.
        let mut doubled = v.clone();
        doubled["features"] = Value::Array([one.clone(), one.clone()].concat());
        let r = reject(&doubled);
        assert_eq!(r.reason, Reason::Duplicate, "{r}");
        assert_eq!(r.version, Some(1));
        // Every entry repeated until over capacity: capacity, before duplicates.
        let copies = MAX_FEATURES / one.len() + 1;
        let mut flood = v.clone();
        flood["features"] = Value::Array((0..copies).flat_map(|_| one.clone()).collect());
        let r = reject(&flood);
        assert_eq!(r.reason, Reason::Capacity, "{r}");
        assert!(r.detail.contains(&(one.len() * copies).to_string()), "{r}");
    }

    #[test]
    fn every_feature_twice_is_capacity() {
        let good = file_of(120);
        let m = load(&good).unwrap();
        assert_eq!(m.entries(), 120);
        let one = entries(&good);
        let mut doubled = good.clone();
        doubled["features"] =
            Value::Array(one.iter().flat_map(|e| [e.clone(), e.clone()]).collect());
        let r = reject(&doubled);
        assert_eq!(r.reason, Reason::Capacity);
        assert_eq!(r.version, Some(7));
        assert!(r.detail.starts_with("features: 240 entries"), "{r}");
        assert!(r.detail.contains("200"), "{r}");
        assert!(r.detail.contains("MAX_FEATURES"), "{r}");
    }

    #[test]
    fn exactly_max_features_is_accepted() {
        assert_eq!(
            load(&file_of(MAX_FEATURES)).unwrap().entries(),
            MAX_FEATURES
        );
        assert_eq!(reject(&file_of(MAX_FEATURES + 1)).reason, Reason::Capacity);
    }

    #[test]
    fn unknown_name() {
        let mut v = file_of(5);
        v["features"][3]["name"] = json!("header_cnt");
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Unknown);
        assert!(
            r.detail.starts_with(
                "features[3].name: unknown feature \"header_cnt\" (neither a fixed feature"
            ),
            "{r}"
        );
        assert!(r.detail.contains("header_count"), "{r}");
        assert!(r.detail.contains("ua_contains:<token>"), "{r}");

        v["features"][3]["name"] = json!("path_prefix:admin");
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Unknown);
        assert!(
            r.detail.starts_with(
                "features[3].name: unknown feature \"path_prefix:admin\" (a path prefix \
                 starts with '/'"
            ),
            "{r}"
        );
    }

    #[test]
    fn duplicate_names_both_indices() {
        let mut v = file_of(30);
        v["features"][25]["name"] = v["features"][2]["name"].clone();
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Duplicate);
        assert!(r.detail.starts_with("features[25].name:"), "{r}");
        assert!(r.detail.contains("features[2]"), "{r}");
        assert!(r.detail.contains("list each feature once"), "{r}");

        // Same feature, different spelling.
        let mut v = file_of(30);
        v["features"][24]["name"] = json!("ua_contains:TOKEN1");
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Duplicate, "{r}");
        assert!(r.detail.contains("features[23]"), "{r}");
    }

    #[test]
    fn ranges() {
        let mut v = file_of(5);
        v["features"][1]["weight"] = json!(1000.5);
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Range);
        assert!(r.detail.starts_with("features[1].weight: 1000.5"), "{r}");
        assert!(r.detail.contains("-1000 to 1000"), "{r}");

        let mut v = file_of(5);
        v["features"][0]["weight"] = json!(-1000.0);
        assert!(load(&v).is_ok());

        let mut v = file_of(5);
        v["bias"] = json!(-5000);
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Range);
        assert!(r.detail.starts_with("bias: -5000"), "{r}");

        let mut v = file_of(5);
        v["version"] = json!(0);
        let r = reject(&v);
        assert_eq!(r.reason, Reason::Range);
        assert!(r.detail.starts_with("version: 0"), "{r}");
    }

    #[test]
    fn non_finite_weights_never_load() {
        // JSON has no NaN or infinity; an overflowing literal is refused by the parser.
        let text = br#"{"version": 1, "bias": 0, "features": [{"name": "tls", "weight": 1e999}]}"#;
        let r = BotFeatures::load(text).unwrap_err();
        assert!(matches!(r.reason, Reason::Parse | Reason::Schema), "{r:?}");
        let text = br#"{"version": 1, "bias": 0, "features": [{"name": "tls", "weight": NaN}]}"#;
        assert_eq!(BotFeatures::load(text).unwrap_err().reason, Reason::Parse);
        assert!(!in_range(f64::NAN, MAX_ABS_WEIGHT));
        assert!(!in_range(f64::INFINITY, MAX_ABS_WEIGHT));
    }

    #[test]
    fn empty() {
        let r = reject(&json!({"version": 3, "bias": 0.0, "features": []}));
        assert_eq!(r.reason, Reason::Empty);
        assert_eq!(r.version, Some(3));
        assert!(r.detail.starts_with("features: no entries"), "{r}");
    }

    #[test]
    fn schema_and_parse() {
        // One field more in an entry (19 Jul 2024), one fewer, an unknown top-level field,
        // a wrong type, a negative version.
        let cases = [
            (
                json!({"version": 1, "bias": 0, "features": [{"name": "tls", "weight": 1, "extra": 2}]}),
                "features[0]",
            ),
            (
                json!({"version": 1, "bias": 0, "features": [{"name": "tls"}]}),
                "features[0]",
            ),
            (
                json!({"version": 1, "bias": 0, "features": [], "mode": "x"}),
                "mode",
            ),
            (json!({"version": 1, "bias": "0", "features": []}), "bias"),
            (json!({"version": -1, "bias": 0, "features": []}), "version"),
            (json!({"bias": 0, "features": []}), "version"),
        ];
        for (v, path) in cases {
            let r = reject(&v);
            assert_eq!(r.reason, Reason::Schema, "{v}: {r}");
            assert!(r.detail.contains(path), "{v}: {r}");
        }
        for text in [&b""[..], b"{", b"{\"version\": 1,", b"[1, 2]x", b"\xff\xfe"] {
            let r = BotFeatures::load(text).unwrap_err();
            assert!(
                matches!(r.reason, Reason::Parse | Reason::NotUtf8 | Reason::Schema),
                "{r:?}"
            );
        }
        assert_eq!(BotFeatures::load(b"").unwrap_err().reason, Reason::Parse);
        assert_eq!(
            BotFeatures::load(b"\xff").unwrap_err().reason,
            Reason::NotUtf8
        );
    }
}
