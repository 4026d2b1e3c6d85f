//! The daemonset controller (upstream `pkg/controller/daemon`): one pod per
//! eligible node (nodeSelector, required node affinity, taints against the
//! template's tolerations plus the daemon tolerations), pinned to its node by
//! a required `matchFields metadata.name` node affinity for the scheduler to
//! bind; RollingUpdate (maxUnavailable / maxSurge) and OnDelete through the
//! `controller-revision-hash` label and ControllerRevisions; status counts.

use crate::job::kit::{
    self, controlled_by, controller_ref, is_terminating, node_matches, pod_available, pod_phase,
    pod_ready, scaled, tolerates, Error, Result, REVISION_HASH_LABEL,
};
use bosun_events::{ObjectRef, Recorder};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef as KObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COMPONENT: &str = "daemonset-controller";
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

#[derive(Default, Clone)]
struct Mem {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    mem: Mutex<HashMap<String, Mem>>,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let dss: Api<DaemonSet> = Api::all(client.clone());
    let controller = Controller::new(dss, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, ""),
        client: client.clone(),
        mem: Mutex::new(HashMap::new()),
    });
    controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            move |_node: Node| {
                store
                    .state()
                    .iter()
                    .map(|ds| KObjectRef::from_obj(&**ds))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "daemonset reconcile");
            }
        })
        .await;
}

fn error_policy(_ds: Arc<DaemonSet>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    if kit::is_conflict(e) {
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %e, "daemonset sync failed");
    Action::requeue(kit::ERROR_REQUEUE)
}

/// upstream's AddOrUpdateDaemonPodTolerations.
pub fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut out = spec.tolerations.clone().unwrap_or_default();
    let mut add = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    for (key, effect) in add {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        if !out.iter().any(|o| {
            o.key == t.key && o.effect == t.effect && o.operator == t.operator && o.value.is_none()
        }) {
            out.push(t);
        }
    }
    out
}

/// upstream's NodeShouldRunDaemonPod: (shouldRun, shouldContinueRunning).
pub fn node_should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if !node_matches(spec, node) {
        return (false, false);
    }
    let tols = daemon_tolerations(spec);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut run = true;
    for taint in &taints {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !tols.iter().any(|t| tolerates(t, taint)) {
            run = false;
            if taint.effect == "NoExecute" {
                return (false, false);
            }
        }
    }
    (run, true)
}

