//! `[[ip_lists]]` as a kind: no request step of its own, only artifacts the rules read
//! (`ip_in_list`). Each list's artifact is kept across reloads while its file and state
//! folder are unchanged, and offered to the rules of the generation as `IpLists`.

use crate::ip_list::IpListKind;
use crate::rules::IpLists;
use holdfast_artifact::{Artifact, ArtifactMetrics, ArtifactOptions, Watcher};
use holdfast_config::{Config, ConfigError};
use holdfast_modules::host::{HostedArtifact, Links, ModuleKind, Start, Step};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One `[[ip_lists]]` entry's artifact, kept across reloads while its file is the same.
pub struct IpListRuntime {
    file: PathBuf,
    state_dir: Option<PathBuf>,
    artifact: Arc<Artifact<IpListKind>>,
    /// In a mutex only to be `Sync` (the runtime is shared by `Arc`); never locked.
    _watcher: Mutex<Option<Watcher>>,
}

/// The lists a config names, and the state folder their last-known-good copies live in.
pub struct IpListsPlan {
    lists: Vec<holdfast_config::IpList>,
    state_dir: Option<PathBuf>,
}

/// One generation's lists, by name.
pub struct IpListsRunning {
    lists: HashMap<String, Arc<IpListRuntime>>,
}

/// The `ip_lists` kind.
pub struct IpListsKind {
    artifact_metrics: Arc<ArtifactMetrics>,
}

impl IpListsKind {
    pub fn new(artifact_metrics: Arc<ArtifactMetrics>) -> Self {
        IpListsKind { artifact_metrics }
    }

    fn new_list(&self, l: &holdfast_config::IpList, state_dir: Option<&Path>) -> IpListRuntime {
        let mut options = ArtifactOptions::new(&l.file);
        options.state_dir = state_dir.map(Path::to_path_buf);
        options.name = Some(l.name.clone());
        let artifact = Arc::new(Artifact::<IpListKind>::new(
            options,
            Arc::clone(&self.artifact_metrics),
        ));
        // A bad or missing file is not a config error: rules reading a list without a value
        // count an error and miss.
        artifact.start();
        let watched = Arc::clone(&artifact);
        let name = l.name.clone();
        let watcher = Watcher::start(artifact.watch_paths(), super::ARTIFACT_POLL, move |_| {
            watched.reload();
        })
        .map_err(|e| tracing::error!(list = %name, error = %e, "cannot watch the IP list; POST /reload re-reads it"))
        .ok();
        IpListRuntime {
            file: l.file.clone(),
            state_dir: state_dir.map(Path::to_path_buf),
            artifact,
            _watcher: Mutex::new(watcher),
        }
    }
}

impl ModuleKind for IpListsKind {
    const NAME: &'static str = "ip_lists";
    type Plan = IpListsPlan;
    type Running = IpListsRunning;
    type Status = ();

    fn plan(&self, config: &Config) -> Result<Option<IpListsPlan>, Vec<ConfigError>> {
        if config.ip_lists.is_empty() {
            return Ok(None);
        }
        Ok(Some(IpListsPlan {
            lists: config.ip_lists.clone(),
            state_dir: config.edge.state_dir.clone(),
        }))
    }

    /// The running artifact of a list whose file (and state folder) did not change, a new one
    /// (loaded now, falling back to its last-known-good) otherwise.
    fn start(
        &self,
        plan: IpListsPlan,
        previous: Option<&IpListsRunning>,
        _links: &Links,
    ) -> Start<IpListsPlan, IpListsRunning> {
        let state_dir = plan.state_dir.as_deref();
        let lists = plan
            .lists
            .iter()
            .map(|l| {
                let kept = previous
                    .and_then(|p| p.lists.get(&l.name))
                    .filter(|r| r.file == l.file && r.state_dir.as_deref() == state_dir);
                let rt = match kept {
                    Some(rt) => Arc::clone(rt),
                    None => Arc::new(self.new_list(l, state_dir)),
                };
                (l.name.clone(), rt)
            })
            .collect();
        Start::New(IpListsRunning { lists })
    }

    fn wire(&self, running: &Arc<IpListsRunning>, links: &mut Links) -> Vec<Step> {
        let lists: IpLists = running
            .lists
            .iter()
            .map(|(name, rt)| (name.clone(), Arc::clone(&rt.artifact)))
            .collect();
        links.offer(lists);
        Vec::new()
    }

    /// By name, so `/status` lists them in a stable order.
    fn artifacts(&self, running: &IpListsRunning) -> Vec<Arc<dyn HostedArtifact>> {
        let mut names: Vec<&String> = running.lists.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| running.lists.get(n))
            .map(|l| Arc::clone(&l.artifact) as Arc<dyn HostedArtifact>)
            .collect()
    }

    fn status(&self, _running: &IpListsRunning) -> Option<()> {
        None
    }
}
