//! The disruption controller (kube-controller-manager's `disruption`):
//! keeps PodDisruptionBudget status current — expectedPods, currentHealthy,
//! desiredHealthy, disruptionsAllowed, observedGeneration, disruptedPods and
//! the `DisruptionAllowed` condition (SufficientPods / InsufficientPods /
//! SyncFailed).
//!
//! Every PDB is recomputed whenever pods, PDBs or the workload controllers
//! change, and every 30 s.

use crate::common_rs::{informer, pod_is_ready, selector_matches};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use kube::Client;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Upstream `DeletionTimeout`: a disrupted pod not deleted by then counts again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
pub const RESYNC: Duration = Duration::from_secs(30);

/// Read access to the workload controllers, for their scale.
pub struct Workloads<'a> {
    pub rss: &'a [Arc<ReplicaSet>],
    pub deployments: &'a [Arc<Deployment>],
    pub statefulsets: &'a [Arc<StatefulSet>],
    pub rcs: &'a [Arc<ReplicationController>],
}

fn find<'b, K: kube::Resource>(v: &'b [Arc<K>], ns: &str, uid: &str) -> Option<&'b Arc<K>> {
    v.iter()
        .find(|o| o.meta().uid.as_deref() == Some(uid) && o.meta().namespace.as_deref() == Some(ns))
}

/// Sum of the scale of the controllers owning `pods` (upstream
/// getExpectedScale). Pods without a controller are ignored; an owner that
/// cannot be found is an error.
pub fn expected_scale(pods: &[&Pod], w: &Workloads) -> Result<i32, String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut total = 0i32;
    for p in pods {
        let Some(r) = crate::common_rs::controller_of(&p.metadata) else {
            continue;
        };
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let (uid, scale) = match r.kind.as_str() {
            "ReplicaSet" => {
                let rs = find(w.rss, ns, &r.uid)
                    .ok_or_else(|| format!("replicaset {} not found", r.name))?;
                // A ReplicaSet of a Deployment: the Deployment's scale.
                match crate::common_rs::controller_of(&rs.metadata)
                    .filter(|o| o.kind == "Deployment")
                    .and_then(|o| find(w.deployments, ns, &o.uid))
                {
                    Some(d) => (
                        d.metadata.uid.clone().unwrap_or_default(),
                        d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ),
                    None => (
                        r.uid.clone(),
                        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ),
                }
            }
            "StatefulSet" => {
                let s = find(w.statefulsets, ns, &r.uid)
                    .ok_or_else(|| format!("statefulset {} not found", r.name))?;
                (
                    r.uid.clone(),
                    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            "ReplicationController" => {
                let s = find(w.rcs, ns, &r.uid)
                    .ok_or_else(|| format!("replicationcontroller {} not found", r.name))?;
                (
                    r.uid.clone(),
                    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            "Deployment" => {
                let d = find(w.deployments, ns, &r.uid)
                    .ok_or_else(|| format!("deployment {} not found", r.name))?;
                (
                    r.uid.clone(),
                    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            // Other controllers (Jobs, DaemonSets, custom) have no scale we
            // can read here.
            other => return Err(format!("{other} {} does not implement scale", r.name)),
        };
        if seen.insert(uid) {
            total += scale;
        }
    }
    Ok(total)
}

/// Upstream getExpectedPodCount: (expectedCount, desiredHealthy).
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    w: &Workloads,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let scaled = |v: &IntOrString, total: i32| -> Result<i32, String> {
        match v {
            IntOrString::Int(i) => Ok(*i),
            IntOrString::String(s) => {
                let p: i64 = s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse().ok())
                    .ok_or_else(|| format!("invalid value for IntOrString: {s}"))?;
                Ok(((p * i64::from(total) + 99).div_euclid(100)) as i32)
            }
        }
    };
    if let Some(mu) = &spec.max_unavailable {
        let expected = expected_scale(pods, w)?;
        let desired = (expected - scaled(mu, expected)?).max(0);
        Ok((expected, desired))
    } else if let Some(ma) = &spec.min_available {
        match ma {
            IntOrString::Int(i) => Ok((pods.len() as i32, *i)),
            IntOrString::String(_) => {
                let expected = expected_scale(pods, w)?;
                Ok((expected, scaled(ma, expected)?))
            }
        }
    } else {
        Ok((pods.len() as i32, 0))
    }
}

fn ts(t: &Time) -> Timestamp {
    t.0
}

/// The pods a PDB selects (a missing selector selects nothing).
pub fn pods_for<'a>(pdb: &PodDisruptionBudget, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let ns = pdb.metadata.namespace.as_deref();
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| selector_matches(sel, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .map(|p| p.as_ref())
        .collect()
}

fn set_condition(
    conds: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        if c.status != status {
            c.last_transition_time = Time(now);
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message.into();
        c.observed_generation = Some(generation);
    } else {
        conds.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(generation),
            last_transition_time: Time(now),
        });
    }
}

/// The PDB's new status (upstream trySync / failSafe).
pub fn compute_status(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    w: &Workloads,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation.unwrap_or_default();
    let mut conds = old.conditions.clone().unwrap_or_default();
    let selected = pods_for(pdb, pods);
    let (expected, desired) = match expected_and_desired(pdb, &selected, w) {
        Ok(v) => v,
        Err(e) => {
            // failSafe: no disruptions while the state is unknown.
            set_condition(&mut conds, "False", "SyncFailed", &e, generation, now);
            return PodDisruptionBudgetStatus {
                disruptions_allowed: 0,
                conditions: Some(conds),
                ..old
            };
        }
    };
    // Disrupted pods stay unhealthy until deleted or the timeout passes.
    let mut disrupted = BTreeMap::new();
    for p in &selected {
        let Some(name) = p.metadata.name.as_deref() else {
            continue;
        };
        let Some(t) = old.disrupted_pods.as_ref().and_then(|m| m.get(name)) else {
            continue;
        };
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if ts(t).as_second() + DELETION_TIMEOUT.as_secs() as i64 <= now.as_second() {
            continue;
        }
        disrupted.insert(name.to_string(), t.clone());
    }
    let healthy = selected
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && pod_is_ready(p)
                && !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default())
        })
        .count() as i32;
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    if allowed > 0 {
        set_condition(&mut conds, "True", "SufficientPods", "", generation, now);
    } else {
        set_condition(&mut conds, "False", "InsufficientPods", "", generation, now);
    }
    PodDisruptionBudgetStatus {
        conditions: Some(conds),
        current_healthy: healthy,
        desired_healthy: desired,
        disrupted_pods: Some(disrupted),
        disruptions_allowed: allowed,
        expected_pods: expected,
        observed_generation: Some(generation),
    }
}

