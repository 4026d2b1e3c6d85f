//! The scheduler as an API client: informers on pods, nodes and namespaces
//! feed a cluster snapshot and the scheduling queue; one loop pops pods,
//! runs the algorithm, assumes the result and binds asynchronously through
//! the pods/binding subresource. It never touches the store.

pub mod queue;

use crate::{Profile, Snapshot};
use bosun_events::{ObjectRef, Recorder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::Client;
use queue::{pod_key, SchedulingQueue};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

#[derive(Debug, Clone)]
pub struct Config {
    pub scheduler_name: String,
    /// Elect a leader on the `kube-system/kube-scheduler` Lease first.
    pub leader_elect: bool,
    pub identity: String,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// Record Scheduled events for every bound pod.
    pub scheduled_events: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
            leader_elect: true,
            identity: format!("bosun-scheduler-{}", std::process::id()),
            bind_concurrency: 256,
            scheduled_events: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Bound or assumed pods, with the node they count against.
#[derive(Default)]
struct State {
    queue: SchedulingQueue,
    snapshot: Snapshot,
    /// Pods counted in the snapshot, by key → node.
    placed: HashMap<String, String>,
    /// Pods assumed but not yet seen bound in the watch.
    assumed: HashSet<String>,
    pdbs: HashMap<String, Arc<PodDisruptionBudget>>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Pod keys seen during a relist (to drop the ones gone).
    relist_pods: Option<HashSet<String>>,
    relist_nodes: Option<HashSet<String>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    config: Config,
    profile: Profile,
    client: Client,
    recorder: Recorder,
    binds: Arc<Semaphore>,
}

/// Counters the benchmark reads.
#[derive(Default)]
pub struct Metrics {
    pub scheduled: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    /// Microseconds from queue entry to bind acknowledgement, per pod.
    pub latencies_us: Mutex<Vec<u64>>,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn responsible(cfg: &Config, pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler")
        == cfg.scheduler_name
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl State {
    fn place(&mut self, pod: Arc<Pod>, node: &str) {
        let key = pod_key(&pod);
        if let Some(old) = self.placed.get(&key) {
            let _ = old;
            self.snapshot.remove_pod(
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
            );
        }
        self.snapshot.add_pod(pod);
        self.placed.insert(key, node.to_string());
    }

    fn unplace(&mut self, key: &str) -> bool {
        if self.placed.remove(key).is_some() {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            self.snapshot.remove_pod(ns, name);
            self.assumed.remove(key);
            return true;
        }
        false
    }

    fn on_pod(&mut self, cfg: &Config, pod: Pod, now: Instant) -> bool {
        let key = pod_key(&pod);
        if let Some(seen) = self.relist_pods.as_mut() {
            seen.insert(key.clone());
        }
        let pod = Arc::new(pod);
        if let Some(node) = node_of(&pod) {
            self.queue.done(&key);
            self.assumed.remove(&key);
            if terminal(&pod) {
                // Terminal pods free their resources.
                return self.unplace(&key);
            }
            let node = node.to_string();
            self.place(pod, &node);
            return false;
        }
        if pod.metadata.deletion_timestamp.is_some() || terminal(&pod) || !responsible(cfg, &pod) {
            self.queue.delete(&key);
            return false;
        }
        if self.assumed.contains(&key) {
            // Our binding is in flight; the watch has not caught up yet.
            return false;
        }
        self.queue.add_or_update(pod, now);
        false
    }

    fn on_pod_deleted(&mut self, key: &str) -> bool {
        self.queue.delete(key);
        self.unplace(key)
    }
}

/// Runs the scheduler until the client's watches end (never, normally).
pub async fn run(client: Client, config: Config) -> Result<(), RunError> {
    let profile = Profile {
        scheduler_name: config.scheduler_name.clone(),
        ..Profile::default()
    };
    run_with_profile(client, config, profile, Arc::new(Metrics::default())).await
}

pub async fn run_with_profile(
    client: Client,
    config: Config,
    profile: Profile,
    metrics: Arc<Metrics>,
) -> Result<(), RunError> {
    if config.leader_elect {
        let lc = bosun_leader::Config::new("kube-system", "kube-scheduler", &config.identity);
        bosun_leader::acquire(&client, &lc).await;
        let c2 = client.clone();
        tokio::spawn(async move {
            bosun_leader::hold(&c2, &lc).await;
            // Another instance may now schedule: stop so we never double-bind.
            tracing::error!("scheduler lost its lease; exiting the process");
            std::process::exit(1);
        });
    }
    let recorder = Recorder::new(client.clone(), "default-scheduler", "");
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        binds: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        config,
        profile,
        client: client.clone(),
        recorder,
    });
    let metrics_out = metrics;
    tokio::spawn(watch_nodes(shared.clone()));
    tokio::spawn(watch_namespaces(shared.clone()));
    tokio::spawn(watch_pdbs(shared.clone()));
    tokio::spawn(watch_pods(shared.clone()));
    schedule_loop(shared, metrics_out).await;
    Ok(())
}

async fn watch_pods(sh: Arc<Shared>) {
    let api: Api<Pod> = Api::all(sh.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        let mut wake = false;
        let mut moved = false;
        {
            let mut st = lock(&sh.state);
            match ev {
                Ok(Event::Init) => st.relist_pods = Some(HashSet::new()),
                Ok(Event::InitApply(p)) | Ok(Event::Apply(p)) => {
                    moved |= st.on_pod(&sh.config, p, now);
                    wake = true;
                }
                Ok(Event::Delete(p)) => {
                    moved |= st.on_pod_deleted(&pod_key(&p));
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = st.relist_pods.take() {
                        let gone: Vec<String> = st
                            .placed
                            .keys()
                            .filter(|k| !seen.contains(*k) && !st.assumed.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            moved |= st.on_pod_deleted(&k);
                        }
                    }
                    wake = true;
                }
                Err(e) => tracing::warn!(error = %e, "pod watch error; retrying"),
            }
            if moved {
                st.queue.move_all(now);
                wake = true;
            }
        }
        if wake {
            sh.wake.notify_one();
        }
    }
}

async fn watch_nodes(sh: Arc<Shared>) {
    let api: Api<Node> = Api::all(sh.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        {
            let mut st = lock(&sh.state);
            match ev {
                Ok(Event::Init) => st.relist_nodes = Some(HashSet::new()),
                Ok(Event::InitApply(n)) | Ok(Event::Apply(n)) => {
                    if let Some(seen) = st.relist_nodes.as_mut() {
                        seen.insert(n.metadata.name.clone().unwrap_or_default());
                    }
                    st.snapshot.upsert_node(Arc::new(n));
                    st.queue.move_all(now);
                }
                Ok(Event::Delete(n)) => {
                    st.snapshot
                        .remove_node(n.metadata.name.as_deref().unwrap_or_default());
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = st.relist_nodes.take() {
                        let gone: Vec<String> = st
                            .snapshot
                            .nodes
                            .iter()
                            .map(|n| n.name().to_string())
                            .filter(|n| !seen.contains(n))
                            .collect();
                        for n in gone {
                            st.snapshot.remove_node(&n);
                        }
                    }
                    st.queue.move_all(now);
                }
                Err(e) => tracing::warn!(error = %e, "node watch error; retrying"),
            }
        }
        sh.wake.notify_one();
    }
}

async fn watch_namespaces(sh: Arc<Shared>) {
    let api: Api<Namespace> = Api::all(sh.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let mut st = lock(&sh.state);
        match ev {
            Ok(Event::InitApply(n)) | Ok(Event::Apply(n)) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                let labels = n.metadata.labels.clone().unwrap_or_default();
                st.namespaces.insert(name.clone(), labels.clone());
                st.snapshot.namespace_labels.insert(name, labels);
            }
            Ok(Event::Delete(n)) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                st.namespaces.remove(&name);
                st.snapshot.namespace_labels.remove(&name);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "namespace watch error; retrying"),
        }
    }
}