/// The node a daemon pod is for: spec.nodeName, else its matchFields pin.
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// The pod for `node` (upstream's template plus node pinning and tolerations).
pub fn pod_for(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut meta = spec.template.metadata.clone().unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(format!("{}-", ds.name_any()));
    meta.namespace = ds.namespace();
    meta.owner_references = Some(vec![controller_ref("apps/v1", "DaemonSet", &ds.metadata)]);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels.insert(
        TEMPLATE_GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let mut pspec = spec.template.spec.unwrap_or_default();
    pspec.tolerations = Some(daemon_tolerations(&pspec));
    let affinity = pspec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    Pod {
        metadata: meta,
        spec: Some(pspec),
        status: None,
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create: Vec<String>,
    /// Pods to delete, with a Warning FailedDaemonPod message for failed ones.
    pub delete: Vec<(String, Option<String>)>,
    pub status: DaemonSetStatus,
    pub requeue: Option<Duration>,
}

fn hash_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// The sync of one DaemonSet over all nodes and its pods.
pub fn plan(ds: &DaemonSet, nodes: &[Node], pods: &[Arc<Pod>], hash: &str, now: Timestamp) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let pspec = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0) as i64;
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<String, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in pods.iter().filter(|p| !is_terminating(&p.metadata)) {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    for v in by_node.values_mut() {
        v.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = strategy.rolling_update.clone().unwrap_or_default();

    let mut eligible: Vec<(&Node, Vec<&Arc<Pod>>)> = Vec::new();
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let mut available = 0;
    let mut updated = 0;
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (run, cont) = node_should_run(&pspec, node);
        let mut here: Vec<&Arc<Pod>> = by_node.get(&name).cloned().unwrap_or_default();
        if run {
            st.desired_number_scheduled += 1;
        }
        if !here.is_empty() && !run {
            st.number_misscheduled += 1;
        }
        if run && !here.is_empty() {
            st.current_number_scheduled += 1;
            let first = here[0];
            if pod_ready(first) {
                st.number_ready += 1;
            }
            if pod_available(first, min_ready, now) {
                available += 1;
            }
            if here.iter().any(|p| hash_of(p) == Some(hash)) {
                updated += 1;
            }
        }
        if !cont {
            plan.delete
                .extend(here.iter().map(|p| (p.name_any(), None)));
            continue;
        }
        if !run {
            continue;
        }
        // Failed pods are killed (and recreated on a later sync).
        let failed: Vec<&Arc<Pod>> = here
            .iter()
            .copied()
            .filter(|p| pod_phase(p) == "Failed")
            .collect();
        for p in &failed {
            let msg = format!(
                "Found failed daemon pod {}/{} on node {name}, will try to kill it",
                p.namespace().unwrap_or_default(),
                p.name_any()
            );
            plan.delete.push((p.name_any(), Some(msg)));
        }
        here.retain(|p| pod_phase(p) != "Failed");
        if here.is_empty() {
            if failed.is_empty() {
                plan.create.push(name.clone());
            } else {
                plan.requeue = Some(Duration::from_secs(1));
            }
            continue;
        }
        // More than one pod: keep the oldest of each version (surge) or only
        // the oldest one.
        let surge = rolling && scaled(ru.max_surge.as_ref(), 1, true, 0) > 0;
        let mut keep: Vec<&Arc<Pod>> = Vec::new();
        for p in &here {
            let dup = if surge {
                keep.iter()
                    .any(|k| (hash_of(k) == Some(hash)) == (hash_of(p) == Some(hash)))
            } else {
                !keep.is_empty()
            };
            if dup {
                plan.delete.push((p.name_any(), None));
            } else {
                keep.push(p);
            }
        }
        eligible.push((node, keep));
    }
    st.number_available = (available > 0).then_some(available);
    st.updated_number_scheduled = (updated > 0).then_some(updated);
    let unavailable = st.desired_number_scheduled - available;
    st.number_unavailable = (unavailable > 0).then_some(unavailable);

    if rolling {
        let desired = st.desired_number_scheduled;
        let mut max_surge = scaled(ru.max_surge.as_ref(), desired, true, 0);
        let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), desired, true, 1);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        max_surge = max_surge.max(0);
        let split = |keep: &Vec<&Arc<Pod>>| {
            let new = keep
                .iter()
                .copied()
                .find(|p| hash_of(p) == Some(hash))
                .cloned();
            let old = keep
                .iter()
                .copied()
                .find(|p| hash_of(p) != Some(hash))
                .cloned();
            (new, old)
        };
        if max_surge == 0 {
            let mut unavailable = 0;
            let mut must: Vec<String> = Vec::new();
            let mut candidates: Vec<String> = Vec::new();
            for (_, keep) in &eligible {
                match split(keep) {
                    (None, None) => unavailable += 1,
                    (None, Some(old)) => {
                        if pod_available(&old, min_ready, now) {
                            candidates.push(old.name_any());
                        } else {
                            unavailable += 1;
                            must.push(old.name_any());
                        }
                    }
                    (Some(new), _) => {
                        if !pod_available(&new, min_ready, now) {
                            unavailable += 1;
                        }
                    }
                }
            }
            unavailable += plan.create.len() as i32
                - eligible.iter().filter(|(_, k)| k.is_empty()).count() as i32;
            let budget = (max_unavailable - unavailable).max(0) as usize;
            plan.delete.extend(must.into_iter().map(|n| (n, None)));
            plan.delete
                .extend(candidates.into_iter().take(budget).map(|n| (n, None)));
        } else {
            let mut surging = 0;
            let mut allowed: Vec<String> = Vec::new();
            let mut candidates: Vec<String> = Vec::new();
            for (node, keep) in &eligible {
                let name = node.metadata.name.clone().unwrap_or_default();
                match split(keep) {
                    (Some(new), Some(old)) => {
                        if pod_available(&new, min_ready, now) {
                            plan.delete.push((old.name_any(), None));
                        } else {
                            surging += 1;
                        }
                    }
                    (None, Some(old)) => {
                        if pod_available(&old, min_ready, now) {
                            candidates.push(name);
                        } else {
                            allowed.push(name);
                        }
                    }
                    _ => {}
                }
            }
            let room = (max_surge - surging).max(0) as usize;
            plan.create.extend(allowed);
            plan.create.extend(candidates.into_iter().take(room));
        }
    }
    // Pods not yet available: look again when minReadySeconds passes.
    if min_ready > 0 && available < st.number_ready {
        plan.requeue = Some(Duration::from_secs(min_ready as u64));
    }
    plan.status = st;
    plan
}

