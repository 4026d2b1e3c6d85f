//! One worker per pod: makes the node match the pod (sandbox, volumes,
//! init containers then containers, restarts with back-off), reports
//! status like the kubelet, and finishes deletion.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_events::ObjectRef;
use bosun_images::{Credentials, ImageInfo, ImageLease, Reference};
use bosun_runtime::cgroups::pod_resources;
use bosun_runtime::{
    BindMount, ContainerConfig, ContainerRequest, ContainerRuntime, ContainerStatus, ImageConfig,
    PodSandbox, QosClass, Resources, SandboxOptions, SandboxRequest, SecurityContext, ShimHandle,
    ShimState,
};
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use crate::probe::{self, Change, ContainerProbes, Handler, Kind, Outcome, RealProber, Target};
use crate::sources::Sources;
use crate::util::{self, limit, milli, now, pod_desc, request, whole};
use crate::volumes::{self, VolumeDir};

/// Crash-loop and image-pull back-off: 10 s doubling to 5 min.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long resets its back-off.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often running containers are checked for exits.
const POLL: Duration = Duration::from_millis(200);
const POLL_SLOW: Duration = Duration::from_secs(1);

/// What the agent's watch tells a worker.
#[derive(Clone)]
pub struct Input {
    pub pod: Pod,
    /// The pod is no longer in the API (or no longer bound here).
    pub gone: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    message: Option<String>,
    started_at: Option<String>,
    finished_at: String,
    container_id: String,
}

impl Term {
    fn to_json(&self) -> Value {
        let mut t = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        });
        if let Some(s) = &self.started_at {
            t["startedAt"] = json!(s);
        }
        if let Some(s) = self.signal {
            t["signal"] = json!(s);
        }
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        t
    }

    fn from_json(v: &Value) -> Option<Term> {
        Some(Term {
            exit_code: v.get("exitCode")?.as_i64()? as i32,
            signal: v.get("signal").and_then(|s| s.as_i64()).map(|s| s as i32),
            reason: v["reason"].as_str().unwrap_or("").to_string(),
            message: v["message"].as_str().map(str::to_string),
            started_at: v["startedAt"].as_str().map(str::to_string),
            finished_at: v["finishedAt"].as_str().unwrap_or("").to_string(),
            container_id: v["containerID"].as_str().unwrap_or("").to_string(),
        })
    }
}

struct Instance {
    id: String,
    handle: ShimHandle,
    started_at: String,
    started: Instant,
    /// The spec's image when started (a change restarts the container).
    image: String,
    _lease: Option<ImageLease>,
}

struct Ctr {
    name: String,
    restart_count: i32,
    running: Option<Instance>,
    /// Final termination (no restart coming).
    term: Option<Term>,
    /// The previous instance's termination (lastState).
    last_term: Option<Term>,
    waiting: Option<(String, String)>,
    /// Delay before the next restart after a crash (0: restart at once).
    backoff: Duration,
    restart_at: Option<Instant>,
    /// A restart is due: the next start increments restartCount.
    pending_restart: bool,
    image_id: String,
    /// Retry a failed create/config step at this time.
    retry_at: Option<Instant>,
    /// Stopped because its definition changed: restart at once.
    force_restart: bool,
    /// Probes of the running instance.
    probes: Option<ContainerProbes>,
}

impl Ctr {
    fn new(name: &str) -> Ctr {
        Ctr {
            name: name.to_string(),
            restart_count: 0,
            running: None,
            term: None,
            last_term: None,
            waiting: None,
            backoff: Duration::ZERO,
            restart_at: None,
            pending_restart: false,
            image_id: String::new(),
            retry_at: None,
            force_restart: false,
            probes: None,
        }
    }

    /// `containerStatuses[].ready`: running and its readiness probe (if
    /// any) says so.
    fn ready(&self) -> bool {
        self.running.is_some() && self.probes.as_ref().is_none_or(|p| p.ready())
    }

    /// `containerStatuses[].started`.
    fn started(&self) -> bool {
        self.running.is_some() && self.probes.as_ref().is_none_or(|p| p.started())
    }

    fn succeeded(&self) -> bool {
        self.running.is_none()
            && !self.pending_restart
            && self.term.as_ref().is_some_and(|t| t.exit_code == 0)
    }
}

pub struct PodWorker {
    agent: Arc<Agent>,
    /// The runtime of the pod's RuntimeClass handler (the node's default
    /// until the sandbox is created or adopted).
    rt: ContainerRuntime,
    /// Scheme of the pod's container IDs (`runc`, `crun`).
    runtime_scheme: String,
    uid: String,
    pod: Pod,
    sandbox: Option<PodSandbox>,
    /// The sandbox's IPs from the network plugin (empty: none/host).
    pod_ips: Vec<std::net::IpAddr>,
    init: Vec<Ctr>,
    ctrs: Vec<Ctr>,
    start_time: Option<String>,
    last_posted: Option<Value>,
    terminal_done: bool,
    first_sync: bool,
    volumes: Option<HashMap<String, VolumeDir>>,
    volumes_at: Option<Instant>,
    volume_error: Option<String>,
    sandbox_error: Option<String>,
    image_backoff: HashMap<String, (Instant, Duration, String)>,
    /// activeDeadlineSeconds passed: the pod is Failed.
    deadline_exceeded: bool,
    /// Runs probes and hooks (made for the pod's runtime on first use).
    prober: Option<Arc<RealProber>>,
    /// Probe results come back here from their tasks.
    probe_tx: mpsc::UnboundedSender<ProbeResult>,
    probe_rx: mpsc::UnboundedReceiver<ProbeResult>,
}

/// One probe's result, for container `name`'s instance `id`.
struct ProbeResult {
    name: String,
    id: String,
    kind: Kind,
    outcome: Outcome,
}

fn jget<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(path)
}

