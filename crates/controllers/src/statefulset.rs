//! The statefulset controller (upstream `pkg/controller/statefulset`): pods
//! with stable names `<sts>-<ordinal>`, hostname/subdomain identity, PVCs
//! from volumeClaimTemplates (`<claim>-<sts>-<ordinal>`, kept or deleted on
//! scale-down and set deletion per `persistentVolumeClaimRetentionPolicy`),
//! OrderedReady and Parallel management, RollingUpdate with partition (highest
//! ordinal first) and OnDelete, ControllerRevisions and status.

use crate::job::kit::{
    self, controlled_by, controller_ref, is_terminating, pod_available, pod_phase, pod_ready,
    Error, Result, REVISION_HASH_LABEL,
};
use bosun_events::{ObjectRef, Recorder};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub const COMPONENT: &str = "statefulset-controller";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let sts: Api<StatefulSet> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, ""),
        client: client.clone(),
    });
    Controller::new(sts, watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "statefulset reconcile");
            }
        })
        .await;
}

fn error_policy(_s: Arc<StatefulSet>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    if kit::is_conflict(e) {
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %e, "statefulset sync failed");
    Action::requeue(kit::ERROR_REQUEUE)
}

/// The ordinal of a pod named `<sts>-<n>`.
pub fn ordinal(sts: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

/// Who should own claim of ordinal `ord`, per
/// `persistentVolumeClaimRetentionPolicy` (upstream's
/// `updateClaimOwnerRefForSetAndPod`): `whenScaled: Delete` makes a
/// condemned ordinal's (≥ replicas) claims the pod's, so they go with it;
/// `whenDeleted: Delete` makes the others the set's, so they go with the
/// set; Retain owns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOwner {
    None,
    Set,
    Pod,
}

pub fn claim_owner(sts: &StatefulSet, ord: i32) -> ClaimOwner {
    let spec = sts.spec.as_ref();
    let policy = spec.and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let deleted = policy.and_then(|p| p.when_deleted.as_deref()) == Some("Delete");
    let scaled = policy.and_then(|p| p.when_scaled.as_deref()) == Some("Delete");
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    if scaled && ord >= replicas {
        ClaimOwner::Pod
    } else if deleted {
        ClaimOwner::Set
    } else {
        ClaimOwner::None
    }
}

