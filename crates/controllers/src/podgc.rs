//! The pod garbage collector (kube-controller-manager's `podgc`):
//!
//! - terminated pods (Succeeded/Failed) beyond `terminated-pod-gc-threshold`
//!   are deleted, oldest first;
//! - pods bound to nodes that no longer exist are force-deleted (grace 0)
//!   once the node has been missing for a quarantine period and a direct
//!   GET confirms it is gone; non-terminal ones are first marked Failed
//!   with a `DisruptionTarget` condition (reason `DeletionByPodGC`);
//! - terminating pods on NotReady nodes with the `out-of-service` taint, and
//!   terminating pods never scheduled, are force-deleted.
//!
//! Runs every `period` and whenever pods or nodes change.

use crate::common_rs::informer;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::Client;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Upstream `--terminated-pod-gc-threshold` default.
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: usize = 12500;
/// Upstream `gcCheckPeriod`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(20);
/// Upstream `quarantineTime`: how long a node must be missing.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(40);
/// The taint that lets terminating pods on a NotReady node be removed.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

#[derive(Debug, Clone)]
pub struct Config {
    /// Terminated pods kept before the oldest are deleted; 0 disables.
    pub terminated_pod_gc_threshold: usize,
    pub period: Duration,
    /// How long a pod's node must be absent before its pods are removed.
    pub quarantine: Duration,
}

impl Default for Config {
    /// Upstream defaults; `BOSUN_TERMINATED_POD_GC_THRESHOLD` and
    /// `BOSUN_PODGC_QUARANTINE_SECONDS` override them.
    fn default() -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
        Config {
            terminated_pod_gc_threshold: env("BOSUN_TERMINATED_POD_GC_THRESHOLD")
                .map(|v| v as usize)
                .unwrap_or(DEFAULT_TERMINATED_POD_GC_THRESHOLD),
            period: DEFAULT_PERIOD,
            quarantine: env("BOSUN_PODGC_QUARANTINE_SECONDS")
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_QUARANTINE),
        }
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn is_terminated(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn created(p: &Pod) -> i128 {
    p.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond())
        .unwrap_or_default()
}

/// The terminated pods to delete so that at most `threshold` remain, oldest
/// (by creation time, then name) first. A threshold of 0 disables it.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut term: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if term.len() <= threshold {
        return Vec::new();
    }
    term.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let n = term.len() - threshold;
    term.truncate(n);
    term
}

/// Node names pods are bound to that are absent from `nodes`.
pub fn missing_nodes(pods: &[Arc<Pod>], nodes: &HashSet<String>) -> HashSet<String> {
    pods.iter()
        .map(|p| node_name(p))
        .filter(|n| !n.is_empty() && !nodes.contains(*n))
        .map(str::to_string)
        .collect()
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// A NotReady node carrying the `out-of-service` taint (any effect).
pub fn out_of_service(n: &Node) -> bool {
    !node_ready(n)
        && n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
}

/// The status patch marking a pod Failed with the PodGC DisruptionTarget
/// condition (upstream markFailedAndDeletePodWithCondition).
pub fn failed_condition_patch(message: &str, now: &str) -> serde_json::Value {
    serde_json::json!({
        "status": {
            "phase": "Failed",
            "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": message,
                "lastTransitionTime": now,
            }],
        }
    })
}

struct Gc {
    client: Client,
    config: Config,
    pods: Store<Pod>,
    nodes: Store<Node>,
    /// When each missing node was first noticed.
    missing_since: HashMap<String, Instant>,
}

