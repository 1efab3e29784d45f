//! The operator page (`GET /` on the admin address): the `/status` document rendered as HTML,
//! worst first. It renders only from that JSON, so the page can never say something
//! `/status` does not; it has no external assets and works without JavaScript (the page
//! refreshes itself), and the inline script replaces `<main>` from `GET /events` (SSE).

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

/// How bad a row or section is; sorts worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Bad,
    Warn,
    Ok,
}

impl Severity {
    fn class(self) -> &'static str {
        match self {
            Severity::Bad => "bad",
            Severity::Warn => "warn",
            Severity::Ok => "ok",
        }
    }
}

/// Seconds between refreshes of the no-JavaScript page (and between SSE updates, see server).
pub(crate) const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#111;background:#fff}\
header,main,footer{padding:0 1rem;max-width:72rem;margin:auto}\
h1{font-size:1.4rem;margin:.8rem 0 .2rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}\
table{border-collapse:collapse;width:100%;display:block;overflow-x:auto}\
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ccc;vertical-align:top}\
.bad{background:#fde2e1;color:#7a0b05}.warn{background:#fff1c2;color:#5c4200}.ok{color:#0b5a1f}\
.word{font-weight:700}ul.attention{padding-left:1.2rem}code{font-size:.9em;word-break:break-all}\
footer{color:#444;font-size:.9em;margin-top:1.5rem}";

const SCRIPT: &str = "if(window.EventSource){var s=new EventSource('/events');\
s.addEventListener('page',function(e){var m=document.getElementById('live');if(m){m.innerHTML=e.data;}});}";

/// The whole page.
pub(crate) fn page(status: &Value) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { "Holdfast operator page" }
                link rel="icon" href="data:,";
                noscript { meta http-equiv="refresh" content=(REFRESH_SECONDS); }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Holdfast" }
                    p { "Operator page. The same data as " a href="/status" { "/status" } " and "
                        a href="/metrics" { "/metrics" } "; worst first." }
                }
                main id="live" { (live(status)) }
                footer { p { "Updates live where JavaScript runs; otherwise every "
                    (REFRESH_SECONDS) " seconds." } }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    markup.into_string()
}

/// The part that changes: `<main>`'s content, also sent as each SSE `page` event.
pub(crate) fn live(status: &Value) -> Markup {
    let mut sections = vec![
        pools(status),
        routes(status),
        artifacts(status),
        modules(status),
        dns(status),
        fleet(status),
        public_page(status),
        reload(status),
    ];
    sections.sort_by_key(|s| s.0);
    let problems: Vec<&(Severity, String)> = sections
        .iter()
        .flat_map(|s| s.2.iter())
        .filter(|p| p.0 != Severity::Ok)
        .collect();
    let mut problems = problems;
    problems.sort_by_key(|p| p.0);
    html! {
        p {
            "Version " (text(at(status, "version"))) ", up " (text(at(status, "uptime_seconds"))) " s, "
            "configuration generation " (text(at(at(status, "config"), "generation")))
            " (from " (text(at(at(status, "config"), "running_on"))) "), serving: "
            (text(at(status, "serving"))) "."
        }
        (demo(status))
        section aria-labelledby="attention" {
            h2 id="attention" { "Needs attention" }
            @if problems.is_empty() {
                p class="ok" { "Nothing: every pool, route, artifact, module and steered name is as configured." }
            } @else {
                ul class="attention" {
                    @for p in &problems { li class=(p.0.class()) { (p.1) } }
                }
            }
        }
        @for s in &sections { (s.1) }
    }
}

/// A section: its worst severity, its markup, and one line per problem for the summary.
type Section = (Severity, Markup, Vec<(Severity, String)>);

static NULL: Value = Value::Null;

/// `v[key]` without indexing: `null` when absent.
fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A server's state word (the same on `/status` and `holdfast_upstream_server_state`).
pub(crate) fn server_severity(word: &str) -> Severity {
    match word {
        "up" => Severity::Ok,
        "unknown" => Severity::Warn,
        _ => Severity::Bad,
    }
}

