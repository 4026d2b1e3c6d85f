use super::plan::*;
use super::pod_for;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn job(spec: Value, status: Value) -> Job {
    let mut s = json!({
        "template": {"metadata": {"labels": {"job-name": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": false,
        "podReplacementPolicy": "TerminatingOrFailed",
    });
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid", "resourceVersion": "1"},
        "spec": s, "status": status,
    }))
    .unwrap()
}

fn pod(name: &str, phase: &str, extra: Value) -> Arc<Pod> {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase},
    });
    merge(&mut p, extra);
    Arc::new(serde_json::from_value(p).unwrap())
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

fn conds(p: &Plan) -> Vec<(String, String, String)> {
    p.status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn new_job_creates_parallelism_pods() {
    let j = job(json!({"completions": 5, "parallelism": 2}), json!({}));
    let p = plan(&j, &[], &HashSet::new(), &Backoff::default(), t(0));
    assert_eq!(p.create, vec![None, None]);
    assert_eq!(p.status.active, Some(2));
    assert_eq!(p.status.start_time.as_ref().map(|s| s.0), Some(t(0)));
    assert!(p.interim.is_none());
}

#[test]
fn success_counts_through_uncounted_then_completes() {
    let j = job(json!({}), json!({"startTime": "2023-11-14T22:13:20Z"}));
    let pods = vec![pod("pi-a", "Succeeded", json!({}))];
    let p = plan(&j, &pods, &HashSet::new(), &Backoff::default(), t(5));
    let interim = p.interim.clone().expect("interim status");
    assert_eq!(
        interim
            .uncounted_terminated_pods
            .unwrap()
            .succeeded
            .unwrap(),
        vec!["uid-pi-a".to_string()]
    );
    assert_eq!(
        p.remove_finalizers,
        vec![("pi-a".into(), "uid-pi-a".into())]
    );
    assert_eq!(p.status.succeeded, Some(1));
    assert_eq!(p.status.active, None);
    assert!(p.create.is_empty());
    let c = conds(&p);
    assert!(c.contains(&(
        "SuccessCriteriaMet".into(),
        "True".into(),
        "CompletionsReached".into()
    )));
    assert!(c.contains(&(
        "Complete".into(),
        "True".into(),
        "CompletionsReached".into()
    )));
    assert_eq!(p.status.completion_time.as_ref().map(|s| s.0), Some(t(5)));
    assert_eq!(p.events[0].reason, "Completed");
    assert_eq!(p.events[0].message, "Job completed");
    // Once released, the same pod is not counted twice.
    let mut counted = j.clone();
    counted.status = Some(p.status.clone());
    let released: HashSet<String> = ["uid-pi-a".to_string()].into();
    let p2 = plan(&counted, &pods, &released, &Backoff::default(), t(6));
    assert_eq!(p2.status.succeeded, Some(1));
    assert!(p2.remove_finalizers.is_empty());
}

#[test]
fn failures_back_off_then_exceed_limit() {
    let j = job(
        json!({"backoffLimit": 1}),
        json!({"startTime": "2023-11-14T22:13:20Z"}),
    );
    let pods = vec![pod("pi-a", "Failed", json!({}))];
    let p = plan(&j, &pods, &HashSet::new(), &Backoff::default(), t(10));
    assert_eq!(p.status.failed, Some(1));
    assert!(p.create.is_empty(), "first replacement waits 10s");
    assert_eq!(p.requeue, Some(Duration::from_secs(10)));
    assert_eq!(p.backoff.failures_after_last_success, 1);
    // 10 s later the replacement is created.
    let mut j2 = j.clone();
    j2.status = Some(p.status.clone());
    let released: HashSet<String> = ["uid-pi-a".to_string()].into();
    let p2 = plan(&j2, &pods, &released, &p.backoff, t(20));
    assert_eq!(p2.create, vec![None]);
    // Second failure: over the limit → FailureTarget then Failed.
    let pods3 = vec![pods[0].clone(), pod("pi-b", "Failed", json!({}))];
    let p3 = plan(&j2, &pods3, &released, &p.backoff, t(30));
    assert_eq!(p3.status.failed, Some(2));
    let c = conds(&p3);
    assert!(c.contains(&(
        "FailureTarget".into(),
        "True".into(),
        "BackoffLimitExceeded".into()
    )));
    assert!(c.contains(&(
        "Failed".into(),
        "True".into(),
        "BackoffLimitExceeded".into()
    )));
    assert_eq!(
        p3.events[0].message,
        "Job has reached the specified backoff limit"
    );
    assert!(p3.status.completion_time.is_none());
}

#[test]
fn backoff_doubles_and_caps() {
    let b = |n| Backoff {
        failures_after_last_success: n,
        last_failure: Some(t(0)),
    };
    assert_eq!(b(0).remaining(t(0)), Duration::ZERO);
    assert_eq!(b(1).remaining(t(0)), Duration::from_secs(10));
    assert_eq!(b(2).remaining(t(0)), Duration::from_secs(20));
    assert_eq!(b(3).remaining(t(5)), Duration::from_secs(35));
    assert_eq!(b(10).remaining(t(0)), Duration::from_secs(360));
    assert_eq!(b(10).remaining(t(400)), Duration::ZERO);
}

#[test]
fn deadline_fails_and_deletes_active() {
    let j = job(
        json!({"activeDeadlineSeconds": 30}),
        json!({"startTime": "2023-11-14T22:13:20Z", "active": 1}),
    );
    let pods = vec![pod("pi-a", "Running", json!({}))];
    let p = plan(&j, &pods, &HashSet::new(), &Backoff::default(), t(10));
    assert_eq!(p.requeue, Some(Duration::from_secs(20)));
    assert!(conds(&p).is_empty());
    let p = plan(&j, &pods, &HashSet::new(), &Backoff::default(), t(31));
    assert_eq!(p.delete, vec!["pi-a".to_string()]);
    assert!(conds(&p).contains(&(
        "FailureTarget".into(),
        "True".into(),
        "DeadlineExceeded".into()
    )));
    assert!(
        !conds(&p).iter().any(|c| c.0 == "Failed"),
        "Failed waits for pods to terminate"
    );
}

#[test]
fn pod_failure_policy_fail_job_and_ignore() {
    let policy = json!({"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
    ]}});
    let j = job(policy, json!({"startTime": "2023-11-14T22:13:20Z"}));
    let term = |code: i32| {
        json!({"status": {"containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}}]}})
    };
    let ignored = pod(
        "pi-a",
        "Failed",
        json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}}),
    );
    let p = plan(&j, &[ignored], &HashSet::new(), &Backoff::default(), t(1));
    assert_eq!(p.status.failed, None);
    assert_eq!(p.create, vec![None]);
    let p = plan(
        &j,
        &[pod("pi-b", "Failed", term(42))],
        &HashSet::new(),
        &Backoff::default(),
        t(1),
    );
    assert_eq!(p.status.failed, Some(1));
    let failed = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Container c for pod default/pi-b failed with exit code 42 matching FailJob rule at index 1")
    );
    let p = plan(
        &j,
        &[pod("pi-c", "Failed", term(1))],
        &HashSet::new(),
        &Backoff::default(),
        t(1),
    );
    assert_eq!(p.status.failed, Some(1));
    assert!(!conds(&p).iter().any(|c| c.0 == "Failed"));
}

