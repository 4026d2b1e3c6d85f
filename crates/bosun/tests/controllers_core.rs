//! End-to-end tests of the namespace, garbage collector, endpoints,
//! service account and node lifecycle controllers: a real `bosun server`
//! (controllers and scheduler on, no node agent) plus `bosun simulate
//! nodes` where pods must run, driven by the real kubectl.

mod common;
#[path = "common/sim.rs"]
mod sim;

use serde_json::Value;
use sim::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

impl Cluster {
    /// A ConfigMap owned by another object.
    fn dependent(&self, ns: &str, name: &str, owner_kind: &str, owner: &str, uid: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  ownerReferences:\n  - apiVersion: v1\n    kind: {owner_kind}\n    name: {owner}\n    uid: {uid}\n    blockOwnerDeletion: true\n"
        ));
    }
}

#[test]
fn namespace_deletion_and_default_service_account() {
    let Some(c) = Cluster::start_env(&[]) else {
        return;
    };
    c.ok(&["create", "namespace", "doomed"]);
    // The serviceaccount controller gives every namespace `default`.
    c.eventually("default ServiceAccount in doomed", || {
        c.exists(&["serviceaccount", "default", "-n", "doomed"])
            .then_some(())
    });
    // The root CA publisher gives it kube-root-ca.crt with the cluster CA,
    // and puts it back when deleted.
    let ca = std::fs::read_to_string(c.data.join("tls/ca.crt")).expect("cluster CA");
    let published = || {
        c.eventually("kube-root-ca.crt in doomed", || {
            c.exists(&["configmap", "kube-root-ca.crt", "-n", "doomed"])
                .then(|| c.json(&["configmap", "kube-root-ca.crt", "-n", "doomed"]))
        })
    };
    let cm = published();
    assert_eq!(cm["data"]["ca.crt"].as_str(), Some(ca.as_str()));
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"]
        .as_str()
        .unwrap()
        .starts_with("Contains a CA bundle"));
    c.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "doomed"]);
    let cm = published();
    assert_eq!(cm["data"]["ca.crt"].as_str(), Some(ca.as_str()));
    c.ok(&[
        "create",
        "configmap",
        "a",
        "-n",
        "doomed",
        "--from-literal=k=v",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "doomed",
        "--from-literal=k=v",
    ]);
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "doomed",
        "--tcp=80:8080",
    ]);
    // A finalizer someone else removes later holds the namespace.
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: doomed\n  finalizers: [example.com/hold]\n");
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let ns = c.eventually("NamespaceFinalizersRemaining condition", || {
        let ns = c.json(&["namespace", "doomed"]);
        let conds = ns["status"]["conditions"].as_array()?.clone();
        let fr = conds
            .iter()
            .find(|x| x["type"] == "NamespaceFinalizersRemaining" && x["status"] == "True")?
            .clone();
        Some((ns, fr))
    });
    assert_eq!(ns.0["status"]["phase"], "Terminating");
    assert_eq!(
        ns.1["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    let conds = ns.0["status"]["conditions"].as_array().unwrap();
    let remaining = conds
        .iter()
        .find(|x| x["type"] == "NamespaceContentRemaining")
        .unwrap();
    assert_eq!(remaining["status"], "True");
    assert_eq!(
        remaining["message"],
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    assert!(!c.exists(&["secret", "s", "-n", "doomed"]));
    c.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        "{\"metadata\":{\"finalizers\":null}}",
    ]);
    c.eventually("doomed removed once its content is gone", || {
        (!c.exists(&["namespace", "doomed"])).then_some(())
    });
    // `kubectl delete` waits for the namespace to disappear.
    c.ok(&["create", "namespace", "second"]);
    c.ok(&["create", "configmap", "b", "-n", "second"]);
    c.ok(&["create", "secret", "generic", "t", "-n", "second"]);
    let t = Instant::now();
    c.ok(&["delete", "namespace", "second", "--timeout=30s"]);
    assert!(t.elapsed() < Duration::from_secs(25));
    assert!(!c.exists(&["namespace", "second"]));
    for ns in ["doomed", "second"] {
        let left = c.ok(&["get", "configmaps,secrets,services", "-n", ns, "-o", "name"]);
        assert!(left.trim().is_empty(), "left over in {ns}: {left}");
    }
}