fn pools(status: &Value) -> Section {
    let mut rows: Vec<(Severity, &Value, &Value)> = Vec::new();
    for pool in array(at(status, "pools")) {
        for server in array(at(pool, "servers")) {
            let word = at(server, "health").as_str().unwrap_or("unknown");
            rows.push((server_severity(word), pool, server));
        }
    }
    rows.sort_by_key(|r| r.0);
    let problems = rows
        .iter()
        .filter(|r| r.0 != Severity::Ok)
        .map(|(sev, pool, server)| {
            let error = at(server, "last_error")
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            (
                *sev,
                format!(
                    "pool {} server {} is {}{error}",
                    text(at(pool, "name")),
                    text(at(server, "address")),
                    text(at(server, "health"))
                ),
            )
        })
        .collect::<Vec<_>>();
    let worst = rows.first().map_or(Severity::Ok, |r| r.0);
    let markup = html! {
        section aria-labelledby="pools" {
            h2 id="pools" { "Pools and servers" }
            table {
                thead { tr { th scope="col" { "Pool" } th scope="col" { "Server" } th scope="col" { "State" }
                    th scope="col" { "Since" } th scope="col" { "Last error" } th scope="col" { "Ejections" }
                    th scope="col" { "Requests" } th scope="col" { "Failures" } } }
                tbody {
                    @for (sev, pool, server) in &rows {
                        tr class=(sev.class()) data-server=(text(at(server, "address"))) {
                            td { (text(at(pool, "name"))) }
                            td { code { (text(at(server, "address"))) } }
                            td class="word" { (text(at(server, "health"))) }
                            td { (text(at(server, "since"))) }
                            td { (text(at(server, "last_error"))) }
                            td { (text(at(server, "ejections"))) }
                            td { (text(at(server, "requests"))) }
                            td { (text(at(server, "failures"))) }
                        }
                    }
                }
            }
        }
    };
    (worst, markup, problems)
}

/// A route's cache hit ratio as a percentage, when it has a cache that served anything.
fn hit_ratio(cache: &Value) -> Option<f64> {
    let hits = at(cache, "hits").as_f64()?;
    let misses = at(cache, "misses").as_f64().unwrap_or(0.0);
    let total = hits + misses;
    (total > 0.0).then(|| 100.0 * hits / total)
}

