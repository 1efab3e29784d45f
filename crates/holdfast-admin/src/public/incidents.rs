//! Incident notes for the public status page: posted on the admin plane
//! (`POST /incidents`, `POST /incidents/ID`), kept in `state_dir/incidents.json` so they
//! survive a restart, newest first.

use holdfast_common::lock;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// The states an incident moves through (the words status pages use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

/// One update of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// RFC 3339, UTC.
    pub at: String,
    pub state: IncidentState,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub title: String,
    pub state: IncidentState,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Oldest first; the first is the opening note.
    pub updates: Vec<Update>,
}

/// `POST /incidents` (a new incident: `title` needed) or `POST /incidents/ID` (an update).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentPost {
    pub title: Option<String>,
    pub body: String,
    pub state: IncidentState,
}

/// The incidents, in memory and (with a state folder) on disk.
pub struct Incidents {
    list: Mutex<Vec<Incident>>,
    path: Option<PathBuf>,
}

const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 10_000;
const MAX_INCIDENTS: usize = 200;

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Incidents {
    /// Load `state_dir/incidents.json` if there is one; a bad file is logged and set aside
    /// (the page starts with no incidents rather than not at all).
    pub fn load(state_dir: Option<&std::path::Path>) -> Incidents {
        let path = state_dir.map(|d| d.join("incidents.json"));
        let list = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok().map(|b| (p, b)))
            .and_then(|(p, bytes)| match serde_json::from_slice(&bytes) {
                Ok(list) => Some(list),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "status page: incidents file unreadable; starting without incidents");
                    None
                }
            })
            .unwrap_or_default();
        Incidents {
            list: Mutex::new(list),
            path,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Incident>> {
        lock(&self.list)
    }

    /// Newest first.
    pub fn snapshot(&self) -> Vec<Incident> {
        let mut list = self.lock().clone();
        list.reverse();
        list
    }

    /// Open an incident (`id` None) or add an update to one. `Err` is (status, message).
    pub fn post(&self, id: Option<u64>, post: IncidentPost) -> Result<Incident, (u16, String)> {
        if post.body.len() > MAX_BODY {
            return Err((413, format!("body: at most {MAX_BODY} bytes")));
        }
        let mut list = self.lock();
        let update = Update {
            at: now(),
            state: post.state,
            body: post.body,
        };
        let incident = match id {
            None => {
                let title = post.title.unwrap_or_default();
                if title.trim().is_empty() || title.len() > MAX_TITLE {
                    return Err((
                        400,
                        format!("title: 1 to {MAX_TITLE} bytes, needed to open an incident"),
                    ));
                }
                if list.len() >= MAX_INCIDENTS {
                    list.remove(0);
                }
                let id = list.last().map_or(1, |i| i.id + 1);
                list.push(Incident {
                    id,
                    title,
                    state: update.state,
                    created_at: update.at.clone(),
                    updates: vec![update],
                });
                list.last().cloned()
            }
            Some(id) => {
                let found = list.iter_mut().find(|i| i.id == id).ok_or_else(|| {
                    (
                        404,
                        format!("no incident {id}: open one with POST /incidents"),
                    )
                })?;
                if let Some(t) = post.title.filter(|t| !t.trim().is_empty()) {
                    found.title = t;
                }
                found.state = update.state;
                found.updates.push(update);
                Some(found.clone())
            }
        };
        let saved = self.save(&list);
        drop(list);
        if let Err(e) = saved {
            tracing::error!(error = %e, "status page: cannot save the incidents; they are kept until restart");
        }
        incident.ok_or_else(|| (500, "incident lost".into()))
    }

    fn save(&self, list: &[Incident]) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?;
        holdfast_artifact::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(title: Option<&str>, state: IncidentState) -> IncidentPost {
        IncidentPost {
            title: title.map(str::to_string),
            body: "note".into(),
            state,
        }
    }

    #[test]
    fn incidents_open_update_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Incidents::load(Some(dir.path()));
        assert_eq!(
            store
                .post(None, post(None, IncidentState::Investigating))
                .unwrap_err()
                .0,
            400
        );
        let first = store
            .post(None, post(Some("Slow pages"), IncidentState::Investigating))
            .unwrap();
        assert_eq!(first.id, 1);
        let again = store
            .post(Some(1), post(None, IncidentState::Resolved))
            .unwrap();
        assert_eq!(again.updates.len(), 2);
        assert_eq!(again.state, IncidentState::Resolved);
        assert_eq!(
            store
                .post(Some(9), post(None, IncidentState::Resolved))
                .unwrap_err()
                .0,
            404
        );
        let reloaded = Incidents::load(Some(dir.path()));
        assert_eq!(reloaded.snapshot(), store.snapshot());
        assert_eq!(reloaded.snapshot()[0].title, "Slow pages");
    }
}
