//! The exported families, as a scrape sees them.

use crate::support::{list, Env, CAPACITY};
use holdfast_artifact::Reason;

fn scrape(env: &Env) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&env.registry.gather())
        .unwrap()
}

#[test]
fn version_loads_and_rejections() {
    let env = Env::new();
    let a = env.artifact();
    let text = scrape(&env);
    assert!(
        text.contains(r#"holdfast_artifact_version{artifact="test-list"} 0"#),
        "{text}"
    );
    assert!(text
        .contains(r#"holdfast_artifact_rejected_total{artifact="test-list",reason="capacity"} 0"#));

    env.write(list(7, 3));
    a.start();
    a.reload();
    env.write(list(8, CAPACITY + 1));
    a.reload();
    a.reload();
    env.write("");
    a.reload();

    let text = scrape(&env);
    for line in [
        r#"holdfast_artifact_version{artifact="test-list"} 7"#,
        r#"holdfast_artifact_loads_total{artifact="test-list",result="applied"} 1"#,
        r#"holdfast_artifact_loads_total{artifact="test-list",result="unchanged"} 2"#,
        r#"holdfast_artifact_loads_total{artifact="test-list",result="rejected"} 2"#,
        r#"holdfast_artifact_rejected_total{artifact="test-list",reason="capacity"} 1"#,
        r#"holdfast_artifact_rejected_total{artifact="test-list",reason="parse"} 1"#,
        r#"holdfast_artifact_rejected_total{artifact="test-list",reason="shrink"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(env.metrics.version("test-list"), 7);
    assert_eq!(env.rejected(Reason::Capacity), 1);
}

#[test]
fn two_kinds_share_the_families() {
    let env = Env::new();
    env.write(list(2, 1));
    env.artifact().start();
    let other = env.dir.path().join("other");
    std::fs::write(&other, "abc").unwrap();
    let p: holdfast_artifact::Artifact<crate::support::Panicky> = holdfast_artifact::Artifact::new(
        holdfast_artifact::ArtifactOptions::new(&other),
        env.metrics.clone(),
    );
    p.start();
    let text = scrape(&env);
    assert!(text.contains(r#"holdfast_artifact_version{artifact="test-list"} 2"#));
    assert!(text.contains(r#"holdfast_artifact_version{artifact="panicky"} 3"#));
}
