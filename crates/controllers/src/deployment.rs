//! The Deployment controller (upstream pkg/controller/deployment): owns
//! ReplicaSets named `<deployment>-<pod-template-hash>`, rolls them with the
//! RollingUpdate or Recreate strategy, keeps revisions and history, scales
//! proportionally, and reports status and the Progressing/Available
//! conditions the way kubectl expects.

use crate::common_rs::{
    api_code, api_msg, controller_of, controller_ref, event_objects, fnv32a, informer, labels_of,
    now, obj_ref, safe_encode, scaled_value, selector_is_empty, selector_matches, Error,
};
use bosun_events::{ObjectRef as EvRef, Recorder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{applier, Action, Config};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";
const MAX_REV_HISTORY_CHARS: usize = 2000;

struct Ctx {
    client: Client,
    rss: Store<ReplicaSet>,
    pods: Store<Pod>,
    rec: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let (tx, rx) = futures::channel::mpsc::unbounded::<ObjectRef<Deployment>>();
    let tx1 = tx.clone();
    let deps = informer(Api::<Deployment>::all(client.clone()), move |ev| {
        if matches!(ev, watcher::Event::Delete(_)) {
            return;
        }
        for d in event_objects(ev) {
            let _ = tx1.unbounded_send(ObjectRef::from_obj(d));
        }
    });
    let (tx2, deps2) = (tx.clone(), deps.clone());
    let rss = informer(Api::<ReplicaSet>::all(client.clone()), move |ev| {
        let deleted = matches!(ev, watcher::Event::Delete(_));
        for rs in event_objects(ev) {
            let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
            match controller_of(&rs.metadata) {
                Some(c) if c.kind == "Deployment" => {
                    let _ = tx2.unbounded_send(obj_ref(ns, &c.name));
                }
                Some(_) => {}
                None if deleted => {}
                None => {
                    let labels = labels_of(&rs.metadata);
                    for d in deps2.state() {
                        let sel = d
                            .spec
                            .as_ref()
                            .map(|s| s.selector.clone())
                            .unwrap_or_default();
                        if d.metadata.namespace.as_deref() == Some(ns)
                            && !selector_is_empty(&sel)
                            && selector_matches(&sel, &labels)
                        {
                            let _ = tx2.unbounded_send(ObjectRef::from_obj(&*d));
                        }
                    }
                }
            }
        }
    });
    // Pods matter only for Recreate (old pods must be gone before new ones
    // start): a deleted pod wakes its deployment.
    let (tx3, rss3) = (tx.clone(), rss.clone());
    let pods = informer(Api::<Pod>::all(client.clone()), move |ev| {
        let watcher::Event::Delete(p) = ev else {
            return;
        };
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(c) = controller_of(&p.metadata).filter(|c| c.kind == "ReplicaSet") {
            if let Some(rs) = rss3.get(&obj_ref(ns, &c.name)) {
                if let Some(o) = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
                    let _ = tx3.unbounded_send(obj_ref(ns, &o.name));
                }
            }
        }
    });
    let _ = deps.wait_until_ready().await;
    let _ = rss.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    tracing::info!("deployment controller started");
    let ctx = Arc::new(Ctx {
        rec: Recorder::new(client.clone(), COMPONENT, ""),
        client,
        rss,
        pods,
    });
    applier(
        |d, ctx| Box::pin(reconcile(d, ctx)),
        |_d, _e, _ctx| Action::requeue(Duration::from_millis(500)),
        ctx,
        deps,
        rx.map(Ok::<_, std::convert::Infallible>),
        Config::default().concurrency(5),
    )
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "deployment reconcile failed");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Small helpers (upstream deploymentutil)
// ---------------------------------------------------------------------------

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// (maxSurge, maxUnavailable) resolved against the desired replicas.
fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(d);
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), "25%", desired, true);
    let mut unavail = scaled_value(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        desired,
        false,
    );
    if surge == 0 && unavail == 0 {
        unavail = 1;
    }
    (surge, unavail)
}

fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

fn annotation<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(|s| s.as_str())
}

fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().map(revision).max().unwrap_or(0)
}

fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|p| p != i32::MAX)
}

fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// Drops nulls and empty maps/arrays recursively: upstream's semantic
/// equality treats nil and empty alike.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                normalize(x);
            }
            m.retain(|_, x| {
                !(x.is_null()
                    || x.as_object().is_some_and(|o| o.is_empty())
                    || x.as_array().is_some_and(|a| a.is_empty()))
            });
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn template_value_without_hash(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(l) = v
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        l.remove(HASH_LABEL);
    }
    normalize(&mut v);
    v
}

/// Upstream EqualIgnoreHash.
fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    template_value_without_hash(a) == template_value_without_hash(b)
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
                out.push(b':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        x => out.extend_from_slice(x.to_string().as_bytes()),
    }
}

/// Upstream ComputeHash: FNV-32a of the template (here its canonical JSON
/// instead of Go's spew dump), the collision count appended as 8
/// little-endian bytes, the decimal sum encoded with the safe alphabet.
pub fn compute_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut buf = Vec::new();
    write_canonical(&serde_json::to_value(t).unwrap_or(Value::Null), &mut buf);
    if let Some(c) = collision_count {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(c as u32).to_le_bytes());
        buf.extend_from_slice(&b);
    }
    safe_encode(&fnv32a(&buf).to_string())
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Upstream FindNewReplicaSet: the oldest ReplicaSet whose template equals
/// the deployment's (ignoring the hash label).
fn find_new_rs(d: &Deployment, list: &[ReplicaSet]) -> Option<ReplicaSet> {
    let t = template(d);
    let mut v: Vec<&ReplicaSet> = list.iter().collect();
    v.sort_by(|a, b| by_creation(a, b));
    v.into_iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|rt| equal_ignore_hash(rt, &t))
        })
        .cloned()
}

fn set_annotation(m: &mut ObjectMeta, k: &str, v: &str) -> bool {
    let a = m.annotations.get_or_insert_with(BTreeMap::new);
    if a.get(k).map(|s| s.as_str()) == Some(v) {
        return false;
    }
    a.insert(k.into(), v.into());
    true
}

fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = set_annotation(&mut rs.metadata, DESIRED_REPLICAS, &desired.to_string());
    let b = set_annotation(&mut rs.metadata, MAX_REPLICAS, &max.to_string());
    a || b
}

