//! The node lifecycle controller: a node whose Lease
//! (`kube-node-lease/<node>`) and status heartbeats stop for the
//! node-monitor grace period (40 s) gets Ready=Unknown ("Kubelet stopped
//! posting node status.") and the `node.kubernetes.io/unreachable`
//! NoSchedule and NoExecute taints; a Ready=False node gets the `not-ready`
//! ones; the taints go when the node is Ready again. Pods on an Unknown
//! node are marked not ready. The NoExecute taint manager evicts pods once
//! their toleration of the taint (`tolerationSeconds`, 300 s from the
//! admission defaults) has expired; pods bound to nodes that no longer
//! exist are deleted (PodGC).
//!
//! `BOSUN_NODE_MONITOR_GRACE_SECONDS` overrides the grace period (tests).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";

/// Milliseconds since the epoch.
pub type Millis = i64;

/// The controller's notion of now (injectable for tests).
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub grace: Duration,
    /// How long a pod's node must be missing before PodGC deletes the pod.
    pub orphan_grace: Duration,
    pub period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let grace = std::env::var("BOSUN_NODE_MONITOR_GRACE_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(40));
        Config {
            grace,
            orphan_grace: grace,
            period: Duration::from_secs(1),
        }
    }
}

fn ms(t: &k8s_openapi::jiff::Timestamp) -> Millis {
    t.as_millisecond()
}

fn rfc3339(m: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(m)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ready_status(n: &Node) -> Option<&str> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// What the controller last saw of a node's heartbeat, and when (local
/// time), like upstream's nodeHealthData.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// (lease renewTime, Ready lastHeartbeatTime) as last seen.
    pub seen: (Option<Millis>, Option<Millis>),
    pub probe: Millis,
}

/// Updates the health record of a node; returns true when the node is
/// overdue (no heartbeat seen for `grace`).
pub fn observe(
    h: &mut Option<Health>,
    lease_renew: Option<Millis>,
    heartbeat: Option<Millis>,
    now: Millis,
    grace: Duration,
) -> bool {
    let seen = (lease_renew, heartbeat);
    match h {
        Some(x) if x.seen == seen => {}
        _ => {
            *h = Some(Health { seen, probe: now });
        }
    }
    let probe = h.as_ref().map(|x| x.probe).unwrap_or(now);
    now - probe > grace.as_millis() as i64
}

/// The status conditions patch for an overdue node (None: nothing to do).
pub fn unknown_conditions(n: &Node, now: Millis) -> Option<Vec<Value>> {
    let conds = n.status.as_ref()?.conditions.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut changed = false;
    let mut have_ready = false;
    for c in conds {
        let mut v = serde_json::to_value(&c).ok()?;
        if c.type_ == "Ready" {
            have_ready = true;
        }
        if matches!(
            c.type_.as_str(),
            "Ready" | "MemoryPressure" | "DiskPressure" | "PIDPressure"
        ) && c.status != "Unknown"
        {
            v["status"] = json!("Unknown");
            v["reason"] = json!("NodeStatusUnknown");
            v["message"] = json!(UNKNOWN_MESSAGE);
            v["lastTransitionTime"] = json!(rfc3339(now));
            changed = true;
        }
        out.push(v);
    }
    if !have_ready {
        out.push(
            json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
            "message": UNKNOWN_MESSAGE, "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": rfc3339(now)}),
        );
        changed = true;
    }
    changed.then_some(out)
}

/// The node's taints with the lifecycle taints set for its Ready status
/// (None when they are already right).
pub fn desired_taints(n: &Node, now: Millis) -> Option<Vec<Value>> {
    let cur: Vec<Taint> = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want_key = match ready_status(n) {
        // Not reported yet: left as registered.
        None => return None,
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    };
    let ours = |t: &Taint| {
        (t.key == UNREACHABLE || t.key == NOT_READY)
            && (t.effect == "NoSchedule" || t.effect == "NoExecute")
    };
    let have: Vec<(&str, &str)> = cur
        .iter()
        .filter(|t| ours(t))
        .map(|t| (t.key.as_str(), t.effect.as_str()))
        .collect();
    let mut want: Vec<(&str, &str)> = want_key
        .map(|k| vec![(k, "NoSchedule"), (k, "NoExecute")])
        .unwrap_or_default();
    let mut have_sorted = have.clone();
    have_sorted.sort();
    want.sort();
    if have_sorted == want {
        return None;
    }
    let mut out: Vec<Value> = cur
        .iter()
        .filter(|t| !ours(t) || want.contains(&(t.key.as_str(), t.effect.as_str())))
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    for (k, e) in want {
        if !have.contains(&(k, e)) {
            let mut t = json!({"key": k, "effect": e});
            if e == "NoExecute" {
                t["timeAdded"] = json!(rfc3339(now));
            }
            out.push(t);
        }
    }
    Some(out)
}

