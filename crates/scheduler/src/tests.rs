//! Table-driven tests of the whole algorithm.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use crate::*;

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

/// A node with cpu/memory allocatable, 110 pods, hostname label, plus `extra` merged in.
fn node(name: &str, cpu: &str, mem: &str, extra: Value) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A pod with one container requesting cpu/memory (empty strings = no request).
fn pod(name: &str, cpu: &str, mem: &str, extra: Value) -> Pod {
    let mut reqs = serde_json::Map::new();
    if !cpu.is_empty() {
        reqs.insert("cpu".into(), json!(cpu));
    }
    if !mem.is_empty() {
        reqs.insert("memory".into(), json!(mem));
    }
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": reqs}}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A pod bound to `node_name`.
fn bound(name: &str, node_name: &str, cpu: &str, mem: &str, extra: Value) -> Pod {
    let mut p = pod(name, cpu, mem, extra);
    p.spec.as_mut().unwrap().node_name = Some(node_name.into());
    p
}

fn snap(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
    Snapshot::new(nodes, pods, &[])
}

fn feasible(s: &Snapshot, p: &Pod) -> Vec<String> {
    let st = PodState::new(s, p).unwrap();
    let mut v: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| run_filters(&st, n).is_ok())
        .map(|n| n.name().to_string())
        .collect();
    v.sort();
    v
}

fn recording() -> Profile {
    Profile {
        record_scores: true,
        ..Profile::default()
    }
}

/// Per-node (unweighted) score of one plugin.
fn plugin_scores(
    profile: &Profile,
    s: &Snapshot,
    p: &Pod,
    plugin: &str,
    weight: i64,
) -> BTreeMap<String, i64> {
    let st = PodState::new(s, p).unwrap();
    let nodes: Vec<&NodeInfo> = s
        .nodes
        .iter()
        .filter(|n| run_filters(&st, n).is_ok())
        .collect();
    let prof = Profile {
        record_scores: true,
        ..profile.clone()
    };
    let (_, per) = framework::score_nodes(&prof, s, &st, &nodes);
    let scores = per.into_iter().find(|(n, _)| *n == plugin).map(|(_, v)| v);
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.name().to_string(),
                scores.as_ref().map_or(0, |v| v[i] / weight),
            )
        })
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn filter_node_unschedulable_and_name() {
    let s = snap(
        vec![
            node("a", "4", "8Gi", json!({"spec": {"unschedulable": true}})),
            node("b", "4", "8Gi", json!({})),
        ],
        vec![],
    );
    let cases = [
        (pod("p", "", "", json!({})), vec!["b"]),
        (
            pod(
                "p",
                "",
                "",
                json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
            ),
            vec!["a", "b"],
        ),
        (
            pod("p", "", "", json!({"spec": {"nodeName": "b"}})),
            vec!["b"],
        ),
        (
            pod("p", "", "", json!({"spec": {"nodeName": "zz"}})),
            vec![],
        ),
    ];
    for (p, want) in cases {
        assert_eq!(feasible(&s, &p), names(&want));
    }
}

#[test]
fn filter_taints() {
    let s = snap(
        vec![
            node(
                "a",
                "4",
                "8Gi",
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
            ),
            node(
                "b",
                "4",
                "8Gi",
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}}),
            ),
            node(
                "c",
                "4",
                "8Gi",
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]}}),
            ),
        ],
        vec![],
    );
    let cases = [
        (json!([]), vec!["c"]),
        (
            json!([{"key": "k", "operator": "Equal", "value": "v"}]),
            vec!["a", "b", "c"],
        ),
        (json!([{"key": "k", "value": "other"}]), vec!["c"]),
        (
            json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]),
            vec!["a", "c"],
        ),
        (json!([{"operator": "Exists"}]), vec!["a", "b", "c"]),
    ];
    for (tols, want) in cases {
        let p = pod("p", "", "", json!({"spec": {"tolerations": tols}}));
        assert_eq!(feasible(&s, &p), names(&want), "{tols}");
    }
}

#[test]
fn filter_node_affinity() {
    let s = snap(
        vec![
            node(
                "a",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"zone": "z1", "disk": "ssd", "gen": "3"}}}),
            ),
            node(
                "b",
                "4",
                "8Gi",
                json!({"metadata": {"labels": {"zone": "z2", "gen": "5"}}}),
            ),
        ],
        vec![],
    );
    let req = |terms: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}});
    let cases = [
        (
            json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
            vec!["a"],
        ),
        (json!({"spec": {"nodeSelector": {"disk": "hdd"}}}), vec![]),
        (
            req(
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}]),
            ),
            vec!["b"],
        ),
        (
            req(json!([{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}])),
            vec!["b"],
        ),
        (
            req(json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}])),
            vec!["b"],
        ),
        (
            req(json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}])),
            vec!["a"],
        ),
        (
            req(json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}
            ])),
            vec!["a", "b"],
        ),
        (
            req(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]),
            ),
            vec!["b"],
        ),
        (
            req(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1"]}]}]),
            ),
            vec!["b"],
        ),
    ];
    for (extra, want) in cases {
        let p = pod("p", "", "", extra.clone());
        assert_eq!(feasible(&s, &p), names(&want), "{extra}");
    }
}

