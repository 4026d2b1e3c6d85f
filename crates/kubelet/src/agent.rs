//! The agent: shared state of the pod workers, the pod watch that feeds
//! them, and cleanup of what pods left behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bosun_events::Recorder;
use bosun_images::ImageStore;
use bosun_runtime::cgroups::pod_cgroup_path;
use bosun_runtime::mount::mounts_under;
use bosun_runtime::{ContainerRuntime, PodSandbox, QosClass};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::{mpsc, watch};

use crate::pod::{Input, PodWorker};

/// Where the agent keeps its files, under `<data-dir>/agent`.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
}

impl Dirs {
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
    /// Per-pod files: volumes, hosts, resolv.conf.
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods().join(uid)
    }
    pub fn all_logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `<ns>_<name>_<uid>`, like `/var/log/pods`.
    pub fn logs(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.all_logs().join(format!("{ns}_{name}_{uid}"))
    }
}

/// A RuntimeClass handler: the runtime driver with its OCI binary, and the
/// binary's name, the scheme of its container IDs (`runc://…`).
#[derive(Clone)]
pub struct Handler {
    pub rt: ContainerRuntime,
    pub scheme: String,
}

pub struct Agent {
    pub client: Client,
    pub node_name: String,
    pub host_ip: String,
    pub recorder: Recorder,
    pub rt: ContainerRuntime,
    pub images: Arc<ImageStore>,
    pub dirs: Dirs,
    /// `runc` / `crun`: the scheme of container IDs.
    pub runtime_name: String,
    /// RuntimeClass handler name → runtime (the default one included).
    pub handlers: BTreeMap<String, Handler>,
    /// The pod network (CNI).
    pub network: Arc<crate::network::Network>,
    /// Cluster DNS servers and domain for pods' resolv.conf.
    pub dns: crate::dns::ClusterDns,
}

const UID_LEN: usize = 36;

fn uid_of(id: &str) -> Option<&str> {
    (id.len() >= UID_LEN && id.is_char_boundary(UID_LEN)).then(|| &id[..UID_LEN])
}

impl Agent {
    /// The runtime whose state root knows container `id` (the default
    /// one when none does).
    pub fn rt_for_container(&self, id: &str) -> &ContainerRuntime {
        self.handlers
            .values()
            .map(|h| &h.rt)
            .find(|rt| rt.config.runtime.root.join(id).exists())
            .unwrap_or(&self.rt)
    }

    /// The handler a RuntimeClass names, made ready to run containers;
    /// the error is containerd's text for a handler it does not have.
    pub fn handler(&self, name: &str) -> Result<Handler, String> {
        let h = self
            .handlers
            .get(name)
            .ok_or_else(|| format!("no runtime for {name:?} is configured"))?;
        if h.scheme == "crun" {
            static MOVED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
            // crun refuses a hybrid cgroup host whose v2 tree still holds
            // a controller: move those to v1 once, when first needed.
            MOVED
                .get_or_init(|| {
                    bosun_runtime::cgroups::move_hybrid_controllers_to_v1()
                        .map(|_| ())
                        .map_err(|e| format!("preparing cgroups for crun: {e}"))
                })
                .clone()?;
        }
        Ok(h.clone())
    }

    /// The handler whose binary runs containers with IDs `<scheme>://…`.
    pub fn handler_by_scheme(&self, scheme: &str) -> Option<Handler> {
        self.handlers.values().find(|h| h.scheme == scheme).cloned()
    }