async fn watch_pdbs(sh: Arc<Shared>) {
    let api: Api<PodDisruptionBudget> = Api::all(sh.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let mut st = lock(&sh.state);
        match ev {
            Ok(Event::InitApply(p)) | Ok(Event::Apply(p)) => {
                let k = format!(
                    "{}/{}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default()
                );
                st.pdbs.insert(k, Arc::new(p));
            }
            Ok(Event::Delete(p)) => {
                let k = format!(
                    "{}/{}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default()
                );
                st.pdbs.remove(&k);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pdb watch error; retrying"),
        }
    }
}

enum Outcome {
    Bind(Arc<Pod>, String, Instant, u32),
    Unschedulable(Arc<Pod>, String, Option<crate::PreemptionResult>),
}

async fn schedule_loop(sh: Arc<Shared>, metrics: Arc<Metrics>) {
    loop {
        // Wait for a bind slot before popping, so the queue holds the backlog.
        let permit = match sh.binds.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let outcome = {
            let mut st = lock(&sh.state);
            let now = Instant::now();
            match st.queue.pop(now) {
                None => None,
                Some((qp, cycle)) => {
                    let result = crate::schedule(&sh.profile, &st.snapshot, &qp.pod);
                    match result {
                        Ok(r) => {
                            let mut bound = (*qp.pod).clone();
                            if let Some(spec) = bound.spec.as_mut() {
                                spec.node_name = Some(r.node_name.clone());
                            }
                            let bound = Arc::new(bound);
                            st.place(bound, &r.node_name);
                            st.assumed.insert(qp.key.clone());
                            st.queue.done(&qp.key);
                            Some(Outcome::Bind(
                                qp.pod.clone(),
                                r.node_name,
                                qp.initial,
                                qp.attempts,
                            ))
                        }
                        Err(fit) => {
                            let preemption = if preemption_allowed(&qp.pod) {
                                let pdbs: Vec<PodDisruptionBudget> =
                                    st.pdbs.values().map(|p| (**p).clone()).collect();
                                crate::preempt_with_diagnosis(
                                    &sh.profile,
                                    &st.snapshot,
                                    &qp.pod,
                                    &pdbs,
                                    &fit,
                                )
                            } else {
                                Err("preemption: not eligible due to preemptionPolicy=Never."
                                    .to_string())
                            };
                            let mut fit = fit;
                            let (msg_suffix, pre) = match preemption {
                                Ok(p) => (None, Some(p)),
                                Err(m) => (Some(m), None),
                            };
                            fit.post_filter_msg =
                                msg_suffix.map(|m| m.trim_end_matches('.').to_string());
                            st.queue.unschedulable(&qp.key, cycle, now);
                            Some(Outcome::Unschedulable(qp.pod.clone(), fit.message(), pre))
                        }
                    }
                }
            }
        };
        match outcome {
            Some(Outcome::Bind(pod, node, initial, attempts)) => {
                let sh2 = sh.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    bind(sh2, pod, node, initial, attempts, metrics).await;
                    drop(permit);
                });
            }
            Some(Outcome::Unschedulable(pod, msg, pre)) => {
                drop(permit);
                metrics
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sh2 = sh.clone();
                tokio::spawn(async move { report_unschedulable(sh2, pod, msg, pre).await });
            }
            None => {
                drop(permit);
                let next = lock(&sh.state).queue.next_wakeup();
                let sleep = next
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(60));
                tokio::select! {
                    _ = sh.wake.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
        }
    }
}