#[test]
fn filter_node_ports() {
    let port = |hp: i64, ip: &str, proto: &str| json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": hp, "hostIP": ip, "protocol": proto}]}]}});
    let s = snap(
        vec![
            node("a", "4", "8Gi", json!({})),
            node("b", "4", "8Gi", json!({})),
        ],
        vec![
            bound("e1", "a", "", "", port(8080, "", "TCP")),
            bound("e2", "b", "", "", port(9090, "10.0.0.1", "UDP")),
        ],
    );
    let cases = [
        (port(8080, "", "TCP"), vec!["b"]),
        (port(8080, "", "UDP"), vec!["a", "b"]),
        (port(8080, "127.0.0.1", "TCP"), vec!["b"]),
        (port(9090, "10.0.0.2", "UDP"), vec!["a", "b"]),
        (port(9090, "10.0.0.1", "UDP"), vec!["a"]),
        (port(9090, "", "UDP"), vec!["a"]),
    ];
    for (extra, want) in cases {
        let p = pod("p", "", "", extra.clone());
        assert_eq!(feasible(&s, &p), names(&want), "{extra}");
    }
}

#[test]
fn filter_resources_fit() {
    let s = snap(
        vec![
            node("a", "2", "4Gi", json!({})),
            node(
                "b",
                "4",
                "1Gi",
                json!({"status": {"allocatable": {"example.com/gpu": "2"}}}),
            ),
            node(
                "c",
                "8",
                "8Gi",
                json!({"status": {"allocatable": {"pods": "1"}}}),
            ),
        ],
        vec![
            bound("e1", "a", "1500m", "1Gi", json!({})),
            bound("e2", "c", "", "", json!({})),
        ],
    );
    let gpu = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}});
    let cases = [
        (pod("p", "500m", "1Gi", json!({})), vec!["a", "b"]),
        (pod("p", "600m", "", json!({})), vec!["b"]),
        (pod("p", "100m", "2Gi", json!({})), vec!["a"]),
        (pod("p", "", "", gpu), vec!["b"]),
        (
            pod("p", "", "", json!({"spec": {"overhead": {"cpu": "3"}}})),
            vec!["b"],
        ),
    ];
    for (p, want) in cases {
        assert_eq!(feasible(&s, &p), names(&want));
    }
}

#[test]
fn fit_error_message_text() {
    let s = snap(
        vec![
            node(
                "cp",
                "8",
                "8Gi",
                json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
            ),
            node("w1", "1", "8Gi", json!({})),
            node("w2", "1", "8Gi", json!({})),
        ],
        vec![],
    );
    let p = pod("p", "2", "", json!({}));
    let err = schedule(&Profile::default(), &s, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
    );
    assert_eq!(err.diagnosis.get("Insufficient cpu"), Some(&2));

    // Several reasons from one node, and a reason shared by many nodes.
    let p = pod(
        "p",
        "2",
        "16Gi",
        json!({"spec": {"nodeSelector": {"x": "y"}}}),
    );
    let err = schedule(&Profile::default(), &s, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector."
    );
    let p = pod(
        "p",
        "2",
        "16Gi",
        json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
    );
    let mut err = schedule(&Profile::default(), &s, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/3 nodes are available: 2 Insufficient cpu, 3 Insufficient memory."
    );
    // The runtime appends the PostFilter message. Requests above allocatable are unresolvable.
    err.post_filter_msg = preempt(&Profile::default(), &s, &p, &[]).err();
    assert_eq!(
        err.message(),
        "0/3 nodes are available: 2 Insufficient cpu, 3 Insufficient memory. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    let s2 = snap(
        vec![
            node("w1", "1", "8Gi", json!({})),
            node("w2", "1", "8Gi", json!({})),
        ],
        vec![
            bound("e1", "w1", "500m", "", json!({})),
            bound("e2", "w2", "500m", "", json!({})),
        ],
    );
    let p2 = pod("p", "1", "", json!({}));
    let mut err = schedule(&Profile::default(), &s2, &p2).unwrap_err();
    err.post_filter_msg = preempt_with_diagnosis(&Profile::default(), &s2, &p2, &[], &err).err();
    assert_eq!(
        err.message(),
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.."
    );

    let empty = snap(vec![], vec![]);
    assert_eq!(
        schedule(&Profile::default(), &empty, &p)
            .unwrap_err()
            .message(),
        "no nodes available to schedule pods"
    );

    // Too many pods, unschedulable, node name and ports.
    let s = snap(
        vec![
            node(
                "a",
                "8",
                "8Gi",
                json!({"status": {"allocatable": {"pods": "0"}}}),
            ),
            node("b", "8", "8Gi", json!({"spec": {"unschedulable": true}})),
        ],
        vec![],
    );
    let p = pod("p", "", "", json!({}));
    assert_eq!(
        schedule(&Profile::default(), &s, &p).unwrap_err().message(),
        "0/2 nodes are available: 1 Too many pods, 1 node(s) were unschedulable."
    );
    let p = pod("p", "", "", json!({"spec": {"nodeName": "c"}}));
    assert_eq!(
        schedule(&Profile::default(), &s, &p).unwrap_err().message(),
        "0/2 nodes are available: 1 node(s) didn't match the requested node name, 1 node(s) were unschedulable."
    );
}