fn skip_copy(k: &str) -> bool {
    matches!(
        k,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// Upstream SetNewReplicaSetAnnotations.
fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !skip_copy(k) {
            changed |= set_annotation(&mut rs.metadata, k, v);
        }
    }
    let old = annotation(&rs.metadata, REVISION).map(|s| s.to_string());
    let old_int: i64 = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse() {
            Ok(i) => i,
            Err(_) => return false,
        },
    };
    let new_int: i64 = new_revision.parse().unwrap_or(0);
    if old_int < new_int {
        set_annotation(&mut rs.metadata, REVISION, new_revision);
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let hist = annotation(&rs.metadata, REVISION_HISTORY)
                .unwrap_or_default()
                .to_string();
            let mut revs: Vec<String> = hist
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            revs.push(old);
            while revs.len() > 1 && revs.join(",").len() > MAX_REV_HISTORY_CHARS {
                revs.remove(0);
            }
            set_annotation(&mut rs.metadata, REVISION_HISTORY, &revs.join(","));
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str) -> DeploymentCondition {
    let t = Time(now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

fn get_condition<'a>(st: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream SetDeploymentCondition.
fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(st, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    let conds = st.conditions.get_or_insert_with(Vec::new);
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = st.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
        if c.is_empty() {
            st.conditions = None;
        }
    }
}

fn deployment_complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let r = replicas(d);
    st.updated_replicas.unwrap_or(0) == r
        && st.replicas.unwrap_or(0) == r
        && st.available_replicas.unwrap_or(0) == r
        && st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn deployment_progressing(d: &Deployment, st: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = st.replicas.unwrap_or(0) - st.updated_replicas.unwrap_or(0);
    st.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || st.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || st.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

fn deadline(d: &Deployment) -> i64 {
    i64::from(
        d.spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600),
    )
}

fn deployment_timed_out(d: &Deployment, st: &DeploymentStatus) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(st, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => match &c.last_update_time {
            Some(t) => t.0.as_second() + deadline(d) < now().as_second(),
            None => false,
        },
    }
}

fn opt(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Upstream calculateStatus.
fn calculate_status(
    all: &[ReplicaSet],
    new: Option<&ReplicaSet>,
    d: &Deployment,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|r| rs_status(r).2).sum();
    let total: i32 = all.iter().map(rs_replicas).sum();
    let unavailable = (total - available).max(0);
    let cur = d.status.clone().unwrap_or_default();
    let mut st = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: opt(all.iter().map(|r| rs_status(r).0).sum()),
        updated_replicas: opt(new.map(|r| rs_status(r).0).unwrap_or(0)),
        ready_replicas: opt(all.iter().map(|r| rs_status(r).1).sum()),
        available_replicas: opt(available),
        unavailable_replicas: opt(unavailable),
        collision_count: cur.collision_count,
        conditions: cur.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut st,
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            ),
        );
    } else {
        set_condition(
            &mut st,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            ),
        );
    }
    st
}

fn dep_ev_ref(d: &Deployment) -> EvRef {
    EvRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
    }
}

