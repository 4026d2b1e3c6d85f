//! End-to-end tests of the ReplicaSet and Deployment controllers: a real
//! `bosun server` (API server, scheduler, controller manager) with simulated
//! nodes from `bosun simulate nodes`, driven by the real kubectl. What is
//! asserted is what upstream kube-controller-manager and kubectl show.

mod common;
#[path = "common/sim.rs"]
mod sim;

use serde_json::Value;
use sim::*;
use std::time::{Duration, Instant};

/// Deadline for anything the controllers or the simulated nodes must do.
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

// Harness: `sim::Cluster` (tests/common/sim.rs); apps-specific helpers below.

impl Cluster {
    /// A cluster with three simulated nodes.
    fn with_nodes() -> Option<Cluster> {
        let mut c = Cluster::start()?;
        c.simulate("node-", 3, "8", &[]);
        Some(c)
    }

    /// Pods (not terminating) whose labels match `selector`.
    fn live_pods(&self, selector: &str) -> Vec<Value> {
        let v = self.json(&["pods", "-l", selector]);
        v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }

    /// Waits until exactly `n` live pods match and all are Running and Ready.
    #[track_caller]
    fn wait_pods_running(&self, selector: &str, n: usize) -> Vec<Value> {
        self.eventually(&format!("{n} running pods with {selector}"), || {
            let pods = self.live_pods(selector);
            let all = self.json(&["pods", "-l", selector]);
            let total = all["items"].as_array().map(|a| a.len()).unwrap_or(0);
            (pods.len() == n
                && total == n
                && pods.iter().all(|p| {
                    p["status"]["phase"] == "Running"
                        && p["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                }))
            .then_some(pods)
        })
    }

    /// `kubectl get deploy NAME` as (READY, UP-TO-DATE, AVAILABLE).
    fn deploy_columns(&self, name: &str) -> (String, String, String) {
        let out = self.ok(&["get", "deploy", name, "--no-headers"]);
        let c: Vec<&str> = out.split_whitespace().collect();
        (c[1].to_string(), c[2].to_string(), c[3].to_string())
    }

    #[track_caller]
    fn wait_deploy_columns(&self, name: &str, want: (&str, &str, &str)) {
        self.eventually(&format!("deploy {name} columns {want:?}"), || {
            let (r, u, a) = self.deploy_columns(name);
            (r == want.0 && u == want.1 && a == want.2).then_some(())
        });
    }

    /// `kubectl rollout status` to completion; returns its stdout.
    #[track_caller]
    fn rollout_status(&self, name: &str) -> String {
        let out = self.ok(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=50s",
        ]);
        assert!(
            out.trim_end()
                .ends_with(&format!("deployment \"{name}\" successfully rolled out")),
            "rollout status output:\n{out}"
        );
        out
    }

    /// ReplicaSets owned by deployment `name`: (name, spec.replicas, revision, image).
    fn replica_sets(&self, name: &str) -> Vec<(String, i64, String, String)> {
        let v = self.json(&["rs"]);
        let mut out: Vec<_> = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|rs| {
                rs["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| {
                        o.iter()
                            .any(|r| r["kind"] == "Deployment" && r["name"] == name)
                    })
            })
            .map(|rs| {
                (
                    rs["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    rs["spec"]["replicas"].as_i64().unwrap_or(0),
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.2.cmp(&b.2));
        out
    }
}

// ---------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------

#[test]
fn deployment_create_set_image_history_undo() {
    let Some(c) = Cluster::with_nodes() else {
        return;
    };
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
    ]);
    let pods = c.wait_pods_running("app=web", 3);
    c.wait_deploy_columns("web", ("3/3", "3", "3"));
    let out = c.rollout_status("web");
    assert_eq!(out, "deployment \"web\" successfully rolled out\n");

    // One ReplicaSet web-<hash>, revision 1, pods web-<hash>-<5 chars> it controls.
    let rss = c.replica_sets("web");
    assert_eq!(rss.len(), 1, "{rss:?}");
    let (rs1, n, rev, _) = &rss[0];
    assert_eq!((*n, rev.as_str()), (3, "1"));
    let hash = rs1.strip_prefix("web-").expect("rs named web-<hash>");
    let rsj = c.json(&["rs", rs1]);
    assert_eq!(rsj["metadata"]["labels"]["pod-template-hash"], hash);
    assert_eq!(
        rsj["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    assert_eq!(
        rsj["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        rsj["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    assert_eq!(rsj["status"]["readyReplicas"], 3);
    assert_eq!(rsj["status"]["availableReplicas"], 3);
    assert_eq!(rsj["status"]["fullyLabeledReplicas"], 3);
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let suffix = name
            .strip_prefix(&format!("{rs1}-"))
            .expect("pod named <rs>-<suffix>");
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(p["metadata"]["generateName"], format!("{rs1}-"));
        let o = &p["metadata"]["ownerReferences"][0];
        assert_eq!(o["kind"], "ReplicaSet");
        assert_eq!(o["name"], rs1.as_str());
        assert_eq!(o["controller"], true);
        assert_eq!(o["blockOwnerDeletion"], true);
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash);
    }
    let d = c.json(&["deploy", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    let conds = d["status"]["conditions"].as_array().unwrap();
    let cond = |t: &str| conds.iter().find(|c| c["type"] == t).cloned().unwrap();
    assert_eq!(cond("Available")["reason"], "MinimumReplicasAvailable");
    assert_eq!(
        cond("Available")["message"],
        "Deployment has minimum availability."
    );
    assert_eq!(cond("Progressing")["reason"], "NewReplicaSetAvailable");
    assert_eq!(
        cond("Progressing")["message"],
        format!("ReplicaSet \"{rs1}\" has successfully progressed.")
    );
    let evs = c.events("default", "web", Some("ScalingReplicaSet"));
    assert!(
        evs.iter()
            .any(|e| e.message == format!("Scaled up replica set {rs1} to 3")
                && e.reporting == "deployment-controller"),
        "{evs:?}"
    );
    let evs = c.events("default", rs1, Some("SuccessfulCreate"));
    assert!(
        evs.iter()
            .any(|e| e.message.starts_with(&format!("Created pod: {rs1}-"))),
        "{evs:?}"
    );

    // set image: a second ReplicaSet takes over, the first is scaled to 0.
    c.ok(&["set", "image", "deployment/web", "busybox=busybox:1.36"]);
    let out = c.rollout_status("web");
    assert!(out.contains("successfully rolled out"), "{out}");
    c.wait_deploy_columns("web", ("3/3", "3", "3"));
    let rss = c.eventually("old replica set scaled to 0", || {
        let rss = c.replica_sets("web");
        (rss.len() == 2 && rss[0].1 == 0 && rss[1].1 == 3).then_some(rss)
    });
    assert_eq!(rss[0].0, *rs1);
    assert_eq!(
        (rss[1].2.as_str(), rss[1].3.as_str()),
        ("2", "busybox:1.36")
    );
    let pods = c.wait_pods_running("app=web", 3);
    for p in &pods {
        assert_eq!(p["spec"]["containers"][0]["image"], "busybox:1.36");
    }
    let hist = c.ok(&["rollout", "history", "deployment/web"]);
    let revs: Vec<&str> = hist
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(revs, ["1", "2"], "{hist}");

    // undo: back to the first template; its ReplicaSet becomes revision 3.
    let out = c.ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    c.rollout_status("web");
    let rss = c.eventually("first replica set back in charge", || {
        let rss = c.replica_sets("web");
        (rss.len() == 2
            && rss.iter().any(|r| r.0 == *rs1 && r.1 == 3 && r.2 == "3")
            && rss.iter().any(|r| r.0 != *rs1 && r.1 == 0))
        .then_some(rss)
    });
    assert_eq!(rss.len(), 2);
    let pods = c.wait_pods_running("app=web", 3);
    for p in &pods {
        assert_eq!(p["spec"]["containers"][0]["image"], "busybox");
    }
    let rsj = c.json(&["rs", rs1]);
    assert_eq!(
        rsj["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    let hist = c.ok(&["rollout", "history", "deployment/web"]);
    let revs: Vec<&str> = hist
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(revs, ["2", "3"], "{hist}");
    // --to-revision goes to a named revision.
    c.ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    c.rollout_status("web");
    let pods = c.wait_pods_running("app=web", 3);
    assert!(pods
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.36"));
}

#[test]
fn deployment_scale_heal_pause_restart() {
    let Some(c) = Cluster::with_nodes() else {
        return;
    };
    c.ok(&[
        "create",
        "deployment",
        "app",
        "--image=busybox",
        "--replicas=1",
    ]);
    c.wait_pods_running("app=app", 1);
    c.ok(&["scale", "deployment/app", "--replicas=10"]);
    c.wait_pods_running("app=app", 10);
    c.wait_deploy_columns("app", ("10/10", "10", "10"));
    c.ok(&["scale", "deployment/app", "--replicas=2"]);
    let pods = c.wait_pods_running("app=app", 2);
    c.wait_deploy_columns("app", ("2/2", "2", "2"));
    let rs = c.replica_sets("app");
    assert_eq!(rs.len(), 1);
    let evs = c.events("default", "app", Some("ScalingReplicaSet"));
    assert!(
        evs.iter()
            .any(|e| e.message == format!("Scaled down replica set {} to 2 from 10", rs[0].0)),
        "{evs:?}"
    );

    // A deleted pod is replaced.
    let victim = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    c.ok(&["delete", "pod", &victim, "--wait=false"]);
    let pods = c.eventually("replacement pod", || {
        let pods = c.wait_pods_running("app=app", 2);
        pods.iter()
            .all(|p| p["metadata"]["name"] != victim.as_str())
            .then_some(pods)
    });
    assert_eq!(pods.len(), 2);

    // Pause: template changes make no new ReplicaSet until resumed.
    c.ok(&["rollout", "pause", "deployment/app"]);
    c.eventually("Progressing=Unknown DeploymentPaused", || {
        let d = c.json(&["deploy", "app"]);
        d["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| {
                c["type"] == "Progressing"
                    && c["reason"] == "DeploymentPaused"
                    && c["status"] == "Unknown"
            })
            .then_some(())
    });
    c.ok(&["set", "image", "deployment/app", "busybox=busybox:1.36"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.replica_sets("app").len(), 1);
    c.ok(&["rollout", "resume", "deployment/app"]);
    c.rollout_status("app");
    c.eventually("two replica sets after resume", || {
        let rss = c.replica_sets("app");
        (rss.len() == 2 && rss[1].3 == "busybox:1.36" && rss[1].1 == 2 && rss[0].1 == 0)
            .then_some(())
    });

    // restart: a template annotation change rolls the pods again.
    c.ok(&["rollout", "restart", "deployment/app"]);
    c.rollout_status("app");
    let rss = c.eventually("third replica set after restart", || {
        let rss = c.replica_sets("app");
        (rss.len() == 3 && rss[2].1 == 2).then_some(rss)
    });
    assert_eq!(rss[2].2, "3");
    let pods = c.wait_pods_running("app=app", 2);
    for p in &pods {
        assert!(
            !p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_null(),
            "{p:#}"
        );
    }
}

#[test]
fn deployment_recreate_and_history_limit() {
    let Some(c) = Cluster::with_nodes() else {
        return;
    };
    c.create(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: rec\nspec:\n  replicas: 3\n  revisionHistoryLimit: 1\n  strategy:\n    type: Recreate\n  selector:\n    matchLabels: {app: rec}\n  template:\n    metadata:\n      labels: {app: rec}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n        command: [sleep, '3600']\n",
    );
    let first = c.wait_pods_running("app=rec", 3);
    c.rollout_status("rec");
    // Watch pods while recreating: old and new pods never run together.
    c.ok(&["set", "image", "deployment/rec", "c=busybox:1.36"]);
    let mut mixed = false;
    let deadline = Instant::now() + WAIT;
    loop {
        let pods = c.json(&["pods", "-l", "app=rec"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let new = items
            .iter()
            .filter(|p| p["spec"]["containers"][0]["image"] == "busybox:1.36")
            .count();
        let old = items.len() - new;
        if new > 0 && old > 0 {
            mixed = true;
        }
        if new == 3 && old == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recreate did not finish: {pods:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!mixed, "Recreate ran old and new pods at the same time");
    c.rollout_status("rec");
    let now = c.wait_pods_running("app=rec", 3);
    let old_names: Vec<&str> = first
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(now
        .iter()
        .all(|p| !old_names.contains(&p["metadata"]["name"].as_str().unwrap())));
    // A third revision: with revisionHistoryLimit 1 only one old ReplicaSet stays.
    c.ok(&["set", "image", "deployment/rec", "c=busybox:1.35"]);
    c.rollout_status("rec");
    c.eventually("old replica sets cleaned up", || {
        let rss = c.replica_sets("rec");
        (rss.len() == 2 && rss[0].2 == "2" && rss[1].2 == "3").then_some(())
    });
}

// ---------------------------------------------------------------------------
// ReplicaSets
// ---------------------------------------------------------------------------

#[test]
fn replicaset_adopts_orphans_and_releases_pods() {
    let Some(c) = Cluster::with_nodes() else {
        return;
    };
    c.create(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels: {app: fe}\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    c.wait_running("orphan");
    c.create(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: fe\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: fe}\n  template:\n    metadata:\n      labels: {app: fe}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
    );
    let pods = c.wait_pods_running("app=fe", 3);
    assert!(pods.iter().any(|p| p["metadata"]["name"] == "orphan"));
    let o = c.pod_json("default", "orphan");
    let r = &o["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            r["kind"].as_str(),
            r["name"].as_str(),
            r["controller"].as_bool()
        ),
        (Some("ReplicaSet"), Some("fe"), Some(true))
    );
    let created = c.events("default", "fe", Some("SuccessfulCreate"));
    assert_eq!(created.len(), 2, "only two pods created: {created:?}");
    c.eventually("rs status", || {
        let rs = c.json(&["rs", "fe"]);
        let s = &rs["status"];
        (s["replicas"] == 3
            && s["readyReplicas"] == 3
            && s["availableReplicas"] == 3
            && s["fullyLabeledReplicas"] == 3
            && s["observedGeneration"] == rs["metadata"]["generation"])
            .then_some(())
    });
    let get = c.ok(&["get", "rs", "fe", "--no-headers"]);
    let cols: Vec<&str> = get.split_whitespace().collect();
    assert_eq!(&cols[..4], ["fe", "3", "3", "3"], "{get}");

    // Relabelled: released (no controller ref) and replaced.
    c.ok(&["label", "pod", "orphan", "app=other", "--overwrite"]);
    c.eventually("orphan released", || {
        let o = c.pod_json("default", "orphan");
        o["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty())
            .then_some(())
    });
    let pods = c.wait_pods_running("app=fe", 3);
    assert!(pods.iter().all(|p| p["metadata"]["name"] != "orphan"));

    // Scale down deletes the pods ranked first; counts settle.
    c.ok(&["scale", "rs/fe", "--replicas=1"]);
    c.wait_pods_running("app=fe", 1);
    let deleted = c.events("default", "fe", Some("SuccessfulDelete"));
    assert!(
        deleted
            .iter()
            .all(|e| e.message.starts_with("Deleted pod: fe-")),
        "{deleted:?}"
    );
}

#[test]
fn deployment_progress_deadline_then_undo() {
    let Some(c) = Cluster::with_nodes() else {
        return;
    };
    c.create(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: slow\nspec:\n  replicas: 2\n  progressDeadlineSeconds: 3\n  selector:\n    matchLabels: {app: slow}\n  template:\n    metadata:\n      labels: {app: slow}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
    );
    c.wait_pods_running("app=slow", 2);
    c.rollout_status("slow");
    // A template whose pods can never run: the rollout stalls.
    c.ok(&[
        "patch",
        "deployment/slow",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"none"}}}}}"#,
    ]);
    let o = c.kubectl(&["rollout", "status", "deployment/slow", "--timeout=40s"]);
    assert!(!o.ok(), "rollout status should fail: {o:?}");
    assert!(
        o.stdout
            .contains("Waiting for deployment \"slow\" rollout to finish: 1 out of 2 new replicas have been updated...\n"),
        "{o:?}"
    );
    assert_eq!(
        o.stderr.trim(),
        "error: deployment \"slow\" exceeded its progress deadline",
        "{o:?}"
    );
    let d = c.json(&["deploy", "slow"]);
    let conds = d["status"]["conditions"].as_array().unwrap().clone();
    let prog = conds.iter().find(|c| c["type"] == "Progressing").unwrap();
    assert_eq!(prog["status"], "False");
    assert_eq!(prog["reason"], "ProgressDeadlineExceeded");
    assert!(
        prog["message"]
            .as_str()
            .unwrap()
            .ends_with("has timed out progressing."),
        "{prog:#}"
    );
    // Old pods kept serving: still available.
    let avail = conds.iter().find(|c| c["type"] == "Available").unwrap();
    assert_eq!(avail["status"], "True");
    assert_eq!(d["status"]["updatedReplicas"], 1);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(d["status"]["unavailableReplicas"], 1);

    c.ok(&["rollout", "undo", "deployment/slow"]);
    c.rollout_status("slow");
    c.wait_pods_running("app=slow", 2);
    c.eventually("stuck replica set scaled to 0", || {
        let rss = c.replica_sets("slow");
        (rss.len() == 2 && rss.iter().all(|r| (r.2 == "3") == (r.1 == 2))).then_some(())
    });
}