#[test]
fn histogram_sorts_like_upstream() {
    let d: BTreeMap<String, usize> = [
        ("b".to_string(), 10),
        ("a".to_string(), 2),
        ("c".to_string(), 1),
    ]
    .into();
    assert_eq!(framework::histogram(&d), "1 c, 10 b, 2 a");
}

fn anti(key: &str, labels: Value) -> Value {
    json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}
    ]}}}})
}

fn aff(key: &str, labels: Value) -> Value {
    json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}
    ]}}}})
}

fn zoned(name: &str, zone: &str) -> Node {
    node(
        name,
        "8",
        "16Gi",
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
    )
}

#[test]
fn filter_inter_pod_affinity() {
    let app = |a: &str| json!({"metadata": {"labels": {"app": a}}});
    let nodes = || vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let s = snap(nodes(), vec![bound("web", "a1", "", "", app("web"))]);

    // Anti-affinity by hostname / zone.
    let mut p = pod(
        "p",
        "",
        "",
        anti("kubernetes.io/hostname", json!({"app": "web"})),
    );
    assert_eq!(feasible(&s, &p), names(&["a2", "b1"]));
    p = pod(
        "p",
        "",
        "",
        anti("topology.kubernetes.io/zone", json!({"app": "web"})),
    );
    assert_eq!(feasible(&s, &p), names(&["b1"]));
    // Affinity by zone.
    p = pod(
        "p",
        "",
        "",
        aff("topology.kubernetes.io/zone", json!({"app": "web"})),
    );
    assert_eq!(feasible(&s, &p), names(&["a1", "a2"]));
    // Affinity to nothing: not schedulable unless it matches itself.
    p = pod(
        "p",
        "",
        "",
        aff("topology.kubernetes.io/zone", json!({"app": "db"})),
    );
    assert!(feasible(&s, &p).is_empty());
    let mut selfish = aff("topology.kubernetes.io/zone", json!({"app": "db"}));
    merge(&mut selfish, app("db"));
    p = pod("p", "", "", selfish);
    assert_eq!(feasible(&s, &p), names(&["a1", "a2", "b1"]));
    // Other namespace does not match by default.
    p = pod(
        "p",
        "",
        "",
        anti("kubernetes.io/hostname", json!({"app": "web"})),
    );
    p.metadata.namespace = Some("other".into());
    assert_eq!(feasible(&s, &p), names(&["a1", "a2", "b1"]));

    // Existing pod's anti-affinity against the incoming pod.
    let mut ex = anti("topology.kubernetes.io/zone", json!({"app": "db"}));
    merge(&mut ex, app("web"));
    let s2 = snap(nodes(), vec![bound("guard", "a1", "", "", ex)]);
    let p = pod("p", "", "", app("db"));
    assert_eq!(feasible(&s2, &p), names(&["b1"]));
    let p = pod("p", "", "", app("other"));
    assert_eq!(feasible(&s2, &p), names(&["a1", "a2", "b1"]));
    let err = schedule(
        &Profile::default(),
        &s2,
        &pod("p", "", "", {
            let mut v = app("db");
            merge(
                &mut v,
                json!({"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "a"}}}),
            );
            v
        }),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) didn't satisfy existing pods anti-affinity rules."
    );

    // namespaceSelector.
    let mut other = bound("web2", "b1", "", "", app("web"));
    other.metadata.namespace = Some("team-x".into());
    let ns: Vec<k8s_openapi::api::core::v1::Namespace> = vec![
        serde_json::from_value(json!({"metadata": {"name": "team-x", "labels": {"team": "x"}}}))
            .unwrap(),
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
    ];
    let s3 = Snapshot::new(nodes(), vec![other], &ns);
    let p = pod(
        "p",
        "",
        "",
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {"matchLabels": {"team": "x"}}, "topologyKey": "topology.kubernetes.io/zone"}
        ]}}}}),
    );
    assert_eq!(feasible(&s3, &p), names(&["a1", "a2"]));
    let err = schedule(
        &Profile::default(),
        &s3,
        &pod(
            "p",
            "",
            "",
            anti("kubernetes.io/hostname", json!({"app": "web"})),
        ),
    )
    .map(|r| r.feasible_nodes);
    assert_eq!(err, Ok(3));
}

fn spread(key: &str, skew: i32, extra: Value) -> Value {
    let mut c = json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}});
    merge(&mut c, extra);
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [c]}})
}

