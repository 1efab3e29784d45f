//! Bot scoring at the edge, through the interfaces issue 6 fixes exactly: `[edge] state_dir`
//! and `[modules.bot] enabled / features / fail_policy`; `x-holdfast-bot-score: 1-99` or
//! `unknown` on every proxied request (never `0`, never absent, never the client's own);
//! the kill switch by config and by `POST /modules/bot/disable|enable` (kept in `state_dir`
//! across restarts); a changed feature file picked up within 2 s without a signal, and at
//! once on `POST /reload`; `holdfast check --kind bot-features`; the artifact metrics and the
//! `/status` entries; `fail_policy = "closed"` without a feature file is a 403, not a 5xx.

use crate::support::*;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

/// The interface's "within 2 seconds" for a changed feature file.
const PICKED_UP: Duration = Duration::from_secs(2);

/// `[edge] state_dir` and `[modules.bot]` with exactly the issue's keys, then `BASIC_POOL`
/// (`{origin}`); `{enabled}` and `{policy}` fill in the module's keys.
fn bot_template() -> String {
    edge_config_with(
        2,
        r#"state_dir = "state""#,
        &format!(
            r#"
[modules.bot]
enabled = {{enabled}}
features = "bot-features.json"
fail_policy = "{{policy}}"
{BASIC_POOL}"#
        ),
    )
}

fn bot_vars(origin: &Origin, enabled: bool, policy: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("enabled", enabled.to_string()),
        ("policy", policy.to_owned()),
    ]
}

/// An edge with the bot module (`enabled`, `policy`) and `features` as its feature file
/// (`None`: no file at all).
fn bot_edge(origin: &Origin, enabled: bool, policy: &str, features: Option<&str>) -> Edge {
    let features = features.map(str::to_owned);
    Edge::start_in_dir(
        &bot_template(),
        &bot_vars(origin, enabled, policy),
        move |dir| {
            if let Some(text) = features {
                std::fs::write(dir.join("bot-features.json"), text).unwrap();
            }
        },
    )
}

/// What curl sends.
const CURL: &[(&str, &str)] = &[("user-agent", "curl/8.5.0"), ("accept", "*/*")];