fn preemption_allowed(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        != Some("Never")
}

fn obj_ref(pod: &Pod) -> ObjectRef {
    ObjectRef::pod(
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

async fn bind(
    sh: Arc<Shared>,
    pod: Arc<Pod>,
    node: String,
    initial: Instant,
    attempts: u32,
    metrics: Arc<Metrics>,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let res = api
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await;
    match res {
        Ok(_) => {
            metrics
                .scheduled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut l) = metrics.latencies_us.lock() {
                l.push(initial.elapsed().as_micros() as u64);
            }
            if sh.config.scheduled_events {
                sh.recorder
                    .record(
                        &obj_ref(&pod),
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                    )
                    .await;
            }
        }
        Err(e) => {
            let key = pod_key(&pod);
            tracing::info!(pod = %key, error = %e, "binding failed");
            let mut st = lock(&sh.state);
            st.unplace(&key);
            let gone = matches!(&e, kube::Error::Api(ae) if ae.code == 404);
            let conflict = matches!(&e, kube::Error::Api(ae) if ae.code == 409);
            if !gone && !conflict {
                st.queue
                    .requeue_after_failed_bind(pod.clone(), attempts, Instant::now());
            }
            drop(st);
            sh.wake.notify_one();
        }
    }
}

async fn report_unschedulable(
    sh: Arc<Shared>,
    pod: Arc<Pod>,
    msg: String,
    pre: Option<crate::PreemptionResult>,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Only write the condition when it changes, like upstream.
    let cur = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()));
    let nominated = pre.as_ref().map(|p| p.nominated_node.clone());
    if cur != Some(("False".into(), msg.clone())) || nominated.is_some() {
        let mut status = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastProbeTime": null, "lastTransitionTime": now}]}});
        if let Some(n) = &nominated {
            status["status"]["nominatedNodeName"] = json!(n);
        }
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "updating PodScheduled condition");
        }
    }
    sh.recorder
        .record(&obj_ref(&pod), "Warning", "FailedScheduling", &msg)
        .await;
    if let Some(p) = pre {
        for victim in &p.victims {
            let vns = victim.metadata.namespace.clone().unwrap_or_default();
            let vname = victim.metadata.name.clone().unwrap_or_default();
            let vapi: Api<Pod> = Api::namespaced(sh.client.clone(), &vns);
            sh.recorder
                .record(
                    &obj_ref(victim),
                    "Normal",
                    "Preempted",
                    &format!(
                        "Preempted by pod {} on node {}",
                        pod.metadata.uid.as_deref().unwrap_or_default(),
                        p.nominated_node
                    ),
                )
                .await;
            // Like upstream: mark the victim before deleting it.
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let cond = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": "default-scheduler: preempting to accommodate a higher priority pod", "lastProbeTime": null, "lastTransitionTime": now}]}});
            if let Err(e) = vapi
                .patch_status(&vname, &PatchParams::default(), &Patch::Strategic(&cond))
                .await
            {
                tracing::debug!(victim = %vname, error = %e, "marking preemption victim");
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: victim.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = vapi.delete(&vname, &dp).await {
                tracing::info!(victim = %vname, error = %e, "deleting preemption victim");
            }
        }
    }
}
