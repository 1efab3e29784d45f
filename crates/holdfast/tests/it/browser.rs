//! The operator page and the public status page in a real browser: Debian's Chromium,
//! headless, driven through the DevTools protocol over its WebSocket (a small client here:
//! commands, events, `Runtime.evaluate`, screenshots). Checked: both pages load with no
//! console error and no request to another host; killing an origin turns its server
//! `failing` on the open operator page without a reload (Server-Sent Events) and the mapped
//! component `Degraded` on the public page; without JavaScript the operator page refreshes
//! itself. Screenshots at 1280 and 360 px go to `target/screenshots/`. Fails, saying so,
//! where Chromium is not installed (`scripts/test` installs it).

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(20);

/// A headless Chromium with its DevTools socket, killed on drop.
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    session: Option<String>,
    /// Events read while waiting for answers, not yet looked at.
    events: Vec<Value>,
    /// Every URL the page requested.
    requests: Vec<String>,
    /// Console errors, exceptions and error log entries.
    errors: Vec<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn launch() -> Browser {
        let exe = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|b| {
                std::process::Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .unwrap_or_else(|| {
                panic!("chromium is not on PATH: install Debian's chromium package (scripts/test does)")
            });
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let url = blocking(move || {
            let mut lines = std::io::BufReader::new(stderr).lines();
            let url = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|l| l.split("DevTools listening on ").nth(1).map(str::to_string));
            // Keep draining so Chromium never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            url
        })
        .expect("chromium printed no DevTools address");
        let (ws, _) = tokio_tungstenite::connect_async(url.trim()).await.unwrap();
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next: 0,
            session: None,
            events: Vec::new(),
            requests: Vec::new(),
            errors: Vec::new(),
        };
        let target = b
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        b.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        for domain in [
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
            "Page.enable",
        ] {
            b.call(domain, json!({})).await;
        }
        b
    }

    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(LIMIT, self.ws.next())
                .await
                .expect("chromium said nothing")
                .expect("the DevTools socket closed")
                .unwrap();
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).unwrap();
                self.note(&v);
                return v;
            }
        }
    }

    /// Keep what the checks need from an event.
    fn note(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Network.requestWillBeSent") => self
                .requests
                .push(p["request"]["url"].as_str().unwrap_or("").to_string()),
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console: {}", p["args"]))
            }
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(format!("exception: {}", p["exceptionDetails"])),
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]))
            }
            _ => {}
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let v = self.read().await;
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Wait for an event `method` (one seen already counts), at most `LIMIT`.
    async fn event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        loop {
            let v = self.read().await;
            if v["method"] == method {
                return v;
            }
            self.events.push(v);
        }
    }

    async fn size(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
    }

    async fn open(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url})).await;
        self.event("Page.loadEventFired").await;
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Poll `expression` until it is `want`, at most `LIMIT`; how long it took.
    async fn until(&mut self, expression: &str, want: &Value) -> Duration {
        let start = Instant::now();
        loop {
            let got = self.eval(expression).await;
            if &got == want {
                return start.elapsed();
            }
            assert!(start.elapsed() < LIMIT, "{expression} is {got}, not {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// No console error, no exception, and every request to this machine's loopback.
    fn assert_clean(&self, page: &str) {
        assert!(self.errors.is_empty(), "{page}: {:?}", self.errors);
        let elsewhere: Vec<&String> = self
            .requests
            .iter()
            .filter(|u| {
                !(u.starts_with("http://127.0.0.1:")
                    || u.starts_with("data:")
                    || u.starts_with("about:"))
            })
            .collect();
        assert!(
            elsewhere.is_empty(),
            "{page} asked another host: {elsewhere:?}"
        );
        assert!(!self.requests.is_empty(), "{page}: no request seen at all");
    }
}

/// Pool "app" of `servers` (a server trips on its first failure and is never ejected),
/// route "all", and a status page whose component "Website" is route "all".
fn edge_of(servers: &[SocketAddr]) -> Edge {
    let page = "\n[status_page]\nlisten = \"127.0.0.1:0\"\ntitle = \"Example status\"\n\n[[status_page.components]]\nname = \"Website\"\nroutes = [\"all\"]\n";
    Edge::start(
        &edge_config(1, &format!("{APP_POOL}{page}")),
        &app_vars(
            &server_list(servers),
            "[pools.retry]\nattempts = 0\n\n[pools.outlier]\nconsecutive_failures = 1\nmax_ejection_percent = 0",
            "",
        ),
    )
}

fn state_of(addr: SocketAddr) -> String {
    format!("(document.querySelector('tr[data-server=\"{addr}\"] .word')||{{}}).textContent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_update_live_in_a_real_browser() {
    let good = Origin::text("good").await;
    let mut bad = Killable::start(handler(|_req| async { ok("fine") })).await;
    let edge = edge_of(&[good.addr, bad.addr]);
    // Both servers have served once: both `up`.
    for _ in 0..2 {
        assert_eq!(within_limit(get(&edge.url("/"))).await.status, 200);
    }
    let mut browser = Browser::launch().await;
    browser.size(1280, 900).await;
    browser.open(&edge.admin_url("/")).await;
    browser.until(&state_of(bad.addr), &json!("up")).await;
    // The live stream is connected once the first `page` event replaced <main>; mark the
    // document so a reload would show.
    browser.eval("window.__notReloaded = true").await;
    let shot_1280 = browser.screenshot("operator-1280.png").await;

    bad.kill().await;
    eventually("the dead server tripped", LIMIT, || async {
        within_limit(get(&edge.url("/"))).await;
        edge.server("app", bad.addr).await["health"] == "failing"
    })
    .await;
    let took = browser.until(&state_of(bad.addr), &json!("failing")).await;
    println!("the open page showed `failing` {took:?} after /status did");
    assert_eq!(
        browser.eval("window.__notReloaded === true").await,
        json!(true),
        "updated without a reload"
    );
    let attention = browser
        .eval("document.querySelector('ul.attention').textContent")
        .await;
    assert!(
        attention.as_str().unwrap().contains("is failing"),
        "{attention}"
    );
    browser.size(360, 740).await;
    let shot_360 = browser.screenshot("operator-360.png").await;
    let width = browser.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 360 + 1,
        "no sideways scrolling at 360 px: {width}"
    );
    browser.assert_clean("operator page");

    // The public page says the component is degraded.
    let public = format!("http://{}/", edge.running().status_page_addr.unwrap());
    browser.size(1280, 900).await;
    browser.open(&public).await;
    let state = "document.querySelector('li[data-component=\"Website\"] .state').textContent";
    browser.until(state, &json!("Degraded")).await;
    assert_eq!(
        browser
            .eval("document.querySelector('main') !== null && document.documentElement.lang")
            .await,
        json!("en")
    );
    let public_1280 = browser.screenshot("public-1280.png").await;
    browser.size(360, 740).await;
    let public_360 = browser.screenshot("public-360.png").await;
    let width = browser.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 360 + 1,
        "public page at 360 px: {width}"
    );
    browser.assert_clean("public page");
    for shot in [shot_1280, shot_360, public_1280, public_360] {
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 1000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_operator_page_refreshes_itself() {
    let good = Origin::text("good").await;
    let edge = edge_of(&[good.addr]);
    let mut browser = Browser::launch().await;
    browser
        .call(
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        )
        .await;
    browser.open(&edge.admin_url("/")).await;
    // The <noscript> refresh loads the page again, with no script running.
    browser.event("Page.loadEventFired").await;
    let loads = browser
        .requests
        .iter()
        .filter(|u| u.trim_end_matches('/') == edge.admin_url("").trim_end_matches('/'))
        .count();
    assert!(
        loads >= 2,
        "the page was loaded {loads} times: {:?}",
        browser.requests
    );
    assert!(
        !browser.requests.iter().any(|u| u.ends_with("/events")),
        "no SSE without JavaScript"
    );
    browser.assert_clean("operator page without JavaScript");
}