impl PodWorker {
    pub fn new(agent: Arc<Agent>, pod: Pod) -> PodWorker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        PodWorker {
            prober: None,
            probe_tx,
            probe_rx,
            rt: agent.rt.clone(),
            runtime_scheme: agent.runtime_name.clone(),
            agent,
            uid,
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| Ctr::new(&c.name))
                .collect(),
            ctrs: spec.containers.iter().map(|c| Ctr::new(&c.name)).collect(),
            pod,
            sandbox: None,
            pod_ips: Vec::new(),
            start_time: None,
            last_posted: None,
            terminal_done: false,
            first_sync: true,
            volumes: None,
            volumes_at: None,
            volume_error: None,
            sandbox_error: None,
            image_backoff: HashMap::new(),
            deadline_exceeded: false,
        }
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn obj_ref(&self) -> ObjectRef {
        ObjectRef::pod(&self.namespace(), &self.name(), &self.uid)
    }

    /// Record an event without waiting for it.
    fn event(&self, type_: &str, reason: &str, message: String) {
        let rec = self.agent.recorder.clone();
        let obj = self.obj_ref();
        let reason = reason.to_string();
        let type_ = type_.to_string();
        tokio::spawn(async move { rec.record(&obj, &type_, &reason, &message).await });
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn spec_container(&self, init: bool, name: &str) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        if init {
            spec.init_containers
                .iter()
                .flatten()
                .find(|c| c.name == name)
                .cloned()
        } else {
            spec.containers.iter().find(|c| c.name == name).cloned()
        }
    }

    fn pod_dir(&self) -> PathBuf {
        self.agent.dirs.pod(&self.uid)
    }

    fn qos(&self) -> QosClass {
        match util::qos_class(&self.pod) {
            "Guaranteed" => QosClass::Guaranteed,
            "Burstable" => QosClass::Burstable,
            _ => QosClass::BestEffort,
        }
    }

    /// The worker loop: sync on every change of the pod and on timers,
    /// until the pod is deleted and cleaned up.
    pub async fn run(mut self, mut rx: watch::Receiver<Input>) {
        loop {
            let input = rx.borrow_and_update().clone();
            self.pod = input.pod;
            if input.gone || self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate(input.gone).await;
                return;
            }
            let next = self.sync().await;
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                Some(r) = self.probe_rx.recv() => self.probe_done(r).await,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    // ------------------------------------------------------------------
    // Sync.

    async fn sync(&mut self) -> Duration {
        if self.first_sync {
            self.first_sync = false;
            self.adopt();
        }
        if self.start_time.is_none() {
            self.start_time = Some(now());
        }
        if self.terminal_done {
            self.post_status().await;
            return Duration::from_secs(300);
        }
        self.poll_exits().await;
        if !self.deadline_exceeded && self.deadline_left() == Some(Duration::ZERO) {
            self.deadline_exceeded = true;
            let msg = "Pod was active on the node longer than the specified deadline";
            self.event("Normal", "DeadlineExceeded", msg.to_string());
            self.stop_all().await;
            self.poll_exits().await;
        }
        let phase = self.phase();
        if phase == "Succeeded" || phase == "Failed" {
            self.post_status().await;
            self.teardown_runtime().await;
            self.sandbox = None;
            self.terminal_done = true;
            self.post_status().await;
            return Duration::from_secs(300);
        }
        if !self.ensure_sandbox().await || !self.ensure_volumes().await {
            self.post_status().await;
            return Duration::from_secs(2);
        }
        self.restart_changed().await;
        // Init containers, in order.
        let mut init_done = true;
        for i in 0..self.init.len() {
            if self.init[i].succeeded() {
                continue;
            }
            init_done = false;
            if self.init[i].running.is_none() && self.due(true, i) {
                self.start(true, i).await;
            }
            break;
        }
        if init_done {
            for i in 0..self.ctrs.len() {
                if self.ctrs[i].running.is_none() && self.due(false, i) {
                    self.start(false, i).await;
                }
            }
        }
        // A container may have died right away (create failure).
        self.poll_exits().await;
        self.launch_probes();
        self.post_status().await;
        self.next_wake()
    }

    /// Containers whose image changed in the spec (the only mutable
    /// container field) are stopped and started again, like upstream's
    /// "definition changed".
    async fn restart_changed(&mut self) {
        let grace = Duration::from_secs(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64,
        );
        let mut stops = Vec::new();
        for i in 0..self.ctrs.len() {
            let name = self.ctrs[i].name.clone();
            let want = self
                .spec_container(false, &name)
                .and_then(|c| c.image)
                .unwrap_or_default();
            let Some(inst) = &self.ctrs[i].running else {
                continue;
            };
            if inst.image.is_empty() || inst.image == want {
                continue;
            }
            self.event(
                "Normal",
                "Killing",
                format!("Container {name} definition changed, will be restarted"),
            );
            let handle = inst.handle.clone();
            self.ctrs[i].force_restart = true;
            stops.push(self.stop_task(false, &name, handle, grace));
        }
        for s in stops {
            let _ = s.await;
        }
        self.poll_exits().await;
    }

    /// Should container `i` be (re)started now?
    fn due(&self, init: bool, i: usize) -> bool {
        let c = if init { &self.init[i] } else { &self.ctrs[i] };
        if c.running.is_some() || (c.term.is_some() && !c.pending_restart) {
            return false;
        }
        let now = Instant::now();
        if c.restart_at.is_some_and(|t| t > now) || c.retry_at.is_some_and(|t| t > now) {
            return false;
        }
        true
    }

    /// Time left before activeDeadlineSeconds (None: no deadline).
    fn deadline_left(&self) -> Option<Duration> {
        let secs = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let start = chrono::DateTime::parse_from_rfc3339(self.start_time.as_deref()?).ok()?;
        let end = start + chrono::Duration::seconds(secs);
        let left = end.signed_duration_since(chrono::Utc::now());
        Some(left.to_std().unwrap_or(Duration::ZERO))
    }

    /// Stop every running container with the pod's grace period.
    async fn stop_all(&mut self) {
        let grace = Duration::from_secs(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64,
        );
        let running: Vec<(bool, String, ShimHandle)> = self
            .init
            .iter()
            .map(|c| (true, c))
            .chain(self.ctrs.iter().map(|c| (false, c)))
            .filter_map(|(init, c)| {
                Some((init, c.name.clone(), c.running.as_ref()?.handle.clone()))
            })
            .collect();
        let mut stops = Vec::new();
        for (init, name, handle) in running {
            self.event("Normal", "Killing", format!("Stopping container {name}"));
            stops.push(self.stop_task(init, &name, handle, grace));
        }
        for s in stops {
            let _ = s.await;
        }
    }

    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let mut next = Duration::from_secs(10);
        if let Some(left) = self.deadline_left() {
            next = next.min(left + Duration::from_millis(5));
        }
        for c in self.init.iter().chain(self.ctrs.iter()) {
            if let Some(r) = &c.running {
                // Short-lived containers are common: look often at first.
                let poll = if r.started.elapsed() < Duration::from_secs(5) {
                    POLL
                } else {
                    POLL_SLOW
                };
                next = next.min(poll);
            }
            let probe_at = c.probes.as_ref().and_then(|p| p.next_due());
            for t in [c.restart_at, c.retry_at, probe_at].into_iter().flatten() {
                next = next.min(t.saturating_duration_since(now) + Duration::from_millis(5));
            }
        }
        for (until, _, _) in self.image_backoff.values() {
            next = next.min(until.saturating_duration_since(now) + Duration::from_millis(5));
        }
        next.max(Duration::from_millis(5))
    }

    /// Re-attach to what an earlier agent left for this pod, from the
    /// status it posted: running containers keep running.
    fn adopt(&mut self) {
        let Ok(status) = serde_json::to_value(&self.pod.status) else {
            return;
        };
        if status.is_null() {
            return;
        }
        self.start_time = status["startTime"].as_str().map(str::to_string);
        let sb_dir = self.rt.sandbox_dir(&self.uid);
        if let Ok(sb) = PodSandbox::load(&sb_dir) {
            self.sandbox = Some(sb);
            self.pod_ips = crate::network::Attachment::load(&sb_dir)
                .map(|a| a.ips())
                .unwrap_or_default();
        }
        // The scheme of any container ID says which handler ran the pod.
        let scheme = ["containerStatuses", "initContainerStatuses"]
            .iter()
            .flat_map(|k| status[*k].as_array().into_iter().flatten())
            .find_map(|cs| {
                cs["containerID"]
                    .as_str()?
                    .split_once("://")
                    .map(|(s, _)| s.to_string())
            });
        if let Some(h) = scheme.and_then(|s| self.agent.handler_by_scheme(&s)) {
            self.rt = h.rt;
            self.runtime_scheme = h.scheme;
        }
        let rt_prefix = format!("{}://", self.runtime_scheme);
        for (key, init) in [
            ("initContainerStatuses", true),
            ("containerStatuses", false),
        ] {
            for cs in status[key].as_array().into_iter().flatten() {
                let name = cs["name"].as_str().unwrap_or("");
                let list = if init { &mut self.init } else { &mut self.ctrs };
                let Some(c) = list.iter_mut().find(|c| c.name == name) else {
                    continue;
                };
                c.restart_count = cs["restartCount"].as_i64().unwrap_or(0) as i32;
                c.image_id = cs["imageID"].as_str().unwrap_or("").to_string();
                c.last_term = jget(cs, "/lastState/terminated").and_then(Term::from_json);
                if let Some(r) = jget(cs, "/state/running") {
                    let id = cs["containerID"]
                        .as_str()
                        .and_then(|s| s.strip_prefix(&rt_prefix))
                        .unwrap_or("")
                        .to_string();
                    let bundle = self.rt.bundle_dir(&id);
                    if !id.is_empty() {
                        if let Ok(handle) = ShimHandle::open(&bundle) {
                            c.running = Some(Instance {
                                id,
                                handle,
                                started_at: r["startedAt"].as_str().unwrap_or("").to_string(),
                                started: Instant::now(),
                                image: cs["image"].as_str().unwrap_or("").to_string(),
                                _lease: None,
                            });
                            continue;
                        }
                    }
                    // Its container is gone: start it again.
                    c.pending_restart = true;
                } else if let Some(t) = jget(cs, "/state/terminated").and_then(Term::from_json) {
                    c.term = Some(t);
                } else if c.last_term.is_some() {
                    c.pending_restart = true;
                    c.backoff = BACKOFF_INITIAL;
                }
            }
        }
        tracing::info!(pod = %pod_desc(&self.pod), "adopted pod state from its status");
    }

    async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        if spec.host_users == Some(false) {
            // No user-namespace support yet: refuse rather than run the
            // pod with host users, which it asked not to.
            self.sandbox_failed(
                "user namespaces (hostUsers: false) are not supported by this node".into(),
            );
            return false;
        }
        if let Err(msg) = self
            .resolve_runtime_class(spec.runtime_class_name.as_deref())
            .await
        {
            self.sandbox_failed(msg);
            return false;
        }
        let host_network = spec.host_network.unwrap_or(false);
        let dir = self.pod_dir();
        let hostname = if host_network {
            crate::host::hostname()
        } else {
            let mut h = spec.hostname.clone().unwrap_or_else(|| self.name());
            h.truncate(63);
            h.trim_end_matches(['-', '.']).to_string()
        };
        let files = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                dir.join("pod.json"),
                serde_json::to_vec(
                    &json!({"namespace": self.namespace(), "name": self.name(), "uid": self.uid}),
                )?,
            )?;
            let hosts = if host_network {
                std::fs::read_to_string("/etc/hosts").unwrap_or_default()
            } else {
                let mut h = String::from(
                    "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
                );
                for ha in spec.host_aliases.iter().flatten() {
                    h.push_str(&format!(
                        "\n# Entries added by HostAliases.\n{}\t{}\n",
                        ha.ip,
                        ha.hostnames.clone().unwrap_or_default().join("\t")
                    ));
                }
                h
            };
            std::fs::write(dir.join("etc-hosts"), hosts)?;
            std::fs::write(dir.join("etc-hostname"), format!("{hostname}\n"))?;
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let resolv =
                crate::dns::resolv_conf(&spec, &self.namespace(), &host_resolv, &self.agent.dns);
            std::fs::write(dir.join("resolv.conf"), resolv)?;
            Ok(())
        })();
        if let Err(e) = files {
            self.sandbox_failed(format!("writing pod files in {}: {e}", dir.display()));
            return false;
        }
        if !host_network {
            if let Err(e) = self.agent.network.wait_ready(Duration::from_secs(5)).await {
                tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "pod network");
                self.event("Warning", "NetworkNotReady", e.to_string());
                self.sandbox_error = Some(e.to_string());
                return false;
            }
        }
        let qos = self.qos();
        let res: Vec<Resources> = spec
            .containers
            .iter()
            .map(|c| self.resources(c, qos))
            .collect();
        let req = SandboxRequest {
            id: self.uid.clone(),
            pod_uid: self.uid.clone(),
            hostname,
            qos,
            resources: pod_resources(&res, qos),
            options: SandboxOptions {
                host_network,
                host_ipc: spec.host_ipc.unwrap_or(false),
            },
        };
        let rt = self.rt.clone();
        let r = tokio::task::spawn_blocking(move || rt.run_pod_sandbox(&req)).await;
        match r {
            Ok(Ok(sb)) => {
                if let Err(msg) = self.setup_network(&sb, &dir).await {
                    self.sandbox_failed(msg);
                    return false;
                }
                self.sandbox = Some(sb);
                self.sandbox_error = None;
                true
            }
            Ok(Err(e)) => {
                self.sandbox_failed(e.to_string());
                false
            }
            Err(e) => {
                self.sandbox_failed(e.to_string());
                false
            }
        }
    }

    /// CNI ADD on a new sandbox's netns, then the pod's own line in its
    /// /etc/hosts. On failure the sandbox is removed again (a retry
    /// starts afresh) and the error is containerd's text.
    async fn setup_network(
        &mut self,
        sb: &PodSandbox,
        pod_dir: &std::path::Path,
    ) -> Result<(), String> {
        let Some(netns) = sb.netns.clone() else {
            return Ok(());
        };
        let req = crate::network::PodNet {
            namespace: self.namespace(),
            name: self.name(),
            uid: self.uid.clone(),
            sandbox_id: sb.id.clone(),
            netns,
            sandbox_dir: sb.dir.clone(),
            port_mappings: crate::network::port_mappings(&self.pod),
        };
        let net = self.agent.network.clone();
        let r = tokio::task::spawn_blocking(move || net.setup(&req)).await;
        let e = match r {
            Ok(Ok(ips)) => {
                let hosts = pod_dir.join("etc-hosts");
                let text = std::fs::read_to_string(&hosts).unwrap_or_default();
                let updated = crate::network::hosts_with_pod_ips(&text, &ips, &sb.hostname);
                if let Err(e) = std::fs::write(&hosts, updated) {
                    tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "writing the pod's /etc/hosts");
                }
                tracing::debug!(pod = %pod_desc(&self.pod), ips = ?ips, "pod network set up");
                self.pod_ips = ips;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let agent = self.agent.clone();
        let uid = self.uid.clone();
        let _ = tokio::task::spawn_blocking(move || agent.teardown_pod(&uid, false)).await;
        Err(format!(
            "rpc error: code = Unknown desc = failed to setup network for sandbox \"{}\": {e}",
            sb.id
        ))
    }

    /// Pick the runtime of the pod's RuntimeClass (its handler), like the
    /// kubelet's RuntimeClass manager; no class means the default handler.
    async fn resolve_runtime_class(&mut self, class: Option<&str>) -> Result<(), String> {
        let Some(class) = class.filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        let api: kube::Api<k8s_openapi::api::node::v1::RuntimeClass> =
            kube::Api::all(self.agent.client.clone());
        let rc = match api.get_opt(class).await {
            Ok(Some(rc)) => rc,
            Ok(None) => return Err(format!("RuntimeClass {class:?} not found")),
            Err(e) => return Err(format!("looking up RuntimeClass {class:?}: {e}")),
        };
        let h = self.agent.handler(&rc.handler).map_err(|e| {
            format!("rpc error: code = Unknown desc = failed to get sandbox runtime: {e}")
        })?;
        self.rt = h.rt;
        self.runtime_scheme = h.scheme;
        Ok(())
    }

    fn sandbox_failed(&mut self, msg: String) {
        tracing::warn!(pod = %pod_desc(&self.pod), error = %msg, "pod sandbox");
        self.event(
            "Warning",
            "FailedCreatePodSandBox",
            format!("Failed to create pod sandbox: {msg}"),
        );
        self.sandbox_error = Some(msg);
    }

    async fn ensure_volumes(&mut self) -> bool {
        let fresh = self
            .volumes_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if self.volumes.is_some() && fresh {
            return true;
        }
        if self.volumes.is_none() && self.volume_error.is_some() {
            // Retry a failed set-up at most every 2 s.
            if self
                .volumes_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
            {
                return false;
            }
        }
        let mut sources = Sources::new(self.agent.client.clone(), &self.namespace());
        let dir = self.pod_dir();
        let r = volumes::setup(
            &self.pod,
            &dir,
            &mut sources,
            &self.agent.host_ip,
            Some(self.rt.mounter.as_ref()),
        )
        .await;
        self.volumes_at = Some(Instant::now());
        match r {
            Ok(v) => {
                self.volumes = Some(v);
                self.volume_error = None;
                true
            }
            Err(msg) => {
                if self.volume_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(pod = %pod_desc(&self.pod), error = %msg, "volumes");
                }
                self.event("Warning", "FailedMount", msg.clone());
                self.volume_error = Some(msg);
                // Running containers keep their (older) volume content.
                self.volumes.is_some()
            }
        }
    }

    fn resources(&self, c: &Container, qos: QosClass) -> Resources {
        let mem_capacity = crate::host::meminfo("MemTotal").unwrap_or(1).max(1) as i64;
        let oom = match qos {
            QosClass::Guaranteed => -997,
            QosClass::BestEffort => 1000,
            QosClass::Burstable => {
                let req = request(c, "memory").and_then(|q| whole(&q)).unwrap_or(0);
                let adj = 1000 - (1000i128 * req as i128 / mem_capacity as i128) as i64;
                adj.clamp(2, 999) as i32
            }
        };
        Resources {
            cpu_request_milli: request(c, "cpu").and_then(|q| milli(&q)),
            cpu_limit_milli: limit(c, "cpu").and_then(|q| milli(&q)),
            memory_limit_bytes: limit(c, "memory").and_then(|q| whole(&q)),
            pids_limit: None,
            oom_score_adj: Some(oom),
        }
    }

    fn security(&self, c: &Container) -> SecurityContext {
        let psc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let mut groups: Vec<u32> = psc
            .supplemental_groups
            .iter()
            .flatten()
            .map(|g| *g as u32)
            .collect();
        if let Some(g) = psc.fs_group {
            groups.push(g as u32);
        }
        let caps = csc.capabilities.clone().unwrap_or_default();
        SecurityContext {
            privileged: csc.privileged.unwrap_or(false),
            run_as_user: csc.run_as_user.or(psc.run_as_user).map(|u| u as u32),
            run_as_group: csc.run_as_group.or(psc.run_as_group).map(|g| g as u32),
            run_as_non_root: csc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false),
            supplemental_groups: groups,
            read_only_root_filesystem: csc.read_only_root_filesystem.unwrap_or(false),
            allow_privilege_escalation: csc.allow_privilege_escalation,
            capabilities_add: caps.add.unwrap_or_default(),
            capabilities_drop: caps.drop.unwrap_or_default(),
            proc_mount_unmasked: csc.proc_mount.as_deref() == Some("Unmasked"),
        }
    }

    /// Pull (per policy) the image of `c`. Err: (waiting reason, message).
    async fn ensure_image(&mut self, c: &Container) -> Result<ImageInfo, (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err(("InvalidImageName".into(), "image is empty".into()));
        }
        let reference = match Reference::parse(&image) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("Failed to apply default image tag {image:?}: {e}");
                self.event("Warning", "InspectFailed", msg.clone());
                return Err(("InvalidImageName".into(), msg));
            }
        };
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if reference.digest.is_none() && reference.tag.as_deref().is_none_or(|t| t == "latest")
            {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        // Present with every layer on disk (another process may have
        // removed it from the store).
        let present = self.agent.images.get(&image).filter(|info| {
            let dirs = self.agent.images.layer_dirs(info);
            dirs.len() == info.layers.len() && dirs.iter().all(|d| d.is_dir())
        });
        match (policy.as_str(), present) {
            ("Never", None) => {
                let msg =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.event("Warning", "ErrImageNeverPull", msg.clone());
                return Err(("ErrImageNeverPull".into(), msg));
            }
            ("Never" | "IfNotPresent", Some(info)) => {
                self.event(
                    "Normal",
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                return Ok(info);
            }
            _ => {}
        }
        if let Some((until, _, err)) = self.image_backoff.get(&image) {
            if *until > Instant::now() {
                let msg = format!("Back-off pulling image {image:?}: ErrImagePull: {err}");
                self.event(
                    "Normal",
                    "BackOff",
                    format!("Back-off pulling image {image:?}"),
                );
                return Err(("ImagePullBackOff".into(), msg));
            }
        }
        let creds = self.pull_credentials(&reference.domain).await;
        // A pull may take a while: show ContainerCreating meanwhile.
        self.post_status().await;
        self.event("Normal", "Pulling", format!("Pulling image {image:?}"));
        let t0 = Instant::now();
        match self.agent.images.pull(&image, creds).await {
            Ok(info) => {
                let d = util::human_duration(t0.elapsed());
                self.event(
                    "Normal",
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {d} ({d} including waiting). Image size: {} bytes.",
                        info.size
                    ),
                );
                self.image_backoff.remove(&image);
                Ok(info)
            }
            Err(e) => {
                let msg = format!("failed to pull and unpack image {image:?}: {e}");
                self.event(
                    "Warning",
                    "Failed",
                    format!("Failed to pull image {image:?}: {msg}"),
                );
                self.event("Warning", "Failed", format!("Error: {}", e.reason()));
                let delay = match self.image_backoff.get(&image) {
                    Some((_, d, _)) => (*d * 2).min(BACKOFF_MAX),
                    None => BACKOFF_INITIAL,
                };
                self.image_backoff
                    .insert(image.clone(), (Instant::now() + delay, delay, msg.clone()));
                Err((e.reason().to_string(), msg))
            }
        }
    }

    async fn pull_credentials(&self, domain: &str) -> Option<Credentials> {
        let spec = self.pod.spec.as_ref()?;
        let api: Api<Secret> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        for r in spec.image_pull_secrets.iter().flatten() {
            let Ok(Some(s)) = api.get_opt(&r.name).await else {
                continue;
            };
            let data = s.data.unwrap_or_default();
            for key in [".dockerconfigjson", ".dockercfg"] {
                if let Some(b) = data.get(key) {
                    if let Ok(Some(c)) = Credentials::from_docker_config_json(&b.0, domain) {
                        return Some(c);
                    }
                }
            }
        }
        None
    }

    fn ctr_mut(&mut self, init: bool, i: usize) -> &mut Ctr {
        if init {
            &mut self.init[i]
        } else {
            &mut self.ctrs[i]
        }
    }

    fn set_waiting(&mut self, init: bool, i: usize, reason: &str, msg: String, retry: Duration) {
        let c = self.ctr_mut(init, i);
        c.waiting = Some((reason.to_string(), msg));
        c.retry_at = Some(Instant::now() + retry);
    }

    /// Create and start container `i`.
    async fn start(&mut self, init: bool, i: usize) {
        let name = if init {
            self.init[i].name.clone()
        } else {
            self.ctrs[i].name.clone()
        };
        let Some(spec_c) = self.spec_container(init, &name) else {
            return;
        };
        // Image.
        let info = match self.ensure_image(&spec_c).await {
            Ok(info) => info,
            Err((reason, msg)) => {
                let retry = match reason.as_str() {
                    // Shown until the next sync, which reports the back-off.
                    "ErrImagePull" | "RegistryUnavailable" => Duration::from_secs(1),
                    "ImagePullBackOff" => self
                        .image_backoff
                        .get(spec_c.image.as_deref().unwrap_or(""))
                        .map(|(u, _, _)| u.saturating_duration_since(Instant::now()))
                        .unwrap_or(BACKOFF_INITIAL),
                    _ => Duration::from_secs(5),
                };
                self.set_waiting(init, i, &reason, msg, retry);
                return;
            }
        };
        // Env and command.
        let mut sources = Sources::new(self.agent.client.clone(), &self.namespace());
        let env =
            match crate::env::container_env(&self.pod, &spec_c, &mut sources, &self.agent.host_ip)
                .await
            {
                Ok(e) => e,
                Err(msg) => {
                    self.event("Warning", "Failed", format!("Error: {msg}"));
                    self.set_waiting(
                        init,
                        i,
                        "CreateContainerConfigError",
                        msg,
                        Duration::from_secs(2),
                    );
                    return;
                }
            };
        let (command, args) = crate::env::expand_command(&spec_c, &env);
        let mounts = match self.mounts(&spec_c) {
            Ok(m) => m,
            Err(msg) => {
                self.event("Warning", "Failed", format!("Error: {msg}"));
                self.set_waiting(
                    init,
                    i,
                    "CreateContainerConfigError",
                    msg,
                    Duration::from_secs(2),
                );
                return;
            }
        };
        let qos = self.qos();
        let config = ContainerConfig {
            name: name.clone(),
            command,
            args,
            env,
            working_dir: spec_c.working_dir.clone().filter(|w| !w.is_empty()),
            resources: self.resources(&spec_c, qos),
            security: self.security(&spec_c),
            mounts,
            stdin: spec_c.stdin.unwrap_or(false),
            stdin_once: spec_c.stdin_once.unwrap_or(false),
            tty: spec_c.tty.unwrap_or(false),
        };
        let (restart_count, pending) = {
            let c = self.ctr_mut(init, i);
            (c.restart_count, c.pending_restart)
        };
        let attempt = if pending {
            restart_count + 1
        } else {
            restart_count
        };
        let id = format!("{}-{}-{}", self.uid, name, attempt);
        let log_path = self
            .agent
            .dirs
            .logs(&self.namespace(), &self.name(), &self.uid)
            .join(&name)
            .join(format!("{attempt}.log"));
        let mut config = config;
        if let Some(m) = self.termination_mount(&spec_c, attempt) {
            config.mounts.push(m);
        }
        let req = ContainerRequest {
            id: id.clone(),
            image: ImageConfig {
                entrypoint: info.config.entrypoint.clone(),
                cmd: info.config.cmd.clone(),
                env: info.config.env.clone(),
                working_dir: Some(info.config.working_dir.clone()).filter(|w| !w.is_empty()),
                user: Some(info.config.user.clone()).filter(|u| !u.is_empty()),
            },
            layers: self.agent.images.layer_dirs(&info),
            config,
            log_path,
        };
        let lease = self.agent.images.lease(&info);
        let image_id = info
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| info.id.clone());
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let rt = self.rt.clone();
        let started = tokio::task::spawn_blocking(move || {
            // A leftover of an interrupted attempt.
            if rt.bundle_dir(&req.id).exists() {
                let _ = rt.remove_container(&req.id);
            }
            let h = rt.create_container(&sb, &req).map_err(|e| (e, None))?;
            let created = chrono::Utc::now();
            if let Err(e) = rt.start_container(&h) {
                let _ = rt.remove_container(&req.id);
                return Err((e, Some(created)));
            }
            Ok((h, created))
        })
        .await;
        let started = match started {
            Ok(Ok(r)) => Ok(r),
            Ok(Err((e, _))) => Err(e),
            Err(join) => Err(bosun_runtime::Error::Shim(join.to_string())),
        };
        let cid = format!("{}://{}", self.runtime_scheme, id);
        {
            let c = self.ctr_mut(init, i);
            c.image_id = image_id;
            if pending {
                c.restart_count += 1;
                c.pending_restart = false;
                c.last_term = c.term.take().or(c.last_term.take());
            }
            c.restart_at = None;
            c.retry_at = None;
        }
        match started {
            Ok((handle, _created)) => {
                self.event("Normal", "Created", format!("Created container: {name}"));
                self.event("Normal", "Started", format!("Started container {name}"));
                let c = self.ctr_mut(init, i);
                c.waiting = None;
                c.term = None;
                c.running = Some(Instance {
                    id,
                    handle,
                    started_at: now(),
                    started: Instant::now(),
                    image: spec_c.image.clone().unwrap_or_default(),
                    _lease: Some(lease),
                });
                c.probes = None;
                self.post_start(init, i, &spec_c).await;
            }
            Err(bosun_runtime::Error::InvalidConfig(msg)) => {
                // Nothing was created: a config problem.
                let msg = format!("{msg} (pod: {:?}, container: {name})", pod_desc(&self.pod));
                self.event("Warning", "Failed", format!("Error: {msg}"));
                self.set_waiting(
                    init,
                    i,
                    "CreateContainerConfigError",
                    msg,
                    Duration::from_secs(5),
                );
            }
            Err(e) => {
                // The runtime could not run it: a failed start, which the
                // restart policy handles like an exit.
                let msg = e.to_string();
                self.event("Warning", "Failed", format!("Error: {msg}"));
                let t = Term {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(msg),
                    started_at: Some(util::rfc3339(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)),
                    finished_at: now(),
                    container_id: cid,
                };
                self.on_exit(init, i, t, Duration::ZERO);
            }
        }
    }

    fn mounts(&self, c: &Container) -> Result<Vec<BindMount>, String> {
        let mut out = Vec::new();
        let vols = self.volumes.clone().unwrap_or_default();
        let mut targets = Vec::new();
        for vm in c.volume_mounts.iter().flatten() {
            let Some(v) = vols.get(&vm.name) else {
                return Err(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    vm.name, c.name
                ));
            };
            let mut host = v.host_path.clone();
            let sub = vm
                .sub_path
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| vm.sub_path_expr.clone().filter(|s| !s.is_empty()));
            if let Some(sub) = sub {
                if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                host = host.join(&sub);
                if std::fs::symlink_metadata(&host).is_err() {
                    std::fs::create_dir_all(&host)
                        .map_err(|e| format!("failed to create subPath directory for volumeMount {:?} of container {:?}: {e}", vm.name, c.name))?;
                }
            }
            targets.push(vm.mount_path.clone());
            out.push(BindMount {
                host_path: host,
                container_path: PathBuf::from(&vm.mount_path),
                read_only: vm.read_only.unwrap_or(false) || v.force_read_only,
            });
        }
        let dir = self.pod_dir();
        for (file, target) in [
            ("etc-hosts", "/etc/hosts"),
            ("etc-hostname", "/etc/hostname"),
            ("resolv.conf", "/etc/resolv.conf"),
        ] {
            if !targets.iter().any(|t| t.trim_end_matches('/') == target) {
                out.push(BindMount {
                    host_path: dir.join(file),
                    container_path: target.into(),
                    read_only: false,
                });
            }
        }
        Ok(out)
    }

    /// Check running containers for exits.
    async fn poll_exits(&mut self) {
        for init in [true, false] {
            let n = if init {
                self.init.len()
            } else {
                self.ctrs.len()
            };
            for i in 0..n {
                let Some(inst) = self.ctr_mut(init, i).running.as_ref() else {
                    continue;
                };
                let st = match inst.handle.wait(Duration::ZERO) {
                    Ok(Some(st)) => st,
                    Ok(None) => continue,
                    Err(e) => {
                        // The shim died without recording an exit.
                        tracing::warn!(id = %inst.id, error = %e, "container shim gone");
                        ContainerStatus {
                            id: inst.id.clone(),
                            state: ShimState::Exited,
                            shim_pid: 0,
                            pid: 0,
                            created_at: chrono::Utc::now(),
                            exit_code: Some(255),
                            signal: None,
                            finished_at: Some(chrono::Utc::now()),
                            oom_killed: false,
                            message: Some(e.to_string()),
                        }
                    }
                };
                let inst = self.ctr_mut(init, i).running.take().expect("running");
                self.ctr_mut(init, i).probes = None;
                let ran = inst.started.elapsed();
                let reason = st.reason().unwrap_or("Error").to_string();
                let exit_code = st.exit_code.unwrap_or(255);
                let tmsg = self.read_termination_message(init, i, &inst.id, exit_code, &reason);
                let message = match (st.message.clone(), tmsg) {
                    (Some(m), Some(t)) => Some(format!("{m}: {t}")),
                    (m, t) => m.or(t),
                };
                let t = Term {
                    exit_code,
                    signal: None,
                    reason,
                    message,
                    started_at: Some(inst.started_at.clone()),
                    finished_at: st.finished_at.map(util::rfc3339).unwrap_or_else(now),
                    container_id: format!("{}://{}", self.runtime_scheme, inst.id),
                };
                let rt = self.rt.clone();
                let id = inst.id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = rt.remove_container(&id) {
                        tracing::warn!(id = %id, error = %e, "removing exited container");
                    }
                })
                .await;
                drop(inst);
                self.on_exit(init, i, t, ran);
            }
        }
    }

    /// Apply the restart policy to a terminated container.
    fn on_exit(&mut self, init: bool, i: usize, t: Term, ran: Duration) {
        let policy = self.restart_policy();
        let failed = t.exit_code != 0;
        let restart = match policy.as_str() {
            _ if self.deadline_exceeded => false,
            "Never" => false,
            "OnFailure" => failed,
            // Init containers (not sidecars) run to completion.
            _ => !init || failed,
        };
        let desc = pod_desc(&self.pod);
        let deadline_exceeded = self.deadline_exceeded;
        let c = self.ctr_mut(init, i);
        c.waiting = None;
        if c.force_restart && !deadline_exceeded {
            c.force_restart = false;
            c.term = Some(t);
            c.pending_restart = true;
            c.restart_at = None;
            return;
        }
        if !restart {
            c.term = Some(t);
            return;
        }
        if ran >= BACKOFF_RESET {
            c.backoff = Duration::ZERO;
        }
        c.term = Some(t);
        c.pending_restart = true;
        if c.backoff.is_zero() {
            c.restart_at = None;
            c.backoff = BACKOFF_INITIAL;
        } else {
            let delay = c.backoff;
            c.restart_at = Some(Instant::now() + delay);
            c.waiting = Some((
                "CrashLoopBackOff".into(),
                format!(
                    "back-off {} restarting failed container={} pod={desc}",
                    fmt_backoff(delay),
                    c.name
                ),
            ));
            c.backoff = (delay * 2).min(BACKOFF_MAX);
            let name = c.name.clone();
            self.event(
                "Warning",
                "BackOff",
                format!("Back-off restarting failed container {name} in pod {desc}"),
            );
        }
    }

    // ------------------------------------------------------------------
    // Probes, hooks, termination messages.

    /// The prober for the pod's runtime (RuntimeClass may change it).
    fn prober(&mut self) -> Arc<RealProber> {
        match &self.prober {
            Some(p) if p.runtime == self.rt.config.runtime => p.clone(),
            _ => {
                let p = Arc::new(RealProber::new(
                    self.rt.config.runtime.clone(),
                    self.pod_dir().join("exec"),
                ));
                self.prober = Some(p.clone());
                p
            }
        }
    }

    /// Where handlers for instance `id` of `spec_c` run.
    fn target(&self, spec_c: Option<&Container>, id: &str) -> Target {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        Target {
            container_id: id.to_string(),
            netns: self.sandbox.as_ref().and_then(|sb| sb.netns.clone()),
            pod_ip: match self.pod_ips.first() {
                Some(ip) if !host_network => *ip,
                _ => probe::pod_address(host_network, &self.agent.host_ip),
            },
            ports: spec_c.and_then(|c| c.ports.clone()).unwrap_or_default(),
        }
    }

    fn pod_grace(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0)
    }

    /// Stop a container like the kubelet: its preStop hook (inside the
    /// grace period), then SIGTERM, the rest of the grace period, SIGKILL.
    fn stop_task(
        &mut self,
        init: bool,
        name: &str,
        handle: ShimHandle,
        grace: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let spec_c = self.spec_container(init, name);
        let pre_stop = spec_c
            .as_ref()
            .and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref())
            .and_then(Handler::of_hook);
        let target = self.target(spec_c.as_ref(), &handle.id);
        let prober = self.prober();
        let rt = self.rt.clone();
        let rec = self.agent.recorder.clone();
        let obj = self.obj_ref();
        let pod = probe::format_pod(&self.name(), &self.namespace(), &self.uid);
        let name = name.to_string();
        tokio::spawn(async move {
            let mut grace = grace;
            if let Some(h) = pre_stop.filter(|_| !grace.is_zero()) {
                let t0 = Instant::now();
                let hp = probe::HookProber(&prober);
                if let Err(msg) = probe::run_hook(&hp, &target, &h, &name, &pod, grace).await {
                    rec.record(&obj, "Warning", "FailedPreStopHook", &msg).await;
                }
                // Upstream leaves at least 2 s after the hook.
                grace = grace
                    .saturating_sub(t0.elapsed())
                    .max(Duration::from_secs(2));
            }
            let r = tokio::task::spawn_blocking(move || {
                rt.stop_container(&handle, grace)
                    .map_err(|e| (handle.id.clone(), e))
            })
            .await;
            if let Ok(Err((id, e))) = r {
                tracing::warn!(id = %id, error = %e, "stopping container");
            }
        })
    }

    /// Run the postStart hook of a just-started container; on failure the
    /// container is killed (the restart policy takes it from there).
    async fn post_start(&mut self, init: bool, i: usize, spec_c: &Container) {
        let Some(h) = spec_c
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .and_then(Handler::of_hook)
        else {
            return;
        };
        let Some(handle) = self
            .ctr_mut(init, i)
            .running
            .as_ref()
            .map(|r| r.handle.clone())
        else {
            return;
        };
        let target = self.target(Some(spec_c), &handle.id);
        let prober = self.prober();
        let pod = probe::format_pod(&self.name(), &self.namespace(), &self.uid);
        // Upstream waits for the hook without a limit; a bound keeps a
        // stuck hook from wedging the worker for good.
        let r = probe::run_hook(
            &probe::HookProber(&prober),
            &target,
            &h,
            &spec_c.name,
            &pod,
            POST_START_MAX,
        )
        .await;
        if let Err(msg) = r {
            self.event("Warning", "FailedPostStartHook", msg);
            self.event("Normal", "Killing", "FailedPostStartHook".into());
            let grace = Duration::from_secs(self.pod_grace() as u64);
            // The exit is picked up by the sync's next poll.
            let _ = self.stop_task(init, &spec_c.name, handle, grace).await;
        }
    }

    /// Start the probes that are due (creating a new instance's probes).
    fn launch_probes(&mut self) {
        let now = Instant::now();
        let containers = self
            .pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let mut launches = Vec::new();
        for c in &mut self.ctrs {
            let Some(inst) = &c.running else {
                continue;
            };
            let Some(spec_c) = containers.iter().find(|s| s.name == c.name) else {
                continue;
            };
            let probes = c
                .probes
                .get_or_insert_with(|| ContainerProbes::new(spec_c, inst.started));
            for d in probes.due(now) {
                launches.push((c.name.clone(), inst.id.clone(), d));
            }
        }
        if launches.is_empty() {
            return;
        }
        let prober = self.prober();
        for (name, id, d) in launches {
            let spec_c = containers.iter().find(|s| s.name == name);
            let target = self.target(spec_c, &id);
            let tx = self.probe_tx.clone();
            let prober = prober.clone();
            tokio::spawn(async move {
                let outcome =
                    probe::run_probe(prober.as_ref(), &target, &d.handler, d.timeout).await;
                let _ = tx.send(ProbeResult {
                    name,
                    id,
                    kind: d.kind,
                    outcome,
                });
            });
        }
    }

    /// A probe finished: events, readiness, and a kill when liveness or
    /// startup gave up on the container.
    async fn probe_done(&mut self, r: ProbeResult) {
        let Some(i) = self.ctrs.iter().position(|c| c.name == r.name) else {
            return;
        };
        let Some(handle) = self.ctrs[i]
            .running
            .as_ref()
            .filter(|inst| inst.id == r.id)
            .map(|inst| inst.handle.clone())
        else {
            // From an earlier instance.
            return;
        };
        match &r.outcome {
            Outcome::Success => {}
            Outcome::Failure(out) => self.event(
                "Warning",
                "Unhealthy",
                format!("{} probe failed: {}", r.kind.title(), out.trim_end()),
            ),
            Outcome::Error(e) => self.event(
                "Warning",
                "Unhealthy",
                format!("{} probe errored: {e}", r.kind.title()),
            ),
        }
        let Some(p) = self.ctrs[i].probes.as_mut() else {
            return;
        };
        if let Change::Kill { message, grace, .. } = p.record(r.kind, &r.outcome) {
            tracing::info!(pod = %pod_desc(&self.pod), container = %r.name, "{message}");
            self.event("Normal", "Killing", message);
            let grace = grace.unwrap_or_else(|| self.pod_grace()).max(0) as u64;
            // Detached: the exit is picked up by the next poll.
            drop(self.stop_task(false, &r.name, handle, Duration::from_secs(grace)));
        }
    }

    /// The host file bind-mounted at the container's
    /// terminationMessagePath, one per attempt (upstream does the same).
    fn termination_file(&self, name: &str, attempt: i32) -> PathBuf {
        self.pod_dir()
            .join("containers")
            .join(name)
            .join(attempt.to_string())
    }

    fn termination_mount(&self, c: &Container, attempt: i32) -> Option<BindMount> {
        let path = c
            .termination_message_path
            .clone()
            .filter(|p| p.starts_with('/'))?;
        // A volume mounted there wins.
        let taken = c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.trim_end_matches('/') == path.trim_end_matches('/'));
        if taken {
            return None;
        }
        let file = self.termination_file(&c.name, attempt);
        let made = (|| -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            if let Some(d) = file.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&file, b"")?;
            // Any container user may write its message.
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
        })();
        if let Err(e) = made {
            tracing::warn!(file = %file.display(), error = %e, "termination message file");
            return None;
        }
        Some(BindMount {
            host_path: file,
            container_path: PathBuf::from(path),
            read_only: false,
        })
    }

    /// The terminated state's message: the termination message file, or
    /// with FallbackToLogsOnError after a failure, the log's tail.
    fn read_termination_message(
        &self,
        init: bool,
        i: usize,
        id: &str,
        exit_code: i32,
        reason: &str,
    ) -> Option<String> {
        let name = if init {
            &self.init[i].name
        } else {
            &self.ctrs[i].name
        };
        let spec_c = self.spec_container(init, name)?;
        let attempt: i32 = id.rsplit('-').next()?.parse().ok()?;
        let fallback = spec_c.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError")
            && exit_code != 0
            && reason != "StartError";
        let file = spec_c
            .termination_message_path
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|_| self.termination_file(name, attempt));
        let log = self
            .agent
            .dirs
            .logs(&self.namespace(), &self.name(), &self.uid)
            .join(name)
            .join(format!("{attempt}.log"));
        Some(termination_message(file.as_deref(), fallback, &log)).filter(|m| !m.is_empty())
    }

    // ------------------------------------------------------------------
    // Status.

    fn ctr_status(&self, c: &Ctr, spec_c: Option<&Container>, default_waiting: &str) -> Value {
        let image = spec_c.and_then(|s| s.image.clone()).unwrap_or_default();
        let mut v = json!({
            "name": c.name,
            "image": image,
            "imageID": c.image_id,
            "restartCount": c.restart_count,
            "ready": c.ready(),
            "started": c.started(),
            "lastState": c.last_term.as_ref().map(|t| json!({"terminated": t.to_json()})).unwrap_or(json!({})),
        });
        if let Some(r) = &c.running {
            v["state"] = json!({"running": {"startedAt": r.started_at}});
            v["containerID"] = json!(format!("{}://{}", self.runtime_scheme, r.id));
        } else if let Some((reason, msg)) = &c.waiting {
            let mut w = json!({"reason": reason});
            if !msg.is_empty() {
                w["message"] = json!(msg);
            }
            v["state"] = json!({"waiting": w});
            if let Some(t) = c.term.as_ref().or(c.last_term.as_ref()) {
                v["lastState"] = json!({"terminated": t.to_json()});
                v["containerID"] = json!(t.container_id);
            }
        } else if let Some(t) = &c.term {
            v["state"] = json!({"terminated": t.to_json()});
            v["containerID"] = json!(t.container_id);
        } else {
            v["state"] = json!({"waiting": {"reason": default_waiting}});
        }
        v
    }

    /// The pod phase (upstream `getPhase`).
    fn phase(&self) -> &'static str {
        pod_phase(
            &self.restart_policy(),
            &self.init,
            &self.ctrs,
            self.deadline_exceeded,
        )
    }

    fn build_status(&self) -> Value {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let phase = self.phase();
        let init_done = self.init.iter().all(|c| c.succeeded());
        let regular_default = if init_done {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let init_statuses: Vec<Value> = self
            .init
            .iter()
            .map(|c| {
                let sc = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .find(|s| s.name == c.name);
                let mut v = self.ctr_status(c, sc, "PodInitializing");
                if c.succeeded() {
                    v["ready"] = json!(true);
                }
                v
            })
            .collect();
        let statuses: Vec<Value> = self
            .ctrs
            .iter()
            .map(|c| {
                let sc = spec.containers.iter().find(|s| s.name == c.name);
                self.ctr_status(c, sc, regular_default)
            })
            .collect();
        let prev_conds: Vec<Value> = self
            .last_posted
            .as_ref()
            .and_then(|p| p["conditions"].as_array().cloned())
            .or_else(|| {
                serde_json::to_value(&self.pod.status)
                    .ok()
                    .and_then(|s| s["conditions"].as_array().cloned())
            })
            .unwrap_or_default();
        let api_conds: Vec<Value> = serde_json::to_value(&self.pod.status)
            .ok()
            .and_then(|s| s["conditions"].as_array().cloned())
            .unwrap_or_default();
        let now = now();
        let cond = |t: &str, ok: bool, reason: Option<&str>, msg: Option<String>| {
            let s = if ok { "True" } else { "False" };
            let ltt = prev_conds
                .iter()
                .find(|c| c["type"] == t && c["status"] == s)
                .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
                .unwrap_or_else(|| now.clone());
            let mut c =
                json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": ltt});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            if let Some(m) = msg {
                c["message"] = json!(m);
            }
            c
        };
        let incomplete: Vec<String> = self
            .init
            .iter()
            .filter(|c| !c.succeeded())
            .map(|c| c.name.clone())
            .collect();
        let unready: Vec<String> = self
            .ctrs
            .iter()
            .filter(|c| !c.ready())
            .map(|c| c.name.clone())
            .collect();
        let ready = unready.is_empty() && phase == "Running";
        let (ready_reason, ready_msg) = if ready {
            (None, None)
        } else if phase == "Succeeded" {
            (Some("PodCompleted"), None)
        } else {
            (
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        };
        let mut conditions = vec![
            cond(
                "PodReadyToStartContainers",
                self.sandbox.is_some(),
                None,
                None,
            ),
            if incomplete.is_empty() {
                cond("Initialized", true, None, None)
            } else {
                cond(
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized"),
                    Some(format!(
                        "containers with incomplete status: [{}]",
                        incomplete.join(" ")
                    )),
                )
            },
            cond("Ready", ready, ready_reason, ready_msg.clone()),
            cond("ContainersReady", ready, ready_reason, ready_msg),
        ];
        if let Some(ps) = api_conds.iter().find(|c| c["type"] == "PodScheduled") {
            conditions.push(ps.clone());
        }
        let mut st = json!({
            "phase": phase,
            "conditions": conditions,
            "qosClass": util::qos_class(&self.pod),
            "startTime": self.start_time.clone().unwrap_or_else(|| now.clone()),
            "containerStatuses": statuses,
        });
        if !init_statuses.is_empty() {
            st["initContainerStatuses"] = json!(init_statuses);
        }
        if self.deadline_exceeded {
            st["reason"] = json!("DeadlineExceeded");
            st["message"] = json!("Pod was active on the node longer than the specified deadline");
        }
        if !self.agent.host_ip.is_empty() {
            st["hostIP"] = json!(self.agent.host_ip);
            st["hostIPs"] = json!([{"ip": self.agent.host_ip}]);
            if spec.host_network.unwrap_or(false) {
                st["podIP"] = json!(self.agent.host_ip);
                st["podIPs"] = json!([{"ip": self.agent.host_ip}]);
            }
        }
        if !spec.host_network.unwrap_or(false) && !self.pod_ips.is_empty() {
            st["podIP"] = json!(self.pod_ips[0].to_string());
            st["podIPs"] = json!(self
                .pod_ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string()}))
                .collect::<Vec<_>>());
        }
        st
    }

    async fn post_status(&mut self) {
        let st = self.build_status();
        if self.last_posted.as_ref() == Some(&st) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        match api
            .patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": st})),
            )
            .await
        {
            Ok(_) => self.last_posted = Some(st),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "posting pod status"),
        }
    }

    // ------------------------------------------------------------------
    // Teardown.

    /// Remove every container, the sandbox (namespaces, cgroup) and
    /// tmpfs volumes of this pod.
    async fn teardown_runtime(&mut self) {
        for c in self.init.iter_mut().chain(self.ctrs.iter_mut()) {
            c.running = None;
        }
        let agent = self.agent.clone();
        let uid = self.uid.clone();
        let _ = tokio::task::spawn_blocking(move || agent.teardown_pod(&uid, false)).await;
    }

    /// SIGTERM, grace period, SIGKILL every container; clean up; finish
    /// the API deletion (unless the pod is already gone).
    async fn terminate(&mut self, gone: bool) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        let grace = Duration::from_secs(grace);
        if self.first_sync {
            self.first_sync = false;
            self.adopt();
        }
        let mut running = Vec::new();
        for (init, c) in self
            .init
            .iter_mut()
            .map(|c| (true, c))
            .chain(self.ctrs.iter_mut().map(|c| (false, c)))
        {
            if let Some(inst) = c.running.take() {
                running.push((init, c.name.clone(), inst));
            }
        }
        let mut stops = Vec::new();
        for (init, name, inst) in &running {
            self.event("Normal", "Killing", format!("Stopping container {name}"));
            stops.push(self.stop_task(*init, name, inst.handle.clone(), grace));
        }
        for s in stops {
            let _ = s.await;
        }
        // Image leases are released once the containers are stopped.
        drop(running);
        let agent = self.agent.clone();
        let uid = self.uid.clone();
        let mut ok = false;
        for attempt in 0..5 {
            let a = agent.clone();
            let u = uid.clone();
            match tokio::task::spawn_blocking(move || a.teardown_pod(&u, true)).await {
                Ok(Ok(())) => {
                    ok = true;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(pod = %pod_desc(&self.pod), attempt, error = %e, "pod cleanup")
                }
                Err(e) => tracing::warn!(error = %e, "pod cleanup task"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if !ok {
            tracing::error!(pod = %pod_desc(&self.pod), "pod cleanup incomplete; the next agent start retries");
        }
        if gone {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.namespace());
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&self.name(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "finishing pod deletion")
            }
        }
    }
}