/// What a desktop Chrome sends for a navigation, in its order.
const BROWSER: &[(&str, &str)] = &[
    ("connection", "keep-alive"),
    (
        "sec-ch-ua",
        "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("upgrade-insecure-requests", "1"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("sec-fetch-site", "none"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-user", "?1"),
    ("sec-fetch-dest", "document"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"),
    ("cookie", "session=abc; theme=dark"),
];

/// One GET through the edge with `headers`, which must be a 200 from the origin; the bot
/// score the origin got with it.
async fn score_of(edge: &Edge, origin: &Origin, path: &str, headers: &[(&str, &str)]) -> BotScore {
    let got = within_limit(get_with(&edge.url(path), headers)).await;
    assert_eq!(got.status, 200, "{path}: {}", got.text());
    let seen = origin.last();
    assert_eq!(
        seen.uri.path(),
        path,
        "the origin's last request is not this one"
    );
    seen.bot_score()
}

/// A number, not `unknown`.
fn number(s: BotScore) -> u8 {
    match s {
        BotScore::Score(n) => n,
        BotScore::Unknown => panic!("the score is unknown where a number was expected"),
    }
}

async fn post_ok(edge: &Edge, path: &str) -> serde_json::Value {
    let got = within_limit(post(&edge.admin_url(path))).await;
    assert_eq!(got.status, 200, "POST {path}: {}", got.text());
    got.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_score_curl_low_browser_high_the_client_cannot_set_it() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, true, "open", Some(EXAMPLE_FEATURES));

    let curl = number(score_of(&edge, &origin, "/curl", CURL).await);
    let browser = number(score_of(&edge, &origin, "/browser", BROWSER).await);
    assert!(curl <= 20, "curl-like request scored {curl}");
    assert!(browser >= 80, "browser-like request scored {browser}");

    // A score the client sends itself is replaced, whatever it says (one header reaches the
    // origin: `bot_score` rejects a repeated one).
    for forged in ["0", "99", "unknown", "1, 99"] {
        let mut headers = CURL.to_vec();
        headers.push((SCORE_HEADER, forged));
        let got = number(score_of(&edge, &origin, "/forged", &headers).await);
        assert_eq!(got, curl, "client sent {forged:?}");
    }
    // Every request the origin saw carried exactly one valid score.
    for seen in origin.seen.lock().unwrap().iter() {
        assert!(matches!(seen.bot_score(), BotScore::Score(_)), "{seen:?}");
    }

    // /status: the artifact and the module.
    let status = edge.status().await;
    let artifact = artifact_status(&status, "bot-features");
    assert!(
        artifact["path"]
            .as_str()
            .unwrap()
            .ends_with("bot-features.json"),
        "{artifact}"
    );
    assert_eq!(artifact["active"]["version"], 1, "{artifact}");
    assert_eq!(artifact["active"]["source"], "file", "{artifact}");
    assert_eq!(
        artifact["active"]["sha256"],
        holdfast_artifact::sha256_hex(EXAMPLE_FEATURES.as_bytes()),
        "{artifact}"
    );
    assert_eq!(artifact["last_rejection"], serde_json::Value::Null);
    let module = module_status(&status, "bot");
    assert_eq!(module["state"], "ok", "{module}");
    assert_eq!(module["enabled"], true, "{module}");
    assert_eq!(module["override"], "none", "{module}");
    assert_eq!(module["fail_policy"], "open", "{module}");

    // Metrics: the version, and every rejection reason exported at zero.
    let metrics = edge.metrics().await;
    assert_eq!(bot_version(&metrics), Some(1.0), "{metrics}");
    for reason in ["capacity", "parse", "schema", "too_large", "not_utf8"] {
        assert_eq!(
            sample(
                &metrics,
                "holdfast_artifact_rejected_total",
                &[("artifact", "bot-features"), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_by_config_the_score_is_unknown_and_a_reload_turns_it_on_and_off() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, false, "open", Some(EXAMPLE_FEATURES));
    assert_eq!(
        score_of(&edge, &origin, "/a", CURL).await,
        BotScore::Unknown
    );
    let mut forged = CURL.to_vec();
    forged.push((SCORE_HEADER, "0"));
    assert_eq!(
        score_of(&edge, &origin, "/a", &forged).await,
        BotScore::Unknown
    );
    let status = edge.status().await;
    assert_eq!(module_status(&status, "bot")["state"], "disabled");
    assert_eq!(module_status(&status, "bot")["enabled"], false);
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(&metrics, "holdfast_module_state", &[("module", "bot")]),
        Some(2.0),
        "{metrics}"
    );

    // The config's kill switch is reloaded like any config.
    edge.rewrite(&bot_template(), &bot_vars(&origin, true, "open"));
    edge.reload_applied();
    number(score_of(&edge, &origin, "/b", CURL).await);
    assert_eq!(module_status(&edge.status().await, "bot")["state"], "ok");
    edge.rewrite(&bot_template(), &bot_vars(&origin, false, "open"));
    edge.reload_applied();
    assert_eq!(
        score_of(&edge, &origin, "/c", CURL).await,
        BotScore::Unknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_sends_unknown_survives_a_restart_and_enable_restores_the_score() {
    let origin = Origin::text("hello").await;
    let mut edge = bot_edge(&origin, true, "open", Some(EXAMPLE_FEATURES));
    number(score_of(&edge, &origin, "/before", CURL).await);

    let module = post_ok(&edge, "/modules/bot/disable").await;
    assert_eq!(module["state"], "disabled", "{module}");
    assert_eq!(module["override"], "disabled", "{module}");
    assert_eq!(
        score_of(&edge, &origin, "/disabled", CURL).await,
        BotScore::Unknown
    );
    let status = edge.status().await;
    let module = module_status(&status, "bot");
    assert_eq!(module["state"], "disabled", "{module}");
    assert_eq!(
        module["enabled"], true,
        "the config still says enabled: {module}"
    );
    assert_eq!(module["override"], "disabled", "{module}");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(edge.path("state/module-overrides.json")).unwrap())
            .unwrap();
    assert_eq!(kept["bot"], "disabled", "{kept}");

    // The override outlives the process.
    blocking(|| edge.restart());
    assert_eq!(
        score_of(&edge, &origin, "/after-restart", CURL).await,
        BotScore::Unknown
    );
    assert_eq!(
        module_status(&edge.status().await, "bot")["override"],
        "disabled"
    );

    let module = post_ok(&edge, "/modules/bot/enable").await;
    assert_eq!(module["state"], "ok", "{module}");
    number(score_of(&edge, &origin, "/enabled", CURL).await);
    blocking(|| edge.restart());
    number(score_of(&edge, &origin, "/enabled-after-restart", CURL).await);
    assert_eq!(
        module_status(&edge.status().await, "bot")["override"],
        "enabled"
    );

    // An unknown module, or an unknown action: 404, nothing changes.
    for path in [
        "/modules/shield/disable",
        "/modules/nope/enable",
        "/modules/bot/explode",
    ] {
        let got = within_limit(post(&edge.admin_url(path))).await;
        assert_eq!(got.status, 404, "POST {path}: {}", got.text());
    }
    number(score_of(&edge, &origin, "/still", CURL).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_accepted_feature_file_the_score_is_unknown_never_zero() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, true, "open", None);
    for i in 0..5 {
        let mut headers = BROWSER.to_vec();
        headers.push((SCORE_HEADER, "0"));
        assert_eq!(
            score_of(&edge, &origin, &format!("/{i}"), &headers).await,
            BotScore::Unknown
        );
    }
    let status = edge.status().await;
    let artifact = artifact_status(&status, "bot-features");
    assert_eq!(artifact["active"], serde_json::Value::Null, "{artifact}");
    assert_eq!(artifact["last_rejection"]["reason"], "io", "{artifact}");
    let metrics = edge.metrics().await;
    assert_eq!(bot_version(&metrics), Some(0.0), "{metrics}");
    assert_eq!(bot_rejections(&metrics, "io"), 1.0, "{metrics}");

    // The file arrives: picked up without a signal, and requests are scored.
    replace_file(&edge.path("bot-features.json"), EXAMPLE_FEATURES.as_bytes());
    eventually(
        "the first feature file to be applied",
        PICKED_UP,
        || async {
            artifact_status(&edge.status().await, "bot-features")["active"]["version"] == 1
        },
    )
    .await;
    number(score_of(&edge, &origin, "/scored", CURL).await);
}

/// The same, after the edge has served traffic without a file for a while (more requests
/// than the module breaker's default `min_requests`, 20): the first file to arrive is used
/// for scoring within the interface's 2 s, not only shown on `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_feature_file_after_traffic_without_one_is_scoring_within_2_seconds() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, true, "open", None);
    for i in 0..40 {
        assert_eq!(
            score_of(&edge, &origin, &format!("/none-{i}"), CURL).await,
            BotScore::Unknown
        );
    }
    replace_file(&edge.path("bot-features.json"), EXAMPLE_FEATURES.as_bytes());
    let written = Instant::now();
    // Polled past the deadline (up to `LIMIT`) only to say in the failure how late it was.
    let mut at_deadline = None;
    let mut polls = 0;
    let scored_after = loop {
        polls += 1;
        let path = format!("/poll-{polls}");
        if matches!(
            score_of(&edge, &origin, &path, CURL).await,
            BotScore::Score(_)
        ) {
            break written.elapsed();
        }
        if at_deadline.is_none() && written.elapsed() > PICKED_UP {
            let status = edge.status().await;
            at_deadline = Some(format!(
                "artifact {}, module {}",
                artifact_status(&status, "bot-features"),
                module_status(&status, "bot")
            ));
        }
        assert!(written.elapsed() < LIMIT, "never scored: {at_deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        scored_after <= PICKED_UP,
        "the first request scored {scored_after:?} after the file was written; at {PICKED_UP:?}: {}",
        at_deadline.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_policy_closed_without_a_feature_file_is_a_403_from_the_edge() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, true, "closed", None);
    for _ in 0..30 {
        let got = within_limit(get_with(&edge.url("/x"), CURL)).await;
        assert_eq!(got.status, 403, "{}", got.text());
        let id = got.header("x-request-id").expect("a request id").to_owned();
        assert!(got.text().contains(&id), "{}", got.text());
    }
    assert_eq!(origin.requests(), 0);
    let status = edge.status().await;
    assert_eq!(module_status(&status, "bot")["fail_policy"], "closed");

    // The operator's kill switch: disabled is `unknown`, never a denial.
    post_ok(&edge, "/modules/bot/disable").await;
    assert_eq!(
        score_of(&edge, &origin, "/disabled", CURL).await,
        BotScore::Unknown
    );
}

/// The example as version `version`, its bias moved by `shift`: every score moves that way.
fn example_with(version: u64, shift: f64) -> String {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE_FEATURES).unwrap();
    v["version"] = version.into();
    v["bias"] = (v["bias"].as_f64().unwrap() + shift).into();
    serde_json::to_string_pretty(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_feature_file_is_picked_up_within_2_seconds_without_a_signal() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, true, "open", Some(EXAMPLE_FEATURES));
    // The bias moves up (curl scores higher), then down (a browser scores lower).
    let curl = number(score_of(&edge, &origin, "/v1", CURL).await);
    let browser = number(score_of(&edge, &origin, "/v1", BROWSER).await);
    let file = edge.path("bot-features.json");

    // Replaced by rename (as generators do), then written in place: each is seen.
    for (version, shift, in_place) in [(2u64, 10.0, false), (3, -10.0, true)] {
        let text = example_with(version, shift);
        if in_place {
            std::fs::write(&file, &text).unwrap();
        } else {
            replace_file(&file, text.as_bytes());
        }
        eventually(
            &format!("version {version} to be applied"),
            PICKED_UP,
            || async {
                artifact_status(&edge.status().await, "bot-features")["active"]["version"]
                    == version
            },
        )
        .await;
        let metrics = edge.metrics().await;
        assert_eq!(bot_version(&metrics), Some(version as f64), "{metrics}");
        if shift > 0.0 {
            let now = number(score_of(&edge, &origin, "/changed", CURL).await);
            assert!(now > curl, "version {version}: curl {now} <= {curl}");
        } else {
            let now = number(score_of(&edge, &origin, "/changed", BROWSER).await);
            assert!(
                now < browser,
                "version {version}: browser {now} >= {browser}"
            );
        }
    }
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "holdfast_artifact_loads_total",
            &[("artifact", "bot-features"), ("result", "applied")]
        ),
        Some(3.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_a_new_feature_file_at_once() {
    let origin = Origin::text("hello").await;
    let edge = bot_edge(&origin, true, "open", Some(EXAMPLE_FEATURES));
    replace_file(
        &edge.path("bot-features.json"),
        example_with(5, 0.0).as_bytes(),
    );
    let got = within_limit(post(&edge.admin_url("/reload"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    // When the reload has answered, the file is active (whether the watcher or the reload
    // read it first).
    let artifact = artifact_status(&edge.status().await, "bot-features");
    assert_eq!(artifact["active"]["version"], 5, "{artifact}");
    assert_eq!(bot_version(&edge.metrics().await), Some(5.0));

    // A bad file on reload: rejected, the active version stays, the reload itself answers.
    replace_file(
        &edge.path("bot-features.json"),
        doubled(&features_file(6, 120)).to_string().as_bytes(),
    );
    let got = within_limit(post(&edge.admin_url("/reload"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let artifact = artifact_status(&edge.status().await, "bot-features");
    assert_eq!(artifact["active"]["version"], 5, "{artifact}");
    assert_eq!(
        artifact["last_rejection"]["reason"], "capacity",
        "{artifact}"
    );
    assert_eq!(artifact["last_rejection"]["version"], 6, "{artifact}");
    assert_eq!(bot_rejections(&edge.metrics().await, "capacity"), 1.0);
    number(score_of(&edge, &origin, "/still-scored", CURL).await);
}

/// `holdfast check --kind bot-features FILE` (the real binary): (exit code, stdout, stderr).
fn check_features(file: &std::path::Path) -> (Option<i32>, String, String) {
    let out = holdfast_cmd(&[
        OsStr::new("check"),
        OsStr::new("--kind"),
        OsStr::new("bot-features"),
        file.as_os_str(),
    ]);
    assert!(!out.2.contains("panicked"), "{}", out.2);
    out
}

#[test]
fn holdfast_check_kind_bot_features_validates_a_file_offline() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("bot-features.json");
    std::fs::write(&example, EXAMPLE_FEATURES).unwrap();
    let entries = serde_json::from_str::<serde_json::Value>(EXAMPLE_FEATURES).unwrap()["features"]
        .as_array()
        .unwrap()
        .len();
    let (code, stdout, _) = check_features(&example);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "{}: ok (bot-features version 1, {entries} features)\n",
            example.display()
        )
    );

    let one_entry = |entry: serde_json::Value| {
        serde_json::json!({"version": 2, "bias": 0.0, "features": [entry]}).to_string()
    };
    let bad: [(&str, String, &[&str]); 6] = [
        (
            "doubled",
            doubled(&features_file(2, 120)).to_string(),
            &["capacity", "240", "200"],
        ),
        (
            "extra-field",
            one_entry(serde_json::json!({"name": "tls", "weight": 1.0, "extra": 1})),
            &["schema", "features[0]", "extra"],
        ),
        (
            "no-weight",
            one_entry(serde_json::json!({"name": "tls"})),
            &["schema", "features[0]", "weight"],
        ),
        ("truncated", EXAMPLE_FEATURES[..100].to_owned(), &["parse"]),
        ("empty", String::new(), &["parse"]),
        (
            "unknown-name",
            one_entry(serde_json::json!({"name": "header_cnt", "weight": 1.0})),
            &["unknown_name", "header_cnt"],
        ),
    ];
    for (name, text, words) in bad {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, text).unwrap();
        let (code, stdout, stderr) = check_features(&file);
        assert_eq!(code, Some(1), "{name}: {stdout}{stderr}");
        let line = stdout.trim_end();
        assert!(
            line.starts_with(&format!("{}: ", file.display())),
            "{name}: {stdout}"
        );
        for w in words {
            assert!(line.contains(w), "{name}: {w:?} not in {line:?}");
        }
    }

    let not_utf8 = dir.path().join("not-utf8.json");
    std::fs::write(&not_utf8, b"{\"version\": 3, \"bias\": \xff}").unwrap();
    let (code, stdout, _) = check_features(&not_utf8);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("not_utf8"), "{stdout}");

    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let (code, stdout, _) = check_features(&huge);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("too_large"), "{stdout}");
}