#[test]
fn filter_pod_topology_spread() {
    let web = || json!({"metadata": {"labels": {"app": "web"}}});
    let nodes = || {
        vec![
            zoned("a1", "a"),
            zoned("a2", "a"),
            zoned("b1", "b"),
            node("nozone", "8", "16Gi", json!({})),
        ]
    };
    let s = snap(
        nodes(),
        vec![
            bound("w1", "a1", "", "", web()),
            bound("w2", "a2", "", "", web()),
        ],
    );
    let zone = "topology.kubernetes.io/zone";
    let p = pod("p", "", "", spread(zone, 1, json!({})));
    assert_eq!(feasible(&s, &p), names(&["b1"]));
    let p = pod("p", "", "", spread(zone, 2, json!({})));
    assert_eq!(feasible(&s, &p), names(&["b1"]));
    let p = pod("p", "", "", spread(zone, 3, json!({})));
    assert_eq!(feasible(&s, &p), names(&["a1", "a2", "b1"]));
    // minDomains greater than the number of domains: global minimum is 0.
    let s_md = snap(
        nodes(),
        vec![
            bound("w1", "a1", "", "", web()),
            bound("w2", "b1", "", "", web()),
        ],
    );
    let p = pod("p", "", "", spread(zone, 1, json!({})));
    assert_eq!(feasible(&s_md, &p), names(&["a1", "a2", "b1"]));
    let p = pod("p", "", "", spread(zone, 1, json!({"minDomains": 3})));
    assert!(feasible(&s_md, &p).is_empty());
    let p = pod("p", "", "", spread(zone, 2, json!({"minDomains": 3})));
    assert_eq!(feasible(&s_md, &p), names(&["a1", "a2", "b1"]));
    // nodeAffinityPolicy Honor (default): zone b excluded by nodeSelector → min over zone a only.
    let mut v = spread(zone, 1, json!({}));
    merge(
        &mut v,
        json!({"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "a"}}}),
    );
    let p = pod("p", "", "", v);
    assert_eq!(feasible(&s, &p), names(&["a1", "a2"]));
    // nodeTaintsPolicy Honor: tainted zone b not counted.
    let mut nodes_t = nodes();
    nodes_t[2] = node(
        "b1",
        "8",
        "16Gi",
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "b"}}, "spec": {"taints": [{"key": "t", "effect": "NoSchedule"}]}}),
    );
    nodes_t.push(zoned("c1", "c"));
    let s_t = snap(
        nodes_t,
        vec![
            bound("w1", "a1", "", "", web()),
            bound("w2", "a2", "", "", web()),
        ],
    );
    let p = pod("p", "", "", spread(zone, 1, json!({})));
    assert_eq!(feasible(&s_t, &p), names(&["c1"]));
    // hostname spreading with matchLabelKeys.
    let mut v = spread(
        "kubernetes.io/hostname",
        1,
        json!({"matchLabelKeys": ["rev"]}),
    );
    merge(&mut v, json!({"metadata": {"labels": {"rev": "2"}}}));
    let p = pod("p", "", "", v);
    // No existing pod has rev=2, so every node is fine.
    assert_eq!(feasible(&s, &p), names(&["a1", "a2", "b1", "nozone"]));

    let p = pod("p", "", "", spread(zone, 1, json!({})));
    let err = schedule(&Profile::default(), &s, &p);
    assert_eq!(err.unwrap().node_name, "b1");
    let p = pod(
        "p",
        "",
        "",
        spread(
            zone,
            1,
            json!({"labelSelector": {"matchLabels": {"app": "x"}}}),
        ),
    );
    // The pod doesn't match its own selector: no skew anywhere except the missing label.
    let mut v = spread(zone, 1, json!({}));
    merge(&mut v, json!({"spec": {"nodeName": "nozone"}}));
    let err = schedule(&Profile::default(), &s, &pod("p", "", "", v)).unwrap_err();
    assert_eq!(
        err.message(),
        "0/4 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label), 3 node(s) didn't match the requested node name."
    );
    assert_eq!(feasible(&s, &p), names(&["a1", "a2", "b1"]));
}

#[test]
fn score_resources_least_and_most_allocated() {
    let s = snap(
        vec![
            node("empty", "4", "8Gi", json!({})),
            node("busy", "4", "8Gi", json!({})),
        ],
        vec![bound("e", "busy", "2", "4Gi", json!({}))],
    );
    let p = pod("p", "1", "2Gi", json!({}));
    let least = plugin_scores(&Profile::default(), &s, &p, "NodeResourcesFit", 1);
    // empty: cpu (4000-1000)/4000=75, mem 75 → 75; busy: (4000-3000)/4000=25.
    assert_eq!(least["empty"], 75);
    assert_eq!(least["busy"], 25);
    let most = Profile {
        scoring_strategy: ScoringStrategy::MostAllocated,
        ..Profile::default()
    };
    let m = plugin_scores(&most, &s, &p, "NodeResourcesFit", 1);
    assert_eq!((m["empty"], m["busy"]), (25, 75));
    assert_eq!(
        schedule(&Profile::default(), &s, &p).unwrap().node_name,
        "empty"
    );
    assert_eq!(schedule(&most, &s, &p).unwrap().node_name, "busy");

    // Pods without requests count as 100m/200Mi for scoring.
    let p0 = pod("p0", "", "", json!({}));
    let least = plugin_scores(&Profile::default(), &s, &p0, "NodeResourcesFit", 1);
    // cpu: (4000-100)*100/4000 = 97; mem: (8192-200)*100/8192 = 97
    assert_eq!(least["empty"], 97);
}