#[test]
fn indexed_creates_missing_indexes() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}),
        json!({"startTime": "2023-11-14T22:13:20Z"}),
    );
    let ann = |i: i32| json!({"metadata": {"annotations": {INDEX_ANNOTATION: i.to_string()}}});
    let pods = vec![
        pod("pi-0-x", "Succeeded", ann(0)),
        pod("pi-1-x", "Running", ann(1)),
    ];
    let p = plan(&j, &pods, &HashSet::new(), &Backoff::default(), t(1));
    assert_eq!(p.create, vec![Some(2)]);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(p.status.succeeded, Some(1));
    let pod = pod_for(&j, Some(3)).unwrap();
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-3-"));
    assert_eq!(pod.spec.as_ref().unwrap().hostname.as_deref(), Some("pi-3"));
    let env = &pod.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()[0];
    assert_eq!(env.name, "JOB_COMPLETION_INDEX");
    assert_eq!(
        env.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    assert_eq!(
        pod.metadata.finalizers.unwrap(),
        vec![TRACKING_FINALIZER.to_string()]
    );
}

#[test]
fn index_formatting() {
    let s = parse_indexes(Some("0,2-4,7"));
    assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
    assert_eq!(format_indexes(&s), "0,2-4,7");
}

#[test]
fn suspend_deletes_and_resume_resets_start() {
    let j = job(
        json!({"suspend": true}),
        json!({"startTime": "2023-11-14T22:13:20Z", "active": 1}),
    );
    let pods = vec![pod("pi-a", "Running", json!({}))];
    let p = plan(&j, &pods, &HashSet::new(), &Backoff::default(), t(5));
    assert_eq!(p.delete, vec!["pi-a".to_string()]);
    assert!(conds(&p).contains(&("Suspended".into(), "True".into(), "JobSuspended".into())));
    let mut r = j.clone();
    r.spec.as_mut().unwrap().suspend = Some(false);
    r.status = Some(p.status.clone());
    let p = plan(&r, &[], &HashSet::new(), &Backoff::default(), t(50));
    assert!(conds(&p).contains(&("Suspended".into(), "False".into(), "JobResumed".into())));
    assert_eq!(p.status.start_time.as_ref().map(|s| s.0), Some(t(50)));
    assert_eq!(p.create, vec![None]);
}

#[test]
fn ttl_after_finished() {
    let j = job(
        json!({"ttlSecondsAfterFinished": 30}),
        json!({"completionTime": "2023-11-14T22:13:20Z", "conditions": [{"type": "Complete", "status": "True"}]}),
    );
    let p = plan(&j, &[], &HashSet::new(), &Backoff::default(), t(10));
    assert!(!p.delete_job);
    assert_eq!(p.requeue, Some(Duration::from_secs(20)));
    let p = plan(&j, &[], &HashSet::new(), &Backoff::default(), t(30));
    assert!(p.delete_job);
}