struct Ctl {
    client: Client,
    recorder: bosun_events::Recorder,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    rss: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    /// PDBs already told they have no pods (one event per PDB).
    warned: HashSet<String>,
}

impl Ctl {
    async fn sync_all(&mut self) {
        let pods = self.pods.state();
        let (rss, deployments, statefulsets) = (
            self.rss.state(),
            self.deployments.state(),
            self.statefulsets.state(),
        );
        let w = Workloads {
            rss: &rss,
            deployments: &deployments,
            statefulsets: &statefulsets,
            // ReplicationControllers are not served by the API server yet.
            rcs: &[],
        };
        for pdb in self.pdbs.state() {
            if pdb.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns = pdb.metadata.namespace.clone().unwrap_or_default();
            let name = pdb.metadata.name.clone().unwrap_or_default();
            let key = format!("{ns}/{name}");
            if pods_for(&pdb, &pods).is_empty() {
                if self.warned.insert(key.clone()) {
                    let r = bosun_events::ObjectRef {
                        api_version: "policy/v1".into(),
                        kind: "PodDisruptionBudget".into(),
                        namespace: ns.clone(),
                        name: name.clone(),
                        uid: pdb.metadata.uid.clone().unwrap_or_default(),
                    };
                    self.recorder
                        .record(&r, "Normal", "NoPods", "No matching pods found")
                        .await;
                }
            } else {
                self.warned.remove(&key);
            }
            let status = compute_status(&pdb, &pods, &w, Timestamp::now());
            if pdb.status.as_ref() == Some(&status) {
                continue;
            }
            let mut new = (*pdb).clone();
            new.status = Some(status);
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = api
                .replace_status(&name, &PostParams::default(), &new)
                .await
            {
                // A conflict means a newer version is on its way: retry then.
                tracing::debug!(error = %e, pdb = %key, "disruption: status update failed");
            }
        }
        let live: HashSet<String> = self
            .pdbs
            .state()
            .iter()
            .map(|p| crate::common_rs::key_of(&p.metadata))
            .collect();
        self.warned.retain(|k| live.contains(k));
    }
}