impl Gc {
    async fn tick(&mut self) {
        let pods = self.pods.state();
        // 1. Terminated pods beyond the threshold.
        let doomed = terminated_to_delete(&pods, self.config.terminated_pod_gc_threshold);
        if !doomed.is_empty() {
            tracing::info!(
                count = doomed.len(),
                threshold = self.config.terminated_pod_gc_threshold,
                "podgc: garbage collecting terminated pods"
            );
        }
        for p in doomed {
            self.delete(&p, None).await;
        }
        // 2. Pods bound to nodes that no longer exist.
        let nodes: HashSet<String> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let missing = missing_nodes(&pods, &nodes);
        self.missing_since.retain(|n, _| missing.contains(n));
        let now = Instant::now();
        for n in &missing {
            let first = *self.missing_since.entry(n.clone()).or_insert(now);
            if now.duration_since(first) < self.config.quarantine {
                continue;
            }
            // Check the node is really gone, not just a lagging cache.
            let api: Api<Node> = Api::all(self.client.clone());
            if !matches!(api.get_opt(n).await, Ok(None)) {
                continue;
            }
            for p in pods.iter().filter(|p| node_name(p) == n) {
                tracing::info!(
                    pod = p.metadata.name.as_deref().unwrap_or_default(),
                    node = %n,
                    "podgc: deleting orphaned pod"
                );
                self.delete(p, Some("PodGC: node no longer exists")).await;
            }
        }
        // 3. Terminating pods on out-of-service nodes, and unscheduled ones.
        let oos: HashSet<String> = self
            .nodes
            .state()
            .iter()
            .filter(|n| out_of_service(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        for p in pods.iter() {
            if p.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let node = node_name(p);
            if node.is_empty() {
                self.delete(p, None).await;
            } else if oos.contains(node) {
                self.delete(p, Some("PodGC: node is out of service")).await;
            }
        }
    }

    /// Force-deletes a pod; a non-terminal one is first marked Failed with
    /// the DisruptionTarget condition when `condition` is given.
    async fn delete(&self, p: &Pod, condition: Option<&str>) {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if let Some(msg) = condition {
            if !is_terminated(p) {
                let now = k8s_openapi::jiff::Timestamp::now()
                    .round(k8s_openapi::jiff::Unit::Second)
                    .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
                    .to_string();
                let patch = failed_condition_patch(msg, &now);
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    tracing::debug!(error = %e, pod = %name, "podgc: marking pod failed");
                }
            }
        }
        let mut dp = DeleteParams::default().grace_period(0);
        if let Some(uid) = &p.metadata.uid {
            dp = dp.preconditions(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
        }
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(e) if crate::common_rs::api_code(&e) == 404 => {}
            Err(e) => tracing::debug!(error = %e, pod = %name, "podgc: delete failed"),
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    run_with(client, Config::default()).await
}

pub async fn run_with(client: Client, config: Config) {
    let wake = Arc::new(Notify::new());
    let (w1, w2) = (wake.clone(), wake.clone());
    let pods = informer(Api::<Pod>::all(client.clone()), move |_| w1.notify_one());
    let nodes = informer(Api::<Node>::all(client.clone()), move |_| w2.notify_one());
    let _ = pods.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    let mut gc = Gc {
        client,
        config,
        pods,
        nodes,
        missing_since: HashMap::new(),
    };
    loop {
        gc.tick().await;
        // Wake for the period, a change, or the end of a quarantine.
        let mut wait = gc.config.period;
        if let Some(first) = gc.missing_since.values().min() {
            let left = gc.config.quarantine.saturating_sub(first.elapsed());
            wait = wait.min(left + Duration::from_millis(100));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {
                // Let a burst of events settle.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, node: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default",
                             "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn terminated_threshold_oldest_first() {
        let pods = vec![
            pod("a", "Succeeded", "n1", "2024-01-01T00:00:03Z"),
            pod("b", "Failed", "n1", "2024-01-01T00:00:01Z"),
            pod("c", "Running", "n1", "2024-01-01T00:00:00Z"),
            pod("d", "Succeeded", "n1", "2024-01-01T00:00:02Z"),
        ];
        let names = |v: Vec<Arc<Pod>>| {
            v.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(terminated_to_delete(&pods, 1)), vec!["b", "d"]);
        assert!(terminated_to_delete(&pods, 3).is_empty());
        assert!(terminated_to_delete(&pods, 0).is_empty());
        assert_eq!(names(terminated_to_delete(&pods, 2)), vec!["b"]);
    }

    #[test]
    fn missing_and_out_of_service_nodes() {
        let pods = vec![
            pod("a", "Running", "n1", "2024-01-01T00:00:00Z"),
            pod("b", "Succeeded", "gone", "2024-01-01T00:00:00Z"),
            pod("c", "Pending", "", "2024-01-01T00:00:00Z"),
        ];
        let nodes: HashSet<String> = ["n1".to_string()].into();
        assert_eq!(missing_nodes(&pods, &nodes), ["gone".to_string()].into());
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"taints": [{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }))
        .unwrap();
        assert!(out_of_service(&n));
        let mut ready = n.clone();
        ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert!(!out_of_service(&ready));
    }

    #[test]
    fn disruption_condition() {
        let p = failed_condition_patch("PodGC: node no longer exists", "2024-01-01T00:00:00Z");
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(p["status"]["conditions"][0]["type"], "DisruptionTarget");
        assert_eq!(p["status"]["conditions"][0]["reason"], "DeletionByPodGC");
    }
}