#[test]
fn score_balanced_allocation() {
    let s = snap(
        vec![
            node("a", "4", "4Gi", json!({})),
            node("b", "4", "4Gi", json!({})),
        ],
        vec![bound("e", "b", "2", "", json!({}))],
    );
    let p = pod("p", "1", "1Gi", json!({}));
    let sc = plugin_scores(
        &Profile::default(),
        &s,
        &p,
        "NodeResourcesBalancedAllocation",
        1,
    );
    // a: fractions .25/.25 → 100; b: .75/.25 → std .25 → 75.
    assert_eq!((sc["a"], sc["b"]), (100, 75));
    // Best-effort pods skip the plugin.
    let sc = plugin_scores(
        &Profile::default(),
        &s,
        &pod("p", "", "", json!({})),
        "NodeResourcesBalancedAllocation",
        1,
    );
    assert_eq!((sc["a"], sc["b"]), (0, 0));
}

#[test]
fn score_taints_and_node_affinity() {
    let s = snap(
        vec![
            node(
                "a",
                "4",
                "4Gi",
                json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}, {"key": "k2", "effect": "PreferNoSchedule"}]}}),
            ),
            node(
                "b",
                "4",
                "4Gi",
                json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}, "metadata": {"labels": {"fast": "yes"}}}),
            ),
            node(
                "c",
                "4",
                "4Gi",
                json!({"metadata": {"labels": {"fast": "yes", "big": "yes"}}}),
            ),
        ],
        vec![],
    );
    let p = pod("p", "", "", json!({}));
    let t = plugin_scores(&Profile::default(), &s, &p, "TaintToleration", 3);
    assert_eq!((t["a"], t["b"], t["c"]), (0, 50, 100));
    let p = pod(
        "p",
        "",
        "",
        json!({"spec": {"tolerations": [{"key": "k2", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
    );
    let t = plugin_scores(&Profile::default(), &s, &p, "TaintToleration", 3);
    assert_eq!((t["a"], t["b"], t["c"]), (0, 0, 100));

    let p = pod(
        "p",
        "",
        "",
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "fast", "operator": "In", "values": ["yes"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "big", "operator": "Exists"}]}}
        ]}}}}),
    );
    let a = plugin_scores(&Profile::default(), &s, &p, "NodeAffinity", 2);
    assert_eq!((a["a"], a["b"], a["c"]), (0, 25, 100));
    let r = schedule(&recording(), &s, &p).unwrap();
    assert_eq!(r.node_name, "c");
    assert_eq!(r.feasible_nodes, 3);
    assert_eq!(r.scores.len(), 3);
}

#[test]
fn score_image_locality() {
    let img = |names: Value, size: i64| json!({"status": {"images": [{"names": names, "sizeBytes": size}]}});
    let s = snap(
        vec![
            node(
                "a",
                "4",
                "4Gi",
                img(json!(["nginx:1.25"]), 500 * 1024 * 1024),
            ),
            node(
                "b",
                "4",
                "4Gi",
                img(json!(["busybox:latest"]), 500 * 1024 * 1024),
            ),
            node("c", "4", "4Gi", json!({})),
        ],
        vec![],
    );
    let mut p = pod("p", "", "", json!({}));
    p.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.25".into());
    let sc = plugin_scores(&Profile::default(), &s, &p, "ImageLocality", 1);
    // 500Mi * 1/3 ≈ 166.7Mi → 100*(166.7-23)/(1000-23) = 14
    assert_eq!((sc["a"], sc["b"], sc["c"]), (14, 0, 0));
    // "busybox" normalizes to busybox:latest.
    let p = pod("p", "", "", json!({}));
    let sc = plugin_scores(&Profile::default(), &s, &p, "ImageLocality", 1);
    assert_eq!(sc["b"], 14);
}

#[test]
fn score_inter_pod_affinity_preferred() {
    let s = snap(
        vec![zoned("a1", "a"), zoned("b1", "b"), zoned("c1", "c")],
        vec![
            bound(
                "cache",
                "a1",
                "",
                "",
                json!({"metadata": {"labels": {"app": "cache"}}}),
            ),
            bound(
                "noisy",
                "b1",
                "",
                "",
                json!({"metadata": {"labels": {"app": "noisy"}}}),
            ),
        ],
    );
    let p = pod(
        "p",
        "",
        "",
        json!({"spec": {"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "topology.kubernetes.io/zone"}}]}
        }}}),
    );
    let sc = plugin_scores(&Profile::default(), &s, &p, "InterPodAffinity", 2);
    assert_eq!((sc["a1"], sc["b1"], sc["c1"]), (100, 0, 50));
    assert_eq!(
        schedule(&Profile::default(), &s, &p).unwrap().node_name,
        "a1"
    );

    // Existing pods' preferred anti-affinity repels the incoming pod.
    let s = snap(
        vec![zoned("a1", "a"), zoned("b1", "b")],
        vec![bound(
            "shy",
            "a1",
            "",
            "",
            json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
        )],
    );
    let p = pod("p", "", "", json!({"metadata": {"labels": {"app": "x"}}}));
    let sc = plugin_scores(&Profile::default(), &s, &p, "InterPodAffinity", 2);
    assert_eq!((sc["a1"], sc["b1"]), (0, 100));
}