fn name_of(m: &ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// API writes
// ---------------------------------------------------------------------------

impl Ctx {
    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn dep_api(&self, d: &Deployment) -> Api<Deployment> {
        Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or_default(),
        )
    }

    async fn event(&self, d: &Deployment, type_: &str, reason: &str, msg: &str) {
        self.rec.record(&dep_ev_ref(d), type_, reason, msg).await
    }

    /// Writes a ReplicaSet's annotations, replicas and minReadySeconds
    /// (optimistically, against the version it was read at).
    async fn update_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, Error> {
        let patch = json!({
            "metadata": {"annotations": rs.metadata.annotations, "resourceVersion": rs.metadata.resource_version},
            "spec": {"replicas": rs_replicas(rs), "minReadySeconds": rs.spec.as_ref().and_then(|s| s.min_ready_seconds)},
        });
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        Ok(self
            .rs_api(ns)
            .patch(
                &name_of(&rs.metadata),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?)
    }

    /// Writes the deployment's status when it changed; keeps `d` current.
    async fn write_status(&self, d: &mut Deployment, st: DeploymentStatus) -> Result<(), Error> {
        if d.status.as_ref() == Some(&st) {
            return Ok(());
        }
        let patch = json!({"status": {
            "observedGeneration": st.observed_generation,
            "replicas": st.replicas,
            "updatedReplicas": st.updated_replicas,
            "readyReplicas": st.ready_replicas,
            "availableReplicas": st.available_replicas,
            "unavailableReplicas": st.unavailable_replicas,
            "collisionCount": st.collision_count,
            "conditions": st.conditions,
        }});
        match self
            .dep_api(d)
            .patch_status(
                &name_of(&d.metadata),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == 404 => {}
            Err(e) => return Err(e.into()),
        }
        d.status = Some(st);
        Ok(())
    }

    /// Sets the deployment's revision annotation (upstream SetDeploymentRevision).
    async fn set_deployment_revision(&self, d: &mut Deployment, rev: &str) -> Result<(), Error> {
        if annotation(&d.metadata, REVISION) == Some(rev) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        match self
            .dep_api(d)
            .patch(
                &name_of(&d.metadata),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == 404 => {}
            Err(e) => return Err(e.into()),
        }
        set_annotation(&mut d.metadata, REVISION, rev);
        Ok(())
    }

    /// Upstream scaleReplicaSetAndRecordEvent / scaleReplicaSet.
    async fn scale_rs(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        new_scale: i32,
    ) -> Result<bool, Error> {
        let old = rs_replicas(rs);
        if old == new_scale {
            return Ok(false);
        }
        let mut copy = rs.clone();
        set_replicas_annotations(&mut copy, replicas(d), replicas(d) + max_surge(d));
        copy.spec.get_or_insert_with(Default::default).replicas = Some(new_scale);
        *rs = self.update_rs(&copy).await?;
        let op = if new_scale > old { "up" } else { "down" };
        self.event(
            d,
            "Normal",
            "ScalingReplicaSet",
            &format!(
                "Scaled {op} replica set {} to {new_scale} from {old}",
                name_of(&rs.metadata)
            ),
        )
        .await;
        Ok(true)
    }

    /// Like scale_rs but also refreshes the replica annotations when the size
    /// is unchanged (upstream scaleReplicaSet as called by `scale`).
    async fn scale_rs_annotated(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        new_scale: i32,
    ) -> Result<(), Error> {
        let mut copy = rs.clone();
        let ann = set_replicas_annotations(&mut copy, replicas(d), replicas(d) + max_surge(d));
        if rs_replicas(rs) != new_scale {
            self.scale_rs(d, rs, new_scale).await?;
        } else if ann {
            *rs = self.update_rs(&copy).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let mut d = (*d).clone();
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    if selector_is_empty(&selector) {
        ctx.event(
            &d,
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        .await;
        let mut st = d.status.clone().unwrap_or_default();
        if st.observed_generation < d.metadata.generation {
            st.observed_generation = d.metadata.generation;
            ctx.write_status(&mut d, st).await?;
        }
        return Ok(Action::await_change());
    }
    let rs_list = claim_replica_sets(&d, &ctx).await?;
    if d.metadata.deletion_timestamp.is_some() {
        sync_status_only(&mut d, &rs_list, &ctx).await?;
        return Ok(Action::await_change());
    }
    check_paused_conditions(&mut d, &ctx).await?;
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused || is_scaling_event(&mut d, &rs_list, &ctx).await? {
        sync(&mut d, &rs_list, &ctx).await?;
    } else if is_rolling(&d) {
        rollout_rolling(&mut d, &rs_list, &ctx).await?;
    } else {
        rollout_recreate(&mut d, &rs_list, &ctx).await?;
    }
    Ok(requeue_stuck(&d))
}

/// Upstream requeueStuckDeployment: look again when the progress deadline
/// would pass.
fn requeue_stuck(d: &Deployment) -> Action {
    let st = d.status.clone().unwrap_or_default();
    let Some(c) = get_condition(&st, "Progressing") else {
        return Action::await_change();
    };
    if !has_progress_deadline(d)
        || matches!(
            c.reason.as_deref(),
            Some("NewReplicaSetAvailable") | Some("ProgressDeadlineExceeded")
        )
        || deployment_complete(d, &st)
    {
        return Action::await_change();
    }
    let from = c
        .last_update_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let left = from + deadline(d) - now().as_second();
    Action::requeue(Duration::from_secs(left.max(0) as u64 + 1))
}

/// Upstream ClaimReplicaSets: adopt matching orphans, release owned
/// ReplicaSets that stopped matching. Returns the owned ones.
async fn claim_replica_sets(d: &Deployment, ctx: &Ctx) -> Result<Vec<ReplicaSet>, Error> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let sel = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let api = ctx.rs_api(&ns);
    let mut out = Vec::new();
    let mut can_adopt = None;
    for rs in ctx.rss.state() {
        if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let matches = selector_matches(&sel, &labels_of(&rs.metadata));
        let name = name_of(&rs.metadata);
        match controller_of(&rs.metadata) {
            Some(c) if c.uid == uid => {
                if matches {
                    out.push((*rs).clone());
                    continue;
                }
                if d.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                crate::common_rs::release_owned(&api, &name, &rs.metadata, &uid).await?;
            }
            Some(_) => {}
            None => {
                if !matches
                    || d.metadata.deletion_timestamp.is_some()
                    || rs.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                if can_adopt.is_none() {
                    let fresh = ctx.dep_api(d).get_opt(&name_of(&d.metadata)).await?;
                    can_adopt = Some(fresh.is_some_and(|f| {
                        f.metadata.uid.as_deref() == Some(uid.as_str())
                            && f.metadata.deletion_timestamp.is_none()
                    }));
                }
                if can_adopt != Some(true) {
                    continue;
                }
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(controller_ref("apps/v1", "Deployment", &d.metadata));
                let patch = json!({"metadata": {"ownerReferences": refs}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(r) => out.push(r),
                    Err(e) if api_code(&e) == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(out)
}

async fn sync_status_only(
    d: &mut Deployment,
    rs_list: &[ReplicaSet],
    ctx: &Ctx,
) -> Result<(), Error> {
    let (new, old) = get_all_rss(d, rs_list, false, ctx).await?;
    let mut all = old;
    all.extend(new.clone());
    let st = calculate_status(&all, new.as_ref(), d);
    ctx.write_status(d, st).await
}

/// Upstream checkPausedConditions.
async fn check_paused_conditions(d: &mut Deployment, ctx: &Ctx) -> Result<(), Error> {
    if !has_progress_deadline(d) {
        return Ok(());
    }
    let mut st = d.status.clone().unwrap_or_default();
    let cond = get_condition(&st, "Progressing");
    if cond.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Ok(());
    }
    let paused_exists = cond.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused && !paused_exists {
        set_condition(
            &mut st,
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
            ),
        );
    } else if !paused && paused_exists {
        set_condition(
            &mut st,
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
            ),
        );
    } else {
        return Ok(());
    }
    ctx.write_status(d, st).await
}

/// Upstream getAllReplicaSetsAndSyncRevision: (new, all old).
async fn get_all_rss(
    d: &mut Deployment,
    rs_list: &[ReplicaSet],
    create: bool,
    ctx: &Ctx,
) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
    let existing = find_new_rs(d, rs_list);
    let old: Vec<ReplicaSet> = rs_list
        .iter()
        .filter(|rs| {
            existing
                .as_ref()
                .is_none_or(|n| n.metadata.uid != rs.metadata.uid)
        })
        .cloned()
        .collect();
    let new = get_new_rs(d, existing, &old, create, ctx).await?;
    Ok((new, old))
}

/// Upstream getNewReplicaSet.
async fn get_new_rs(
    d: &mut Deployment,
    existing: Option<ReplicaSet>,
    old: &[ReplicaSet],
    create: bool,
    ctx: &Ctx,
) -> Result<Option<ReplicaSet>, Error> {
    let new_revision = (max_revision(old) + 1).to_string();
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    if let Some(rs) = existing {
        let mut copy = rs.clone();
        let ann = set_new_rs_annotations(d, &mut copy, &new_revision, true);
        let mrs = copy
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
            != min_ready_seconds(d);
        if ann || mrs {
            copy.spec
                .get_or_insert_with(Default::default)
                .min_ready_seconds = Some(min_ready_seconds(d));
            return Ok(Some(ctx.update_rs(&copy).await?));
        }
        let rev = annotation(&copy.metadata, REVISION)
            .unwrap_or_default()
            .to_string();
        ctx.set_deployment_revision(d, &rev).await?;
        let st = d.status.clone().unwrap_or_default();
        if has_progress_deadline(d) && get_condition(&st, "Progressing").is_none() {
            let mut st = st;
            let msg = format!("Found new replica set {:?}", name_of(&copy.metadata));
            set_condition(
                &mut st,
                new_condition("Progressing", "True", "FoundNewReplicaSet", &msg),
            );
            ctx.write_status(d, st).await?;
        }
        return Ok(Some(copy));
    }
    if !create {
        return Ok(None);
    }
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let mut tmpl = template(d);
    let hash = compute_hash(&tmpl, collision);
    tmpl.metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut sel = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    sel.match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let rs_name = format!("{}-{}", name_of(&d.metadata), hash);
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(rs_name.clone()),
            namespace: Some(ns.clone()),
            owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
            labels: tmpl.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: Some(min_ready_seconds(d)),
            selector: sel,
            template: Some(tmpl),
        }),
        status: None,
    };
    let mut all: Vec<ReplicaSet> = old.to_vec();
    all.push(rs.clone());
    let count = new_rs_new_replicas(d, &all, &rs);
    rs.spec.get_or_insert_with(Default::default).replicas = Some(count);
    set_new_rs_annotations(d, &mut rs, &new_revision, false);
    let api = ctx.rs_api(&ns);
    let mut already = false;
    let created = match api.create(&PostParams::default(), &rs).await {
        Ok(c) => c,
        Err(e) if api_code(&e) == 409 => {
            already = true;
            let cur = api.get(&rs_name).await?;
            let ours = controller_of(&cur.metadata)
                .is_some_and(|c| Some(&c.uid) == d.metadata.uid.as_ref());
            let same = cur
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template(d)));
            if ours && same {
                cur
            } else {
                // A hash collision: bump collisionCount so the next hash differs.
                let mut st = d.status.clone().unwrap_or_default();
                st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                ctx.write_status(d, st).await?;
                return Err(Error(format!(
                    "replicaset {rs_name:?} already exists (hash collision)"
                )));
            }
        }
        Err(e) if api_code(&e) == 403 && api_msg(&e).contains("being terminated") => {
            return Err(e.into())
        }
        Err(e) => {
            let msg = format!(
                "Failed to create new replica set {rs_name:?}: {}",
                api_msg(&e)
            );
            if has_progress_deadline(d) {
                let mut st = d.status.clone().unwrap_or_default();
                set_condition(
                    &mut st,
                    new_condition("Progressing", "False", "ReplicaSetCreateError", &msg),
                );
                ctx.write_status(d, st).await?;
            }
            ctx.event(d, "Warning", "ReplicaSetCreateError", &msg).await;
            return Err(e.into());
        }
    };
    if !already && count > 0 {
        ctx.event(
            d,
            "Normal",
            "ScalingReplicaSet",
            // Upstream's text for a new ReplicaSet has no "from".
            &format!("Scaled up replica set {rs_name} to {count}"),
        )
        .await;
    }
    ctx.set_deployment_revision(d, &new_revision).await?;
    if !already && has_progress_deadline(d) {
        let mut st = d.status.clone().unwrap_or_default();
        let msg = format!("Created new replica set {rs_name:?}");
        set_condition(
            &mut st,
            new_condition("Progressing", "True", "NewReplicaSetCreated", &msg),
        );
        ctx.write_status(d, st).await?;
    }
    Ok(Some(created))
}

