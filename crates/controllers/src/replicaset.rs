//! The ReplicaSet controller (upstream pkg/controller/replicaset): keeps
//! `spec.replicas` active pods matching the selector, creating them in
//! slow-start batches under expectations, adopting orphans and releasing pods
//! that stop matching, deleting in upstream rank order, and reporting status.

use crate::common_rs::{
    api_code, api_msg, controller_of, controller_ref, event_objects, informer, key_of, labels_of,
    now, obj_ref, pod_is_active, pod_is_available, pod_is_ready, pod_ready_condition,
    random_suffix, seconds_until_available, selector_matches, Error, Expectations,
};
use bosun_events::{ObjectRef as EvRef, Recorder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{applier, Action, Config};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Upstream BurstReplicas: at most this many creates/deletes per sync.
const BURST_REPLICAS: usize = 500;
/// Upstream SlowStartInitialBatchSize.
const SLOW_START_INITIAL_BATCH: usize = 1;
const COMPONENT: &str = "replicaset-controller";

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    rss: Store<ReplicaSet>,
    exp: Expectations,
    rec: Recorder,
}

fn rs_ev_ref(rs: &ReplicaSet) -> EvRef {
    EvRef {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        namespace: rs.metadata.namespace.clone().unwrap_or_default(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
    }
}

fn is_rs_owner(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    r.kind == "ReplicaSet" && r.api_version.starts_with("apps/")
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let exp = Expectations::default();
    let (tx, rx) =
        futures::channel::mpsc::unbounded::<kube::runtime::reflector::ObjectRef<ReplicaSet>>();

    let (tx1, exp1) = (tx.clone(), exp.clone());
    let rss = informer(Api::<ReplicaSet>::all(client.clone()), move |ev| {
        let deleted = matches!(ev, watcher::Event::Delete(_));
        for rs in event_objects(ev) {
            if deleted {
                exp1.forget(&key_of(&rs.metadata));
            } else {
                let _ = tx1.unbounded_send(kube::runtime::reflector::ObjectRef::from_obj(rs));
            }
        }
    });

    let (tx2, exp2, rss2) = (tx.clone(), exp.clone(), rss.clone());
    let pods = informer(Api::<Pod>::all(client.clone()), move |ev| {
        let deleted = matches!(ev, watcher::Event::Delete(_));
        for p in event_objects(ev) {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            let name = p.metadata.name.as_deref().unwrap_or_default();
            match controller_of(&p.metadata) {
                Some(c) if is_rs_owner(c) => {
                    let key = format!("{ns}/{}", c.name);
                    exp2.creation_observed(&key, name);
                    if deleted || p.metadata.deletion_timestamp.is_some() {
                        exp2.deletion_observed(&key, name);
                    }
                    let _ = tx2.unbounded_send(obj_ref(ns, &c.name));
                }
                Some(_) => {}
                None if deleted => {}
                None => {
                    // An orphan: every ReplicaSet whose selector matches may adopt it.
                    let labels = labels_of(&p.metadata);
                    for rs in rss2.state() {
                        if rs.metadata.namespace.as_deref() == Some(ns)
                            && selector_matches(
                                &rs.spec
                                    .as_ref()
                                    .map(|s| s.selector.clone())
                                    .unwrap_or_default(),
                                &labels,
                            )
                        {
                            let _ = tx2.unbounded_send(
                                kube::runtime::reflector::ObjectRef::from_obj(&*rs),
                            );
                        }
                    }
                }
            }
        }
    });
    let _ = rss.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    tracing::info!("replicaset controller started");

    let ctx = Arc::new(Ctx {
        rec: Recorder::new(client.clone(), COMPONENT, ""),
        client,
        pods,
        rss: rss.clone(),
        exp,
    });
    applier(
        |rs, ctx| Box::pin(reconcile(rs, ctx)),
        |_rs, _err, _ctx| Action::requeue(Duration::from_secs(2)),
        ctx,
        rss,
        rx.map(Ok::<_, std::convert::Infallible>),
        Config::default().concurrency(5),
    )
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "replicaset reconcile failed");
        }
    })
    .await;
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let key = key_of(&rs.metadata);
    let pods_store = ctx.pods.clone();
    let ns2 = ns.clone();
    let needs_sync = ctx.exp.satisfied(&key, |n| {
        pods_store
            .get(&obj_ref(&ns2, n))
            .map(|p| p.metadata.deletion_timestamp.is_some())
    });
    let active: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && pod_is_active(p))
        .collect();
    let claimed = claim_pods(&rs, &ctx, active).await?;

    let mut manage_err = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        if let Err(e) = manage_replicas(&claimed, &rs, &ctx).await {
            manage_err = Some(e);
        }
    }
    let status = calculate_status(&rs, &claimed, manage_err.as_ref());
    update_status(&ctx.client, &rs, status).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    // Pods turning available after minReadySeconds produce no event: look again then.
    let mrs = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    if mrs > 0 {
        let t = now();
        if let Some(s) = claimed
            .iter()
            .filter_map(|p| seconds_until_available(p, mrs, t))
            .min()
        {
            return Ok(Action::requeue(Duration::from_secs(s as u64 + 1)));
        }
    }
    if needs_sync {
        Ok(Action::await_change())
    } else {
        // Expectations pending: the informer wakes us; this is the safety net.
        Ok(Action::requeue(Duration::from_secs(30)))
    }
}

