//! The job controller (upstream `pkg/controller/job`): runs pods to
//! completion for Jobs, NonIndexed and Indexed, with backoffLimit and
//! exponential backoff, activeDeadlineSeconds, podFailurePolicy, suspend and
//! ttlSecondsAfterFinished. Pods carry the `batch.kubernetes.io/job-tracking`
//! finalizer until they are counted in the Job's status (through
//! `uncountedTerminatedPods`), exactly like upstream.

pub(crate) mod kit;
pub(crate) mod plan;

use bosun_events::{ObjectRef, Recorder};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kit::{controlled_by, controller_ref, now, Error, Result};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use plan::{Backoff, INDEX_ANNOTATION, TRACKING_FINALIZER};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COMPONENT: &str = "job-controller";

/// What the controller remembers between syncs of one Job (upstream's
/// expectations and backoff record).
#[derive(Debug, Default, Clone)]
struct Mem {
    /// Pods created (by name) that the informer has not shown yet.
    creates: HashSet<String>,
    /// Pods deleted (by uid) that the informer still shows as live.
    deletes: HashSet<String>,
    /// When the expectations were last raised.
    since: Option<Instant>,
    /// Pods (uid) whose tracking finalizer was removed by us.
    released: HashSet<String>,
    backoff: Backoff,
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    mem: Mutex<HashMap<String, Mem>>,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let controller = Controller::new(jobs, watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let job_store = controller.store();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, ""),
        client: client.clone(),
        mem: Mutex::new(HashMap::new()),
    });
    tokio::spawn(release_orphans(client.clone(), job_store));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "job reconcile");
            }
        })
        .await;
}

fn error_policy(_job: Arc<Job>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    if kit::is_conflict(e) {
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %e, "job sync failed");
    Action::requeue(kit::ERROR_REQUEUE)
}

/// Removes the tracking finalizer from pods whose Job is gone.
async fn release_orphans(client: Client, jobs: Store<Job>) {
    let _ = jobs.wait_until_ready().await;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let live: HashSet<String> = jobs
            .state()
            .iter()
            .filter_map(|j| j.metadata.uid.clone())
            .collect();
        let api: Api<Pod> = Api::all(client.clone());
        let lp = ListParams::default().labels("batch.kubernetes.io/controller-uid");
        let Ok(pods) = api.list(&lp).await else {
            continue;
        };
        for p in pods.items {
            let tracked = p.finalizers().iter().any(|f| f == TRACKING_FINALIZER);
            let owner = p
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == "Job")
                .map(|o| o.uid.clone());
            if tracked && owner.is_none_or(|u| !live.contains(&u)) {
                let api: Api<Pod> =
                    Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
                let _ = remove_finalizer(&api, &p.name_any()).await;
            }
        }
    }
}

