//! The rule-list loader: never a panic; a rejection always has a detail; a list it accepts
//! compiles in the rule engine (`Rules::new`) — otherwise the data path would log "a rule
//! list that passed its checks did not compile" and keep the old version.
#![no_main]

use holdfast_artifact::ArtifactKind;
use holdfast_shield::rule_list::RuleListKind;
use holdfast_shield::rules::{IpLists, RuleDef, RuleMetrics, Rules};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;
use common::quiet_expected_panics;

fuzz_target!(|data: &[u8]| {
    quiet_expected_panics();
    match RuleListKind::load(data) {
        Err(r) => assert!(!r.detail.is_empty(), "a rejection says why"),
        Ok(list) => {
            assert!(RuleListKind::version(&list) >= 1);
            assert!(!list.rules.is_empty());
            static METRICS: OnceLock<RuleMetrics> = OnceLock::new();
            let metrics = METRICS.get_or_init(|| {
                RuleMetrics::new(&prometheus_registry()).expect("metrics register")
            });
            let defs = list
                .rules
                .iter()
                .map(|r| RuleDef::from_config(r, Vec::new()))
                .collect();
            if let Err(e) = Rules::new(defs, metrics, &IpLists::new()) {
                panic!("an accepted rule list does not compile: {e}");
            }
        }
    }
});

fn prometheus_registry() -> prometheus::Registry {
    prometheus::Registry::new()
}