/// An informer callback that wakes the sync loop.
fn waker<K>(n: &Arc<Notify>) -> impl Fn(&kube::runtime::watcher::Event<K>) + Send + 'static {
    let n = n.clone();
    move |_| n.notify_one()
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let wake = Arc::new(Notify::new());
    let pdbs = informer(
        Api::<PodDisruptionBudget>::all(client.clone()),
        waker(&wake),
    );
    let pods = informer(Api::<Pod>::all(client.clone()), waker(&wake));
    let rss = informer(Api::<ReplicaSet>::all(client.clone()), waker(&wake));
    let deployments = informer(Api::<Deployment>::all(client.clone()), waker(&wake));
    let statefulsets = informer(Api::<StatefulSet>::all(client.clone()), waker(&wake));
    let _ = pdbs.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let _ = rss.wait_until_ready().await;
    let _ = deployments.wait_until_ready().await;
    let _ = statefulsets.wait_until_ready().await;
    let mut ctl = Ctl {
        recorder: bosun_events::Recorder::new(client.clone(), "controllermanager", ""),
        client,
        pdbs,
        pods,
        rss,
        deployments,
        statefulsets,
        warned: HashSet::new(),
    };
    loop {
        ctl.sync_all().await;
        tokio::select! {
            _ = tokio::time::sleep(RESYNC) => {}
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, owner: Option<(&str, &str)>) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if let Some((kind, uid)) = owner {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": kind, "name": "owner", "uid": uid, "controller": true}]);
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        let mut s = spec;
        s["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "generation": 2},
            "spec": s,
        }))
        .unwrap()
    }

    fn empty() -> Workloads<'static> {
        Workloads {
            rss: &[],
            deployments: &[],
            statefulsets: &[],
            rcs: &[],
        }
    }

    #[test]
    fn min_available_int_uses_pod_count() {
        let pods = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        let s = compute_status(
            &pdb(json!({"minAvailable": 2})),
            &pods,
            &empty(),
            Timestamp::now(),
        );
        assert_eq!(s.expected_pods, 3);
        assert_eq!(s.current_healthy, 3);
        assert_eq!(s.desired_healthy, 2);
        assert_eq!(s.disruptions_allowed, 1);
        assert_eq!(s.observed_generation, Some(2));
        let c = &s.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        assert_eq!(s.disrupted_pods, Some(BTreeMap::new()));
    }

    #[test]
    fn insufficient_pods() {
        let pods = vec![pod("a", true, None), pod("b", false, None)];
        let s = compute_status(
            &pdb(json!({"minAvailable": 2})),
            &pods,
            &empty(),
            Timestamp::now(),
        );
        assert_eq!(s.current_healthy, 1);
        assert_eq!(s.disruptions_allowed, 0);
        let c = &s.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InsufficientPods")
        );
    }

    #[test]
    fn percentages_and_max_unavailable_use_controller_scale() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "owner", "namespace": "ns", "uid": "rs1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": "d", "uid": "d1", "controller": true}]},
            "spec": {"replicas": 4, "selector": {}},
        }))
        .unwrap();
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "d1"},
            "spec": {"replicas": 5, "selector": {}, "template": {}},
        }))
        .unwrap();
        let rss = vec![Arc::new(rs)];
        let ds = vec![Arc::new(d)];
        let w = Workloads {
            rss: &rss,
            deployments: &ds,
            statefulsets: &[],
            rcs: &[],
        };
        let pods: Vec<Arc<Pod>> = (0..4)
            .map(|i| pod(&format!("p{i}"), true, Some(("ReplicaSet", "rs1"))))
            .collect();
        let s = compute_status(
            &pdb(json!({"maxUnavailable": 1})),
            &pods,
            &w,
            Timestamp::now(),
        );
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (5, 4, 0)
        );
        let s = compute_status(
            &pdb(json!({"minAvailable": "50%"})),
            &pods,
            &w,
            Timestamp::now(),
        );
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (5, 3, 1)
        );
        let s = compute_status(
            &pdb(json!({"maxUnavailable": "50%"})),
            &pods,
            &w,
            Timestamp::now(),
        );
        // ceil(2.5) = 3 unavailable allowed: desired 2.
        assert_eq!((s.desired_healthy, s.disruptions_allowed), (2, 2));
        // A missing owner fails safe.
        let s = compute_status(
            &pdb(json!({"maxUnavailable": 1})),
            &pods,
            &empty(),
            Timestamp::now(),
        );
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.conditions.unwrap()[0].reason, "SyncFailed");
    }

    #[test]
    fn disrupted_pods_are_not_healthy_until_timeout() {
        let pods = vec![pod("a", true, None), pod("b", true, None)];
        let now = Timestamp::now();
        let mut p = pdb(json!({"minAvailable": 1}));
        let recent = Time(
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(10))
                .unwrap(),
        );
        p.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some([("a".to_string(), recent)].into()),
            ..Default::default()
        });
        let s = compute_status(&p, &pods, &empty(), now);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
        assert_eq!(s.disrupted_pods.as_ref().unwrap().len(), 1);
        let old = Time(
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(300))
                .unwrap(),
        );
        p.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some([("a".to_string(), old)].into()),
            ..Default::default()
        });
        let s = compute_status(&p, &pods, &empty(), now);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
    }
}