fn ds_ref(ds: &DaemonSet) -> ObjectRef {
    ObjectRef {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        namespace: ds.namespace().unwrap_or_default(),
        name: ds.name_any(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
    }
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Arc<Pod>> = kit::list_pods(&ctx.client, &ns, &spec.selector)
        .await?
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();
    let nodes = kit::list_nodes(&ctx.client).await?;

    let mut mem = ctx
        .mem
        .lock()
        .ok()
        .and_then(|m| m.get(&uid).cloned())
        .unwrap_or_default();
    let names: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
    mem.creates.retain(|n| !names.contains(n));
    mem.deletes.retain(|u| {
        pods.iter().any(|p| {
            p.metadata.uid.as_deref() == Some(u.as_str()) && p.metadata.deletion_timestamp.is_none()
        })
    });
    if (!mem.creates.is_empty() || !mem.deletes.is_empty())
        && mem
            .since
            .is_some_and(|s| s.elapsed() < Duration::from_secs(30))
    {
        save(&ctx, &uid, mem);
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    mem.creates.clear();
    mem.deletes.clear();

    let in_use: HashSet<String> = pods
        .iter()
        .filter_map(|p| hash_of(p).map(String::from))
        .collect();
    let (hash, _) = kit::sync_revisions(
        &ctx.client,
        "apps/v1",
        "DaemonSet",
        &ds.metadata,
        &spec.selector,
        &spec.template,
        ds.status.as_ref().and_then(|s| s.collision_count),
        spec.revision_history_limit.unwrap_or(10),
        &in_use,
    )
    .await?;

    let plan = plan(&ds, &nodes, &pods, &hash, kit::now());
    let r = ds_ref(&ds);
    for (pname, warn) in &plan.delete {
        if let Some(msg) = warn {
            ctx.recorder
                .record(&r, "Warning", "FailedDaemonPod", msg)
                .await;
        }
        match pod_api.delete(pname, &DeleteParams::default()).await {
            Ok(_) => {
                if let Some(u) = pods
                    .iter()
                    .find(|p| p.name_any() == *pname)
                    .and_then(|p| p.metadata.uid.clone())
                {
                    mem.deletes.insert(u);
                }
                mem.since = Some(Instant::now());
                ctx.recorder
                    .record(
                        &r,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pname}"),
                    )
                    .await;
            }
            Err(e) if kit::is_not_found(&e) => {}
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    )
                    .await;
            }
        }
    }
    for node in &plan.create {
        let pod = pod_for(&ds, node, &hash);
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                mem.creates.insert(p.name_any());
                mem.since = Some(Instant::now());
                ctx.recorder
                    .record(
                        &r,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.name_any()),
                    )
                    .await;
            }
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )
                    .await;
            }
        }
    }
    save(&ctx, &uid, mem);
    if ds.status.as_ref() != Some(&plan.status) {
        let mut d = (*ds).clone();
        d.status = Some(plan.status.clone());
        ds_api
            .replace_status(&name, &PostParams::default(), &d)
            .await?;
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

fn save(ctx: &Ctx, uid: &str, mem: Mem) {
    if let Ok(mut m) = ctx.mem.lock() {
        m.insert(uid.to_string(), mem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ds(strategy: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap()
    }

    fn node(name: &str, taints: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints}})).unwrap()
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let conds = if ready {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}])
        } else {
            json!([])
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                    "labels": {"app": "agent", REVISION_HASH_LABEL: hash}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
                "status": {"phase": "Running", "conditions": conds},
            }))
            .unwrap(),
        )
    }

    fn now() -> Timestamp {
        "2024-01-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        );
        let nodes = vec![
            node("a", json!([])),
            node(
                "b",
                json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
            ),
            node(
                "c",
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            ),
        ];
        let p = plan(&d, &nodes, &[], "h1", now());
        assert_eq!(p.create, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(p.status.desired_number_scheduled, 2);
        assert_eq!(p.status.number_unavailable, Some(2));
        let pods = vec![
            pod("agent-1", "a", "h1", true),
            pod("agent-2", "b", "h1", true),
        ];
        let p = plan(&d, &nodes, &pods, "h1", now());
        assert_eq!(p.create, vec!["c".to_string()]);
        assert_eq!(p.status.number_misscheduled, 1);
        assert_eq!(p.status.current_number_scheduled, 1);
        assert_eq!(p.status.number_ready, 1);
        assert_eq!(p.status.updated_number_scheduled, Some(1));
        assert_eq!(p.status.observed_generation, Some(2));
        // NoSchedule: an existing pod may keep running.
        assert!(p.delete.is_empty());
    }

    #[test]
    fn pinned_pod_has_affinity_and_tolerations() {
        let d = ds(json!({"type": "OnDelete"}));
        let p = pod_for(&d, "node1", "h1");
        assert_eq!(target_node(&p).as_deref(), Some("node1"));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l[REVISION_HASH_LABEL], "h1");
        assert_eq!(l[TEMPLATE_GENERATION_LABEL], "2");
        let tols = p.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert_eq!(tols.len(), 6);
        assert!(tols.iter().any(
            |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                && t.effect.as_deref() == Some("NoExecute")
        ));
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let d = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        );
        let nodes = vec![
            node("a", json!([])),
            node("b", json!([])),
            node("c", json!([])),
        ];
        let pods = vec![
            pod("p-a", "a", "old", true),
            pod("p-b", "b", "old", true),
            pod("p-c", "c", "old", true),
        ];
        let p = plan(&d, &nodes, &pods, "new", now());
        assert_eq!(p.delete.len(), 1);
        assert!(p.create.is_empty());
        // One node being replaced (missing pod) uses up the budget.
        let p = plan(&d, &nodes, &pods[1..], "new", now());
        assert_eq!(p.create, vec!["a".to_string()]);
        assert!(p.delete.is_empty());
        // OnDelete never deletes.
        let d = ds(json!({"type": "OnDelete"}));
        let p = plan(&d, &nodes, &pods, "new", now());
        assert!(p.delete.is_empty() && p.create.is_empty());
    }

    #[test]
    fn rolling_update_with_surge() {
        let d = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        );
        let nodes = vec![node("a", json!([])), node("b", json!([]))];
        let pods = vec![pod("p-a", "a", "old", true), pod("p-b", "b", "old", true)];
        let p = plan(&d, &nodes, &pods, "new", now());
        assert_eq!(p.create, vec!["a".to_string()]);
        assert!(p.delete.is_empty());
        let pods2 = vec![
            pods[0].clone(),
            pods[1].clone(),
            pod("n-a", "a", "new", true),
        ];
        let p = plan(&d, &nodes, &pods2, "new", now());
        assert_eq!(p.delete, vec![("p-a".to_string(), None)]);
        assert_eq!(p.create, vec!["b".to_string()]);
    }

    // -- Full reconciles against the fake API --------------------------------

    use crate::testkit::{FakeApi, Write};

    struct Env {
        fake: FakeApi,
        ctx: Arc<Ctx>,
    }

    fn env() -> Env {
        let fake = FakeApi::new();
        let client = fake.client();
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), COMPONENT, ""),
            client,
            mem: Mutex::new(HashMap::new()),
        });
        Env { fake, ctx }
    }

    impl Env {
        async fn sync(&self) -> Action {
            let d = self.fake.get::<DaemonSet>("default", "agent").unwrap();
            reconcile(Arc::new(d), self.ctx.clone()).await.unwrap()
        }

        fn status(&self) -> DaemonSetStatus {
            let d = self.fake.get::<DaemonSet>("default", "agent").unwrap();
            d.status.unwrap_or_default()
        }

        /// (node, pod name) of the live pods, sorted by node.
        fn pods_by_node(&self) -> Vec<(String, String)> {
            let mut v: Vec<(String, String)> = self
                .fake
                .list::<Pod>()
                .iter()
                .map(|p| (target_node(p).unwrap_or_default(), p.name_any()))
                .collect();
            v.sort();
            v
        }

        /// The pods turn Running and Ready (kubelet and scheduler at work).
        fn make_ready(&self) {
            for p in self.fake.list::<Pod>() {
                self.fake.modify::<Pod>("default", &p.name_any(), |p| {
                    p.status = serde_json::from_value(json!({"phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"}]}))
                    .unwrap();
                });
            }
        }
    }

    fn ok_writes<'a>(w: &'a [Write], verb: &str, resource: &str) -> Vec<&'a Write> {
        w.iter()
            .filter(|w| w.verb == verb && w.resource == resource && w.code < 300)
            .collect()
    }

    fn labeled_node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    /// The hash the controller gives pods of `ds`'s current template.
    fn current_hash(d: &DaemonSet) -> String {
        let t = serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap();
        kit::revision_hash(&t, None)
    }

    fn with_selector(mut d: DaemonSet) -> DaemonSet {
        let spec = d.spec.as_mut().unwrap();
        spec.template.spec.as_mut().unwrap().node_selector =
            Some([("role".to_string(), "worker".to_string())].into());
        d
    }

    #[tokio::test]
    async fn reconcile_runs_one_pod_per_eligible_node() {
        let e = env();
        let worker = json!({"role": "worker"});
        for n in [
            labeled_node("n1", worker.clone(), json!([])),
            // Tolerated by the daemon tolerations.
            labeled_node(
                "n2",
                worker.clone(),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
            ),
            // Not tolerated.
            labeled_node(
                "n3",
                worker.clone(),
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
            ),
            // Not selected.
            labeled_node("n4", json!({"role": "infra"}), json!([])),
        ] {
            e.fake.insert(&n);
        }
        let d = e
            .fake
            .insert(&with_selector(ds(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}))));
        e.sync().await;
        let w = e.fake.take_writes();
        assert_eq!(ok_writes(&w, "create", "controllerrevisions").len(), 1);
        assert_eq!(ok_writes(&w, "create", "pods").len(), 2);
        let nodes: Vec<String> = e.pods_by_node().into_iter().map(|(n, _)| n).collect();
        assert_eq!(nodes, ["n1", "n2"]);
        let p = e.fake.list::<Pod>().remove(0);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert!(p.name_any().starts_with("agent-"));
        let l = p.metadata.labels.clone().unwrap();
        assert_eq!(l[REVISION_HASH_LABEL], current_hash(&d));
        assert_eq!(l[TEMPLATE_GENERATION_LABEL], "2");
        assert!(controlled_by(&p.metadata, "ds-uid"));
        let tols = p.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(tols
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable")));
        let st = e.status();
        assert_eq!(st.desired_number_scheduled, 2);
        assert_eq!(st.current_number_scheduled, 0);
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.observed_generation, Some(2));

        // The pods are seen: nothing more to do, status counts them.
        e.sync().await;
        let w = e.fake.take_writes();
        assert!(ok_writes(&w, "create", "pods").is_empty());
        assert!(ok_writes(&w, "delete", "pods").is_empty());
        let st = e.status();
        assert_eq!(
            (st.current_number_scheduled, st.number_misscheduled),
            (2, 0)
        );
        assert_eq!(st.updated_number_scheduled, Some(2));
        e.make_ready();
        e.sync().await;
        let st = e.status();
        assert_eq!((st.number_ready, st.number_available), (2, Some(2)));
        assert_eq!(st.number_unavailable, None);
    }

    #[tokio::test]
    async fn pods_leave_nodes_that_become_ineligible() {
        let e = env();
        let worker = json!({"role": "worker"});
        for n in ["n1", "n2", "n3"] {
            e.fake.insert(&labeled_node(n, worker.clone(), json!([])));
        }
        e.fake
            .insert(&with_selector(ds(json!({"type": "OnDelete"}))));
        e.sync().await;
        e.make_ready();
        e.sync().await;
        e.fake.take_writes();
        let before = e.pods_by_node();
        assert_eq!(before.len(), 3);
        // n1 no longer selected, n2 gets an untolerated NoExecute taint: both
        // pods go. n3 gets an untolerated NoSchedule taint: its pod may stay
        // (misscheduled).
        e.fake.modify::<Node>("", "n1", |n| {
            n.metadata.labels = Some([("role".to_string(), "infra".to_string())].into())
        });
        let taint = |key: &str, effect: &str| {
            serde_json::from_value::<Vec<k8s_openapi::api::core::v1::Taint>>(
                json!([{"key": key, "effect": effect}]),
            )
            .unwrap()
        };
        e.fake.modify::<Node>("", "n2", |n| {
            n.spec.get_or_insert_with(Default::default).taints = Some(taint("evict", "NoExecute"))
        });
        e.fake.modify::<Node>("", "n3", |n| {
            n.spec.get_or_insert_with(Default::default).taints = Some(taint("drain", "NoSchedule"))
        });
        e.sync().await;
        let w = e.fake.take_writes();
        let mut deleted: Vec<String> = ok_writes(&w, "delete", "pods")
            .iter()
            .map(|w| w.name.clone())
            .collect();
        deleted.sort();
        assert_eq!(deleted, [before[0].1.clone(), before[1].1.clone()]);
        assert!(ok_writes(&w, "create", "pods").is_empty());
        assert_eq!(e.pods_by_node(), [before[2].clone()]);
        // Counted before the deletes are seen (upstream too); then settled.
        assert_eq!(e.status().number_misscheduled, 3);
        e.sync().await;
        assert!(e.fake.take_writes().iter().all(|w| w.resource != "pods"));
        let st = e.status();
        assert_eq!(st.desired_number_scheduled, 0);
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.current_number_scheduled, 0);
    }

    #[tokio::test]
    async fn status_counts_ready_and_misscheduled_pods() {
        let e = env();
        let d = e.fake.insert(&ds(json!({"type": "OnDelete"})));
        let h = current_hash(&d);
        for n in ["a", "b", "c"] {
            e.fake.insert(&node(n, json!([])));
        }
        e.fake.insert(&node(
            "d",
            json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        ));
        for (name, n, hash, ready) in [
            ("p-a", "a", h.as_str(), true),
            ("p-b", "b", "old", false),
            ("p-d", "d", h.as_str(), true),
        ] {
            let mut p = (*pod(name, n, hash, ready)).clone();
            p.metadata.owner_references =
                Some(vec![controller_ref("apps/v1", "DaemonSet", &d.metadata)]);
            e.fake.insert(&p);
        }
        e.sync().await;
        let w = e.fake.take_writes();
        // Only c lacks a pod; OnDelete keeps p-b although it is old.
        let creates = ok_writes(&w, "create", "pods");
        assert_eq!(creates.len(), 1);
        assert_eq!(
            target_node(&serde_json::from_value(creates[0].body.clone()).unwrap()).as_deref(),
            Some("c")
        );
        assert!(ok_writes(&w, "delete", "pods").is_empty());
        let st = e.status();
        assert_eq!(st.desired_number_scheduled, 3);
        assert_eq!(st.current_number_scheduled, 2);
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.number_ready, 1);
        assert_eq!(st.number_available, Some(1));
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.updated_number_scheduled, Some(1));
        // The status is written through the /status subresource.
        let sw = ok_writes(&w, "update", "daemonsets");
        assert_eq!(sw.len(), 1);
        assert_eq!(sw[0].subresource.as_deref(), Some("status"));
    }

    #[tokio::test]
    async fn rolling_update_replaces_one_pod_at_a_time() {
        let e = env();
        let d = e.fake.insert(&ds(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})));
        let h = current_hash(&d);
        for n in ["a", "b", "c"] {
            e.fake.insert(&node(n, json!([])));
            let mut p = (*pod(&format!("old-{n}"), n, "old", true)).clone();
            p.metadata.owner_references =
                Some(vec![controller_ref("apps/v1", "DaemonSet", &d.metadata)]);
            e.fake.insert(&p);
        }
        let mut replaced = Vec::new();
        for round in 0..3 {
            e.sync().await;
            let w = e.fake.take_writes();
            let deleted = ok_writes(&w, "delete", "pods");
            assert_eq!(deleted.len(), 1, "round {round}: one old pod at a time");
            assert!(ok_writes(&w, "create", "pods").is_empty());
            replaced.push(deleted[0].name.clone());
            // While the replacement is missing or not ready, no other goes.
            e.sync().await;
            let w = e.fake.take_writes();
            assert_eq!(ok_writes(&w, "create", "pods").len(), 1, "round {round}");
            assert!(ok_writes(&w, "delete", "pods").is_empty());
            e.sync().await;
            assert!(ok_writes(&e.fake.take_writes(), "delete", "pods").is_empty());
            e.make_ready();
        }
        replaced.sort();
        assert_eq!(replaced, ["old-a", "old-b", "old-c"]);
        e.sync().await;
        let st = e.status();
        assert_eq!(st.updated_number_scheduled, Some(3));
        assert_eq!(st.number_available, Some(3));
        assert!(e
            .fake
            .list::<Pod>()
            .iter()
            .all(|p| p.metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL] == h));
    }
}