fn tolerates(tol: &k8s_openapi::api::core::v1::Toleration, t: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref() {
        if !e.is_empty() && e != t.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != t.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            // An empty key with Equal only matches... nothing but an empty key.
            if key.is_empty() {
                return false;
            }
            tol.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
        }
    }
}

/// When the taint manager evicts the pod from a node with these taints:
/// None = never, Some(t) = at t (now or earlier: evict now).
pub fn eviction_time(p: &Pod, taints: &[Taint], now: Millis) -> Option<Millis> {
    let tols = p
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut at: Option<Millis> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tols.iter().filter(|tol| tolerates(tol, t)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest tolerationSeconds wins; none means forever.
        let secs = matching
            .iter()
            .filter_map(|tol| tol.toleration_seconds)
            .min();
        let Some(secs) = secs else { continue };
        let added = t.time_added.as_ref().map(|x| ms(&x.0)).unwrap_or(now);
        let when = added + secs.max(0) * 1000;
        at = Some(at.map_or(when, |a: Millis| a.min(when)));
    }
    at
}

struct Ctl {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    clock: Arc<dyn Clock>,
    config: Config,
    health: HashMap<String, Option<Health>>,
    /// pod uid → when its node was first found missing.
    orphans: HashMap<String, Millis>,
    recorder: bosun_events::Recorder,
}

impl Ctl {
    async fn tick(&mut self) {
        let now = self.clock.now();
        let nodes = self.nodes.state();
        let mut by_name: BTreeMap<String, Arc<Node>> = BTreeMap::new();
        for n in &nodes {
            by_name.insert(n.metadata.name.clone().unwrap_or_default(), n.clone());
        }
        self.health.retain(|k, _| by_name.contains_key(k));
        let node_api: Api<Node> = Api::all(self.client.clone());
        for (name, n) in &by_name {
            let lease = self.leases.find(|l| {
                l.metadata.name.as_deref() == Some(name.as_str())
                    && l.metadata.namespace.as_deref() == Some("kube-node-lease")
            });
            let renew = lease
                .as_ref()
                .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| ms(&t.0)));
            let hb = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| ms(&t.0)));
            let h = self.health.entry(name.clone()).or_default();
            let overdue = observe(h, renew, hb, now, self.config.grace);
            let mut node = (**n).clone();
            if overdue {
                if let Some(conds) = unknown_conditions(&node, now) {
                    tracing::info!(node = %name, "node stopped posting status: Ready=Unknown");
                    let patch = json!({"status": {"conditions": conds}});
                    match node_api
                        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(updated) => {
                            node = updated;
                            self.recorder
                                .record(
                                    &node_ref(&node),
                                    "Normal",
                                    "NodeNotReady",
                                    &format!("Node {name} status is now: NodeNotReady"),
                                )
                                .await;
                        }
                        Err(e) => {
                            tracing::debug!(node = %name, error = %e, "node status update failed");
                            continue;
                        }
                    }
                }
            }
            if let Some(taints) = desired_taints(&node, now) {
                let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                                   "spec": {"taints": taints}});
                if let Err(e) = node_api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(node = %name, error = %e, "node taint update failed");
                }
            }
            if ready_status(&node) == Some("Unknown") {
                self.mark_pods_not_ready(name).await;
            }
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if taints.iter().any(|t| t.effect == "NoExecute") {
                self.evict(name, &taints, now).await;
            }
        }
        self.pod_gc(&by_name, now).await;
    }

    async fn mark_pods_not_ready(&self, node: &str) {
        for p in self
            .pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let Some(ready) = ready else { continue };
            if ready.status == "False" {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                p.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": rfc3339(self.clock.now())}]}});
            let _ = api
                .patch_status(
                    p.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await;
        }
    }

    async fn evict(&self, node: &str, taints: &[Taint], now: Millis) {
        for p in self.pods.state_filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && p.metadata.deletion_timestamp.is_none()
        }) {
            let Some(at) = eviction_time(&p, taints, now) else {
                continue;
            };
            if at > now {
                continue;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            tracing::info!(pod = %name, namespace = %ns, node, "taint manager: evicting pod");
            let cond = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": rfc3339(now)}]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&cond))
                .await;
            self.recorder
                .record(
                    &bosun_events::ObjectRef::pod(
                        &ns,
                        &name,
                        p.metadata.uid.as_deref().unwrap_or_default(),
                    ),
                    "Normal",
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                )
                .await;
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }

    /// Deletes (force) pods bound to nodes that have not existed for a while.
    async fn pod_gc(&mut self, nodes: &BTreeMap<String, Arc<Node>>, now: Millis) {
        let orphans: Vec<Arc<Pod>> = self.pods.state_filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty() && !nodes.contains_key(n))
        });
        let live: std::collections::HashSet<String> = orphans
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.orphans.retain(|u, _| live.contains(u));
        for p in orphans {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let first = *self.orphans.entry(uid).or_insert(now);
            if now - first < self.config.orphan_grace.as_millis() as i64 {
                continue;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            // Check the node is really gone (not just a lagging cache).
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let node_api: Api<Node> = Api::all(self.client.clone());
            if !matches!(node_api.get_opt(&node).await, Ok(None)) {
                continue;
            }
            tracing::info!(pod = %name, namespace = %ns, node = %node, "podgc: deleting pod of a deleted node");
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        }
    }
}