#[test]
fn score_topology_spread_soft_and_default() {
    let web = || json!({"metadata": {"labels": {"app": "web"}}});
    let s = snap(
        vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
        vec![
            bound("w1", "a1", "", "", web()),
            bound("w2", "a1", "", "", web()),
            bound("w3", "a2", "", "", web()),
        ],
    );
    let mut v = spread(
        "topology.kubernetes.io/zone",
        1,
        json!({"whenUnsatisfiable": "ScheduleAnyway"}),
    );
    merge(&mut v, web());
    let p = pod("p", "", "", v);
    let sc = plugin_scores(&Profile::default(), &s, &p, "PodTopologySpread", 2);
    // zone a has 3 matching pods, zone b none: b1 best.
    assert_eq!(sc["b1"], 100);
    assert!(sc["a1"] < sc["b1"] && sc["a1"] == sc["a2"]);
    assert_eq!(
        schedule(&Profile::default(), &s, &p).unwrap().node_name,
        "b1"
    );

    // System default constraints apply to controller-owned pods without constraints.
    let owned = json!({"metadata": {"labels": {"app": "web"}, "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]}});
    let p = pod("p", "", "", owned);
    let sc = plugin_scores(&Profile::default(), &s, &p, "PodTopologySpread", 2);
    assert_eq!(sc["b1"], 100);
    assert!(sc["a1"] < sc["a2"], "{sc:?}");
    // ...but not to bare pods.
    let p = pod("p", "", "", web());
    let sc = plugin_scores(&Profile::default(), &s, &p, "PodTopologySpread", 2);
    assert_eq!((sc["a1"], sc["b1"]), (0, 0));
}

#[test]
fn adaptive_percentage_and_rotation() {
    let p = Profile::default();
    assert_eq!(p.num_feasible_nodes_to_find(50), 50);
    assert_eq!(p.num_feasible_nodes_to_find(200), 100);
    assert_eq!(p.num_feasible_nodes_to_find(1000), 420);
    assert_eq!(p.num_feasible_nodes_to_find(5000), 500);
    assert_eq!(p.num_feasible_nodes_to_find(10000), 500);
    let fixed = Profile {
        percentage_of_nodes_to_score: Some(100),
        ..Profile::default()
    };
    assert_eq!(fixed.num_feasible_nodes_to_find(5000), 5000);

    let nodes: Vec<Node> = (0..300)
        .map(|i| node(&format!("n{i:03}"), "4", "4Gi", json!({})))
        .collect();
    let s = snap(nodes, vec![]);
    let prof = Profile::default();
    let r1 = schedule(&prof, &s, &pod("p", "", "", json!({}))).unwrap();
    // 300 nodes: 50 - 300/125 = 48% → 144 nodes.
    assert_eq!((r1.feasible_nodes, r1.evaluated_nodes), (144, 144));
    let r2 = schedule(&recording(), &s, &pod("p", "", "", json!({}))).unwrap();
    assert_eq!(r2.feasible_nodes, 144);
    // The second cycle with the same profile starts where the first stopped.
    let p3 = pod("p", "", "", json!({}));
    let st = PodState::new(&s, &p3).unwrap();
    let (f, _) = framework::find_nodes_that_fit(&prof, &s, &st, false);
    assert_eq!(s.nodes[f[0]].name(), "n144");
}

#[test]
fn snapshot_add_remove() {
    let mut s = snap(vec![node("a", "2", "2Gi", json!({}))], vec![]);
    let p = pod("p", "1500m", "", json!({}));
    assert!(schedule(&Profile::default(), &s, &p).is_ok());
    assert!(s.add_pod(Arc::new(bound("big", "a", "1", "", json!({})))));
    assert_eq!(s.nodes[0].requested.milli_cpu, 1000);
    assert!(schedule(&Profile::default(), &s, &p).is_err());
    assert!(s.remove_pod("default", "big").is_some());
    assert_eq!(s.nodes[0].requested.milli_cpu, 0);
    assert!(schedule(&Profile::default(), &s, &p).is_ok());
    // Terminal and unbound pods are ignored.
    let mut done = bound("done", "a", "2", "", json!({}));
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    assert!(!s.add_pod(Arc::new(done)));
    assert!(!s.add_pod(Arc::new(pod("x", "", "", json!({})))));
    // Nodes are interleaved by zone.
    let s = snap(
        vec![
            zoned("a1", "a"),
            zoned("a2", "a"),
            zoned("b1", "b"),
            zoned("b2", "b"),
        ],
        vec![],
    );
    let order: Vec<&str> = s.nodes.iter().map(|n| n.name()).collect();
    assert_eq!(order, vec!["a1", "b1", "a2", "b2"]);
}

#[test]
fn daemonset_style_match_fields() {
    let s = snap(
        vec![
            node("a", "4", "4Gi", json!({})),
            node("b", "4", "4Gi", json!({"spec": {"unschedulable": true}})),
        ],
        vec![],
    );
    let ds = |n: &str| {
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]}}}}})
    };
    let r = schedule(&Profile::default(), &s, &pod("p", "", "", ds("a"))).unwrap();
    assert_eq!((r.node_name.as_str(), r.evaluated_nodes), ("a", 1));
    let e = schedule(&Profile::default(), &s, &pod("p", "", "", ds("b"))).unwrap_err();
    assert_eq!(
        e.message(),
        "0/2 nodes are available: 1 node(s) didn't satisfy plugin(s) [NodeAffinity], 1 node(s) were unschedulable."
    );
}

