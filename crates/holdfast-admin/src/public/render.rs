//! The public status page's HTML: components and incidents, no external assets, no
//! JavaScript, readable at 360 px, landmarks and text states (colour only repeats them).

use super::components::{ComponentState, ComponentView};
use super::incidents::Incident;
use maud::{html, PreEscaped, DOCTYPE};
use serde::Serialize;

/// What the page shows, also exported as `status.json` (with the time it was made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub title: String,
    /// The worst component's state.
    pub overall: ComponentState,
    pub components: Vec<ComponentView>,
    pub incidents: Vec<Incident>,
}

/// Seconds between refreshes of the served page.
const REFRESH_SECONDS: u32 = 30;

const STYLE: &str = "\
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#111;background:#fff}\
header,main,footer{max-width:48rem;margin:auto;padding:0 1rem}\
h1{font-size:1.5rem;margin:1rem 0 .25rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}\
.banner{padding:.75rem 1rem;border-radius:.4rem;font-weight:700}\
ul.components{list-style:none;padding:0;margin:0}\
ul.components li{display:flex;justify-content:space-between;gap:1rem;padding:.6rem 0;border-bottom:1px solid #ccc}\
.operational{background:#e3f5e6;color:#0b4d1a}.degraded{background:#fff1c2;color:#5c4200}\
.outage{background:#fde2e1;color:#7a0b05}.state{padding:0 .5rem;border-radius:.3rem;font-weight:700}\
article{border-top:1px solid #ccc;padding:.5rem 0}time{color:#333}\
footer{color:#333;font-size:.9rem;margin-top:2rem}";

fn banner(overall: ComponentState) -> &'static str {
    match overall {
        ComponentState::Operational => "All systems operational",
        ComponentState::Degraded => "Some systems degraded",
        ComponentState::Outage => "Outage in progress",
    }
}

/// The page for `snapshot`, made at `generated_at` (RFC 3339). `refresh`: served live (the
/// exported copy does not refresh itself: its host decides).
pub fn page(snapshot: &Snapshot, generated_at: &str, refresh: bool) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (snapshot.title) }
                link rel="icon" href="data:,";
                @if refresh { meta http-equiv="refresh" content=(REFRESH_SECONDS); }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (snapshot.title) }
                    p class={ "banner " (snapshot.overall.word()) } role="status" { (banner(snapshot.overall)) }
                }
                main {
                    section aria-labelledby="components" {
                        h2 id="components" { "Components" }
                        ul class="components" {
                            @for c in &snapshot.components {
                                li data-component=(c.name) {
                                    span { (c.name) }
                                    span class={ "state " (c.state.word()) } { (c.state.label()) }
                                }
                            }
                        }
                    }
                    section aria-labelledby="incidents" {
                        h2 id="incidents" { "Incidents" }
                        @if snapshot.incidents.is_empty() { p { "No incidents reported." } }
                        @for i in &snapshot.incidents {
                            article aria-labelledby=(format!("incident-{}", i.id)) {
                                h3 id=(format!("incident-{}", i.id)) { (i.title) }
                                p { "State: " strong { (format!("{:?}", i.state).to_lowercase()) } }
                                @for u in i.updates.iter().rev() {
                                    p { time datetime=(u.at) { (u.at) } " — " strong { (format!("{:?}", u.state).to_lowercase()) } ": " (u.body) }
                                }
                            }
                        }
                    }
                }
                footer { p { "Updated " time datetime=(generated_at) { (generated_at) } ". Also as " a href="status.json" { "status.json" } "." } }
            }
        }
    }
    .into_string()
}