/// `refs` with our set/pod owner references replaced by `want` (other
/// owners kept).
fn with_claim_owner(
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    sts: &StatefulSet,
    pod: Option<&Pod>,
    want: ClaimOwner,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let set_uid = sts.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.and_then(|p| p.metadata.uid.clone());
    let mut out: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| {
            !(r.uid == set_uid
                || (r.kind == "Pod" && Some(&r.uid) == pod_uid.as_ref())
                || (r.kind == "Pod"
                    && r.api_version == "v1"
                    && pod.is_some_and(|p| p.name_any() == r.name)))
        })
        .cloned()
        .collect();
    match want {
        ClaimOwner::None => {}
        ClaimOwner::Set => out.push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: sts.name_any(),
            uid: set_uid,
            ..Default::default()
        }),
        ClaimOwner::Pod => {
            if let (Some(p), Some(uid)) = (pod, pod_uid) {
                out.push(OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: p.name_any(),
                    uid,
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// Bring the owner references of the existing pods' claims in line with
/// the retention policy (before condemned pods are deleted, so their
/// claims follow them).
async fn sync_claim_owners(
    sts: &StatefulSet,
    pods: &[Arc<Pod>],
    pvc_api: &Api<PersistentVolumeClaim>,
) -> Result<()> {
    let set = sts.name_any();
    let templates = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if templates.is_empty() {
        return Ok(());
    }
    for pod in pods {
        let Some(ord) = ordinal(&set, &pod.name_any()) else {
            continue;
        };
        let want = claim_owner(sts, ord);
        for claim in &templates {
            let cname = claim_name(&claim.metadata.name.clone().unwrap_or_default(), &set, ord);
            let Some(pvc) = pvc_api.get_opt(&cname).await? else {
                continue;
            };
            let have = pvc.metadata.owner_references.clone().unwrap_or_default();
            let new = with_claim_owner(&have, sts, Some(pod), want);
            if new == have {
                continue;
            }
            let patch = serde_json::json!({"metadata": {
                "ownerReferences": new,
                "resourceVersion": pvc.metadata.resource_version,
            }});
            match pvc_api
                .patch(
                    &cname,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => tracing::debug!(claim = %cname, ?want, "claim owner updated"),
                Err(e) if kit::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn hash_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// The claim name for template `claim` of pod `<sts>-<ordinal>`.
pub fn claim_name(claim: &str, sts: &str, ordinal: i32) -> String {
    format!("{claim}-{sts}-{ordinal}")
}

/// Pod `ordinal` of `sts` from `template` at revision `hash`.
pub fn pod_for(sts: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, hash: &str) -> Pod {
    let spec = sts.spec.clone().unwrap_or_default();
    let set = sts.name_any();
    let name = format!("{set}-{ordinal}");
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = Some(name.clone());
    meta.generate_name = None;
    meta.namespace = sts.namespace();
    meta.owner_references = Some(vec![controller_ref(
        "apps/v1",
        "StatefulSet",
        &sts.metadata,
    )]);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pspec = template.spec.clone().unwrap_or_default();
    pspec.hostname = Some(name.clone());
    if let Some(svc) = spec.service_name.filter(|s| !s.is_empty()) {
        pspec.subdomain = Some(svc);
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let cname = claim.metadata.name.clone().unwrap_or_default();
        let vols = pspec.volumes.get_or_insert_with(Vec::new);
        vols.retain(|v| v.name != cname);
        vols.push(Volume {
            name: cname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&cname, &set, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    Pod {
        metadata: meta,
        spec: Some(pspec),
        status: None,
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Ordinals to create, with the revision to create them at.
    pub create: Vec<(i32, String)>,
    /// Pods to delete.
    pub delete: Vec<String>,
    pub status: StatefulSetStatus,
    pub requeue: Option<Duration>,
}

/// One sync of a StatefulSet over its pods, with its current and update revisions.
pub fn plan(
    sts: &StatefulSet,
    pods: &[Arc<Pod>],
    current: &str,
    update: &str,
    now: Timestamp,
) -> Plan {
    let spec = sts.spec.clone().unwrap_or_default();
    let set = sts.name_any();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let on_delete = strategy.type_.as_deref() == Some("OnDelete");
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0) as i64;
    let mut slots: BTreeMap<i32, &Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<(i32, &Arc<Pod>)> = Vec::new();
    for p in pods {
        let Some(o) = ordinal(&set, &p.name_any()) else {
            continue;
        };
        if o < replicas {
            slots.insert(o, p);
        } else {
            condemned.push((o, p));
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    let mut plan = Plan::default();
    let healthy =
        |p: &Pod| pod_phase(p) == "Running" && pod_ready(p) && !is_terminating(&p.metadata);
    // The revision a (re)created pod gets.
    let revision_for = |o: i32| {
        if !on_delete && o < partition {
            current.to_string()
        } else {
            update.to_string()
        }
    };

    let mut blocked = false;
    for o in 0..replicas {
        match slots.get(&o) {
            None => {
                if !blocked {
                    plan.create.push((o, revision_for(o)));
                }
                if !parallel {
                    blocked = true;
                }
            }
            Some(p) => {
                let phase = pod_phase(p);
                if (phase == "Failed" || phase == "Succeeded") && !is_terminating(&p.metadata) {
                    if !blocked {
                        plan.delete.push(p.name_any());
                    }
                    if !parallel {
                        blocked = true;
                    }
                } else if !parallel && !healthy(p) {
                    blocked = true;
                }
            }
        }
    }
    // Scale down: highest ordinal first, one at a time when ordered.
    if !blocked || parallel {
        for (_, p) in &condemned {
            if is_terminating(&p.metadata) {
                if !parallel {
                    break;
                }
                continue;
            }
            plan.delete.push(p.name_any());
            if !parallel {
                break;
            }
        }
    }
    let all_healthy = slots.len() as i32 == replicas
        && slots.values().all(|p| healthy(p))
        && condemned.is_empty();
    // Rolling update: the highest ordinal not at the update revision goes,
    // once everything else is healthy.
    if !on_delete && all_healthy && plan.create.is_empty() && plan.delete.is_empty() {
        for o in (partition..replicas).rev() {
            let p = slots[&o];
            if hash_of(p) != Some(update) {
                plan.delete.push(p.name_any());
                break;
            }
        }
    }

    // Status.
    let live: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| ordinal(&set, &p.name_any()).is_some())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let ready = count(&|p| pod_ready(p));
    let available = count(&|p| pod_available(p, min_ready, now));
    let updated = count(&|p| hash_of(p) == Some(update) && !is_terminating(&p.metadata));
    let mut current_rev = current.to_string();
    let mut current_replicas =
        count(&|p| hash_of(p) == Some(current) && !is_terminating(&p.metadata));
    let total = live.len() as i32;
    if updated == replicas && ready == replicas && total == replicas {
        current_rev = update.to_string();
        current_replicas = updated;
    }
    let old = sts.status.clone().unwrap_or_default();
    plan.status = StatefulSetStatus {
        replicas: total,
        ready_replicas: Some(ready),
        current_replicas: Some(current_replicas),
        updated_replicas: Some(updated),
        available_replicas: Some(available),
        current_revision: Some(current_rev),
        update_revision: Some(update.to_string()),
        observed_generation: sts.metadata.generation,
        collision_count: Some(old.collision_count.unwrap_or(0)),
        conditions: old.conditions,
    };
    if min_ready > 0 && available < ready {
        plan.requeue = Some(Duration::from_secs(min_ready as u64));
    }
    plan
}

fn sts_ref(s: &StatefulSet) -> ObjectRef {
    ObjectRef {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        uid: s.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The pod template stored in revision `<sts>-<hash>`.
async fn revision_template(client: &Client, ns: &str, name: &str) -> Option<PodTemplateSpec> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let rev = api.get_opt(name).await.ok().flatten()?;
    let mut t = rev.data?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sts.namespace().unwrap_or_default();
    let set = sts.name_any();
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Arc<Pod>> = kit::list_pods(&ctx.client, &ns, &spec.selector)
        .await?
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();
    let in_use: HashSet<String> = pods
        .iter()
        .filter_map(|p| hash_of(p).map(String::from))
        .collect();
    let (update, _) = kit::sync_revisions(
        &ctx.client,
        "apps/v1",
        "StatefulSet",
        &sts.metadata,
        &spec.selector,
        &spec.template,
        // Like upstream, an unset collisionCount hashes as 0: the status
        // write that sets it to 0 must not change the revision.
        Some(
            sts.status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0),
        ),
        spec.revision_history_limit.unwrap_or(10),
        &in_use
            .iter()
            .cloned()
            .chain(sts.status.as_ref().and_then(|s| s.current_revision.clone()))
            .collect(),
    )
    .await?;
    let current = sts
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| update.clone());
    let plan = plan(&sts, &pods, &current, &update, kit::now());
    let r = sts_ref(&sts);
    sync_claim_owners(&sts, &pods, &pvc_api).await?;

    for pname in &plan.delete {
        match pod_api.delete(pname, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.recorder
                    .record(
                        &r,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("delete Pod {pname} in StatefulSet {set} successful"),
                    )
                    .await
            }
            Err(e) if kit::is_not_found(&e) => {}
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "FailedDelete",
                        &format!("delete Pod {pname} in StatefulSet {set} failed error: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }
    for (o, rev) in &plan.create {
        let template = if *rev == update {
            spec.template.clone()
        } else {
            revision_template(&ctx.client, &ns, &format!("{set}-{rev}"))
                .await
                .unwrap_or_else(|| spec.template.clone())
        };
        let pod = pod_for(&sts, &template, *o, rev);
        let pname = pod.name_any();
        // Claims first, kept when the set scales down.
        for claim in spec.volume_claim_templates.iter().flatten() {
            let cname = claim_name(&claim.metadata.name.clone().unwrap_or_default(), &set, *o);
            if pvc_api.get_opt(&cname).await?.is_some() {
                continue;
            }
            let mut pvc = claim.clone();
            pvc.metadata = claim.metadata.clone();
            pvc.metadata.name = Some(cname.clone());
            pvc.metadata.namespace = Some(ns.clone());
            let labels = pvc.metadata.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in spec.selector.match_labels.iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            pvc.status = None;
            // A claim the set owns (whenDeleted: Delete) is created so; a
            // pod owner is added once the pod exists (next sync).
            if claim_owner(&sts, *o) == ClaimOwner::Set {
                let refs = pvc.metadata.owner_references.clone().unwrap_or_default();
                pvc.metadata.owner_references =
                    Some(with_claim_owner(&refs, &sts, None, ClaimOwner::Set));
            }
            match pvc_api.create(&PostParams::default(), &pvc).await {
                Ok(_) => {
                    ctx.recorder
                        .record(
                            &r,
                            "Normal",
                            "SuccessfulCreate",
                            &format!(
                                "create Claim {cname} Pod {pname} in StatefulSet {set} success"
                            ),
                        )
                        .await
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    ctx.recorder
                        .record(
                            &r,
                            "Warning",
                            "FailedCreate",
                            &format!("create Claim {cname} for Pod {pname} in StatefulSet {set} failed error: {e}"),
                        )
                        .await;
                    return Err(e.into());
                }
            }
        }
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                ctx.recorder
                    .record(
                        &r,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("create Pod {pname} in StatefulSet {set} successful"),
                    )
                    .await
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "FailedCreate",
                        &format!("create Pod {pname} in StatefulSet {set} failed error: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }
    if sts.status.as_ref() != Some(&plan.status) {
        let mut s = (*sts).clone();
        s.status = Some(plan.status.clone());
        sts_api
            .replace_status(&set, &PostParams::default(), &s)
            .await?;
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sts(extra: Value) -> StatefulSet {
        let mut spec = json!({"replicas": 3, "serviceName": "nginx", "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {"app": "web"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, hash: &str, healthy: bool) -> Arc<Pod> {
        let (phase, ready) = if healthy {
            ("Running", "True")
        } else {
            ("Pending", "False")
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "web", REVISION_HASH_LABEL: hash}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
            }))
            .unwrap(),
        )
    }

    fn now() -> Timestamp {
        "2024-01-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = sts(json!({}));
        let p = plan(&s, &[], "h1", "h1", now());
        assert_eq!(p.create, vec![(0, "h1".to_string())]);
        let p = plan(&s, &[pod("web-0", "h1", false)], "h1", "h1", now());
        assert!(
            p.create.is_empty(),
            "waits for web-0 to be Running and Ready"
        );
        let p = plan(&s, &[pod("web-0", "h1", true)], "h1", "h1", now());
        assert_eq!(p.create, vec![(1, "h1".to_string())]);
        let s = sts(json!({"podManagementPolicy": "Parallel"}));
        let p = plan(&s, &[], "h1", "h1", now());
        assert_eq!(p.create.len(), 3);
    }

    #[test]
    fn scale_down_in_reverse_order() {
        let s = sts(json!({"replicas": 1}));
        let pods = vec![
            pod("web-0", "h1", true),
            pod("web-1", "h1", true),
            pod("web-2", "h1", true),
        ];
        let p = plan(&s, &pods, "h1", "h1", now());
        assert_eq!(p.delete, vec!["web-2".to_string()]);
        assert_eq!(p.status.replicas, 3);
    }

    #[test]
    fn rolling_update_with_partition() {
        let s = sts(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
        );
        let pods = vec![
            pod("web-0", "h1", true),
            pod("web-1", "h1", true),
            pod("web-2", "h1", true),
        ];
        let p = plan(&s, &pods, "h1", "h2", now());
        assert_eq!(p.delete, vec!["web-2".to_string()]);
        let pods = vec![pod("web-0", "h1", true), pod("web-1", "h1", true)];
        let p = plan(&s, &pods, "h1", "h2", now());
        assert_eq!(p.create, vec![(2, "h2".to_string())]);
        let pods = vec![
            pod("web-0", "h1", true),
            pod("web-1", "h1", true),
            pod("web-2", "h2", true),
        ];
        let p = plan(&s, &pods, "h1", "h2", now());
        assert_eq!(p.delete, vec!["web-1".to_string()]);
        let pods = vec![
            pod("web-0", "h1", true),
            pod("web-1", "h2", true),
            pod("web-2", "h2", true),
        ];
        let p = plan(&s, &pods, "h1", "h2", now());
        assert!(p.delete.is_empty(), "web-0 is below the partition");
        assert_eq!(p.status.updated_replicas, Some(2));
        assert_eq!(p.status.current_replicas, Some(1));
        assert_eq!(p.status.current_revision.as_deref(), Some("h1"));
        // Everything updated: the update revision becomes current.
        let s = sts(json!({}));
        let pods = vec![
            pod("web-0", "h2", true),
            pod("web-1", "h2", true),
            pod("web-2", "h2", true),
        ];
        let p = plan(&s, &pods, "h1", "h2", now());
        assert_eq!(p.status.current_revision.as_deref(), Some("h2"));
        assert_eq!(p.status.current_replicas, Some(3));
        // OnDelete never deletes.
        let s = sts(json!({"updateStrategy": {"type": "OnDelete"}}));
        let pods = vec![
            pod("web-0", "h1", true),
            pod("web-1", "h1", true),
            pod("web-2", "h1", true),
        ];
        assert!(plan(&s, &pods, "h1", "h2", now()).delete.is_empty());
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let with = |policy: Value, replicas: i32| {
            sts(json!({"replicas": replicas, "persistentVolumeClaimRetentionPolicy": policy}))
        };
        let retain = with(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}), 1);
        assert_eq!(claim_owner(&retain, 0), ClaimOwner::None);
        assert_eq!(claim_owner(&retain, 2), ClaimOwner::None);
        let scaled = with(json!({"whenScaled": "Delete"}), 1);
        assert_eq!(claim_owner(&scaled, 0), ClaimOwner::None);
        assert_eq!(claim_owner(&scaled, 1), ClaimOwner::Pod);
        let both = with(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}), 2);
        assert_eq!(claim_owner(&both, 1), ClaimOwner::Set);
        assert_eq!(claim_owner(&both, 2), ClaimOwner::Pod);
        let deleted = with(json!({"whenDeleted": "Delete"}), 1);
        assert_eq!(claim_owner(&deleted, 3), ClaimOwner::Set);
        // Replacing keeps foreign owners and drops our stale one.
        let mut set = deleted.clone();
        set.metadata.uid = Some("set-uid".into());
        set.metadata.name = Some("web".into());
        let foreign = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "x".into(),
            uid: "cm".into(),
            ..Default::default()
        };
        let refs = with_claim_owner(std::slice::from_ref(&foreign), &set, None, ClaimOwner::Set);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].uid, "set-uid");
        assert_eq!(
            with_claim_owner(&refs, &set, None, ClaimOwner::None),
            vec![foreign]
        );
    }

    #[test]
    fn pod_identity_and_claims() {
        let s = sts(json!({}));
        let p = pod_for(&s, &s.spec.as_ref().unwrap().template, 2, "h1");
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let v = &spec.volumes.unwrap()[0];
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-2"
        );
        let l = p.metadata.labels.unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(ordinal("web", "web-10"), Some(10));
        assert_eq!(ordinal("web", "webx-1"), None);
    }
}