fn node_ref(n: &Node) -> bosun_events::ObjectRef {
    bosun_events::ObjectRef {
        api_version: "v1".into(),
        kind: "Node".into(),
        namespace: String::new(),
        name: n.metadata.name.clone().unwrap_or_default(),
        uid: n.metadata.uid.clone().unwrap_or_default(),
    }
}

fn spawn_reflector<K>(api: Api<K>, cfg: watcher::Config) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, w) = reflector::store::<K>();
    let s = reflector::reflector(w, watcher::watcher(api, cfg).default_backoff());
    tokio::spawn(s.for_each(|_| async {}));
    store
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    run_with(client, Config::default(), Arc::new(SystemClock)).await
}

pub async fn run_with(client: Client, config: Config, clock: Arc<dyn Clock>) {
    let nodes = spawn_reflector(Api::<Node>::all(client.clone()), watcher::Config::default());
    let leases = spawn_reflector(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        watcher::Config::default(),
    );
    let pods = spawn_reflector(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let _ = nodes.wait_until_ready().await;
    let _ = leases.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut ctl = Ctl {
        recorder: bosun_events::Recorder::new(client.clone(), "node-controller", ""),
        client,
        nodes,
        leases,
        pods,
        clock,
        health: HashMap::new(),
        orphans: HashMap::new(),
        config,
    };
    loop {
        ctl.tick().await;
        tokio::time::sleep(ctl.config.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": "False"}]}
        }))
        .unwrap()
    }

    #[test]
    fn overdue_after_grace_from_last_change() {
        let g = Duration::from_secs(40);
        let mut h = None;
        assert!(!observe(&mut h, Some(1000), None, 10_000, g));
        assert!(!observe(&mut h, Some(1000), None, 50_000, g));
        assert!(observe(&mut h, Some(1000), None, 50_001, g));
        // The lease renews: healthy again, the clock restarts.
        assert!(!observe(&mut h, Some(2000), None, 60_000, g));
        assert!(!observe(&mut h, Some(2000), None, 99_000, g));
        assert!(observe(&mut h, Some(2000), None, 100_001, g));
    }

    #[test]
    fn unknown_conditions_and_taints() {
        let n = node("True", json!([{"key": "x", "effect": "NoSchedule"}]));
        let c = unknown_conditions(&n, 0).unwrap();
        assert_eq!(c[0]["status"], "Unknown");
        assert_eq!(c[0]["reason"], "NodeStatusUnknown");
        assert_eq!(c[0]["message"], "Kubelet stopped posting node status.");
        assert_eq!(c[1]["status"], "Unknown");
        assert!(desired_taints(&n, 0).is_none());
        let unknown = node("Unknown", json!([{"key": "x", "effect": "NoSchedule"}]));
        assert!(unknown_conditions(&unknown, 0).is_some()); // MemoryPressure still False
        let t = desired_taints(&unknown, 5000).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t[1],
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "1970-01-01T00:00:05Z"})
        );
        assert_eq!(t[2]["effect"], "NoSchedule");
        // Ready again: our taints go, others stay.
        let back = node(
            "True",
            json!([{"key": "x", "effect": "NoSchedule"}, {"key": UNREACHABLE, "effect": "NoExecute"}]),
        );
        assert_eq!(
            desired_taints(&back, 0).unwrap(),
            vec![json!({"key": "x", "effect": "NoSchedule"})]
        );
        let nr = node(
            "False",
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}]),
        );
        let t = desired_taints(&nr, 0).unwrap();
        assert!(t.iter().all(|t| t["key"] == NOT_READY), "{t:?}");
    }

    fn pod(tols: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "tolerations": tols}}))
        .unwrap()
    }

    #[test]
    fn toleration_expiry() {
        let taints: Vec<Taint> = serde_json::from_value(json!([
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "1970-01-01T00:00:10Z"},
            {"key": UNREACHABLE, "effect": "NoSchedule"}]))
        .unwrap();
        // The admission defaults: 300 s.
        let p = pod(json!([
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
        assert_eq!(eviction_time(&p, &taints, 20_000), Some(310_000));
        // No toleration: now.
        assert_eq!(
            eviction_time(&pod(json!([])), &taints, 20_000),
            Some(20_000)
        );
        // Tolerated forever.
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &taints, 20_000), None);
    }

    struct Fixed(Millis);
    impl Clock for Fixed {
        fn now(&self) -> Millis {
            self.0
        }
    }

    #[test]
    fn injected_clock() {
        let c: Arc<dyn Clock> = Arc::new(Fixed(42));
        assert_eq!(c.now(), 42);
        assert!(SystemClock.now() > 1_600_000_000_000);
    }
}