/// Upstream NewRSNewReplicas.
fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new));
    rs_replicas(new) + up
}

/// Upstream isScalingEvent.
async fn is_scaling_event(
    d: &mut Deployment,
    rs_list: &[ReplicaSet],
    ctx: &Ctx,
) -> Result<bool, Error> {
    let (new, old) = get_all_rss(d, rs_list, false, ctx).await?;
    let want = replicas(d).to_string();
    Ok(old
        .iter()
        .chain(new.iter())
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| annotation(&rs.metadata, DESIRED_REPLICAS).is_some_and(|v| v != want)))
}

/// Upstream sync: scaling and paused deployments.
async fn sync(d: &mut Deployment, rs_list: &[ReplicaSet], ctx: &Ctx) -> Result<(), Error> {
    let (mut new, mut old) = get_all_rss(d, rs_list, false, ctx).await?;
    scale(d, &mut new, &mut old, ctx).await?;
    if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
        cleanup(d, &old, ctx).await?;
    }
    let mut all = old;
    all.extend(new.clone());
    let st = calculate_status(&all, new.as_ref(), d);
    ctx.write_status(d, st).await
}

/// Upstream scale: proportional scaling of the active ReplicaSets.
async fn scale(
    d: &Deployment,
    new: &mut Option<ReplicaSet>,
    old: &mut [ReplicaSet],
    ctx: &Ctx,
) -> Result<(), Error> {
    let want = replicas(d);
    // FindActiveOrLatest.
    let active_old: Vec<usize> = (0..old.len())
        .filter(|i| rs_replicas(&old[*i]) > 0)
        .collect();
    let new_active = new.as_ref().is_some_and(|n| rs_replicas(n) > 0);
    let n_active = active_old.len() + usize::from(new_active);
    if new.is_some() || !old.is_empty() {
        let target: Option<&mut ReplicaSet> = match n_active {
            0 => match new.as_mut() {
                Some(n) => Some(n),
                None => {
                    // The latest old one.
                    let i = (0..old.len()).max_by(|a, b| by_creation(&old[*a], &old[*b]));
                    i.map(|i| &mut old[i])
                }
            },
            1 if new_active => new.as_mut(),
            1 => Some(&mut old[active_old[0]]),
            _ => None,
        };
        if let Some(rs) = target {
            if rs_replicas(rs) != want {
                ctx.scale_rs_annotated(d, rs, want).await?;
            }
            return Ok(());
        }
    }
    // IsSaturated: the new ReplicaSet is fully available.
    if let Some(n) = new.as_ref() {
        let desired = annotation(&n.metadata, DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok());
        if rs_replicas(n) == want && desired == Some(want) && rs_status(n).2 == want {
            for rs in old.iter_mut().filter(|r| rs_replicas(r) > 0) {
                ctx.scale_rs(d, rs, 0).await?;
            }
            return Ok(());
        }
    }
    if !is_rolling(d) {
        return Ok(());
    }
    // Proportional scaling across active ReplicaSets.
    let mut all: Vec<&mut ReplicaSet> = old
        .iter_mut()
        .chain(new.iter_mut())
        .filter(|r| rs_replicas(r) > 0)
        .collect();
    let current: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let allowed = if want > 0 { want + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    if to_add > 0 {
        // Largest first; newer first among equals.
        all.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| by_creation(b, a))
        });
    } else if to_add < 0 {
        // Largest first; older first among equals.
        all.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| by_creation(a, b))
        });
    }
    let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut added = 0;
    let mut sizes = Vec::with_capacity(all.len());
    for rs in all.iter() {
        let mut size = rs_replicas(rs);
        if to_add != 0 {
            let p = proportion(rs, d, to_add, added, status_replicas);
            size += p;
            added += p;
        }
        sizes.push(size);
    }
    for (i, rs) in all.into_iter().enumerate() {
        let mut size = sizes[i];
        if i == 0 && to_add != 0 {
            size = (size + to_add - added).max(0);
        }
        ctx.scale_rs_annotated(d, rs, size).await?;
    }
    Ok(())
}

