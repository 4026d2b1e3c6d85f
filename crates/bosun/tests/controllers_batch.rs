//! End-to-end tests of the batch and node-level workload controllers (Job,
//! CronJob, DaemonSet, StatefulSet): a real `bosun server` (API server,
//! scheduler and leader-elected controller manager) with simulated nodes from
//! `bosun simulate nodes`, driven by the real kubectl. Simulated nodes mark
//! bound pods Running but never finish them: tests make a pod Succeeded or
//! Failed by patching its status the way a kubelet would.

mod common;
#[path = "common/sim.rs"]
mod sim;

use serde_json::{json, Value};
use sim::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(100);

// Harness: `sim::Cluster` (tests/common/sim.rs).

fn name_of(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t && c["status"] == "True")
}

// ---------------------------------------------------------------------------
// Job
// ---------------------------------------------------------------------------

#[test]
fn job_runs_pod_to_completion() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.ok(&["create", "job", "pi", "--image=busybox", "--", "true"]);
    let pod = c.eventually("a pod for job pi", || {
        c.pods("job-name=pi").into_iter().next()
    });
    let pname = name_of(&pod);
    assert!(
        pname.starts_with("pi-") && pname.len() == "pi-".len() + 5,
        "{pname}"
    );
    let oref = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(oref["kind"], "Job");
    assert_eq!(oref["name"], "pi");
    assert_eq!(oref["controller"], true);
    assert_eq!(
        pod["metadata"]["finalizers"],
        json!(["batch.kubernetes.io/job-tracking"])
    );
    c.eventually("pod Running", || {
        let p = c.json(&["pod", &pname]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    let job = c.eventually("job active 1", || {
        let j = c.json(&["job", "pi"]);
        (j["status"]["active"] == 1).then_some(j)
    });
    assert!(job["status"]["startTime"].is_string(), "{job:#}");
    c.wait_event("pi", "SuccessfulCreate", &format!("Created pod: {pname}"));

    c.finish_pod(&pname, 0);
    let job = c.eventually("job Complete", || {
        let j = c.json(&["job", "pi"]);
        condition(&j, "Complete").is_some().then_some(j)
    });
    assert_eq!(job["status"]["succeeded"], 1, "{job:#}");
    assert!(job["status"]["active"].is_null(), "{job:#}");
    assert!(job["status"]["completionTime"].is_string(), "{job:#}");
    assert_eq!(
        job["status"]["uncountedTerminatedPods"],
        json!({}),
        "{job:#}"
    );
    assert!(condition(&job, "SuccessCriteriaMet").is_some(), "{job:#}");
    let table = c.ok(&["get", "job", "pi"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["pi", "Complete", "1/1"], "{table}");
    c.wait_event("pi", "Completed", "Job completed");
    // The pod is counted: its tracking finalizer is gone.
    c.eventually("finalizer removed", || {
        let p = c.json(&["pod", &pname]);
        p["metadata"]["finalizers"].is_null().then_some(())
    });
}

#[test]
fn job_fails_after_backoff_limit() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.create(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: flaky\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        command: ['false']\n",
    );
    let mut failed = Vec::new();
    for round in 0..2 {
        let p = c.eventually(&format!("pod #{round} running"), || {
            c.pods("job-name=flaky")
                .into_iter()
                .find(|p| p["status"]["phase"] == "Running" && !failed.contains(&name_of(p)))
        });
        failed.push(name_of(&p));
        c.finish_pod(&name_of(&p), 1);
    }
    let job = c.eventually("job Failed", || {
        let j = c.json(&["job", "flaky"]);
        condition(&j, "Failed").is_some().then_some(j)
    });
    let cond = condition(&job, "Failed").unwrap();
    assert_eq!(cond["reason"], "BackoffLimitExceeded", "{job:#}");
    assert_eq!(
        cond["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(job["status"]["failed"], 2, "{job:#}");
    assert!(condition(&job, "FailureTarget").is_some(), "{job:#}");
    let table = c.ok(&["get", "job", "flaky"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["flaky", "Failed", "0/1"], "{table}");
    c.wait_event(
        "flaky",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    );
    assert_eq!(c.pods("job-name=flaky").len(), 2, "no third pod");
}

#[test]
fn indexed_job_with_parallelism() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.create(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: idx\nspec:\n  completions: 3\n  parallelism: 2\n  completionMode: Indexed\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n",
    );
    let mut done = 0;
    while done < 3 {
        let pods = c.eventually("running indexed pods", || {
            let ps: Vec<Value> = c
                .pods("job-name=idx")
                .into_iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .collect();
            (!ps.is_empty()).then_some(ps)
        });
        assert!(pods.len() <= 2, "parallelism 2: {pods:#?}");
        for p in &pods {
            let idx = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .expect("index annotation")
                .to_string();
            assert!(name_of(p).starts_with(&format!("idx-{idx}-")));
            assert_eq!(p["spec"]["hostname"], format!("idx-{idx}"));
            assert_eq!(
                p["spec"]["containers"][0]["env"][0]["name"],
                "JOB_COMPLETION_INDEX"
            );
        }
        c.finish_pod(&name_of(&pods[0]), 0);
        done += 1;
        c.eventually("succeeded count", || {
            let j = c.json(&["job", "idx"]);
            (j["status"]["succeeded"] == done).then_some(())
        });
    }
    let job = c.eventually("job Complete", || {
        let j = c.json(&["job", "idx"]);
        condition(&j, "Complete").is_some().then_some(j)
    });
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job:#}");
    // ttlSecondsAfterFinished: the job is deleted (foreground) after 2 s.
    c.eventually("job deleted by TTL", || {
        let o = c.kubectl(&["get", "job", "idx", "-o", "json"]);
        if !o.ok() {
            return Some(());
        }
        let j: Value = serde_json::from_str(&o.stdout).ok()?;
        j["metadata"]["deletionTimestamp"].is_string().then_some(())
    });
}

// ---------------------------------------------------------------------------
// CronJob
// ---------------------------------------------------------------------------

#[test]
fn cronjob_fires_on_the_minute_and_tracks_completion() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.ok(&[
        "create",
        "cronjob",
        "hello",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "true",
    ]);
    // A manual run from the template (client-side, like upstream kubectl).
    c.ok(&["create", "job", "manual", "--from=cronjob/hello"]);
    c.eventually("a pod for the manual job", || {
        c.pods("job-name=manual").into_iter().next()
    });
    // The schedule fires within a minute (plus slack).
    let deadline = Instant::now() + Duration::from_secs(90);
    let job = loop {
        let jobs = c.json(&["jobs"]);
        let found = jobs["items"].as_array().unwrap().iter().find(|j| {
            let n = name_of(j);
            n.strip_prefix("hello-")
                .is_some_and(|s| s.parse::<u64>().is_ok())
        });
        if let Some(j) = found {
            break j.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled job within 90s: {jobs:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let jname = name_of(&job);
    let minutes: i64 = jname.strip_prefix("hello-").unwrap().parse().unwrap();
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("scheduled timestamp annotation")
        .to_string();
    assert!(stamp.ends_with(":00Z"), "{stamp}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let cj = c.eventually("cronjob status", || {
        let cj = c.json(&["cronjob", "hello"]);
        cj["status"]["active"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["name"] == jname.as_str()))
            .then_some(cj)
    });
    assert_eq!(cj["status"]["lastScheduleTime"], stamp.as_str(), "{cj:#}");
    assert_eq!(minutes * 60 % 60, 0);
    c.wait_event("hello", "SuccessfulCreate", &format!("Created job {jname}"));

    let pod = c.eventually("pod of the scheduled job running", || {
        c.pods(&format!("job-name={jname}"))
            .into_iter()
            .find(|p| p["status"]["phase"] == "Running")
    });
    c.finish_pod(&name_of(&pod), 0);
    c.wait_event(
        "hello",
        "SawCompletedJob",
        &format!("Saw completed job: {jname}, condition: Complete"),
    );
    let cj = c.eventually("lastSuccessfulTime", || {
        let cj = c.json(&["cronjob", "hello"]);
        cj["status"]["lastSuccessfulTime"].is_string().then_some(cj)
    });
    let active = cj["status"]["active"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !active.iter().any(|r| r["name"] == jname.as_str()),
        "{cj:#}"
    );
}

// ---------------------------------------------------------------------------
// DaemonSet
// ---------------------------------------------------------------------------

const DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";

#[test]
fn daemonset_one_pod_per_untainted_node() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.ok(&["taint", "node", "node1", "dedicated=x:NoSchedule"]);
    c.create(DS);
    let pods = c.eventually("daemon pod on node0", || {
        let ps = c.pods("app=agent");
        (ps.len() == 1
            && ps[0]["spec"]["nodeName"] == "node0"
            && ps[0]["status"]["phase"] == "Running")
            .then_some(ps)
    });
    let p = &pods[0];
    assert!(name_of(p).starts_with("agent-"));
    assert_eq!(
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0],
        json!({"key": "metadata.name", "operator": "In", "values": ["node0"]})
    );
    let hash = p["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .expect("controller-revision-hash")
        .to_string();
    let tols = p["spec"]["tolerations"].as_array().unwrap();
    assert!(tols
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/unschedulable" && t["effect"] == "NoSchedule"));
    c.wait_event(
        "agent",
        "SuccessfulCreate",
        &format!("Created pod: {}", name_of(p)),
    );
    let revs = c.json(&["controllerrevisions"]);
    assert!(
        revs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| name_of(r) == format!("agent-{hash}") && r["revision"] == 1),
        "{revs:#}"
    );
    c.eventually("status counts", || {
        let ds = c.json(&["ds", "agent"]);
        let s = &ds["status"];
        (s["desiredNumberScheduled"] == 1
            && s["currentNumberScheduled"] == 1
            && s["updatedNumberScheduled"] == 1
            && s["numberMisscheduled"] == 0
            && s["observedGeneration"] == 1)
            .then_some(())
    });
    // A new node gets its pod.
    c.simulate_large("extra", 1);
    c.eventually("daemon pod on extra0", || {
        let ps = c.pods("app=agent");
        let nodes: Vec<String> = ps
            .iter()
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        (ps.len() == 2 && nodes.contains(&"extra0".to_string())).then_some(())
    });
    c.eventually("desired 2", || {
        let ds = c.json(&["ds", "agent"]);
        (ds["status"]["desiredNumberScheduled"] == 2 && ds["status"]["currentNumberScheduled"] == 2)
            .then_some(())
    });
    // A template change rolls the pods to a new revision.
    c.ok(&["set", "env", "ds/agent", "V=2"]);
    c.eventually("pods on the new revision", || {
        let ps = c.pods("app=agent");
        let live: Vec<&Value> = ps
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        (live.len() == 2
            && live
                .iter()
                .all(|p| p["metadata"]["labels"]["controller-revision-hash"] != hash.as_str()))
        .then_some(())
    });
}

// ---------------------------------------------------------------------------
// StatefulSet
// ---------------------------------------------------------------------------

const STS: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports:\n  - port: 80\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: nginx\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n  volumeClaimTemplates:\n  - metadata:\n      name: www\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi\n";

#[test]
fn statefulset_ordered_start_and_stable_names() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.create(STS);
    c.eventually("3 ready replicas", || {
        let s = c.json(&["sts", "web"]);
        (s["status"]["readyReplicas"] == 3 && s["status"]["replicas"] == 3).then_some(())
    });
    let pods = c.pods("app=web");
    let names: Vec<String> = pods.iter().map(name_of).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(p["spec"]["hostname"], format!("web-{i}"));
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            format!("www-web-{i}")
        );
    }
    // Ordered: each pod was created only after the previous one was Ready.
    let ready_at = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    for i in 1..3 {
        let created = pods[i]["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            created >= ready_at(&pods[i - 1]),
            "web-{i} created before web-{} was ready",
            i - 1
        );
    }
    let evs = c.events_of("web");
    for i in 0..3 {
        let msg = format!("create Pod web-{i} in StatefulSet web successful");
        assert!(
            evs.iter()
                .any(|(_, r, m)| r == "SuccessfulCreate" && *m == msg),
            "{evs:#?}"
        );
    }
    let pvcs = c.json(&["pvc"]);
    let mut claims: Vec<String> = pvcs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(name_of)
        .collect();
    claims.sort();
    assert_eq!(claims, ["www-web-0", "www-web-1", "www-web-2"]);
    let s = c.json(&["sts", "web"]);
    assert_eq!(
        s["status"]["currentRevision"], s["status"]["updateRevision"],
        "{s:#}"
    );
    assert_eq!(s["status"]["observedGeneration"], 1);

    // Scale down: highest ordinals go, claims stay.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    c.eventually("only web-0 left", || {
        let names: Vec<String> = c
            .pods("app=web")
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(name_of)
            .collect();
        (names == ["web-0"]).then_some(())
    });
    assert_eq!(c.json(&["pvc"])["items"].as_array().unwrap().len(), 3);
}

