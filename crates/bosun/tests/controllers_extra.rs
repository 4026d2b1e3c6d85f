//! End-to-end tests of the PodGC, disruption (PodDisruptionBudget) and
//! resource quota controllers: a real `bosun server` (controllers and
//! scheduler on, no node agent) plus `bosun simulate nodes` where pods must
//! run, driven by the real kubectl.

mod common;
#[path = "common/sim.rs"]
mod sim;

use sim::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// The cells of `kubectl get <kind> <name>` (header and one row).
fn row(c: &Cluster, args: &[&str]) -> Option<(Vec<String>, Vec<String>)> {
    let o = c.kubectl(args);
    if !o.ok() {
        return None;
    }
    let mut lines = o.stdout.lines();
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let head = split(lines.next()?);
    let row = split(lines.next()?);
    Some((head, row))
}

#[test]
fn pdb_status_counts_ready_pods() {
    let Some(mut c) = Cluster::start_env(&[]) else {
        return;
    };
    c.simulate_lease("pdb-", 1, 2);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    c.eventually("3 ready pods", || {
        let pods = c.json(&["pods", "-l", "app=web"]);
        let ready = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x["type"] == "Ready" && x["status"] == "True")
                })
            })
            .count();
        (ready == 3).then_some(())
    });
    c.ok(&[
        "create",
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    let (head, cells) = c.eventually("ALLOWED DISRUPTIONS 1", || {
        let (h, r) = row(&c, &["get", "pdb", "web"])?;
        let i = h.iter().position(|x| x == "ALLOWED DISRUPTIONS")?;
        (r.get(i).map(String::as_str) == Some("1")).then_some((h, r))
    });
    assert_eq!(
        head[..4],
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS"
        ]
    );
    assert_eq!(cells[..4], ["web", "2", "N/A", "1"]);
    let pdb = c.json(&["pdb", "web"]);
    let st = &pdb["status"];
    assert_eq!(st["expectedPods"], 3);
    assert_eq!(st["currentHealthy"], 3);
    assert_eq!(st["desiredHealthy"], 2);
    assert_eq!(st["disruptionsAllowed"], 1);
    assert_eq!(st["observedGeneration"], pdb["metadata"]["generation"]);
    let cond = &st["conditions"][0];
    assert_eq!(cond["type"], "DisruptionAllowed");
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "SufficientPods");
    // Scaling down to 2 leaves no disruption allowed.
    c.ok(&["scale", "deployment", "web", "--replicas=2"]);
    c.eventually("InsufficientPods", || {
        let st = c.json(&["pdb", "web"])["status"].clone();
        (st["disruptionsAllowed"] == 0
            && st["currentHealthy"] == 2
            && st["conditions"][0]["reason"] == "InsufficientPods")
            .then_some(())
    });
}

#[test]
fn quota_usage_shows_in_kubectl() {
    let Some(c) = Cluster::start_env(&[]) else {
        return;
    };
    c.ok(&[
        "create",
        "quota",
        "q",
        "--hard=pods=10,requests.cpu=1,configmaps=5,count/deployments.apps=3",
    ]);
    for name in ["a", "b"] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources:\n      requests:\n        cpu: 100m\n        memory: 64Mi\n"
        ));
    }
    let (head, cells) = c.eventually("quota usage pods 2/10, cpu 200m/1", || {
        let (h, r) = row(&c, &["get", "quota", "q"])?;
        let i = h.iter().position(|x| x == "REQUEST")?;
        let req = r.get(i)?;
        (req.contains("pods: 2/10") && req.contains("requests.cpu: 200m/1")).then_some((h, r))
    });
    assert_eq!(head, ["NAME", "REQUEST", "LIMIT", "AGE"]);
    assert!(
        cells[1].contains("pods: 2/10, requests.cpu: 200m/1"),
        "{cells:?}"
    );
    // Object counts: configmaps (kube-root-ca.crt, published by the
    // controller manager, and ours) and count/<resource>.<group>.
    c.ok(&["create", "configmap", "one", "--from-literal=k=v"]);
    c.ok(&["create", "deployment", "d", "--image=nginx", "--replicas=0"]);
    c.eventually("configmaps and deployments counted", || {
        let q = c.json(&["quota", "q"]);
        let used = &q["status"]["used"];
        (used["configmaps"] == "2" && used["count/deployments.apps"] == "1").then_some(())
    });
    let q = c.json(&["quota", "q"]);
    assert_eq!(q["status"]["hard"]["requests.cpu"], "1");
    let d = c.ok(&["describe", "quota", "q"]);
    assert!(d.contains("requests.cpu"), "{d}");
    assert!(d.contains("200m"), "{d}");
    // Deleting a pod releases its usage.
    c.ok(&["delete", "pod", "a", "--grace-period=0", "--force"]);
    c.eventually("usage after delete", || {
        let used = c.json(&["quota", "q"])["status"]["used"].clone();
        (used["pods"] == "1" && used["requests.cpu"] == "100m").then_some(())
    });
}

#[test]
fn podgc_removes_pods_of_deleted_nodes() {
    // A short quarantine so the test does not wait upstream's 40 s (the
    // node lifecycle controller's own orphan sweep also waits 40 s).
    let Some(c) = Cluster::start_env(&[("BOSUN_PODGC_QUARANTINE_SECONDS", "2")]) else {
        return;
    };
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: doomed-node\n");
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: done\nspec:\n  nodeName: doomed-node\n  containers:\n  - name: c\n    image: nginx\n");
    c.ok(&[
        "patch",
        "pod",
        "done",
        "--subresource=status",
        "--type=merge",
        "-p",
        "{\"status\":{\"phase\":\"Succeeded\"}}",
    ]);
    assert_eq!(
        c.ok(&["get", "pod", "done", "-o", "jsonpath={.status.phase}"]),
        "Succeeded"
    );
    // Not collected while the node exists.
    std::thread::sleep(Duration::from_secs(4));
    assert!(c.exists(&["pod", "done"]));
    c.ok(&["delete", "node", "doomed-node"]);
    c.eventually("pod of the deleted node collected", || {
        (!c.exists(&["pod", "done"])).then_some(())
    });
    assert!(
        std::fs::read_to_string(&c.server_log)
            .unwrap_or_default()
            .contains("podgc: deleting orphaned pod"),
        "{}",
        c.tail(30)
    );
}
