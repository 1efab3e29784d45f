//! Fleets (issue 14): instances in-process, a real `etcd` started by the test on free ports
//! in a temporary folder, and the operator's `holdfast rollout` run as the binary. A good
//! version rolls through every stage; a harmful one is rolled back after the canary with
//! the rest never seeing it; a version the instances' pipeline rejects fails the rollout;
//! etcd down changes nothing that is served; a restart with etcd down starts from the
//! last-known-good version kept in `state_dir`.

use crate::support::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd member on free loopback ports, its data in a temporary folder.
pub(crate) struct Etcd {
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    pub(crate) async fn start() -> Etcd {
        let mut e = Etcd {
            dir: tempfile::tempdir().unwrap(),
            client: free_port(),
            peer: free_port(),
            child: None,
        };
        e.spawn().await;
        e
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    async fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start etcd ({e}): the fleet tests need it on PATH \
                     (Debian: apt-get install etcd-server; .ci/run installs it)"
                )
            });
        self.child = Some(child);
        // Bounded poll: etcd answers a read.
        let until = Instant::now() + Duration::from_secs(20);
        let url = self.url();
        loop {
            let up = {
                use holdfast_fleet::FleetStore;
                let store = holdfast_fleet::EtcdStore::connect(
                    std::slice::from_ref(&url),
                    Duration::from_secs(1),
                )
                .await;
                match store {
                    Ok(s) => s.get("/probe").await.is_ok(),
                    Err(_) => false,
                }
            };
            if up {
                return;
            }
            assert!(Instant::now() < until, "etcd did not come up on {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `holdfast rollout --etcd URL ARGS...`: exit code, stdout, stderr.
pub(crate) fn rollout(etcd: &Etcd, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["rollout", "--etcd", &etcd.url()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(etcd: &Etcd) -> serde_json::Value {
    let (code, out, err) = rollout(etcd, &["status", "--json"]);
    assert_eq!(code, 0, "status: {err}");
    serde_json::from_str(&out).unwrap()
}

const MEMBER: &str = r#"
[fleet]
etcd = ["{etcd}"]
instance = "{id}"
{group}
heartbeat = "200ms"
lease_ttl = "2s"

[edge]
listen = ["{edge}"]
state_dir = "state"

[admin]
listen = "{admin}"
"#;

/// A fleet member: the edge on its local file.
fn member(etcd: &Etcd, id: &str, group: Option<&str>) -> Edge {
    let group = group.map_or(String::new(), |g| format!("group = \"{g}\""));
    blocking(|| {
        Edge::start(
            MEMBER,
            &[
                ("etcd", etcd.url()),
                ("id", id.to_string()),
                ("group", group),
            ],
        )
    })
}

/// A version routing everything to `origin`, no access log; `extra` adds tables.
fn version_file(dir: &std::path::Path, name: &str, origin: SocketAddr, extra: &str) -> String {
    version_file_logging(dir, name, origin, "off", extra)
}

fn version_file_logging(
    dir: &std::path::Path,
    name: &str,
    origin: SocketAddr,
    access_log: &str,
    extra: &str,
) -> String {
    let text = format!(
        "[edge]\naccess_log = \"{access_log}\"\n\n[[pools]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"app\"\n{extra}"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Per member, every answer: when, status, body.
pub(crate) type Answers = Vec<Vec<(Instant, u16, String)>>;

/// Clients sending GET / to every member until stopped; every answer kept per member.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Answers>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(vec![Vec::new(); urls.len()]));
        let tasks = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| {
                let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let got = get(&url).await;
                        seen.lock().unwrap()[i].push((
                            Instant::now(),
                            got.status.as_u16(),
                            got.text(),
                        ));
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load { stop, seen, tasks }
    }

    async fn stop(self) -> Answers {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

pub(crate) async fn wait_for_members(etcd: &Etcd, n: usize) {
    eventually(&format!("{n} members registered"), LIMIT, || async {
        blocking(|| status(etcd))["instances"]
            .as_array()
            .map_or(0, Vec::len)
            == n
    })
    .await;
}

async fn body_of(edge: &Edge) -> (u16, String) {
    let got = get(&edge.url("/")).await;
    (got.status.as_u16(), got.text())
}

/// Start `file` and wait for the rollout's end under client load: `wait`'s exit code, and
/// what the clients saw.
pub(crate) async fn roll(
    etcd: &Etcd,
    members: &[Edge],
    file: &str,
    flags: &[&str],
) -> (i32, Answers) {
    let load = Load::start(members.iter().map(|m| m.url("/")).collect());
    let mut args = vec!["start", file];
    args.extend_from_slice(flags);
    let (code, out, err) = blocking(|| rollout(etcd, &args));
    assert_eq!(code, 0, "start: {out}{err}");
    let (code, out, err) = blocking(|| rollout(etcd, &["wait", "--timeout", "60s"]));
    assert!(code == 0 || code == 3, "wait: {code} {out}{err}");
    (code, load.stop().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_version_rolls_through_every_stage_and_every_member_serves_it() {
    let etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let two = Origin::text("two").await;
    let members: Vec<Edge> = (0..4)
        .map(|i| member(&etcd, &format!("edge-{i}"), (i == 0).then_some("canary")))
        .collect();
    wait_for_members(&etcd, 4).await;
    // Before the first version: 503, an edge page that says why.
    let (code, body) = body_of(&members[1]).await;
    assert_eq!(code, 503);
    assert!(
        body.contains("fleet-has-sent-no-configuration-yet"),
        "{body}"
    );

    let dir = tempfile::tempdir().unwrap();
    let v1 = version_file(dir.path(), "one.toml", one.addr, "");
    let (code, _) = roll(
        &etcd,
        &members,
        &v1,
        &[
            "--stages",
            "100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{}", status(&etcd));
    for m in &members {
        assert_eq!(body_of(m).await, (200, "one".to_string()));
    }

    let v2 = version_file(dir.path(), "two.toml", two.addr, "");
    let (code, seen) = roll(
        &etcd,
        &members,
        &v2,
        &[
            "--stages",
            "canary,50%,100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{}", status(&etcd));
    for m in &members {
        assert_eq!(body_of(m).await, (200, "two".to_string()));
    }
    // Nobody saw anything but 200 on the way.
    for (i, answers) in seen.iter().enumerate() {
        assert!(
            answers.iter().all(|(_, s, _)| *s == 200),
            "member {i}: {:?}",
            answers.iter().find(|a| a.1 != 200)
        );
    }
    let s = status(&etcd);
    assert_eq!(
        (
            s["version"].as_u64(),
            s["previous"].as_u64(),
            s["state"].as_str()
        ),
        (Some(2), Some(1), Some("done")),
        "{s}"
    );
    let (code, out, _) = blocking(|| rollout(&etcd, &["history", "--json"]));
    assert_eq!(code, 0);
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    let done: Vec<(u64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["version"].as_u64().unwrap(),
                h["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(done, vec![(1, "done"), (2, "done")]);
    let member_status = members[0].status().await;
    assert_eq!(member_status["fleet"]["version"], 2, "{member_status}");
    assert_eq!(member_status["fleet"]["etcd"]["reachable"], true);
    // The operator page shows the same: this instance in the fleet, the last rollout.
    let page = get(&members[0].admin_url("/")).await.text();
    for part in [
        "<h2 id=\"fleet\">Fleet</h2>",
        "running version <span class=\"word\">2</span>",
        "data-rollout=\"2\"",
    ] {
        assert!(page.contains(part), "{part:?} in {page}");
    }
    let metrics = get(&members[0].admin_url("/metrics")).await.text();
    assert_eq!(metric(&metrics, "holdfast_fleet_version"), Some(2.0));
    assert_eq!(metric(&metrics, "holdfast_fleet_etcd_up"), Some(1.0));

    // Rollback to version 1: itself a staged rollout.
    let load = Load::start(members.iter().map(|m| m.url("/")).collect());
    let (code, out, err) = blocking(|| {
        rollout(
            &etcd,
            &[
                "rollback",
                "--to",
                "1",
                "--stages",
                "canary,100%",
                "--bake",
                "300ms",
                "--min-requests",
                "20",
            ],
        )
    });
    assert_eq!((code, out.trim()), (0, "1"), "{err}");
    let (code, _, _) = blocking(|| rollout(&etcd, &["wait", "--timeout", "60s"]));
    load.stop().await;
    assert_eq!(code, 0, "{}", status(&etcd));
    for m in &members {
        assert_eq!(body_of(m).await, (200, "one".to_string()));
    }
    let s = status(&etcd);
    assert_eq!(
        (s["version"].as_u64(), s["previous"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_harmful_version_is_rolled_back_after_the_canary_and_only_the_canary_saw_it() {
    let etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let members: Vec<Edge> = (0..4)
        .map(|i| member(&etcd, &format!("edge-{i}"), (i == 0).then_some("canary")))
        .collect();
    wait_for_members(&etcd, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let good = version_file(dir.path(), "good.toml", one.addr, "");
    let (code, _) = roll(
        &etcd,
        &members,
        &good,
        &[
            "--stages",
            "100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{}", status(&etcd));

    // Valid, and harmful: a rule that blocks `/`.
    let harmful = version_file(
        dir.path(),
        "harmful.toml",
        one.addr,
        "\n[[rules]]\nid = \"oops\"\nexpr = 'request.path == \"/\"'\naction = \"block\"\n",
    );
    let (code, seen) = roll(
        &etcd,
        &members,
        &harmful,
        &[
            "--stages",
            "canary,50%,100%",
            "--bake",
            "1s",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 3, "wait exits 3 on a rollback");
    let s = status(&etcd);
    assert_eq!(s["state"], "rolled_back", "{s}");
    assert_eq!(s["stage"], "canary", "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("shield_denied: gate failed at stage canary"),
        "{reason}"
    );
    // Outside the canary, nothing but 200.
    for (i, answers) in seen.iter().enumerate().skip(1) {
        assert!(!answers.is_empty());
        assert!(
            answers.iter().all(|(_, s, _)| *s == 200),
            "member {i} saw {:?}",
            answers.iter().find(|a| a.1 != 200)
        );
    }
    assert!(
        seen[0].iter().any(|(_, s, _)| *s == 403),
        "the canary took the version"
    );
    // The canary serves 200 again within a heartbeat or so of the rollback.
    // (`wait` polls every 250 ms; members heartbeat every 200 ms and watch their target.)
    eventually(
        "the canary back on the good version",
        Duration::from_secs(2),
        || async { body_of(&members[0]).await == (200, "one".to_string()) },
    )
    .await;
    // The controller that ran it counted the rollback and its signal.
    let s = blocking(|| status(&etcd));
    let leader = s["controller"]
        .as_str()
        .unwrap()
        .trim_start_matches("edge-");
    let leader: usize = leader.parse().unwrap();
    let metrics = get(&members[leader].admin_url("/metrics")).await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"holdfast_rollout_gate_failures_total{signal="shield_denied"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"holdfast_rollout_total{result="rolled_back"}"#),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_the_pipeline_rejects_fails_the_rollout_with_its_errors() {
    let etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let members: Vec<Edge> = (0..3)
        .map(|i| member(&etcd, &format!("edge-{i}"), (i == 0).then_some("canary")))
        .collect();
    wait_for_members(&etcd, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let good = version_file(dir.path(), "good.toml", one.addr, "");
    let (code, _) = roll(
        &etcd,
        &members,
        &good,
        &[
            "--stages",
            "100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0);
    // Valid offline (`rollout start` checks it as `holdfast check` would); but the canary's
    // own state is damaged: the challenge key kept in its state_dir is not a key, so its
    // pipeline refuses the version when it applies it.
    std::fs::write(
        members[0].dir.path().join("state/challenge-key"),
        "not a key\n",
    )
    .unwrap();
    let bad = version_file(
        dir.path(),
        "bad.toml",
        one.addr,
        "\n[[rules]]\nid = \"guard\"\nexpr = 'request.path.startsWith(\"/protected\")'\naction = \"challenge\"\n",
    );
    let (code, seen) = roll(
        &etcd,
        &members,
        &bad,
        &[
            "--stages",
            "canary,100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 3);
    let s = status(&etcd);
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(s["rejected_errors"]["instance"], "edge-0", "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("challenge-key"),
        "{s}"
    );
    // Nothing else changed: every member still serves the good version, and did throughout.
    for (i, answers) in seen.iter().enumerate() {
        assert!(
            answers.iter().all(|(_, s, b)| *s == 200 && b == "one"),
            "member {i}"
        );
    }
    for inst in s["instances"].as_array().unwrap() {
        assert_eq!(inst["version"], 1, "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_version_is_refused_without_touching_the_fleet() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[edge]\nlisten = [\"0.0.0.0:80\"]\n\n[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\npool = \"nope\"\n").unwrap();
    let (code, out, err) = blocking(|| rollout(&etcd, &["start", path.to_str().unwrap()]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("edge.listen: belongs to each instance"),
        "{out}"
    );
    assert!(err.contains("nothing was sent to the fleet"), "{err}");
    std::fs::write(
        &path,
        "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\npool = \"nope\"\n",
    )
    .unwrap();
    let (code, out, _) = blocking(|| rollout(&etcd, &["start", path.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(out.contains("routes[0].pool"), "{out}");
    let s = status(&etcd);
    assert!(s["version"].is_null(), "nothing was written: {s}");

    // `holdfast check` knows a member's local file: instance-owned keys only.
    let local = dir.path().join("edge.toml");
    let text = render(
        MEMBER,
        &[
            ("etcd", etcd.url()),
            ("id", "edge-9".into()),
            ("group", String::new()),
        ],
    );
    std::fs::write(&local, &text).unwrap();
    assert_eq!(holdfast::check_file(&local), Ok(()));
    std::fs::write(
        &local,
        format!("{text}\n[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:1\"]\n"),
    )
    .unwrap();
    let errors = holdfast::check_file(&local).unwrap_err();
    assert!(errors.len() == 1 && errors[0].ends_with("pools: belongs to the fleet's versions when [fleet] is set (move it into the file given to `holdfast rollout start`)"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_etcd_down_members_keep_serving_and_a_restart_starts_from_the_last_known_good() {
    let mut etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let mut members: Vec<Edge> = (0..2)
        .map(|i| member(&etcd, &format!("edge-{i}"), None))
        .collect();
    wait_for_members(&etcd, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let good = version_file(dir.path(), "good.toml", one.addr, "");
    let (code, _) = roll(
        &etcd,
        &members,
        &good,
        &[
            "--stages",
            "100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0);

    etcd.kill();
    let load = Load::start(members.iter().map(|m| m.url("/")).collect());
    eventually(
        "a member to notice etcd is down",
        Duration::from_secs(10),
        || async { members[0].status().await["fleet"]["etcd"]["reachable"] == false },
    )
    .await;
    let seen = load.stop().await;
    for (i, answers) in seen.iter().enumerate() {
        assert!(!answers.is_empty());
        assert!(
            answers.iter().all(|(_, s, b)| *s == 200 && b == "one"),
            "member {i}"
        );
    }
    let metrics = get(&members[0].admin_url("/metrics")).await.text();
    assert_eq!(metric(&metrics, "holdfast_fleet_etcd_up"), Some(0.0));

    // Restarted while etcd is down: it starts on version 1 from its state_dir, and says so.
    let mut m = members.remove(1);
    blocking(|| m.stop());
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    let path = m.config_path.clone();
    let restarted = blocking(|| Edge::start_file(dir, path));
    assert_eq!(body_of(&restarted).await, (200, "one".to_string()));
    let status = restarted.status().await;
    assert_eq!(status["fleet"]["version"], 1, "{status}");
    assert_eq!(status["fleet"]["started_on_lkg"], true, "{status}");
}

/// A fleet member in a process of its own, so a test can kill it (SIGKILL: no goodbye, its
/// lease runs out).
struct ProcMember {
    id: String,
    child: Option<Child>,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ProcMember {
    async fn start(etcd: &Etcd, id: &str, group: Option<&str>) -> ProcMember {
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let group = group.map_or(String::new(), |g| format!("group = \"{g}\""));
        let text = MEMBER
            .replace("{edge}", &http.to_string())
            .replace("{admin}", &admin.to_string())
            .replace("{etcd}", &etcd.url())
            .replace("{id}", id)
            .replace("{group}", &group);
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, text).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args(["run", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let health = format!("http://{admin}/health");
        eventually("the member process to serve", LIMIT, || async {
            let req = http::Request::get(health.as_str())
                .body(Body::default())
                .unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(1), client().request(req));
            matches!(answer.await, Ok(Ok(r)) if r.status() == 200)
        })
        .await;
        ProcMember {
            id: id.to_string(),
            child: Some(child),
            http,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ProcMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The version `id` reports in `status --json`, if it is alive.
fn reported_version(s: &serde_json::Value, id: &str) -> Option<u64> {
    s["instances"].as_array()?.iter().find(|i| i["id"] == id)?["version"].as_u64()
}

const SLOW: &[&str] = &["--bake", "300ms", "--min-requests", "20"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_killed_right_after_taking_the_version_rolls_it_back() {
    let etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let two = Origin::text("two").await;
    let mut canary = ProcMember::start(&etcd, "edge-canary", Some("canary")).await;
    let members: Vec<Edge> = (0..2)
        .map(|i| member(&etcd, &format!("edge-{i}"), None))
        .collect();
    wait_for_members(&etcd, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_file(dir.path(), "one.toml", one.addr, "");
    let mut args = vec!["--stages", "100%"];
    args.extend_from_slice(SLOW);
    let (code, _) = roll(&etcd, &members, &v1, &args).await;
    assert_eq!(code, 0, "{}", status(&etcd));

    // Version 2 with a long bake: the canary takes it, then dies (crash-looping on it?).
    let v2 = version_file(dir.path(), "two.toml", two.addr, "");
    let (code, out, err) = blocking(|| {
        rollout(
            &etcd,
            &[
                "start",
                &v2,
                "--stages",
                "canary,100%",
                "--bake",
                "30s",
                "--min-requests",
                "20",
            ],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    eventually("the canary to take version 2", LIMIT, || async {
        reported_version(&blocking(|| status(&etcd)), "edge-canary") == Some(2)
    })
    .await;
    assert_eq!(get(&format!("http://{}/", canary.http)).await.text(), "two");
    canary.kill();
    let (code, out, _) = blocking(|| rollout(&etcd, &["wait", "--timeout", "30s"]));
    assert_eq!(code, 3, "{out}");
    let s = status(&etcd);
    assert_eq!(s["state"], "rolled_back", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .starts_with("lost_heartbeat: instance(s) edge-canary"),
        "{s}"
    );
    let dead = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "edge-canary");
    assert_eq!(
        dead.map(|d| d["alive"].clone()),
        Some(serde_json::json!(false)),
        "{s}"
    );
    // The others never took it.
    for m in &members {
        assert_eq!(body_of(m).await, (200, "one".to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controllers_member_killed_mid_rollout_another_member_finishes_it() {
    let etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let two = Origin::text("two").await;
    // Started first and alone: it is elected.
    let mut first = ProcMember::start(&etcd, "edge-first", None).await;
    eventually("edge-first to be the controller", LIMIT, || async {
        blocking(|| status(&etcd))["controller"] == "edge-first"
    })
    .await;
    let members: Vec<Edge> = (0..3)
        .map(|i| member(&etcd, &format!("edge-{i}"), Some("canary")))
        .collect();
    wait_for_members(&etcd, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_file(dir.path(), "one.toml", one.addr, "");
    let (code, _) = roll(
        &etcd,
        &members,
        &v1,
        &[
            "--stages",
            "100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{}", status(&etcd));

    // The in-process members are the canary stage; the controller's member is not in it.
    let v2 = version_file(dir.path(), "two.toml", two.addr, "");
    let load = Load::start(members.iter().map(|m| m.url("/")).collect());
    let (code, out, err) = blocking(|| {
        rollout(
            &etcd,
            &[
                "start",
                &v2,
                "--stages",
                "canary,100%",
                "--bake",
                "2s",
                "--min-requests",
                "20",
            ],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    eventually("the canary stage to take version 2", LIMIT, || async {
        let s = blocking(|| status(&etcd));
        (0..3).all(|i| reported_version(&s, &format!("edge-{i}")) == Some(2))
    })
    .await;
    first.kill();
    let (code, out, _) = blocking(|| rollout(&etcd, &["wait", "--timeout", "60s"]));
    let seen = load.stop().await;
    assert_eq!(code, 0, "{out} {}", status(&etcd));
    let s = status(&etcd);
    assert_eq!(s["state"], "done", "{s}");
    assert_ne!(s["controller"], "edge-first", "{s}");
    assert!(
        s["controller"]
            .as_str()
            .is_some_and(|c| c.starts_with("edge-")),
        "{s}"
    );
    for (i, answers) in seen.iter().enumerate() {
        assert!(answers.iter().all(|(_, s, _)| *s == 200), "member {i}");
    }
    for m in &members {
        assert_eq!(body_of(m).await, (200, "two".to_string()));
    }
    assert_eq!(first.id, "edge-first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_killed_mid_rollout_nothing_served_changes_and_the_rollout_resumes_when_it_is_back() {
    let mut etcd = Etcd::start().await;
    let one = Origin::text("one").await;
    let two = Origin::text("two").await;
    let members: Vec<Edge> = (0..3)
        .map(|i| member(&etcd, &format!("edge-{i}"), (i == 0).then_some("canary")))
        .collect();
    wait_for_members(&etcd, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_file(dir.path(), "one.toml", one.addr, "");
    let (code, _) = roll(
        &etcd,
        &members,
        &v1,
        &[
            "--stages",
            "100%",
            "--bake",
            "300ms",
            "--min-requests",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{}", status(&etcd));

    let v2 = version_file(dir.path(), "two.toml", two.addr, "");
    let load = Load::start(members.iter().map(|m| m.url("/")).collect());
    let (code, out, err) = blocking(|| {
        rollout(
            &etcd,
            &[
                "start",
                &v2,
                "--stages",
                "canary,100%",
                "--bake",
                "1s",
                "--min-requests",
                "20",
            ],
        )
    });
    assert_eq!(code, 0, "{out}{err}");
    eventually("the canary to take version 2", LIMIT, || async {
        reported_version(&blocking(|| status(&etcd)), "edge-0") == Some(2)
    })
    .await;
    etcd.kill();
    eventually("every member to notice etcd is down", LIMIT, || async {
        let mut down = true;
        for m in &members {
            down &= m.status().await["fleet"]["etcd"]["reachable"] == false;
        }
        down
    })
    .await;
    // Down for a while (longer than the bake and the leases): the members keep serving.
    let until = Instant::now() + Duration::from_secs(3);
    eventually(
        "three seconds with etcd down",
        Duration::from_secs(10),
        || async { Instant::now() >= until },
    )
    .await;
    assert_eq!(body_of(&members[0]).await, (200, "two".to_string()));
    assert_eq!(body_of(&members[1]).await, (200, "one".to_string()));
    etcd.spawn().await;
    let (code, out, _) = blocking(|| rollout(&etcd, &["wait", "--timeout", "60s"]));
    let seen = load.stop().await;
    assert_eq!(code, 0, "{out} {}", status(&etcd));
    for (i, answers) in seen.iter().enumerate() {
        let errors: Vec<_> = answers.iter().filter(|a| a.1 != 200).collect();
        assert!(errors.is_empty(), "member {i}: {errors:?}");
    }
    for m in &members {
        assert_eq!(body_of(m).await, (200, "two".to_string()));
    }
}