// ------------------------------------------------------------------ preemption

fn prio(p: i32) -> Value {
    json!({"spec": {"priority": p}})
}

fn with(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

fn started(secs: i64) -> Value {
    let t = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap();
    json!({"status": {"startTime": t.to_string()}})
}

#[test]
fn preemption_picks_lowest_priority_victims() {
    let s = snap(
        vec![
            node("n1", "2", "8Gi", json!({})),
            node("n2", "2", "8Gi", json!({})),
        ],
        vec![
            bound("n1-high", "n1", "1", "", prio(50)),
            bound("n1-low", "n1", "1", "", prio(10)),
            bound("n2-a", "n2", "1", "", prio(20)),
            bound("n2-b", "n2", "1", "", prio(20)),
        ],
    );
    let p = pod("p", "1", "", prio(100));
    let err = schedule(&Profile::default(), &s, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    let r = preempt_with_diagnosis(&Profile::default(), &s, &p, &[], &err).unwrap();
    // Both nodes need one victim; n1's highest victim priority (10) is lowest.
    assert_eq!(r.nominated_node, "n1");
    let v: Vec<&str> = r
        .victims
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(v, vec!["n1-low"]);

    // Needs 2 cpu: victims must be reprieved where possible.
    let p = pod("p", "2", "", prio(30));
    let r = preempt(&Profile::default(), &s, &p, &[]).unwrap();
    assert_eq!(r.nominated_node, "n2");
    assert_eq!(r.victims.len(), 2);

    // Priority too low to preempt anything.
    let p = pod("p", "1", "", prio(5));
    assert_eq!(
        preempt(&Profile::default(), &s, &p, &[]).unwrap_err(),
        "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
}

#[test]
fn preemption_reprieves_and_tie_breaks() {
    // n1: a 1-cpu and a 2-cpu pod at prio 1 (3 of 4 cpu used): a 2-cpu pod needs only the 2-cpu victim
    let s = snap(
        vec![
            node("n1", "4", "8Gi", json!({})),
            node("n2", "4", "8Gi", json!({})),
        ],
        vec![
            bound("small", "n1", "1", "", prio(1)),
            bound("big", "n1", "2", "", prio(1)),
            bound("x1", "n2", "2", "", with(prio(1), started(100))),
            bound("x2", "n2", "2", "", with(prio(1), started(200))),
        ],
    );
    let p = pod("p", "2", "", prio(10));
    let r = preempt(&Profile::default(), &s, &p, &[]).unwrap();
    // Both nodes: one victim of prio 1 → sum ties, count ties; n1's victim has no
    // start time ("now") which is later than n2's victims.
    assert_eq!(r.nominated_node, "n1");
    let v: Vec<&str> = r
        .victims
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(v.len(), 1);

    // Among n2's victims, the more important (earlier started) is reprieved first.
    let s = snap(
        vec![node("n2", "4", "8Gi", json!({}))],
        vec![
            bound("x1", "n2", "2", "", with(prio(1), started(100))),
            bound("x2", "n2", "2", "", with(prio(1), started(200))),
        ],
    );
    let r = preempt(&Profile::default(), &s, &p, &[]).unwrap();
    let v: Vec<&str> = r
        .victims
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(v, vec!["x2"]);
}

fn pdb(app: &str, allowed: i32) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pdb-{app}"), "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": app}}},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    }))
    .unwrap()
}

#[test]
fn preemption_respects_pdbs() {
    let lbl = |a: &str| json!({"metadata": {"labels": {"app": a}}});
    let s = snap(
        vec![
            node("n1", "2", "8Gi", json!({})),
            node("n2", "2", "8Gi", json!({})),
        ],
        vec![
            bound("guarded", "n1", "2", "", with(prio(1), lbl("db"))),
            bound("free1", "n2", "1", "", with(prio(5), lbl("web"))),
            bound("free2", "n2", "1", "", with(prio(5), lbl("web"))),
        ],
    );
    let p = pod("p", "2", "", prio(100));
    // Without PDBs n1 wins (lower victim priority).
    assert_eq!(
        preempt(&Profile::default(), &s, &p, &[])
            .unwrap()
            .nominated_node,
        "n1"
    );
    // A PDB allowing no disruption of "db" moves preemption to n2.
    let r = preempt(&Profile::default(), &s, &p, &[pdb("db", 0)]).unwrap();
    assert_eq!(r.nominated_node, "n2");
    assert_eq!((r.victims.len(), r.num_pdb_violations), (2, 0));
    // If every choice violates, the fewest violations win.
    let r = preempt(&Profile::default(), &s, &p, &[pdb("db", 0), pdb("web", 0)]).unwrap();
    assert_eq!((r.nominated_node.as_str(), r.num_pdb_violations), ("n1", 1));
    // A budget of one: evicting both web pods violates once, same as n1 → priority decides.
    let r = preempt(&Profile::default(), &s, &p, &[pdb("db", 0), pdb("web", 1)]).unwrap();
    assert_eq!((r.nominated_node.as_str(), r.num_pdb_violations), ("n1", 1));
}

#[test]
fn preemption_policy_never_and_unresolvable() {
    let s = snap(
        vec![
            node("n1", "1", "8Gi", json!({})),
            node(
                "n2",
                "8",
                "8Gi",
                json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
            ),
        ],
        vec![bound("low", "n1", "1", "", prio(0))],
    );
    let p = pod(
        "p",
        "1",
        "",
        with(prio(100), json!({"spec": {"preemptionPolicy": "Never"}})),
    );
    assert_eq!(
        preempt(&Profile::default(), &s, &p, &[]).unwrap_err(),
        "preemption: not eligible due to preemptionPolicy=Never."
    );
    // Node affinity mismatch everywhere: preemption can't help.
    let p = pod(
        "p",
        "1",
        "",
        with(prio(100), json!({"spec": {"nodeSelector": {"x": "y"}}})),
    );
    assert_eq!(
        preempt(&Profile::default(), &s, &p, &[]).unwrap_err(),
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // The tainted node is not a candidate; n1 is.
    let p = pod("p", "1", "", prio(100));
    let r = preempt(&Profile::default(), &s, &p, &[]).unwrap();
    assert_eq!(r.nominated_node, "n1");
    // Too big for any node even when empty: unresolvable everywhere.
    let p = pod(
        "p",
        "16",
        "",
        with(
            prio(100),
            json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        ),
    );
    assert_eq!(
        preempt(&Profile::default(), &s, &p, &[]).unwrap_err(),
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}

#[test]
fn preemption_with_anti_affinity_and_ports() {
    let s = snap(
        vec![node("n1", "8", "8Gi", json!({}))],
        vec![bound(
            "web",
            "n1",
            "",
            "",
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"priority": 1, "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}),
        )],
    );
    let p = pod(
        "p",
        "",
        "",
        json!({"spec": {"priority": 10, "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}),
    );
    let err = schedule(&Profile::default(), &s, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
    let r = preempt(&Profile::default(), &s, &p, &[]).unwrap();
    assert_eq!(r.victims.len(), 1);

    let p = pod(
        "p",
        "",
        "",
        with(
            prio(10),
            anti("kubernetes.io/hostname", json!({"app": "web"})),
        ),
    );
    let err = schedule(&Profile::default(), &s, &p).unwrap_err();
    assert_eq!(
        err.message(),
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
    );
    let r = preempt(&Profile::default(), &s, &p, &[]).unwrap();
    assert_eq!(r.nominated_node, "n1");
    assert_eq!(r.victims[0].metadata.name.as_deref(), Some("web"));
}

#[test]
fn nominated_node_is_tried_first() {
    let s = snap(
        vec![
            node("a", "4", "4Gi", json!({})),
            node("b", "4", "4Gi", json!({})),
        ],
        vec![bound("e", "b", "2", "", json!({}))],
    );
    let p = pod("p", "1", "", json!({"status": {"nominatedNodeName": "b"}}));
    let r = schedule(&Profile::default(), &s, &p).unwrap();
    assert_eq!((r.node_name.as_str(), r.evaluated_nodes), ("b", 1));
}

/// Rough throughput check: `cargo test --release -p bosun-scheduler -- --ignored --nocapture bench`.
#[test]
#[ignore]
fn bench_5000_nodes() {
    let nodes: Vec<Node> = (0..5000)
        .map(|i| {
            node(
                &format!("node-{i}"),
                "32",
                "128Gi",
                json!({"metadata": {"labels": {"topology.kubernetes.io/zone": format!("z{}", i % 3)}}}),
            )
        })
        .collect();
    let owned = |app: &str| {
        json!({"metadata": {"labels": {"app": app, "pod-template-hash": "abc"}, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app, "uid": format!("rs-{app}"), "controller": true}]}})
    };
    let pods: Vec<Pod> = (0..50_000)
        .map(|i| {
            bound(
                &format!("e{i}"),
                &format!("node-{}", i % 5000),
                "100m",
                "128Mi",
                owned(&format!("app{}", i % 50)),
            )
        })
        .collect();
    let mut s = snap(nodes, pods);
    let profile = Profile::default();
    for (label, extra) in [("plain", json!({})), ("replicaset", owned("app7"))] {
        let start = std::time::Instant::now();
        let n = 2000;
        for i in 0..n {
            let p = pod(&format!("{label}-{i}"), "100m", "128Mi", extra.clone());
            let r = schedule(&profile, &s, &p).unwrap();
            let mut p = p;
            p.spec.as_mut().unwrap().node_name = Some(r.node_name);
            s.add_pod(Arc::new(p));
        }
        let el = start.elapsed();
        println!(
            "{label}: {n} pods in {el:?} = {:.0} pods/s",
            n as f64 / el.as_secs_f64()
        );
    }
}