/// Upstream PodControllerRefManager.ClaimPods: keeps owned pods that match,
/// releases owned pods that no longer match, adopts matching orphans.
async fn claim_pods(
    rs: &ReplicaSet,
    ctx: &Ctx,
    active: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, Error> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let selector = rs
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut out = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for p in active {
        let matches = selector_matches(&selector, &labels_of(&p.metadata));
        let name = p.metadata.name.clone().unwrap_or_default();
        match controller_of(&p.metadata) {
            Some(c) if c.uid == uid => {
                if matches {
                    out.push(p);
                    continue;
                }
                // Release: drop our ownerReference.
                crate::common_rs::release_owned(&api, &name, &p.metadata, &uid).await?;
            }
            Some(_) => {}
            None => {
                if !matches
                    || rs.metadata.deletion_timestamp.is_some()
                    || p.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                if can_adopt.is_none() {
                    // Recheck with a live read that the owner is not being deleted.
                    let rsapi: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
                    let fresh = rsapi
                        .get_opt(rs.metadata.name.as_deref().unwrap_or_default())
                        .await?;
                    can_adopt = Some(fresh.is_some_and(|f| {
                        f.metadata.uid.as_deref() == Some(uid.as_str())
                            && f.metadata.deletion_timestamp.is_none()
                    }));
                }
                if can_adopt != Some(true) {
                    continue;
                }
                let mut refs: Vec<_> = p.metadata.owner_references.clone().unwrap_or_default();
                refs.push(controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
                let patch = json!({"metadata": {"ownerReferences": refs, "uid": p.metadata.uid}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(np) => out.push(Arc::new(np)),
                    Err(e) if api_code(&e) == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(out)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The pod a ReplicaSet creates from its template (upstream GetPodFromTemplate).
fn pod_from_template(rs: &ReplicaSet, name: &str, prefix: &str) -> Result<Pod, Error> {
    let tmpl = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tm = tmpl.metadata.unwrap_or_default();
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_string());
    pod.metadata.generate_name = Some(prefix.to_string());
    pod.metadata.namespace = rs.metadata.namespace.clone();
    pod.metadata.labels = tm.labels;
    pod.metadata.annotations = tm.annotations;
    pod.metadata.finalizers = tm.finalizers;
    pod.metadata.owner_references =
        Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]);
    pod.spec = Some(
        tmpl.spec
            .ok_or_else(|| Error("unable to create pods: no spec in the template".into()))?,
    );
    Ok(pod)
}

async fn manage_replicas(pods: &[Arc<Pod>], rs: &ReplicaSet, ctx: &Ctx) -> Result<(), Error> {
    let want = rs_replicas(rs).max(0) as usize;
    let key = key_of(&rs.metadata);
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let evref = rs_ev_ref(rs);
    if pods.len() < want {
        let diff = (want - pods.len()).min(BURST_REPLICAS);
        // generateName semantics, with the name chosen here so expectations
        // can name the pods they wait for.
        let mut prefix = format!("{rs_name}-");
        if prefix.len() > 58 {
            prefix.truncate(58);
        }
        let names: Vec<String> = (0..diff)
            .map(|_| format!("{prefix}{}", random_suffix(5)))
            .collect();
        ctx.exp.expect(&key, &names, &[]);
        let mut done = 0usize;
        let mut batch = SLOW_START_INITIAL_BATCH.min(diff);
        let mut first_err: Option<Error> = None;
        while batch > 0 {
            let chunk = &names[done..done + batch];
            let (prefix, key) = (prefix.as_str(), key.as_str());
            let results = futures::future::join_all(chunk.iter().map(|n| {
                let api = api.clone();
                async move { create_pod(&api, rs, ctx, key, n, prefix).await }
            }))
            .await;
            let mut failed = false;
            for r in results {
                match r {
                    Ok(p) => {
                        let pn = p.metadata.name.unwrap_or_default();
                        ctx.rec
                            .record(
                                &evref,
                                "Normal",
                                "SuccessfulCreate",
                                &format!("Created pod: {pn}"),
                            )
                            .await;
                    }
                    Err((code, msg)) => {
                        // A terminating namespace is not a failure worth reporting.
                        if code == 403 && msg.contains("being terminated") {
                            continue;
                        }
                        ctx.rec
                            .record(
                                &evref,
                                "Warning",
                                "FailedCreate",
                                &format!("Error creating: {msg}"),
                            )
                            .await;
                        failed = true;
                        if first_err.is_none() {
                            first_err = Some(Error(msg.to_string()));
                        }
                    }
                }
            }
            done += batch;
            if failed {
                break;
            }
            batch = (2 * batch).min(diff - done);
        }
        // Pods never attempted will never be observed.
        for n in &names[done..] {
            ctx.exp.creation_observed(&key, n);
        }
        return first_err.map_or(Ok(()), Err);
    }
    if pods.len() > want {
        let diff = (pods.len() - want).min(BURST_REPLICAS);
        let related = indirectly_related_pods(rs, ctx);
        let victims = pods_to_delete(pods, &related, diff);
        let names: Vec<String> = victims
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        ctx.exp.expect(&key, &[], &names);
        let results = futures::future::join_all(names.iter().map(|n| {
            let api = api.clone();
            async move { (n, api.delete(n, &DeleteParams::default()).await) }
        }))
        .await;
        let mut first_err = None;
        for (n, r) in results {
            match r {
                Ok(_) => {
                    ctx.rec
                        .record(
                            &evref,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted pod: {n}"),
                        )
                        .await
                }
                Err(e) => {
                    ctx.exp.deletion_observed(&key, n);
                    if api_code(&e) != 404 {
                        let msg = api_msg(&e);
                        ctx.rec
                            .record(
                                &evref,
                                "Warning",
                                "FailedDelete",
                                &format!("Error deleting: {msg}"),
                            )
                            .await;
                        first_err.get_or_insert(Error(msg));
                    }
                }
            }
        }
        return first_err.map_or(Ok(()), Err);
    }
    Ok(())
}

/// Creates one pod named `name`; a taken name is retried once with a new
/// suffix, like generateName. Expectations are lowered for pods not created.
async fn create_pod(
    api: &Api<Pod>,
    rs: &ReplicaSet,
    ctx: &Ctx,
    key: &str,
    name: &str,
    prefix: &str,
) -> Result<Pod, (u16, String)> {
    let mut name = name.to_string();
    for attempt in 0..2 {
        let pod = match pod_from_template(rs, &name, prefix) {
            Ok(p) => p,
            Err(e) => {
                ctx.exp.creation_observed(key, &name);
                return Err((422, e.0));
            }
        };
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                ctx.exp.creation_observed(key, &name);
                if api_code(&e) == 409 && attempt == 0 {
                    name = format!("{prefix}{}", random_suffix(5));
                    ctx.exp.expect(key, std::slice::from_ref(&name), &[]);
                    continue;
                }
                return Err((api_code(&e), api_msg(&e)));
            }
        }
    }
    Err((409, format!("pods \"{name}\" already exists")))
}

/// Pods of every ReplicaSet controlled by the same owner as `rs` (upstream
/// getIndirectlyRelatedPods), used to spread deletions across nodes.
fn indirectly_related_pods(rs: &ReplicaSet, ctx: &Ctx) -> Vec<Arc<Pod>> {
    let ns = rs.metadata.namespace.as_deref();
    let mut uids = std::collections::HashSet::new();
    uids.insert(rs.metadata.uid.clone().unwrap_or_default());
    if let Some(owner) = controller_of(&rs.metadata) {
        for s in ctx.rss.state() {
            if s.metadata.namespace.as_deref() == ns
                && controller_of(&s.metadata).is_some_and(|o| o.uid == owner.uid)
            {
                uids.insert(s.metadata.uid.clone().unwrap_or_default());
            }
        }
    }
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| controller_of(&p.metadata).is_some_and(|c| uids.contains(&c.uid)))
        .collect()
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn ready_time(p: &Pod) -> Option<i64> {
    pod_ready_condition(p)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_nanosecond() as i64)
}

/// Upstream logarithmicRankDiff: compares how long ago two times were, in
/// powers of two of nanoseconds.
fn log_rank_diff(t1: i64, t2: i64, now: i64) -> i64 {
    let r = |t: i64| {
        let d = now - t;
        if d > 0 {
            (d as f64).log2() as i64
        } else {
            -1
        }
    };
    r(t1) - r(t2)
}

/// "a before b" in upstream afterOrZero terms (zero first, then newer first),
/// with logarithmic buckets (LogarithmicScaleDown) and UID tie-break.
fn newer_first(a: Option<i64>, b: Option<i64>, now: i64, ua: &str, ub: &str) -> Option<bool> {
    // Equal times fall to the UID tie-break too, so the comparison stays a
    // total order (Rust's sort panics on an inconsistent comparator).
    match (a, b) {
        (None, None) => None,
        (None, _) => Some(true),
        (_, None) => Some(false),
        (Some(x), Some(y)) => {
            let d = log_rank_diff(x, y, now);
            if d == 0 {
                Some(ua < ub)
            } else {
                Some(d < 0)
            }
        }
    }
}

/// Upstream ActivePodsWithRanks.Less: whether pod `a` should be deleted before `b`.
fn delete_before(a: &Pod, ra: usize, b: &Pod, rb: usize, now: i64) -> bool {
    let na = a
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    let nb = b
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    if pod_is_ready(a) != pod_is_ready(b) {
        return !pod_is_ready(a);
    }
    if deletion_cost(a) != deletion_cost(b) {
        return deletion_cost(a) < deletion_cost(b);
    }
    if ra != rb {
        return ra > rb;
    }
    let (ua, ub) = (
        a.metadata.uid.as_deref().unwrap_or_default(),
        b.metadata.uid.as_deref().unwrap_or_default(),
    );
    if pod_is_ready(a) && pod_is_ready(b) {
        if let Some(r) = newer_first(ready_time(a), ready_time(b), now, ua, ub) {
            return r;
        }
    }
    if max_restarts(a) != max_restarts(b) {
        return max_restarts(a) > max_restarts(b);
    }
    let ct = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond() as i64)
    };
    newer_first(ct(a), ct(b), now, ua, ub).unwrap_or(false)
}