/// The pod phase from its containers (upstream `getPhase`).
fn pod_phase(policy: &str, init: &[Ctr], ctrs: &[Ctr], deadline_exceeded: bool) -> &'static str {
    if deadline_exceeded {
        return "Failed";
    }
    let mut pending_init = false;
    for c in init {
        if c.succeeded() {
            continue;
        }
        if policy == "Never" && c.term.as_ref().is_some_and(|t| t.exit_code != 0) {
            return "Failed";
        }
        pending_init = true;
    }
    if pending_init {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in ctrs {
        if c.running.is_some() {
            running += 1;
        } else if let Some(t) = &c.term {
            stopped += 1;
            if !c.pending_restart && t.exit_code == 0 {
                succeeded += 1;
            }
        } else if c.last_term.is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// Longest a postStart hook may run.
const POST_START_MAX: Duration = Duration::from_secs(600);
/// Termination message limits (upstream's).
const MAX_TERMINATION_MESSAGE: u64 = 4096;
const FALLBACK_LOG_LINES: usize = 80;
const FALLBACK_LOG_BYTES: usize = 2048;

/// The message a container left in `file` (its last 4 KiB), else with
/// `fallback` the tail of its CRI log `log` (80 lines, 2 KiB).
fn termination_message(
    file: Option<&std::path::Path>,
    fallback: bool,
    log: &std::path::Path,
) -> String {
    if let Some(f) = file {
        let read = (|| -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek, SeekFrom};
            let mut fh = std::fs::File::open(f)?;
            let len = fh.metadata()?.len();
            if len > MAX_TERMINATION_MESSAGE {
                fh.seek(SeekFrom::Start(len - MAX_TERMINATION_MESSAGE))?;
            }
            let mut buf = Vec::new();
            fh.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut buf)?;
            Ok(buf)
        })();
        match read {
            Ok(b) if !b.is_empty() => return String::from_utf8_lossy(&b).into_owned(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return format!("Error on reading termination log {}: {e}", f.display()),
        }
    }
    if !fallback {
        return String::new();
    }
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let mut content = String::new();
    for line in text.lines() {
        if let Some(r) = bosun_runtime::logs::parse_record(line) {
            content.push_str(&r.content);
            if !r.partial {
                content.push('\n');
            }
        }
    }
    let lines: Vec<&str> = content.split_inclusive('\n').collect();
    let mut tail: String = lines[lines.len().saturating_sub(FALLBACK_LOG_LINES)..].concat();
    if tail.len() > FALLBACK_LOG_BYTES {
        let mut cut = tail.len() - FALLBACK_LOG_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

fn fmt_backoff(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i32) -> Term {
        Term {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: "2024-01-01T00:00:01Z".into(),
            container_id: "runc://x".into(),
        }
    }

    fn done(code: i32) -> Ctr {
        let mut c = Ctr::new("c");
        c.term = Some(term(code));
        c
    }

    fn crashed() -> Ctr {
        let mut c = Ctr::new("c");
        c.term = Some(term(1));
        c.pending_restart = true;
        c.waiting = Some(("CrashLoopBackOff".into(), String::new()));
        c
    }

    #[test]
    fn phases_like_upstream() {
        let fresh = || Ctr::new("c");
        assert_eq!(pod_phase("Always", &[], &[fresh()], false), "Pending");
        assert_eq!(pod_phase("Never", &[], &[done(0)], false), "Succeeded");
        assert_eq!(pod_phase("Never", &[], &[done(1)], false), "Failed");
        assert_eq!(
            pod_phase("Never", &[], &[done(0), done(2)], false),
            "Failed"
        );
        assert_eq!(pod_phase("OnFailure", &[], &[done(0)], false), "Succeeded");
        assert_eq!(pod_phase("OnFailure", &[], &[crashed()], false), "Running");
        assert_eq!(pod_phase("Always", &[], &[crashed()], false), "Running");
        // A container that never ran keeps the pod Pending.
        assert_eq!(
            pod_phase("Always", &[], &[crashed(), fresh()], false),
            "Pending"
        );
        // Init containers.
        assert_eq!(
            pod_phase("Always", &[fresh()], &[fresh()], false),
            "Pending"
        );
        assert_eq!(pod_phase("Never", &[done(1)], &[fresh()], false), "Failed");
        assert_eq!(
            pod_phase("OnFailure", &[crashed()], &[fresh()], false),
            "Pending"
        );
        assert_eq!(
            pod_phase("Never", &[done(0)], &[done(0)], false),
            "Succeeded"
        );
        assert_eq!(pod_phase("Always", &[], &[fresh()], true), "Failed");
    }

    #[test]
    fn termination_messages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("msg");
        let log = dir.path().join("0.log");
        let mut records = Vec::new();
        for n in 0..100 {
            records.push(format!("2024-01-01T00:00:00.000000000Z stdout F line {n}"));
        }
        records.push("2024-01-01T00:00:00.000000000Z stderr P part-".into());
        records.push("2024-01-01T00:00:00.000000000Z stderr F end".into());
        std::fs::write(&log, records.join("\n") + "\n").unwrap();
        // No file, no fallback: nothing.
        assert_eq!(termination_message(Some(&file), false, &log), "");
        // Fallback: the last 80 lines of the log's content.
        let m = termination_message(Some(&file), true, &log);
        assert!(
            m.starts_with("line 21\n") && m.ends_with("line 99\npart-end\n"),
            "{m}"
        );
        assert_eq!(m.lines().count(), 80);
        // The file wins when it has something.
        std::fs::write(&file, "bye").unwrap();
        assert_eq!(termination_message(Some(&file), true, &log), "bye");
        // Its last 4 KiB.
        std::fs::write(&file, "x".repeat(5000) + "END").unwrap();
        let m = termination_message(Some(&file), false, &log);
        assert_eq!(m.len(), 4096);
        assert!(m.ends_with("END"));
        // Long log lines: the last 2 KiB.
        std::fs::write(
            &log,
            format!("2024-01-01T00:00:00Z stdout F {}\n", "y".repeat(5000)),
        )
        .unwrap();
        assert_eq!(termination_message(None, true, &log).len(), 2048);
    }

    #[test]
    fn backoff_format() {
        assert_eq!(fmt_backoff(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_backoff(Duration::from_secs(160)), "2m40s");
        assert_eq!(fmt_backoff(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn term_json_roundtrip() {
        let t = Term {
            exit_code: 1,
            signal: None,
            reason: "Error".into(),
            message: None,
            started_at: Some("2024-01-01T00:00:00Z".into()),
            finished_at: "2024-01-01T00:00:01Z".into(),
            container_id: "runc://x".into(),
        };
        assert_eq!(Term::from_json(&t.to_json()), Some(t));
    }
}