/// Upstream GetProportion.
fn proportion(
    rs: &ReplicaSet,
    d: &Deployment,
    to_add: i32,
    added: i32,
    status_replicas: i32,
) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_replicas(rs)
    } else {
        let dep_replicas = replicas(d) + max_surge(d);
        let annotated = annotation(&rs.metadata, MAX_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(status_replicas);
        if annotated == 0 {
            0
        } else {
            let size = f64::from(rs_replicas(rs)) * f64::from(dep_replicas) / f64::from(annotated);
            size.round() as i32 - rs_replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream cleanupDeployment: delete the oldest zero-size ReplicaSets
/// beyond revisionHistoryLimit.
async fn cleanup(d: &Deployment, old: &[ReplicaSet], ctx: &Ctx) -> Result<(), Error> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return Ok(());
    };
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Ok(());
    }
    alive.sort_by(|a, b| {
        revision(a)
            .cmp(&revision(b))
            .then_with(|| by_creation(a, b))
    });
    for rs in alive.into_iter().take(diff as usize) {
        let st = rs.status.clone().unwrap_or_default();
        if st.replicas != 0
            || rs_replicas(rs) != 0
            || rs.metadata.generation > st.observed_generation
            || rs.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        match ctx
            .rs_api(ns)
            .delete(&name_of(&rs.metadata), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn rollout_rolling(
    d: &mut Deployment,
    rs_list: &[ReplicaSet],
    ctx: &Ctx,
) -> Result<(), Error> {
    let (new, mut old) = get_all_rss(d, rs_list, true, ctx).await?;
    let Some(mut new) = new else {
        return Err(Error("no new replica set".into()));
    };
    // reconcileNewReplicaSet
    let want = replicas(d);
    let scaled_up = if rs_replicas(&new) == want {
        false
    } else if rs_replicas(&new) > want {
        ctx.scale_rs(d, &mut new, want).await?
    } else {
        let mut all = old.clone();
        all.push(new.clone());
        let n = new_rs_new_replicas(d, &all, &new);
        ctx.scale_rs(d, &mut new, n).await?
    };
    if scaled_up {
        return sync_rollout_status(d, &old, Some(&new), ctx).await;
    }
    if reconcile_old_rss(d, &mut old, &new, ctx).await? {
        return sync_rollout_status(d, &old, Some(&new), ctx).await;
    }
    let st = d.status.clone().unwrap_or_default();
    if deployment_complete(d, &st) {
        cleanup(d, &old, ctx).await?;
    }
    sync_rollout_status(d, &old, Some(&new), ctx).await
}

/// Upstream reconcileOldReplicaSets.
async fn reconcile_old_rss(
    d: &Deployment,
    old: &mut [ReplicaSet],
    new: &ReplicaSet,
    ctx: &Ctx,
) -> Result<bool, Error> {
    let old_count: i32 = old.iter().map(rs_replicas).sum();
    if old_count == 0 {
        return Ok(false);
    }
    let all_count = old_count + rs_replicas(new);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new) - rs_status(new).2;
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(false);
    }
    // cleanupUnhealthyReplicas (oldest first).
    let mut idx: Vec<usize> = (0..old.len())
        .filter(|i| rs_replicas(&old[*i]) > 0)
        .collect();
    idx.sort_by(|a, b| by_creation(&old[*a], &old[*b]));
    let mut cleaned = 0;
    for &i in &idx {
        if cleaned >= max_scaled_down {
            break;
        }
        let (spec, avail) = (rs_replicas(&old[i]), rs_status(&old[i]).2);
        if spec == 0 || spec == avail {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(spec - avail);
        ctx.scale_rs(d, &mut old[i], spec - down).await?;
        cleaned += down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate.
    let available: i32 = old.iter().map(|r| rs_status(r).2).sum::<i32>() + rs_status(new).2;
    let mut scaled = 0;
    if available > min_available {
        let total = available - min_available;
        for &i in &idx {
            if scaled >= total {
                break;
            }
            let spec = rs_replicas(&old[i]);
            if spec == 0 {
                continue;
            }
            let down = spec.min(total - scaled);
            ctx.scale_rs(d, &mut old[i], spec - down).await?;
            scaled += down;
        }
    }
    Ok(cleaned + scaled > 0)
}

async fn rollout_recreate(
    d: &mut Deployment,
    rs_list: &[ReplicaSet],
    ctx: &Ctx,
) -> Result<(), Error> {
    let (mut new, mut old) = get_all_rss(d, rs_list, false, ctx).await?;
    let mut scaled_down = false;
    for rs in old.iter_mut().filter(|r| rs_replicas(r) > 0) {
        scaled_down |= ctx.scale_rs(d, rs, 0).await?;
    }
    if scaled_down || old_pods_running(new.as_ref(), &old, ctx) {
        return sync_rollout_status(d, &old, new.as_ref(), ctx).await;
    }
    if new.is_none() {
        let (n, o) = get_all_rss(d, rs_list, true, ctx).await?;
        new = n;
        old = o;
    }
    if let Some(n) = new.as_mut() {
        ctx.scale_rs(d, n, replicas(d)).await?;
    }
    let st = d.status.clone().unwrap_or_default();
    if deployment_complete(d, &st) {
        cleanup(d, &old, ctx).await?;
    }
    sync_rollout_status(d, &old, new.as_ref(), ctx).await
}

/// Upstream oldPodsRunning: any old pod not yet terminated (terminating pods count).
fn old_pods_running(new: Option<&ReplicaSet>, old: &[ReplicaSet], ctx: &Ctx) -> bool {
    if old.iter().map(|r| rs_status(r).0).sum::<i32>() > 0 {
        return true;
    }
    let new_uid = new.and_then(|n| n.metadata.uid.clone());
    let old_uids: std::collections::HashSet<String> = old
        .iter()
        .filter_map(|r| r.metadata.uid.clone())
        .filter(|u| Some(u) != new_uid.as_ref())
        .collect();
    ctx.pods.state().iter().any(|p| {
        controller_of(&p.metadata).is_some_and(|c| old_uids.contains(&c.uid))
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed") | Some("Succeeded")
            )
    })
}

/// Upstream syncRolloutStatus.
async fn sync_rollout_status(
    d: &mut Deployment,
    old: &[ReplicaSet],
    new: Option<&ReplicaSet>,
    ctx: &Ctx,
) -> Result<(), Error> {
    let mut all: Vec<ReplicaSet> = old.to_vec();
    all.extend(new.cloned());
    let mut st = calculate_status(&all, new, d);
    if !has_progress_deadline(d) {
        remove_condition(&mut st, "Progressing");
    }
    let cur = d.status.clone().unwrap_or_default();
    let cur_cond = get_condition(&cur, "Progressing").cloned();
    let complete_already = st.replicas == st.updated_replicas
        && cur_cond
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
    if has_progress_deadline(d) && !complete_already {
        let rs_name = new.map(|n| name_of(&n.metadata));
        let dname = name_of(&d.metadata);
        if deployment_complete(d, &st) {
            let msg = match &rs_name {
                Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                None => format!("Deployment {dname:?} has successfully progressed."),
            };
            set_condition(
                &mut st,
                new_condition("Progressing", "True", "NewReplicaSetAvailable", &msg),
            );
        } else if deployment_progressing(d, &st) {
            let msg = match &rs_name {
                Some(n) => format!("ReplicaSet {n:?} is progressing."),
                None => format!("Deployment {dname:?} is progressing."),
            };
            let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", &msg);
            if let Some(cc) = &cur_cond {
                if cc.status == "True" {
                    c.last_transition_time = cc.last_transition_time.clone();
                }
                remove_condition(&mut st, "Progressing");
            }
            set_condition(&mut st, c);
        } else if deployment_timed_out(d, &st) {
            let msg = match &rs_name {
                Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                None => format!("Deployment {dname:?} has timed out progressing."),
            };
            set_condition(
                &mut st,
                new_condition("Progressing", "False", "ProgressDeadlineExceeded", &msg),
            );
        }
    }
    // ReplicaFailure conditions of the ReplicaSets (the new one first).
    let failure = new
        .into_iter()
        .chain(all.iter())
        .filter_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure")
                .cloned()
        })
        .next();
    match failure {
        Some(f) => set_condition(
            &mut st,
            DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time,
            },
        ),
        None => remove_condition(&mut st, "ReplicaFailure"),
    }
    ctx.write_status(d, st).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(v: Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    fn rs(name: &str, replicas: i32, available: i32, created: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available},
        }))
        .unwrap()
    }

    fn web(replicas: i32) -> Deployment {
        dep(json!({
            "metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "busybox", "image": "busybox"}]}}},
        }))
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let t = template(&web(3));
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t, None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        assert!(h.bytes().all(|b| crate::common_rs::ALPHANUMS.contains(&b)));
        assert!(!h.is_empty() && h.len() <= 10);
        let mut t2 = t.clone();
        t2.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), h);
        assert!(equal_ignore_hash(&t, &t2));
    }

    #[test]
    fn fenceposts_default_25_percent() {
        let d = web(4);
        assert_eq!(fenceposts(&d), (1, 1));
        let d = web(1);
        assert_eq!(fenceposts(&d), (1, 0));
        assert_eq!(max_unavailable(&d), 0);
    }

    #[test]
    fn new_replicas_respect_surge() {
        let d = web(3);
        let old = rs("old", 3, 3, "2024-01-01T00:00:00Z");
        let new = rs("new", 0, 0, "2024-01-01T00:01:00Z");
        assert_eq!(new_rs_new_replicas(&d, &[old, new.clone()], &new), 1);
    }

    #[test]
    fn revision_annotations_on_rollback() {
        let d = web(3);
        let mut r = rs("old", 0, 0, "2024-01-01T00:00:00Z");
        set_annotation(&mut r.metadata, REVISION, "1");
        assert!(set_new_rs_annotations(&d, &mut r, "3", true));
        assert_eq!(annotation(&r.metadata, REVISION), Some("3"));
        assert_eq!(annotation(&r.metadata, REVISION_HISTORY), Some("1"));
    }

    #[test]
    fn status_and_available_condition() {
        let d = web(3);
        let a = rs("a", 3, 2, "2024-01-01T00:00:00Z");
        let st = calculate_status(std::slice::from_ref(&a), Some(&a), &d);
        assert_eq!(st.replicas, Some(3));
        assert_eq!(st.updated_replicas, Some(3));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.unavailable_replicas, Some(1));
        // 25% of 3 rounds down to 0 unavailable allowed: 2 < 3.
        let c = get_condition(&st, "Available").unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("MinimumReplicasUnavailable"));
    }

    #[test]
    fn proportional_fraction() {
        let mut d = web(20);
        d.status = Some(DeploymentStatus {
            replicas: Some(12),
            ..Default::default()
        });
        // 10+surge(5)=... rs with 6 replicas and max-replicas annotation 13.
        let mut r = rs("a", 6, 6, "2024-01-01T00:00:00Z");
        set_annotation(&mut r.metadata, MAX_REPLICAS, "13");
        // 6 * 25 / 13 = 11.5 -> 12 => +6
        assert_eq!(proportion(&r, &d, 10, 0, 12), 6);
    }

    // -- Full reconciles against the fake API --------------------------------

    use crate::testkit::{FakeApi, Mirror, Write};

    struct Env {
        fake: FakeApi,
        rss: Mirror<ReplicaSet>,
        pods: Mirror<Pod>,
        ctx: Arc<Ctx>,
    }

    fn env() -> Env {
        let fake = FakeApi::new();
        let client = fake.client();
        let (rss, pods) = (fake.mirror::<ReplicaSet>(), fake.mirror::<Pod>());
        let ctx = Arc::new(Ctx {
            rec: Recorder::new(client.clone(), COMPONENT, ""),
            client,
            rss: rss.store.clone(),
            pods: pods.store.clone(),
        });
        Env {
            fake,
            rss,
            pods,
            ctx,
        }
    }

    impl Env {
        /// The informers catch up, then `default/web` is reconciled.
        async fn sync(&mut self) {
            self.rss.sync();
            self.pods.sync();
            let d = self.dep();
            reconcile(Arc::new(d), self.ctx.clone()).await.unwrap();
        }

        fn dep(&self) -> Deployment {
            self.fake.get::<Deployment>("default", "web").unwrap()
        }

        fn rs(&self, name: &str) -> ReplicaSet {
            self.fake.get::<ReplicaSet>("default", name).unwrap()
        }

        /// The ReplicaSet whose template runs `image`.
        fn rs_with_image(&self, image: &str) -> ReplicaSet {
            self.fake
                .list::<ReplicaSet>()
                .into_iter()
                .find(|r| {
                    let t = r.spec.as_ref().unwrap().template.as_ref().unwrap();
                    t.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image)
                })
                .unwrap()
        }

        /// The ReplicaSet controller catching up: all of `name`'s replicas
        /// exist and `available` of them are available.
        fn settle(&self, name: &str, available: i32) {
            self.fake.modify::<ReplicaSet>("default", name, |rs| {
                let n = rs_replicas(rs);
                rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                    replicas: n,
                    ready_replicas: Some(available),
                    available_replicas: Some(available),
                    observed_generation: rs.metadata.generation,
                    ..Default::default()
                });
            });
        }

        fn set_replicas(&self, n: i32) {
            self.fake.modify::<Deployment>("default", "web", |d| {
                d.spec.as_mut().unwrap().replicas = Some(n);
                d.metadata.generation = Some(d.metadata.generation.unwrap_or(1) + 1);
            });
        }

        fn condition(&self, type_: &str) -> (String, String) {
            let st = self.dep().status.unwrap_or_default();
            let c = get_condition(&st, type_).cloned().unwrap();
            (c.status, c.reason.unwrap_or_default())
        }
    }

    /// A Deployment `default/web` running `image`, with the API server's
    /// defaults (RollingUpdate 25%/25%, history 10, deadline 600s).
    fn web_dep(replicas: i32, image: &str, extra: Value) -> Deployment {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "dep-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}},
        });
        merge(&mut v, extra);
        dep(v)
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    /// A ReplicaSet of `web` (as the controller made it) for `image`.
    fn owned_rs(
        image: &str,
        replicas: i32,
        available: i32,
        revision: i64,
        created: &str,
        max_replicas: Option<i32>,
    ) -> ReplicaSet {
        let tmpl = template(&web_dep(1, image, json!({})));
        let hash = compute_hash(&tmpl, None);
        let mut ann = json!({REVISION: revision.to_string()});
        if let Some(m) = max_replicas {
            ann[DESIRED_REPLICAS] = json!("10");
            ann[MAX_REPLICAS] = json!(m.to_string());
        }
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "namespace": "default",
                "uid": format!("rs-{revision}"), "generation": 1, "creationTimestamp": created,
                "labels": {"app": "web", HASH_LABEL: hash}, "annotations": ann,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                    "uid": "dep-uid", "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", HASH_LABEL: hash}},
                "template": {"metadata": {"labels": {"app": "web", HASH_LABEL: hash}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {"replicas": replicas, "readyReplicas": available,
                "availableReplicas": available, "observedGeneration": 1},
        }))
        .unwrap()
    }

    fn ok_writes<'a>(w: &'a [Write], verb: &str, resource: &str) -> Vec<&'a Write> {
        w.iter()
            .filter(|w| w.verb == verb && w.resource == resource && w.code < 300)
            .collect()
    }

    /// (name, spec.replicas) of each ReplicaSet scale written, in order.
    fn scales(w: &[Write]) -> Vec<(String, i64)> {
        ok_writes(w, "patch", "replicasets")
            .into_iter()
            .filter(|w| w.subresource.is_none())
            .filter_map(|w| Some((w.name.clone(), w.body["spec"]["replicas"].as_i64()?)))
            .collect()
    }

    #[tokio::test]
    async fn new_deployment_creates_its_first_replicaset() {
        let mut e = env();
        let d = e.fake.insert(&web_dep(3, "nginx:1", json!({})));
        e.sync().await;
        let w = e.fake.take_writes();
        let created = ok_writes(&w, "create", "replicasets");
        assert_eq!(created.len(), 1);
        let hash = compute_hash(&template(&d), None);
        let rs = e.rs(&format!("web-{hash}"));
        let labels = rs.metadata.labels.clone().unwrap();
        assert_eq!(labels[HASH_LABEL], hash);
        let spec = rs.spec.clone().unwrap();
        assert_eq!(spec.selector.match_labels.unwrap()[HASH_LABEL], hash);
        let tl = spec.template.unwrap().metadata.unwrap().labels.unwrap();
        assert_eq!(tl[HASH_LABEL], hash);
        // No old ReplicaSets: the new one gets everything at once.
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(annotation(&rs.metadata, REVISION), Some("1"));
        assert_eq!(annotation(&rs.metadata, DESIRED_REPLICAS), Some("3"));
        assert_eq!(annotation(&rs.metadata, MAX_REPLICAS), Some("4"));
        let owner = controller_of(&rs.metadata).unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "dep-uid")
        );
        assert_eq!(annotation(&e.dep().metadata, REVISION), Some("1"));
        assert_eq!(
            e.condition("Progressing"),
            ("True".into(), "NewReplicaSetCreated".into())
        );
        assert_eq!(
            e.condition("Available"),
            ("False".into(), "MinimumReplicasUnavailable".into())
        );
        let ev = e.fake.events();
        let scaled = format!("Scaled up replica set web-{hash} to 3");
        assert!(
            ev.iter()
                .any(|(t, r, m)| t == "Normal" && r == "ScalingReplicaSet" && *m == scaled),
            "{ev:?}"
        );
        // Nothing changed: a second sync writes nothing.
        e.sync().await;
        let w = e.fake.take_writes();
        assert!(w.iter().all(|w| w.resource == "events"), "{w:?}");
    }

    #[tokio::test]
    async fn rolling_update_surges_new_and_scales_down_old() {
        let mut e = env();
        // replicas 10, 25%/25%: maxSurge 3, maxUnavailable 2.
        let old = e.fake.insert(&owned_rs(
            "nginx:1",
            10,
            10,
            1,
            "2024-01-01T00:00:00Z",
            Some(13),
        ));
        e.fake.insert(&web_dep(10, "nginx:2", json!({})));
        e.sync().await;
        let new = e.rs_with_image("nginx:2");
        let new_name = name_of(&new.metadata);
        let old_name = name_of(&old.metadata);
        // The new ReplicaSet starts at maxSurge (13 - 10 = 3), the old one
        // goes to 8: 13 total - minAvailable 8 - 3 new unavailable = 2.
        assert_eq!(rs_replicas(&new), 3);
        assert_eq!(annotation(&new.metadata, REVISION), Some("2"));
        assert_eq!(rs_replicas(&e.rs(&old_name)), 8);
        assert_eq!(annotation(&e.dep().metadata, REVISION), Some("2"));
        let w = e.fake.take_writes();
        assert_eq!(scales(&w), [(old_name.clone(), 8)]);

        // The new pods come up: new to 5 (13 - 8), old untouched this sync.
        e.settle(&new_name, 3);
        e.settle(&old_name, 8);
        e.sync().await;
        assert_eq!(scales(&e.fake.take_writes()), [(new_name.clone(), 5)]);
        // 13 total - minAvailable 8 - 2 new unavailable = 3 old may go.
        e.settle(&new_name, 3);
        e.sync().await;
        assert_eq!(scales(&e.fake.take_writes()), [(old_name.clone(), 5)]);
        let st = e.dep().status.unwrap();
        assert_eq!(st.replicas, Some(13));
        assert_eq!(st.updated_replicas, Some(5));
        assert_eq!(st.available_replicas, Some(11));
        // Counted against spec sizes (5 + 5) like upstream: none unavailable.
        assert_eq!(st.unavailable_replicas, None);
        assert_eq!(
            e.condition("Progressing"),
            ("True".into(), "ReplicaSetUpdated".into())
        );
        assert_eq!(
            e.condition("Available"),
            ("True".into(), "MinimumReplicasAvailable".into())
        );
    }

    #[tokio::test]
    async fn recreate_scales_old_to_zero_before_creating_new() {
        let mut e = env();
        let old = e
            .fake
            .insert(&owned_rs("nginx:1", 3, 3, 1, "2024-01-01T00:00:00Z", None));
        let old_name = name_of(&old.metadata);
        e.fake.insert(&web_dep(
            3,
            "nginx:2",
            json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}),
        ));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "old-pod", "namespace": "default", "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": old_name,
                    "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        e.fake.insert(&pod);
        e.sync().await;
        let w = e.fake.take_writes();
        assert_eq!(scales(&w), [(old_name.clone(), 0)]);
        assert!(ok_writes(&w, "create", "replicasets").is_empty());
        // Old pods still there (status and pod): still no new ReplicaSet.
        e.sync().await;
        e.settle(&old_name, 0);
        e.sync().await;
        assert!(ok_writes(&e.fake.take_writes(), "create", "replicasets").is_empty());
        // The last old pod is gone: the new ReplicaSet comes at full size.
        e.fake.remove::<Pod>("default", "old-pod");
        e.sync().await;
        let w = e.fake.take_writes();
        assert_eq!(ok_writes(&w, "create", "replicasets").len(), 1);
        assert_eq!(rs_replicas(&e.rs_with_image("nginx:2")), 3);
        assert_eq!(annotation(&e.dep().metadata, REVISION), Some("2"));
    }

    #[tokio::test]
    async fn scaling_mid_rollout_is_proportional() {
        let mut e = env();
        let old = e.fake.insert(&owned_rs(
            "nginx:1",
            8,
            8,
            1,
            "2024-01-01T00:00:00Z",
            Some(13),
        ));
        let new = e.fake.insert(&owned_rs(
            "nginx:2",
            5,
            5,
            2,
            "2024-01-01T00:01:00Z",
            Some(13),
        ));
        let mut d = web_dep(
            20,
            "nginx:2",
            json!({"metadata": {"annotations": {REVISION: "2"}}}),
        );
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..Default::default()
        });
        e.fake.insert(&d);
        e.sync().await;
        // 20 + surge 5 = 25 allowed, 12 to add: old 8*25/13 = 15.4 -> 15,
        // new 5*25/13 = 9.6 -> 10.
        let w = e.fake.take_writes();
        let mut s = scales(&w);
        s.sort();
        let mut want = vec![(name_of(&old.metadata), 15), (name_of(&new.metadata), 10)];
        want.sort();
        assert_eq!(s, want);
        for rs in [&old, &new] {
            let rs = e.rs(&name_of(&rs.metadata));
            assert_eq!(annotation(&rs.metadata, DESIRED_REPLICAS), Some("20"));
            assert_eq!(annotation(&rs.metadata, MAX_REPLICAS), Some("25"));
        }
        assert!(ok_writes(&w, "create", "replicasets").is_empty());
    }

    #[tokio::test]
    async fn paused_deployment_only_updates_status() {
        let mut e = env();
        e.fake
            .insert(&owned_rs("nginx:1", 3, 3, 1, "2024-01-01T00:00:00Z", None));
        e.fake
            .insert(&web_dep(3, "nginx:2", json!({"spec": {"paused": true}})));
        e.sync().await;
        let w = e.fake.take_writes();
        assert!(ok_writes(&w, "create", "replicasets").is_empty());
        assert!(scales(&w).is_empty());
        assert_eq!(
            e.condition("Progressing"),
            ("Unknown".into(), "DeploymentPaused".into())
        );
        let st = e.dep().status.unwrap();
        assert_eq!(
            (st.replicas, st.updated_replicas, st.available_replicas),
            (Some(3), None, Some(3))
        );
        // Resumed: the rollout starts.
        e.fake.modify::<Deployment>("default", "web", |d| {
            d.spec.as_mut().unwrap().paused = Some(false)
        });
        e.sync().await;
        assert_eq!(
            ok_writes(&e.fake.take_writes(), "create", "replicasets").len(),
            1
        );
    }

    #[tokio::test]
    async fn status_conditions_follow_the_rollout() {
        let mut e = env();
        let d = e.fake.insert(&web_dep(3, "nginx:1", json!({})));
        e.sync().await;
        let name = format!("web-{}", compute_hash(&template(&d), None));
        assert_eq!(
            e.condition("Progressing"),
            ("True".into(), "NewReplicaSetCreated".into())
        );
        e.settle(&name, 1);
        e.sync().await;
        assert_eq!(
            e.condition("Progressing"),
            ("True".into(), "ReplicaSetUpdated".into())
        );
        // 3 replicas, 25% unavailable rounds down to 0: 1 is not enough.
        assert_eq!(
            e.condition("Available"),
            ("False".into(), "MinimumReplicasUnavailable".into())
        );
        e.settle(&name, 3);
        e.sync().await;
        assert_eq!(
            e.condition("Progressing"),
            ("True".into(), "NewReplicaSetAvailable".into())
        );
        assert_eq!(
            e.condition("Available"),
            ("True".into(), "MinimumReplicasAvailable".into())
        );
        let st = e.dep().status.unwrap();
        assert_eq!(st.observed_generation, Some(1));
        assert_eq!(
            (
                st.replicas,
                st.updated_replicas,
                st.ready_replicas,
                st.available_replicas,
                st.unavailable_replicas
            ),
            (Some(3), Some(3), Some(3), Some(3), None)
        );
        // Scaling: a new generation, the ReplicaSet follows.
        e.set_replicas(5);
        e.sync().await;
        assert_eq!(scales(&e.fake.take_writes()), [(name.clone(), 5)]);
        assert_eq!(e.dep().status.unwrap().observed_generation, Some(2));
    }

    #[tokio::test]
    async fn history_limit_deletes_oldest_empty_replicasets() {
        let mut e = env();
        let r1 = e
            .fake
            .insert(&owned_rs("nginx:1", 0, 0, 1, "2024-01-01T00:00:00Z", None));
        let r2 = e
            .fake
            .insert(&owned_rs("nginx:2", 0, 0, 2, "2024-01-01T00:01:00Z", None));
        let r3 = e
            .fake
            .insert(&owned_rs("nginx:3", 0, 0, 3, "2024-01-01T00:02:00Z", None));
        e.fake
            .insert(&owned_rs("nginx:4", 3, 3, 4, "2024-01-01T00:03:00Z", None));
        let mut d = web_dep(
            3,
            "nginx:4",
            json!({"metadata": {"annotations": {REVISION: "4"}}, "spec": {"revisionHistoryLimit": 1}}),
        );
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(3),
            updated_replicas: Some(3),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            ..Default::default()
        });
        e.fake.insert(&d);
        e.sync().await;
        let w = e.fake.take_writes();
        let mut deleted: Vec<String> = ok_writes(&w, "delete", "replicasets")
            .iter()
            .map(|w| w.name.clone())
            .collect();
        deleted.sort();
        let mut want = vec![name_of(&r1.metadata), name_of(&r2.metadata)];
        want.sort();
        assert_eq!(deleted, want);
        assert!(e
            .fake
            .get::<ReplicaSet>("default", &name_of(&r3.metadata))
            .is_some());
    }
}