/// Upstream getPodsToDelete: the `diff` pods ranked first.
fn pods_to_delete(pods: &[Arc<Pod>], related: &[Arc<Pod>], diff: usize) -> Vec<Arc<Pod>> {
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| pod_is_active(p)) {
        let n = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        *on_node.entry(n).or_default() += 1;
    }
    let mut ranked: Vec<(Arc<Pod>, usize)> = pods
        .iter()
        .map(|p| {
            let n = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (p.clone(), on_node.get(&n).copied().unwrap_or(0))
        })
        .collect();
    if diff < ranked.len() {
        let t = now().as_nanosecond() as i64;
        ranked.sort_by(|(a, ra), (b, rb)| {
            if delete_before(a, *ra, b, *rb, t) {
                Ordering::Less
            } else if delete_before(b, *rb, a, *ra, t) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        });
    }
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

fn calculate_status(rs: &ReplicaSet, pods: &[Arc<Pod>], err: Option<&Error>) -> ReplicaSetStatus {
    let mut st = rs.status.clone().unwrap_or_default();
    let tmpl_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mrs = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let t = now();
    let (mut full, mut ready, mut avail) = (0, 0, 0);
    for p in pods {
        let l = labels_of(&p.metadata);
        if tmpl_labels.iter().all(|(k, v)| l.get(k) == Some(v)) {
            full += 1;
        }
        if pod_is_ready(p) {
            ready += 1;
            if pod_is_available(p, mrs, t) {
                avail += 1;
            }
        }
    }
    let mut conds = st.conditions.take().unwrap_or_default();
    let has_failure = conds.iter().any(|c| c.type_ == "ReplicaFailure");
    match err {
        Some(e) if !has_failure => {
            let want = rs_replicas(rs) as usize;
            let reason = match pods.len().cmp(&want) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            conds.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.0.clone()),
                last_transition_time: Some(Time(t)),
            });
        }
        None if has_failure => conds.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    st.conditions = (!conds.is_empty()).then_some(conds);
    st.replicas = pods.len() as i32;
    st.fully_labeled_replicas = (full > 0).then_some(full);
    st.ready_replicas = (ready > 0).then_some(ready);
    st.available_replicas = (avail > 0).then_some(avail);
    st
}