#[test]
fn garbage_collector_background_foreground_orphan() {
    let Some(c) = Cluster::start_env(&[]) else {
        return;
    };
    // Background: the owner goes, then its dependents.
    c.ok(&["create", "configmap", "owner-bg"]);
    let uid = c.uid(&["configmap", "owner-bg"]);
    c.dependent("default", "dep-bg-1", "ConfigMap", "owner-bg", &uid);
    c.dependent("default", "dep-bg-2", "ConfigMap", "owner-bg", &uid);
    // A dependent with a live owner and a dangling one keeps living, without
    // the dangling reference.
    c.ok(&["create", "configmap", "survivor-owner"]);
    let suid = c.uid(&["configmap", "survivor-owner"]);
    c.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two-owners\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner-bg, uid: {uid}}}\n  - {{apiVersion: v1, kind: ConfigMap, name: survivor-owner, uid: {suid}}}\n"
    ));
    c.ok(&["delete", "configmap", "owner-bg"]);
    c.eventually("background dependents deleted", || {
        (!c.exists(&["configmap", "dep-bg-1"]) && !c.exists(&["configmap", "dep-bg-2"]))
            .then_some(())
    });
    c.eventually("dangling owner reference removed", || {
        let v = c.json(&["configmap", "two-owners"]);
        let refs = v["metadata"]["ownerReferences"].as_array()?.clone();
        (refs.len() == 1 && refs[0]["name"] == "survivor-owner").then_some(())
    });
    // A dependent whose owner uid never existed is collected too.
    c.dependent("default", "dep-ghost", "ConfigMap", "ghost", "no-such-uid");
    c.eventually("dependent of a missing owner deleted", || {
        (!c.exists(&["configmap", "dep-ghost"])).then_some(())
    });

    // Foreground: kubectl waits until the dependents and then the owner are gone.
    c.ok(&["create", "configmap", "owner-fg"]);
    let uid = c.uid(&["configmap", "owner-fg"]);
    c.dependent("default", "dep-fg-1", "ConfigMap", "owner-fg", &uid);
    let uid1 = c.uid(&["configmap", "dep-fg-1"]);
    // A grandchild: the child is deleted in the foreground itself.
    c.dependent("default", "dep-fg-grand", "ConfigMap", "dep-fg-1", &uid1);
    c.ok(&[
        "delete",
        "configmap",
        "owner-fg",
        "--cascade=foreground",
        "--timeout=30s",
    ]);
    assert!(!c.exists(&["configmap", "owner-fg"]));
    assert!(!c.exists(&["configmap", "dep-fg-1"]));
    assert!(!c.exists(&["configmap", "dep-fg-grand"]));

    // Orphan: the dependents stay, without the owner reference.
    c.ok(&["create", "configmap", "owner-or"]);
    let uid = c.uid(&["configmap", "owner-or"]);
    c.dependent("default", "dep-or-1", "ConfigMap", "owner-or", &uid);
    c.ok(&[
        "delete",
        "configmap",
        "owner-or",
        "--cascade=orphan",
        "--timeout=30s",
    ]);
    assert!(!c.exists(&["configmap", "owner-or"]));
    let v = c.json(&["configmap", "dep-or-1"]);
    assert!(
        v["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{v}"
    );
    // Cross-kind: a Secret owning a ConfigMap.
    c.ok(&[
        "create",
        "secret",
        "generic",
        "owner-secret",
        "--from-literal=a=b",
    ]);
    let uid = c.uid(&["secret", "owner-secret"]);
    c.dependent("default", "dep-of-secret", "Secret", "owner-secret", &uid);
    c.ok(&["delete", "secret", "owner-secret"]);
    c.eventually("dependent of a deleted Secret deleted", || {
        (!c.exists(&["configmap", "dep-of-secret"])).then_some(())
    });
    assert!(c.exists(&["configmap", "dep-or-1"]));
}

