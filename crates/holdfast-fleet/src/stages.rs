//! The stages of a rollout: a group name (its instances go) or a percentage of the instances
//! not yet on the version (at least one). The last stage is always `100%`: a rollout ends
//! with every live instance on the version.

use serde::{Deserialize, Serialize};

/// The default stages.
pub const DEFAULT_STAGES: &str = "canary,10%,50%,100%";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStage {
    Group(String),
    Percent(u8),
}

impl RolloutStage {
    pub fn label(&self) -> String {
        match self {
            RolloutStage::Group(g) => g.clone(),
            RolloutStage::Percent(p) => format!("{p}%"),
        }
    }
}

/// Parse `canary,10%,50%,100%`. Errors name the stage and the fix.
pub fn parse(text: &str) -> Result<Vec<RolloutStage>, String> {
    let mut stages = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "stages {text:?}: an empty stage (write e.g. \"{DEFAULT_STAGES}\")"
            ));
        }
        let stage = match part.strip_suffix('%') {
            Some(n) => match n.parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => RolloutStage::Percent(p),
                _ => return Err(format!("stages: {part:?} is not a percentage from 1% to 100%")),
            },
            None if part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
                RolloutStage::Group(part.to_string())
            }
            None => {
                return Err(format!(
                    "stages: {part:?} is neither a group name (letters, digits, - and _) nor a percentage"
                ))
            }
        };
        stages.push(stage);
    }
    if stages.last() != Some(&RolloutStage::Percent(100)) {
        return Err(format!(
            "stages {text:?}: the last stage must be 100% (a rollout ends with every instance on the version)"
        ));
    }
    Ok(stages)
}

/// The instances a stage hands the version to, from `candidates` (live instances not yet
/// on it, as `(id, group)`, in id order).
pub fn select(stage: &RolloutStage, candidates: &[(String, Option<String>)]) -> Vec<String> {
    match stage {
        RolloutStage::Group(g) => candidates
            .iter()
            .filter(|(_, group)| group.as_deref() == Some(g.as_str()))
            .map(|(id, _)| id.clone())
            .collect(),
        RolloutStage::Percent(p) => {
            let n = (candidates.len() * usize::from(*p)).div_ceil(100).max(1);
            candidates
                .iter()
                .take(n)
                .map(|(id, _)| id.clone())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(groups: &[Option<&str>]) -> Vec<(String, Option<String>)> {
        groups
            .iter()
            .enumerate()
            .map(|(i, g)| (format!("edge-{i}"), g.map(str::to_string)))
            .collect()
    }

    #[test]
    fn default_stages_parse() {
        assert_eq!(
            parse(DEFAULT_STAGES),
            Ok(vec![
                RolloutStage::Group("canary".into()),
                RolloutStage::Percent(10),
                RolloutStage::Percent(50),
                RolloutStage::Percent(100)
            ])
        );
    }

    #[test]
    fn bad_stages_are_refused_with_the_reason() {
        assert!(parse("canary,50%")
            .unwrap_err()
            .contains("last stage must be 100%"));
        assert!(parse("0%,100%").unwrap_err().contains("from 1% to 100%"));
        assert!(parse("can ary,100%")
            .unwrap_err()
            .contains("neither a group"));
        assert!(parse("canary,,100%").unwrap_err().contains("empty stage"));
    }

    #[test]
    fn a_percentage_is_at_least_one_instance_and_rounds_up() {
        let four = fleet(&[None, None, None, None]);
        assert_eq!(select(&RolloutStage::Percent(10), &four), vec!["edge-0"]);
        assert_eq!(select(&RolloutStage::Percent(50), &four).len(), 2);
        assert_eq!(select(&RolloutStage::Percent(51), &four).len(), 3);
        assert_eq!(select(&RolloutStage::Percent(100), &four).len(), 4);
        assert!(select(&RolloutStage::Percent(100), &[]).is_empty());
    }

    #[test]
    fn a_group_stage_takes_its_group_only() {
        let f = fleet(&[None, Some("canary"), None, Some("canary")]);
        assert_eq!(
            select(&RolloutStage::Group("canary".into()), &f),
            vec!["edge-1", "edge-3"]
        );
        assert!(select(&RolloutStage::Group("eu".into()), &f).is_empty());
    }
}