async fn update_status(
    client: &Client,
    rs: &ReplicaSet,
    mut st: ReplicaSetStatus,
) -> Result<(), Error> {
    let gen = rs.metadata.generation;
    let cur = rs.status.clone().unwrap_or_default();
    st.observed_generation = gen;
    if cur == st {
        return Ok(());
    }
    let api: Api<ReplicaSet> = Api::namespaced(
        client.clone(),
        rs.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = json!({"status": {
        "replicas": st.replicas,
        "fullyLabeledReplicas": st.fully_labeled_replicas,
        "readyReplicas": st.ready_replicas,
        "availableReplicas": st.available_replicas,
        "observedGeneration": st.observed_generation,
        "conditions": st.conditions,
    }});
    match api
        .patch_status(
            rs.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: bool) -> Arc<Pod> {
        let v = json!({
            "metadata": {"name": name, "uid": name, "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": "2024-01-01T00:00:01Z"}]},
        });
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn deletion_rank_order() {
        let pods = vec![
            pod("running-ready", "n1", "Running", true),
            pod("unassigned", "", "Pending", false),
            pod("running-notready", "n1", "Running", false),
            pod("pending", "n2", "Pending", false),
        ];
        let order: Vec<String> = pods_to_delete(&pods, &[], 3)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(order, ["unassigned", "pending", "running-notready"]);
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let pods = vec![
            pod("a", "n1", "Running", true),
            pod("b", "n2", "Running", true),
        ];
        let related = vec![
            pods[0].clone(),
            pods[1].clone(),
            pod("c", "n2", "Running", true),
        ];
        let order = pods_to_delete(&pods, &related, 1);
        assert_eq!(order[0].metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn status_counts() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "r", "generation": 2},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}},
        }))
        .unwrap();
        let pods = vec![
            pod("x", "n1", "Running", true),
            pod("y", "n1", "Pending", false),
        ];
        let st = calculate_status(&rs, &pods, Some(&Error("quota".into())));
        assert_eq!(st.replicas, 2);
        assert_eq!(st.ready_replicas, Some(1));
        assert_eq!(st.available_replicas, Some(1));
        assert_eq!(st.fully_labeled_replicas, None);
        let c = &st.conditions.unwrap()[0];
        assert_eq!(c.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(c.message.as_deref(), Some("quota"));
    }

    // -- Full reconciles against the fake API --------------------------------

    use crate::testkit::{FakeApi, Mirror, Write};
    use serde_json::Value;

    struct Env {
        fake: FakeApi,
        pods: Mirror<Pod>,
        rss: Mirror<ReplicaSet>,
        ctx: Arc<Ctx>,
    }

    fn env() -> Env {
        let fake = FakeApi::new();
        let client = fake.client();
        let (pods, rss) = (fake.mirror::<Pod>(), fake.mirror::<ReplicaSet>());
        let ctx = Arc::new(Ctx {
            rec: Recorder::new(client.clone(), COMPONENT, ""),
            client,
            pods: pods.store.clone(),
            rss: rss.store.clone(),
            exp: Expectations::default(),
        });
        Env {
            fake,
            pods,
            rss,
            ctx,
        }
    }

    impl Env {
        /// The informers catch up, then `default/web` is reconciled.
        async fn sync(&mut self) -> Result<Action, Error> {
            self.pods.sync();
            self.rss.sync();
            self.reconcile_stale().await
        }

        /// A reconcile with the informers as they are (not caught up).
        async fn reconcile_stale(&self) -> Result<Action, Error> {
            let rs = self.fake.get::<ReplicaSet>("default", "web").unwrap();
            reconcile(Arc::new(rs), self.ctx.clone()).await
        }

        fn set_replicas(&self, n: i32) {
            self.fake.modify::<ReplicaSet>("default", "web", |rs| {
                rs.spec.as_mut().unwrap().replicas = Some(n)
            });
        }

        fn status(&self) -> ReplicaSetStatus {
            let rs = self.fake.get::<ReplicaSet>("default", "web").unwrap();
            rs.status.unwrap_or_default()
        }
    }

    fn web_rs(replicas: i32, extra: Value) -> ReplicaSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
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

    fn ago(secs: i64) -> String {
        k8s_openapi::jiff::Timestamp::from_second(now().as_second() - secs)
            .unwrap()
            .to_string()
    }

    /// A pod of `web` (labels app=web), created `age` seconds ago; `ready`:
    /// seconds since it turned Ready.
    fn web_pod(name: &str, node: &str, phase: &str, age: i64, ready: Option<i64>) -> Pod {
        let conds = match ready {
            Some(s) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": ago(s)}]),
            None => json!([{"type": "Ready", "status": "False", "lastTransitionTime": ago(age)}]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": ago(age),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "rs-uid", "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": phase, "conditions": conds},
        }))
        .unwrap()
    }

    fn ok_writes<'a>(w: &'a [Write], verb: &str, resource: &str) -> Vec<&'a Write> {
        w.iter()
            .filter(|w| w.verb == verb && w.resource == resource && w.code < 300)
            .collect()
    }

    fn names(w: &[&Write]) -> Vec<String> {
        let mut n: Vec<String> = w.iter().map(|w| w.name.clone()).collect();
        n.sort();
        n
    }

    #[tokio::test]
    async fn reconcile_creates_missing_pods_from_the_template() {
        let mut e = env();
        e.fake.insert(&web_rs(3, json!({})));
        let action = e.sync().await.unwrap();
        assert_eq!(action, Action::await_change());
        let w = e.fake.take_writes();
        let creates = ok_writes(&w, "create", "pods");
        assert_eq!(creates.len(), 3);
        for c in &creates {
            assert!(
                c.name.starts_with("web-") && c.name.len() == 9,
                "{}",
                c.name
            );
            assert_eq!(c.body["metadata"]["labels"], json!({"app": "web"}));
            assert_eq!(c.body["metadata"]["generateName"], "web-");
            let owner = &c.body["metadata"]["ownerReferences"][0];
            assert_eq!(
                (&owner["kind"], &owner["uid"], &owner["controller"]),
                (&json!("ReplicaSet"), &json!("rs-uid"), &json!(true))
            );
            assert_eq!(c.body["spec"]["containers"][0]["image"], "nginx");
        }
        let ev = e.fake.events();
        assert_eq!(ev.len(), 3);
        assert!(ev.iter().all(|(t, r, m)| t == "Normal"
            && r == "SuccessfulCreate"
            && m.starts_with("Created pod: web-")));
        // Status reflects the pods seen before the creates (upstream too).
        let st = e.status();
        assert_eq!((st.replicas, st.observed_generation), (0, Some(1)));

        // The informer sees the new pods: nothing more to create.
        e.sync().await.unwrap();
        let w = e.fake.take_writes();
        assert!(ok_writes(&w, "create", "pods").is_empty());
        let st = e.status();
        assert_eq!(st.replicas, 3);
        assert_eq!(st.fully_labeled_replicas, Some(3));
        assert_eq!(st.ready_replicas, None);
    }

    #[tokio::test]
    async fn slow_start_stops_after_a_failed_batch() {
        let mut e = env();
        e.fake.insert(&web_rs(10, json!({})));
        // The 4th create fails: batches of 1, 2 and 4 are tried, then no more.
        e.fake.fail("create", "pods", 3, 500, "quota exceeded");
        let err = e.sync().await.unwrap_err();
        assert_eq!(err.0, "quota exceeded");
        let w = e.fake.take_writes();
        let tried = w
            .iter()
            .filter(|w| w.verb == "create" && w.resource == "pods")
            .count();
        assert_eq!(tried, 7);
        assert_eq!(ok_writes(&w, "create", "pods").len(), 6);
        assert!(e.fake.events().contains(&(
            "Warning".into(),
            "FailedCreate".into(),
            "Error creating: quota exceeded".into()
        )));
        let c = e.status().conditions.unwrap();
        assert_eq!(c[0].type_, "ReplicaFailure");
        assert_eq!(c[0].reason.as_deref(), Some("FailedCreate"));

        // Six creates are still expected: a lagging informer means no action.
        e.reconcile_stale().await.unwrap();
        assert!(ok_writes(&e.fake.take_writes(), "create", "pods").is_empty());
        // Once they are seen, the remaining 4 come (batches 1, 2, 1).
        e.sync().await.unwrap();
        let w = e.fake.take_writes();
        assert_eq!(ok_writes(&w, "create", "pods").len(), 4);
        e.sync().await.unwrap();
        assert!(e.status().conditions.is_none(), "ReplicaFailure cleared");
        assert_eq!(e.status().replicas, 10);
    }

    #[tokio::test]
    async fn expectations_prevent_double_creation_and_deletion() {
        let mut e = env();
        e.fake.insert(&web_rs(3, json!({})));
        e.sync().await.unwrap();
        // A burst of events before the informer saw the pods.
        e.reconcile_stale().await.unwrap();
        e.reconcile_stale().await.unwrap();
        assert_eq!(ok_writes(&e.fake.take_writes(), "create", "pods").len(), 3);
        assert_eq!(e.fake.list::<Pod>().len(), 3);

        e.sync().await.unwrap();
        e.set_replicas(1);
        e.sync().await.unwrap();
        e.reconcile_stale().await.unwrap();
        let w = e.fake.take_writes();
        assert_eq!(ok_writes(&w, "delete", "pods").len(), 2);
        assert_eq!(e.fake.list::<Pod>().len(), 1);
        e.sync().await.unwrap();
        assert!(ok_writes(&e.fake.take_writes(), "delete", "pods").is_empty());
    }

    #[tokio::test]
    async fn surplus_pods_are_deleted_in_rank_order() {
        let mut e = env();
        e.fake.insert(&web_rs(5, json!({})));
        let day = 86_400;
        for p in [
            web_pod("ready-old", "n1", "Running", 10 * day, Some(10 * day)),
            web_pod("ready-new", "n2", "Running", 20, Some(10)),
            web_pod("not-ready", "n1", "Running", 30, None),
            web_pod("pending", "n2", "Pending", 40, None),
            web_pod("unscheduled", "", "Pending", 50, None),
        ] {
            e.fake.insert(&p);
        }
        // Unscheduled < pending < not ready < ready (newer ready first).
        for (want, victim) in [
            (4, "unscheduled"),
            (3, "pending"),
            (2, "not-ready"),
            (1, "ready-new"),
        ] {
            e.set_replicas(want);
            e.sync().await.unwrap();
            let w = e.fake.take_writes();
            assert_eq!(
                names(&ok_writes(&w, "delete", "pods")),
                [victim],
                "replicas {want}"
            );
        }
        assert!(e.fake.get::<Pod>("default", "ready-old").is_some());
        assert!(e.fake.events().contains(&(
            "Normal".into(),
            "SuccessfulDelete".into(),
            "Deleted pod: pending".into()
        )));
    }

    #[tokio::test]
    async fn adopts_matching_orphans_and_releases_pods_that_stop_matching() {
        let mut e = env();
        e.fake.insert(&web_rs(2, json!({})));
        let orphan = |name: &str, app: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            }))
            .unwrap()
        };
        e.fake.insert(&orphan("orphan", "web"));
        e.fake.insert(&orphan("unrelated", "db"));
        e.fake
            .insert(&web_pod("mine", "n1", "Running", 60, Some(50)));
        let mut moved = web_pod("moved", "n1", "Running", 60, Some(50));
        moved.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        e.fake.insert(&moved);
        let mut foreign = web_pod("foreign", "n1", "Running", 60, Some(50));
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other-uid".into();
        e.fake.insert(&foreign);

        e.sync().await.unwrap();
        let w = e.fake.take_writes();
        let patches = ok_writes(&w, "patch", "pods");
        assert_eq!(names(&patches), ["moved", "orphan"]);
        let adopted = e.fake.get::<Pod>("default", "orphan").unwrap();
        let r = &adopted.metadata.owner_references.unwrap()[0];
        assert_eq!((r.uid.as_str(), r.controller), ("rs-uid", Some(true)));
        assert_eq!(r.block_owner_deletion, Some(true));
        let released = e.fake.get::<Pod>("default", "moved").unwrap();
        assert!(released.metadata.owner_references.is_none());
        let other = e.fake.get::<Pod>("default", "unrelated").unwrap();
        assert!(other.metadata.owner_references.is_none());
        // orphan + mine make 2: nothing created or deleted.
        assert!(ok_writes(&w, "create", "pods").is_empty());
        assert!(ok_writes(&w, "delete", "pods").is_empty());
        assert_eq!(e.status().replicas, 2);
    }

    #[tokio::test]
    async fn status_counts_with_min_ready_seconds() {
        let mut e = env();
        e.fake.insert(&web_rs(
            3,
            json!({"spec": {"minReadySeconds": 30, "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}}}),
        ));
        let labeled = |name: &str, ready: Option<i64>| {
            let mut p = web_pod(name, "n1", "Running", 200, ready);
            p.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("tier".into(), "fe".into());
            e.fake.insert(&p);
        };
        labeled("available", Some(100));
        labeled("ready-recently", Some(5));
        e.fake
            .insert(&web_pod("unlabeled", "n1", "Running", 200, None));
        let action = e.sync().await.unwrap();
        let st = e.status();
        assert_eq!(st.replicas, 3);
        assert_eq!(st.fully_labeled_replicas, Some(2));
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(1));
        // Looked at again when the recent pod turns available (~25s).
        assert!(
            [24, 25, 26]
                .map(|s| Action::requeue(Duration::from_secs(s)))
                .contains(&action),
            "{action:?}"
        );
        // The status write carries the counts as a merge patch of /status.
        let w = e.fake.take_writes();
        let sp = ok_writes(&w, "patch", "replicasets");
        assert_eq!(sp.len(), 1);
        assert_eq!(sp[0].subresource.as_deref(), Some("status"));
        assert_eq!(sp[0].body["status"]["availableReplicas"], 1);
        // Nothing changed: no second status write.
        e.sync().await.unwrap();
        assert!(ok_writes(&e.fake.take_writes(), "patch", "replicasets").is_empty());
    }
}