#[test]
fn endpoints_and_endpointslices_over_running_pods() {
    let Some(mut c) = Cluster::start_env(&[]) else {
        return;
    };
    c.simulate_lease("ep-node-", 1, 5);
    for i in 0..2 {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{i}\n  labels: {{app: web}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports:\n    - {{name: http, containerPort: 8080}}\n"
        ));
    }
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {team: a}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n");
    // A service without a selector is left alone.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: manual\nspec:\n  ports:\n  - {port: 80}\n");
    c.eventually("endpoints with both pods", || {
        let out = c.ok(&["get", "endpoints", "web"]);
        out.contains("192.0.2.1:8080,192.0.2.1:8080").then_some(())
    });
    let ep = c.json(&["endpoints", "web"]);
    let subset = &ep["subsets"][0];
    assert_eq!(subset["addresses"].as_array().unwrap().len(), 2, "{ep}");
    assert_eq!(subset["addresses"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(subset["ports"][0]["name"], "http");
    assert_eq!(subset["ports"][0]["port"], 8080);
    assert_eq!(ep["metadata"]["labels"]["team"], "a");
    let slices = c.json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let items = slices["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{slices}");
    let s = &items[0];
    assert!(s["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    assert_eq!(
        s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(s["addressType"], "IPv4");
    assert_eq!(s["ports"][0]["port"], 8080);
    let eps = s["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["conditions"]["ready"], true);
    assert_eq!(eps[0]["nodeName"], "ep-node-0");
    // Stable: no rewrite loop.
    let rv = s["metadata"]["resourceVersion"].clone();
    let erv = ep["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(2));
    let again = c.json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    assert_eq!(again["items"][0]["metadata"]["resourceVersion"], rv);
    assert_eq!(
        c.json(&["endpoints", "web"])["metadata"]["resourceVersion"],
        erv
    );
    assert!(!c.exists(&["endpoints", "manual"]));

    // A deleted pod leaves (the simulated node finishes the deletion).
    c.ok(&["delete", "pod", "web-1", "--wait=false"]);
    c.eventually("one endpoint left", || {
        let ep = c.json(&["endpoints", "web"]);
        let n = ep["subsets"][0]["addresses"]
            .as_array()
            .map_or(0, |a| a.len());
        let sl = c.json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let m = sl["items"][0]["endpoints"]
            .as_array()
            .map_or(0, |a| a.len());
        (n == 1 && m == 1).then_some(())
    });
    // The service goes: so do its Endpoints and slices.
    c.ok(&["delete", "service", "web"]);
    c.eventually("endpoints and slices deleted", || {
        let sl = c.json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        (!c.exists(&["endpoints", "web"]) && sl["items"].as_array().is_some_and(|a| a.is_empty()))
            .then_some(())
    });
}

#[test]
fn node_lifecycle_unreachable_taints_and_eviction() {
    let Some(mut c) = Cluster::start_env(&[("BOSUN_NODE_MONITOR_GRACE_SECONDS", "3")]) else {
        return;
    };
    c.simulate_lease("nl-node-", 1, 1);
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: short\nspec:\n  tolerations:\n  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n  containers:\n  - {name: c, image: busybox}\n");
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: long\nspec:\n  containers:\n  - {name: c, image: busybox}\n");
    c.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n      containers:\n      - {name: c, image: busybox}\n");
    for p in ["short", "long"] {
        c.eventually(&format!("{p} Running"), || {
            (c.ok(&["get", "pod", p, "-o", "jsonpath={.status.phase}"]) == "Running").then_some(())
        });
    }
    c.eventually("web available on nl-node-0", || {
        (c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ]) == "2")
            .then_some(())
    });
    // A healthy spare node joins; then the first one stops heartbeating.
    c.simulate_lease("nl-spare-", 1, 1);
    let (mut first, _) = c.sims.remove(0);
    let _ = first.kill();
    let _ = first.wait();
    let node = c.eventually("node Ready=Unknown with unreachable taints", || {
        let n = c.json(&["node", "nl-node-0"]);
        let ready = n["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|x| x["type"] == "Ready")?
            .clone();
        let taints = n["spec"]["taints"].as_array()?.clone();
        (ready["status"] == "Unknown" && taints.len() == 2).then_some((ready, taints))
    });
    assert_eq!(node.0["reason"], "NodeStatusUnknown");
    assert_eq!(node.0["message"], "Kubelet stopped posting node status.");
    let mut effects: Vec<String> = node
        .1
        .iter()
        .map(|t| {
            assert_eq!(t["key"], "node.kubernetes.io/unreachable");
            t["effect"].as_str().unwrap().to_string()
        })
        .collect();
    effects.sort();
    assert_eq!(effects, ["NoExecute", "NoSchedule"]);
    // The 2 s toleration expires: evicted (terminating, since nobody
    // finishes the deletion on the dead node); the 300 s one stays.
    c.eventually("short evicted", || {
        let p = c.json(&["pod", "short"]);
        p["metadata"]["deletionTimestamp"].is_string().then_some(())
    });
    let p = c.json(&["pod", "short"]);
    let dt = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "DisruptionTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(dt["reason"], "DeletionByTaintManager", "{p}");
    let long = c.json(&["pod", "long"]);
    assert!(long["metadata"]["deletionTimestamp"].is_null());
    let ready = long["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        ready["status"], "False",
        "pods on an unreachable node are not ready"
    );

    // The Deployment's pods are evicted after their 2 s and replaced on
    // the spare node, so it is available again.
    c.eventually("web rescheduled onto nl-spare-0", || {
        let pods = c.json(&["pods", "-l", "app=web"]);
        let live: Vec<&Value> = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let avail = c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ]);
        (live.len() == 2
            && live.iter().all(|p| p["spec"]["nodeName"] == "nl-spare-0")
            && avail == "2")
            .then_some(())
    });
    for (mut s, _) in c.sims.drain(..) {
        let _ = s.kill();
        let _ = s.wait();
    }
    // Heartbeats resume: the taints go.
    c.simulate_lease("nl-node-", 1, 1);
    c.eventually("taints removed", || {
        let n = c.json(&["node", "nl-node-0"]);
        n["spec"]["taints"]
            .as_array()
            .is_none_or(|a| a.is_empty())
            .then_some(())
    });
}