fn routes(status: &Value) -> Section {
    let mut rows: Vec<(Severity, &Value)> = array(at(status, "routes"))
        .iter()
        .map(|r| {
            let active = at(r, "active").as_str().unwrap_or("");
            let first = at(r, "pools").get(0).and_then(Value::as_str).unwrap_or("");
            let sev = if active == "fallback" {
                Severity::Bad
            } else if active != first {
                Severity::Warn
            } else {
                Severity::Ok
            };
            (sev, r)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let problems = rows
        .iter()
        .filter(|r| r.0 != Severity::Ok)
        .map(|(sev, r)| {
            let what = if *sev == Severity::Bad {
                "serves its fallback page".to_string()
            } else {
                format!("failed over to pool {}", text(at(r, "active")))
            };
            (*sev, format!("route {} {what}", text(at(r, "name"))))
        })
        .collect();
    let worst = rows.first().map_or(Severity::Ok, |r| r.0);
    let markup = html! {
        section aria-labelledby="routes" {
            h2 id="routes" { "Routes" }
            table {
                thead { tr { th scope="col" { "Route" } th scope="col" { "Serving from" }
                    th scope="col" { "Failover chain" } th scope="col" { "Cache hit ratio" } } }
                tbody {
                    @for (sev, r) in &rows {
                        tr class=(sev.class()) {
                            td { (text(at(r, "name"))) }
                            td class="word" { (text(at(r, "active"))) }
                            td { (array(at(r, "pools")).iter().map(text).collect::<Vec<_>>().join(" → "))
                                @if at(r, "fallback").as_bool() == Some(true) { " → fallback" } }
                            td { @match hit_ratio(at(r, "cache")) {
                                Some(p) => (format!("{p:.1}% ({} hits, {} misses)", text(at(at(r, "cache"), "hits")), text(at(at(r, "cache"), "misses")))),
                                None => @if at(r, "cache").is_null() { "not cached" } @else { "no lookups yet" },
                            } }
                        }
                    }
                }
            }
        }
    };
    (worst, markup, problems)
}

fn artifacts(status: &Value) -> Section {
    let mut rows: Vec<(Severity, &Value)> = array(at(status, "artifacts"))
        .iter()
        .map(|a| {
            let sev = if at(a, "active").is_null() || at(at(a, "active"), "source") == "lkg" {
                Severity::Bad
            } else if !at(a, "last_rejection").is_null() {
                Severity::Warn
            } else {
                Severity::Ok
            };
            (sev, a)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let label = |a: &Value| match at(a, "name").as_str() {
        Some(n) => format!("{} {n}", text(at(a, "kind"))),
        None => text(at(a, "kind")),
    };
    let problems = rows
        .iter()
        .filter(|r| r.0 != Severity::Ok)
        .map(|(sev, a)| {
            let why = format!(
                "{}: {}",
                text(at(at(a, "last_rejection"), "reason")),
                text(at(at(a, "last_rejection"), "detail"))
            );
            let what = if at(a, "active").is_null() {
                format!("artifact {} has no active version ({why})", label(a))
            } else if at(at(a, "active"), "source") == "lkg" {
                format!(
                    "artifact {} runs on its last-known-good copy ({why})",
                    label(a)
                )
            } else {
                format!("artifact {} rejected its last file ({why})", label(a))
            };
            (*sev, what)
        })
        .collect();
    let worst = rows.first().map_or(Severity::Ok, |r| r.0);
    let markup = html! {
        section aria-labelledby="artifacts" {
            h2 id="artifacts" { "Artifacts" }
            @if rows.is_empty() { p { "None configured." } } @else {
            table {
                thead { tr { th scope="col" { "Artifact" } th scope="col" { "Version" } th scope="col" { "From" }
                    th scope="col" { "Loaded" } th scope="col" { "Last rejection" } } }
                tbody {
                    @for (sev, a) in &rows {
                        tr class=(sev.class()) {
                            td { (label(a)) br; code { (text(at(a, "path"))) } }
                            td { (text(at(at(a, "active"), "version"))) }
                            td class="word" { (text(at(at(a, "active"), "source"))) }
                            td { (text(at(at(a, "active"), "loaded_at"))) }
                            td { @if at(a, "last_rejection").is_null() { "—" } @else {
                                (text(at(at(a, "last_rejection"), "at"))) ": " (text(at(at(a, "last_rejection"), "reason")))
                                " — " (text(at(at(a, "last_rejection"), "detail"))) } }
                        }
                    }
                }
            }
            }
        }
    };
    (worst, markup, problems)
}

/// The modules: each is an object with `name`, `state` (`ok`, `tripped`, `disabled`), the
/// override, fail policy, calls and errors; some carry their own counters (limits, rules).
fn modules(status: &Value) -> Section {
    let list: Vec<&Value> = match &at(status, "modules") {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => o.values().collect(),
        _ => Vec::new(),
    };
    let mut rows: Vec<(Severity, &Value)> = list
        .into_iter()
        .map(|m| {
            let sev = match at(m, "state").as_str() {
                Some("tripped") => Severity::Bad,
                Some("disabled") if at(m, "override") != "none" => Severity::Warn,
                _ => Severity::Ok,
            };
            (sev, m)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let problems = rows
        .iter()
        .filter(|r| r.0 != Severity::Ok)
        .map(|(sev, m)| {
            let what = if *sev == Severity::Bad {
                format!(
                    "module {}: breaker open until {}, fail policy {} applies",
                    text(at(m, "name")),
                    text(at(m, "tripped_until")),
                    text(at(m, "fail_policy"))
                )
            } else {
                format!(
                    "module {}: kill switch on (operator override)",
                    text(at(m, "name"))
                )
            };
            (*sev, what)
        })
        .collect();
    let worst = rows.first().map_or(Severity::Ok, |r| r.0);
    let markup = html! {
        section aria-labelledby="modules" {
            h2 id="modules" { "Modules and shield counters" }
            @if rows.is_empty() { p { "None configured." } } @else {
            table {
                thead { tr { th scope="col" { "Module" } th scope="col" { "State" } th scope="col" { "Override" }
                    th scope="col" { "Fail policy" } th scope="col" { "Calls" } th scope="col" { "Errors" }
                    th scope="col" { "Counters" } } }
                tbody {
                    @for (sev, m) in &rows {
                        tr class=(sev.class()) {
                            td { (text(at(m, "name"))) }
                            td class="word" { (text(at(m, "state"))) }
                            td { (text(at(m, "override"))) }
                            td { (text(at(m, "fail_policy"))) }
                            td { (text(at(m, "calls"))) }
                            td { (text(at(m, "errors"))) @if !at(m, "last_error").is_null() { br;
                                "last: " (text(at(at(m, "last_error"), "kind"))) " — " (text(at(at(m, "last_error"), "detail"))) } }
                            td { (counters(m)) }
                        }
                    }
                }
            }
            }
        }
    };
    (worst, markup, problems)
}

/// A module's own counters: numbers of its entries (limits, rules) and its top-level numbers
/// beyond the common ones.
fn counters(m: &Value) -> Markup {
    const COMMON: &[&str] = &["calls", "suppressed_reports"];
    let Some(obj) = m.as_object() else {
        return html! {};
    };
    let own: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, v)| v.is_number() && !COMMON.contains(&k.as_str()))
        .collect();
    let lists: Vec<(&String, &Vec<Value>)> = obj
        .iter()
        .filter_map(|(k, v)| v.as_array().map(|a| (k, a)))
        .collect();
    html! {
        @for (k, v) in &own { (k) " " (text(v)) br; }
        @for (k, list) in &lists {
            @for entry in list.iter() {
                @if let Some(e) = entry.as_object() {
                    (k) " " (text(e.get("name").or_else(|| e.get("id")).unwrap_or(&Value::Null))) ": "
                    (e.iter().filter(|(_, v)| v.is_number()).map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
                    br;
                }
            }
        }
    }
}

fn dns(status: &Value) -> Section {
    let mut rows: Vec<(Severity, &Value)> = array(at(at(status, "dns"), "steered"))
        .iter()
        .map(|n| {
            let sev = if at(n, "all_down").as_bool() == Some(true) {
                Severity::Bad
            } else if array(at(n, "targets"))
                .iter()
                .any(|t| at(t, "healthy") == false)
            {
                Severity::Warn
            } else {
                Severity::Ok
            };
            (sev, n)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let problems = rows
        .iter()
        .filter(|r| r.0 != Severity::Ok)
        .map(|(sev, n)| {
            (
                *sev,
                format!(
                    "steered name {} answers {} ({})",
                    text(at(n, "name")),
                    array(at(n, "answer"))
                        .iter()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(", "),
                    text(at(n, "reason"))
                ),
            )
        })
        .collect();
    let worst = rows.first().map_or(Severity::Ok, |r| r.0);
    let markup = html! {
        @if !at(status, "dns").is_null() {
            section aria-labelledby="dns" {
                h2 id="dns" { "DNS steered names" }
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Answer" } th scope="col" { "Why" }
                        th scope="col" { "Targets" } } }
                    tbody {
                        @for (sev, n) in &rows {
                            tr class=(sev.class()) {
                                td { (text(at(n, "name"))) }
                                td { code { (array(at(n, "answer")).iter().map(text).collect::<Vec<_>>().join(", ")) } }
                                td { (text(at(n, "reason"))) }
                                td { @for t in array(at(n, "targets")) {
                                    (text(at(t, "ip"))) " (" (text(at(t, "pool"))) "): "
                                    (if at(t, "healthy") == true { "healthy" } else { "unhealthy" })
                                    @if !at(t, "forced").is_null() { ", forced " (text(at(t, "forced"))) }
                                    br;
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    (worst, markup, problems)
}

/// `[fleet]`: this instance in its fleet (the version it runs and the one it is asked to run,
/// etcd, the controller) and the rollout, in progress or the last one.
fn fleet(status: &Value) -> Section {
    let f = at(status, "fleet");
    let rollout = at(f, "rollout");
    let state = at(rollout, "state").as_str().unwrap_or("");
    let mut problems = Vec::new();
    if at(at(f, "etcd"), "reachable") == false {
        problems.push((
            Severity::Warn,
            format!(
                "fleet: etcd unreachable ({}); serving version {} as it is",
                text(at(at(f, "etcd"), "error")),
                text(at(f, "version"))
            ),
        ));
    }
    if !at(f, "rejected").is_null() {
        problems.push((
            Severity::Bad,
            format!(
                "fleet: version {} was rejected here; running version {}",
                text(at(at(f, "rejected"), "version")),
                text(at(f, "version"))
            ),
        ));
    }
    match state {
        "rolling" | "paused" => problems.push((
            Severity::Warn,
            format!(
                "fleet: rollout of version {} {state} at stage {}",
                text(at(rollout, "version")),
                text(at(rollout, "stage"))
            ),
        )),
        "rolled_back" | "failed" => problems.push((
            Severity::Bad,
            format!(
                "fleet: rollout of version {} {}: {}",
                text(at(rollout, "version")),
                state.replace('_', " "),
                text(at(rollout, "reason"))
            ),
        )),
        _ => {}
    }
    problems.sort_by_key(|p| p.0);
    let worst = problems.first().map_or(Severity::Ok, |p| p.0);
    let markup = html! {
        @if !f.is_null() {
            section aria-labelledby="fleet" {
                h2 id="fleet" { "Fleet" }
                p class=(worst.class()) {
                    "Instance " code { (text(at(f, "instance"))) } " in group " (text(at(f, "group")))
                    ": running version " span class="word" { (text(at(f, "version"))) }
                    " (since " (text(at(f, "since"))) "), asked for " (text(at(f, "wanted"))) ". "
                    "etcd " (if at(at(f, "etcd"), "reachable") == true { "reachable" } else { "unreachable" })
                    ", controller " (text(at(f, "controller"))) "."
                }
                @if rollout.is_null() { p { "No rollout yet." } } @else {
                    table {
                        thead { tr { th scope="col" { "Rollout" } th scope="col" { "From" } th scope="col" { "State" }
                            th scope="col" { "Stage" } th scope="col" { "Why" } } }
                        tbody { tr class=(worst.class()) data-rollout=(text(at(rollout, "version"))) {
                            td { "version " (text(at(rollout, "version"))) }
                            td { (text(at(rollout, "previous"))) }
                            td class="word" { (text(at(rollout, "state"))) }
                            td { (text(at(rollout, "stage"))) }
                            td { (text(at(rollout, "reason"))) }
                        } }
                    }
                }
            }
        }
    };
    (worst, markup, problems)
}

/// The public status page: its components and whether its export keeps up.
fn public_page(status: &Value) -> Section {
    let page = at(status, "status_page");
    let export = at(page, "export");
    let failing = at(export, "failing") == true;
    let sev = if failing { Severity::Bad } else { Severity::Ok };
    let problems = if failing {
        vec![(
            Severity::Bad,
            format!(
                "the public status page's export fails ({} failures): {}",
                text(at(export, "failures")),
                text(at(export, "last_error"))
            ),
        )]
    } else {
        Vec::new()
    };
    let markup = html! {
        @if !page.is_null() {
            section aria-labelledby="public" {
                h2 id="public" { "Public status page" }
                p class=(sev.class()) {
                    "Serving on " code { (text(at(page, "listen"))) } ", overall "
                    span class="word" { (text(at(page, "overall"))) } ", open incidents "
                    (text(at(page, "open_incidents"))) ". Export: " (text(at(export, "exports")))
                    " done, " (text(at(export, "failures"))) " failed, last success "
                    (text(at(export, "last_ok"))) "."
                    @if failing { " Last error: " (text(at(export, "last_error"))) }
                }
                ul { @for c in array(at(page, "components")) {
                    li { (text(at(c, "name"))) ": " span class="word" { (text(at(c, "state"))) } }
                } }
            }
        }
    };
    (sev, markup, problems)
}

/// `holdfast demo` only (`/status` has `demo`): its origins with a stop or start button each,
/// and the 18 Nov 2025 replay. Plain forms: they work without JavaScript (the admin plane
/// answers a browser's form with a 303 back here).
fn demo(status: &Value) -> Markup {
    let demo = at(status, "demo");
    html! {
        @if !demo.is_null() {
            section aria-labelledby="demo" {
                h2 id="demo" { "Demo controls" }
                table {
                    thead { tr { th scope="col" { "Demo origin" } th scope="col" { "Address" }
                        th scope="col" { "Pool" } th scope="col" { "Process" } th scope="col" { "Try" } } }
                    tbody {
                        @for o in array(at(demo, "origins")) {
                            @let name = text(at(o, "name"));
                            @let running = at(o, "running") == true;
                            tr data-origin=(name) {
                                td { (name) }
                                td { code { (text(at(o, "address"))) } }
                                td { (text(at(o, "pool"))) }
                                td class="word" { (if running { "running" } else { "stopped" }) }
                                td {
                                    form method="post" action=(format!("/demo/origins/{name}/{}", if running { "stop" } else { "start" })) {
                                        button type="submit" { (if running { "Stop" } else { "Start" }) " origin " (name) }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/demo/replay" {
                    p {
                        button type="submit" { "Replay 18 Nov 2025" }
                        " writes a bot feature file with every entry repeated past its limit to "
                        code { (text(at(demo, "feature_file"))) } " (replays so far: " (text(at(demo, "replays")))
                        "). Watch Artifacts below: rejected, the last good version kept, traffic unaffected."
                    }
                }
            }
        }
    }
}

fn reload(status: &Value) -> Section {
    let last = &at(status, "last_reload");
    let rejected_at_start = !at(at(status, "config"), "rejected_at_start").is_null();
    let sev = if rejected_at_start {
        Severity::Bad
    } else if at(last, "result") == "rejected" {
        Severity::Warn
    } else {
        Severity::Ok
    };
    let mut problems = Vec::new();
    if rejected_at_start {
        problems.push((
            Severity::Bad,
            "the configuration file was rejected at start: running on its last-known-good copy"
                .to_string(),
        ));
    }
    if at(last, "result") == "rejected" {
        problems.push((
            Severity::Warn,
            format!(
                "the last reload ({}) was rejected; the active configuration stays",
                text(at(last, "at"))
            ),
        ));
    }
    let errors: Vec<&Value> = array(at(last, "errors"))
        .iter()
        .chain(array(at(at(status, "config"), "rejected_at_start")))
        .collect();
    let markup = html! {
        section aria-labelledby="reload" {
            h2 id="reload" { "Configuration and last reload" }
            p class=(sev.class()) {
                "Source " code { (text(at(at(status, "config"), "source"))) } ", generation "
                (text(at(at(status, "config"), "generation"))) ", loaded " (text(at(at(status, "config"), "loaded_at"))) ". "
                @if last.is_null() { "No reload since start." } @else {
                    "Last reload " (text(at(last, "at"))) ": " span class="word" { (text(at(last, "result"))) } "."
                }
            }
            @if !errors.is_empty() { ul { @for e in &errors { li { code { (text(e)) } } } } }
        }
    };
    (sev, markup, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status() -> Value {
        json!({
            "version": "0.1.0", "uptime_seconds": 3, "serving": true,
            "config": {"generation": 2, "running_on": "file", "source": "edge.toml", "rejected_at_start": null},
            "last_reload": {"at": "2026-01-01T00:00:00Z", "result": "rejected", "errors": ["edge.toml: routes[0].pool: unknown pool \"x\""]},
            "pools": [{"name": "app", "servers": [
                {"address": "10.0.0.1:80", "health": "up"},
                {"address": "10.0.0.2:80", "health": "failing", "last_error": "connect: <script>alert(1)</script>"}
            ]}],
            "routes": [{"name": "all", "pools": ["app", "spare"], "fallback": true, "active": "fallback",
                        "cache": {"hits": 3, "misses": 1}}],
            "artifacts": [{"kind": "bot", "path": "bot.json", "active": {"version": 4, "source": "lkg"},
                           "last_rejection": {"reason": "too_large", "detail": "over 1 MiB", "at": "t"}}],
            "modules": [{"name": "bot", "state": "tripped", "override": "none", "fail_policy": "open", "tripped_until": "t"}],
            "dns": null
        })
    }

    #[test]
    fn problems_come_first_and_text_is_escaped() {
        let html = page(&status());
        assert!(!html.contains("<script>alert"), "escaped: {html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let failing = html.find("data-server=\"10.0.0.2:80\"").unwrap();
        let up = html.find("data-server=\"10.0.0.1:80\"").unwrap();
        assert!(failing < up, "worst first");
        for line in [
            "pool app server 10.0.0.2:80 is failing",
            "route all serves its fallback page",
            "artifact bot runs on its last-known-good copy (too_large: over 1 MiB)",
            "module bot: breaker open until t, fail policy open applies",
            "the last reload (2026-01-01T00:00:00Z) was rejected",
            "75.0% (3 hits, 1 misses)",
        ] {
            assert!(html.contains(line), "{line:?} in {html}");
        }
    }

    #[test]
    fn the_fleet_and_a_rollout_in_progress_are_shown() {
        assert!(!page(&status()).contains("id=\"fleet\""));
        let mut s = status();
        s["fleet"] = json!({
            "instance": "edge-1", "group": "canary", "version": 3, "since": "t0", "wanted": 4,
            "started_on_lkg": false, "rejected": null,
            "etcd": {"endpoints": ["http://127.0.0.1:2379"], "reachable": true, "error": null},
            "controller": "edge-2",
            "rollout": {"version": 4, "previous": 3, "state": "rolling", "stage": "10%", "reason": null}
        });
        let html = page(&s);
        for part in [
            "<h2 id=\"fleet\">Fleet</h2>",
            "<code>edge-1</code> in group canary",
            "running version <span class=\"word\">3</span>",
            "asked for 4",
            "controller edge-2",
            "data-rollout=\"4\"",
            "fleet: rollout of version 4 rolling at stage 10%",
        ] {
            assert!(html.contains(part), "{part:?} in {html}");
        }
        s["fleet"]["rollout"]["state"] = json!("rolled_back");
        s["fleet"]["rollout"]["reason"] = json!("gate: 5xx ratio 12% over 1%");
        s["fleet"]["etcd"]["reachable"] = json!(false);
        s["fleet"]["etcd"]["error"] = json!("connection refused");
        let html = page(&s);
        assert!(
            html.contains("fleet: rollout of version 4 rolled back: gate: 5xx ratio 12% over 1%"),
            "{html}"
        );
        assert!(
            html.contains("fleet: etcd unreachable (connection refused)"),
            "{html}"
        );
    }

    #[test]
    fn the_demo_controls_show_only_in_the_demo() {
        let html = page(&status());
        assert!(!html.contains("Demo controls"), "{html}");
        let mut s = status();
        s["demo"] = json!({
            "origins": [{"name": "a", "address": "127.0.0.1:1", "pool": "origin-a", "running": true},
                        {"name": "b", "address": "127.0.0.2:2", "pool": "origin-b", "running": false}],
            "feature_file": "/tmp/x/bot-features.json", "replays": 0
        });
        let html = page(&s);
        for part in [
            "Demo controls",
            "<form method=\"post\" action=\"/demo/origins/a/stop\">",
            "<form method=\"post\" action=\"/demo/origins/b/start\">",
            "<form method=\"post\" action=\"/demo/replay\">",
            "Replay 18 Nov 2025",
        ] {
            assert!(html.contains(part), "{part:?} in {html}");
        }
    }

    #[test]
    fn a_healthy_edge_has_nothing_to_attend_to() {
        let mut s = status();
        s["pools"][0]["servers"][1]["health"] = json!("up");
        s["routes"][0]["active"] = json!("app");
        s["artifacts"][0]["active"]["source"] = json!("file");
        s["artifacts"][0]["last_rejection"] = Value::Null;
        s["modules"][0]["state"] = json!("ok");
        s["last_reload"]["result"] = json!("applied");
        let html = page(&s);
        assert!(html.contains("Nothing: every pool"), "{html}");
    }
}