#[test]
fn statefulset_claim_retention_policy_deletes_claims() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate_large("node", 2);
    c.create("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  replicas: 3\n  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Delete\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n        volumeMounts:\n        - {name: data, mountPath: /data}\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi\n");
    let claims = |c: &Cluster| -> Vec<String> {
        let mut v: Vec<String> = c.json(&["pvc"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(name_of)
            .collect();
        v.sort();
        v
    };
    c.eventually("3 ready replicas", || {
        let s = c.json(&["sts", "db"]);
        (s["status"]["readyReplicas"] == 3).then_some(())
    });
    assert_eq!(claims(&c), ["data-db-0", "data-db-1", "data-db-2"]);
    // whenDeleted: Delete: the claims belong to the set.
    let pvc = c.json(&["pvc", "data-db-0"]);
    assert_eq!(pvc["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    // whenScaled: Delete: condemned ordinals' claims go with their pods.
    c.ok(&["scale", "sts", "db", "--replicas=1"]);
    c.eventually("claims of web-1 and web-2 deleted", || {
        (claims(&c) == ["data-db-0"]).then_some(())
    });
    // Deleting the set deletes the remaining claim.
    c.ok(&["delete", "sts", "db"]);
    c.eventually("all claims deleted", || claims(&c).is_empty().then_some(()));
}