    /// Remove everything of pod `uid` from the node: containers (by id
    /// prefix, in the bundle dir and the runtime), the sandbox and its
    /// cgroup, tmpfs volumes; with `all`, also the pod's files and logs.
    /// Blocking.
    pub fn teardown_pod(&self, uid: &str, all: bool) -> anyhow::Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        let prefix = format!("{uid}-");
        let containers = self.rt.config.state_dir.join("containers");
        if let Ok(rd) = std::fs::read_dir(&containers) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if id.starts_with(&prefix) {
                    if let Err(e) = self.rt_for_container(&id).remove_container(&id) {
                        first_err.get_or_insert(e.into());
                    }
                }
            }
        }
        for h in self.handlers.values() {
            for s in h.rt.oci.list().unwrap_or_default() {
                if s.id.starts_with(&prefix) {
                    if let Err(e) = h.rt.oci.delete(&s.id, true) {
                        first_err.get_or_insert(e.into());
                    }
                }
            }
        }
        let sb_dir = self.rt.sandbox_dir(uid);
        if sb_dir.exists() {
            // CNI DEL first, from what ADD was given (also after a
            // restart), while the netns still exists.
            // A failed DEL keeps the sandbox (and its record) for a retry.
            let net = self.network.teardown(&sb_dir);
            let net_ok = net.is_ok();
            if let Err(e) = net {
                first_err.get_or_insert(anyhow::anyhow!(
                    "failed to destroy network for sandbox {uid:?}: {e}"
                ));
            }
            match PodSandbox::load(&sb_dir) {
                Ok(sb) if net_ok => {
                    if let Err(e) = self.rt.remove_pod_sandbox(&sb) {
                        first_err.get_or_insert(e.into());
                    }
                }
                Ok(_) => {}
                Err(_) if !net_ok => {}
                Err(_) => {
                    for m in mounts_under(&sb_dir).unwrap_or_default() {
                        let _ = self.rt.mounter.unmount(&m);
                    }
                    let _ = std::fs::remove_dir_all(&sb_dir);
                }
            }
        }
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let p = pod_cgroup_path(&self.rt.config.cgroup_root, qos, uid);
            if self.rt.cgroups.exists(&p) {
                if let Err(e) = self.rt.cgroups.remove(&p) {
                    first_err.get_or_insert(e.into());
                }
            }
        }
        let pod_dir = self.dirs.pod(uid);
        for m in mounts_under(&pod_dir).unwrap_or_default() {
            if let Err(e) = self.rt.mounter.unmount(&m) {
                first_err.get_or_insert(e.into());
            }
        }
        if all && first_err.is_none() {
            if let Err(e) = std::fs::remove_dir_all(&pod_dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    first_err.get_or_insert(e.into());
                }
            }
            if let Ok(rd) = std::fs::read_dir(self.dirs.all_logs()) {
                let suffix = format!("_{uid}");
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().ends_with(&suffix) {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// UIDs of pods that left anything on this node.
    pub fn local_pod_uids(&self) -> HashSet<String> {
        let mut uids = HashSet::new();
        let mut add_dir = |dir: &Path| {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(u) = uid_of(&n) {
                        uids.insert(u.to_string());
                    }
                }
            }
        };
        add_dir(&self.dirs.pods());
        add_dir(&self.rt.config.state_dir.join("sandboxes"));
        add_dir(&self.rt.config.state_dir.join("containers"));
        for h in self.handlers.values() {
            for s in h.rt.oci.list().unwrap_or_default() {
                if let Some(u) = uid_of(&s.id) {
                    uids.insert(u.to_string());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.dirs.all_logs()) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some((_, u)) = n.rsplit_once('_') {
                    if u.len() == UID_LEN {
                        uids.insert(u.to_string());
                    }
                }
            }
        }
        uids
    }

    /// Clean up pods that are on the node but no longer in the API.
    pub fn cleanup_orphans(&self, live: &HashSet<String>) {
        for uid in self.local_pod_uids() {
            if live.contains(&uid) {
                continue;
            }
            tracing::info!(%uid, "cleaning up a pod that is no longer in the API");
            if let Err(e) = self.teardown_pod(&uid, true) {
                tracing::warn!(%uid, error = %e, "orphaned pod cleanup");
            }
        }
    }
}

/// Watch the pods bound to this node and run one worker per pod.
pub async fn pods_loop(agent: Arc<Agent>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Input>> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, bool)>();
    let mut init_seen: HashSet<String> = HashSet::new();
    let mut cleaned_at_start = false;

    let dispatch = |workers: &mut HashMap<String, watch::Sender<Input>>,
                    finished: &HashSet<String>,
                    pod: Pod,
                    gone: bool| {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(tx) = workers.get(&uid) {
            tx.send_replace(Input { pod, gone });
            return;
        }
        if finished.contains(&uid) {
            return;
        }
        let (tx, rx) = watch::channel(Input {
            pod: pod.clone(),
            gone,
        });
        let worker = PodWorker::new(agent.clone(), pod);
        let done = done_tx.clone();
        let u = uid.clone();
        tokio::spawn(async move {
            use futures::FutureExt;
            // A bug in one pod's worker must not take the agent down: log
            // it and let the next event for the pod start a new worker.
            let panicked = std::panic::AssertUnwindSafe(worker.run(rx))
                .catch_unwind()
                .await
                .is_err();
            if panicked {
                tracing::error!(uid = %u, "pod worker panicked; restarting it on the next event");
            }
            let _ = done.send((u, panicked));
        });
        workers.insert(uid, tx);
    };

    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { break };
                match ev {
                    Err(e) => tracing::warn!(error = %e, "pod watch"),
                    Ok(Event::Init) => init_seen.clear(),
                    Ok(Event::InitApply(p)) => {
                        if let Some(u) = &p.metadata.uid {
                            init_seen.insert(u.clone());
                        }
                        dispatch(&mut workers, &finished, p, false);
                    }
                    Ok(Event::InitDone) => {
                        // Pods that went away while we were not watching.
                        for (uid, tx) in &workers {
                            if !init_seen.contains(uid) {
                                let pod = tx.borrow().pod.clone();
                                tx.send_replace(Input { pod, gone: true });
                            }
                        }
                        if !cleaned_at_start {
                            cleaned_at_start = true;
                            let a = agent.clone();
                            let live = init_seen.clone();
                            // Before any later event: a pod created from now
                            // on must not be mistaken for an orphan.
                            let _ = tokio::task::spawn_blocking(move || a.cleanup_orphans(&live)).await;
                        }
                    }
                    Ok(Event::Apply(p)) => dispatch(&mut workers, &finished, p, false),
                    Ok(Event::Delete(p)) => dispatch(&mut workers, &finished, p, true),
                }
            }
            Some((uid, panicked)) = done_rx.recv() => {
                workers.remove(&uid);
                if panicked {
                    continue;
                }
                if finished.len() > 10_000 {
                    finished.clear();
                }
                finished.insert(uid);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_from_ids() {
        let u = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(uid_of(&format!("{u}-c-0")), Some(u));
        assert_eq!(uid_of(u), Some(u));
        assert_eq!(uid_of("short"), None);
    }
}