/// upstream's removeTrackingFinalizerPatch.
async fn remove_finalizer(api: &Api<Pod>, name: &str) -> Result<()> {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if kit::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn job_ref(job: &Job) -> ObjectRef {
    ObjectRef {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: job.namespace().unwrap_or_default(),
        name: job.name_any(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The pod for one more run of `job` (`index` for Indexed jobs).
pub fn pod_for(job: &Job, index: Option<i32>) -> Result<Pod> {
    let spec = job.spec.clone().unwrap_or_default();
    let tmpl = spec.template;
    let jname = job.name_any();
    let mut meta = tmpl.metadata.unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(match index {
        Some(i) => format!("{jname}-{i}-"),
        None => format!("{jname}-"),
    });
    meta.namespace = job.namespace();
    meta.owner_references = Some(vec![controller_ref("batch/v1", "Job", &job.metadata)]);
    meta.finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.into());
    meta.resource_version = None;
    meta.uid = None;
    let mut pspec = tmpl.spec.unwrap_or_default();
    if let Some(i) = index {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_ANNOTATION.into(), i.to_string());
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(INDEX_ANNOTATION.into(), i.to_string());
        if pspec.hostname.is_none() {
            pspec.hostname = Some(format!("{jname}-{i}"));
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{INDEX_ANNOTATION}']"),
                }),
                ..Default::default()
            }),
        };
        for c in pspec
            .containers
            .iter_mut()
            .chain(pspec.init_containers.iter_mut().flatten())
        {
            let envs = c.env.get_or_insert_with(Vec::new);
            if !envs.iter().any(|e| e.name == env.name) {
                envs.push(env.clone());
            }
        }
    }
    Ok(Pod {
        metadata: meta,
        spec: Some(pspec),
        status: None,
    })
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action> {
    let spec = job.spec.clone().unwrap_or_default();
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = spec.selector.clone().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = kit::list_pods(&ctx.client, &ns, &selector)
        .await?
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();

    let mut mem = ctx
        .mem
        .lock()
        .map(|m| m.get(&uid).cloned())
        .ok()
        .flatten()
        .unwrap_or_default();
    // Expectations: wait for the informer to show our own creations and deletions.
    let names: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
    mem.creates.retain(|n| !names.contains(n));
    mem.deletes.retain(|u| {
        pods.iter().any(|p| {
            p.metadata.uid.as_deref() == Some(u.as_str()) && p.metadata.deletion_timestamp.is_none()
        })
    });
    mem.released.retain(|u| {
        pods.iter().any(|p| {
            p.metadata.uid.as_deref() == Some(u.as_str())
                && p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
        })
    });
    let pending = !mem.creates.is_empty() || !mem.deletes.is_empty();
    if pending
        && mem
            .since
            .is_some_and(|s| s.elapsed() < Duration::from_secs(30))
    {
        save(&ctx, &uid, mem);
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    mem.creates.clear();
    mem.deletes.clear();

    if job.metadata.deletion_timestamp.is_some() {
        for p in pods
            .iter()
            .filter(|p| p.finalizers().iter().any(|f| f == TRACKING_FINALIZER))
        {
            remove_finalizer(&pod_api, &p.name_any()).await?;
        }
        forget(&ctx, &uid);
        return Ok(Action::await_change());
    }

    let plan = plan::plan(&job, &pods, &mem.released, &mem.backoff, now());
    if plan.delete_job {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match job_api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(e) if kit::is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        forget(&ctx, &uid);
        return Ok(Action::await_change());
    }

    let mut current = (*job).clone();
    if let Some(interim) = plan.interim.clone() {
        current.status = Some(interim);
        current = job_api
            .replace_status(&name, &PostParams::default(), &current)
            .await?;
    }
    for (pname, puid) in &plan.remove_finalizers {
        remove_finalizer(&pod_api, pname).await?;
        mem.released.insert(puid.clone());
    }
    let jref = job_ref(&job);
    let mut status = plan.status.clone();
    for pname in &plan.delete {
        let Some(p) = pods.iter().find(|p| p.name_any() == *pname) else {
            continue;
        };
        let puid = p.metadata.uid.clone().unwrap_or_default();
        if p.finalizers().iter().any(|f| f == TRACKING_FINALIZER) {
            remove_finalizer(&pod_api, pname).await?;
            mem.released.insert(puid.clone());
        }
        match pod_api.delete(pname, &DeleteParams::default()).await {
            Ok(_) => {
                mem.deletes.insert(puid);
                mem.since = Some(Instant::now());
                ctx.recorder
                    .record(
                        &jref,
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
                        &jref,
                        "Warning",
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }
    let mut failed_creates = 0;
    for idx in &plan.create {
        let pod = pod_for(&job, *idx)?;
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let pname = created.name_any();
                mem.creates.insert(pname.clone());
                mem.since = Some(Instant::now());
                ctx.recorder
                    .record(
                        &jref,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pname}"),
                    )
                    .await;
            }
            Err(e) => {
                failed_creates += 1;
                ctx.recorder
                    .record(
                        &jref,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )
                    .await;
            }
        }
    }
    if failed_creates > 0 {
        let a = status.active.unwrap_or(0) - failed_creates;
        status.active = (a > 0).then_some(a);
    }
    mem.backoff = plan.backoff.clone();
    save(&ctx, &uid, mem);

    if current.status.as_ref() != Some(&status) {
        current.status = Some(status);
        job_api
            .replace_status(&name, &PostParams::default(), &current)
            .await?;
        for ev in &plan.events {
            ctx.recorder
                .record(&jref, ev.type_, &ev.reason, &ev.message)
                .await;
        }
    }
    if failed_creates > 0 {
        return Ok(Action::requeue(kit::ERROR_REQUEUE));
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

fn save(ctx: &Ctx, uid: &str, mem: Mem) {
    if let Ok(mut m) = ctx.mem.lock() {
        m.insert(uid.to_string(), mem);
    }
}

fn forget(ctx: &Ctx, uid: &str) {
    if let Ok(mut m) = ctx.mem.lock() {
        m.remove(uid);
    }
}

#[cfg(test)]
mod tests;
