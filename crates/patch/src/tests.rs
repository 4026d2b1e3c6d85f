use serde_json::{json, Value};

use crate::*;

fn smp(doc: Value, patch: Value, group: &str, kind: &str) -> Value {
    strategic_merge_patch(&doc, &patch, group, kind).unwrap()
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "B", "value": "2"},
                                {"name": "C", "value": "3"}
                            ]
                        },
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    })
}

// ---------------------------------------------------------------- strategic

#[test]
fn kubectl_apply_style_patch_on_deployment() {
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"x\":1}\n"}},
        "spec": {
            "replicas": 3,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"image": "nginx:1.27", "name": "web"}]
            }}
        }
    });
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"x\":1}\n"
    );
    assert_eq!(out["metadata"]["labels"]["app"], "web");
    let containers = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["name"], "web");
    assert_eq!(containers[0]["image"], "nginx:1.27");
    // Untouched fields of the merged element survive.
    assert_eq!(containers[0]["env"].as_array().unwrap().len(), 3);
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(containers[1]["image"], "busybox");
    // No directive leaks into the result.
    assert!(!out.to_string().contains('$'));
}

#[test]
fn kubectl_apply_removing_a_container() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}]
    }}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    let containers = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "web");
    assert_eq!(containers[0]["image"], "nginx:1.25");
}

#[test]
fn set_element_order_reorders_and_new_elements_follow_order() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "web"}],
        "containers": [{"name": "new", "image": "redis"}]
    }}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sidecar", "new", "web"]);
}

#[test]
fn set_element_order_mismatch_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"name": "other", "image": "x"}]
    }}}});
    let err = strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").unwrap_err();
    assert!(
        err.to_string().contains("doesn't match $setElementOrder"),
        "{err}"
    );
}

#[test]
fn merge_list_new_elements_are_appended() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "D", "value": "4"}, {"name": "B", "value": "20"}]}
    ]}}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
    // Upstream ordering: patch items keep the patch order; a server-only
    // item goes before the next patch item only when both are in the live
    // list and it comes first there. So new items (not live) come first.
    assert_eq!(
        env,
        &json!([
            {"name": "D", "value": "4"},
            {"name": "A", "value": "1"},
            {"name": "B", "value": "20"},
            {"name": "C", "value": "3"}
        ])
    );
}

#[test]
fn env_var_removal_via_patch_delete() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"$patch": "delete", "name": "B"}]}
    ]}}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
    );
}

#[test]
fn env_var_removal_with_set_element_order_like_kubectl() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{
            "name": "web",
            "$setElementOrder/env": [{"name": "C"}, {"name": "A"}],
            "env": [{"$patch": "delete", "name": "B"}]
        }]
    }}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "C", "value": "3"}, {"name": "A", "value": "1"}])
    );
}

#[test]
fn patch_replace_on_list() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "x"},
        {"$patch": "replace"}
    ]}}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "x"}])
    );
}

#[test]
fn patch_replace_on_map() {
    let patch = json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "tier": "fe"}}}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        json!({"tier": "fe"})
    );
}

#[test]
fn patch_delete_on_map() {
    let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(out["spec"]["strategy"], json!({}));
    let patch = json!({"$patch": "delete"});
    assert_eq!(smp(deployment(), patch, "apps", "Deployment"), json!({}));
}

#[test]
fn patch_merge_directive_on_map_and_list() {
    // `$patch: merge` on a map is not a valid map directive upstream.
    let patch = json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}});
    assert!(strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").is_err());
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}});
    let err = strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").unwrap_err();
    assert!(err
        .to_string()
        .contains("merging lists cannot yet be specified"));
}

#[test]
fn unknown_patch_directive_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "bogus", "name": "web"}]}}}});
    let err = strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").unwrap_err();
    assert_eq!(err.status_code(), 500);
    let patch = json!({"metadata": {"$patch": 7}});
    assert!(strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").is_err());
}

#[test]
fn retain_keys_deployment_strategy() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

    // A key set by the patch but absent from $retainKeys is a bad request.
    let patch =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
    let err = strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").unwrap_err();
    assert_eq!(
        err,
        PatchError::InvalidPatch("invalid patch format of retainKeys".into())
    );
    assert_eq!(err.status_code(), 400);
}

#[test]
fn retain_keys_in_volume_element() {
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}
    ]}}}});
    let out = smp(deployment(), patch, "apps", "Deployment");
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cm"}}])
    );
}

#[test]
fn finalizers_union_and_delete_from_primitive_list() {
    let doc = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
    let out = smp(
        doc.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
        "",
        "ConfigMap",
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    let out = smp(
        doc.clone(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        "",
        "Pod",
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));

    let out = smp(
        doc.clone(),
        json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "b"],
            "finalizers": ["c"],
            "$deleteFromPrimitiveList/finalizers": ["a"]
        }}),
        "",
        "Pod",
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "b"]));

    // Deleting from a missing list is a no-op.
    let out = smp(
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        "",
        "Pod",
    );
    assert_eq!(out, json!({"metadata": {}}));

    let err = strategic_merge_patch(
        &doc,
        &json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
        "",
        "Pod",
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 400);
}

#[test]
fn primitive_list_without_strategy_is_replaced() {
    let out = smp(
        deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["x"]}]}}}}),
        "apps",
        "Deployment",
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["args"],
        json!(["x"])
    );
}

#[test]
fn cronjob_nested_pod_template() {
    let doc = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "cj"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "b:1"}
            ]
        }}}}}
    });
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "b", "image": "b:2"},
        {"name": "a", "env": [{"name": "Y", "value": "2"}]}
    ]}}}}}});
    let out = smp(doc, patch, "batch", "CronJob");
    let cs = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs.as_array().unwrap().len(), 2);
    // Patch order wins among patched items.
    assert_eq!(cs[0]["name"], "b");
    assert_eq!(cs[0]["image"], "b:2");
    assert_eq!(cs[1]["image"], "a:1");
    assert_eq!(
        cs[1]["env"],
        json!([{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}])
    );
    assert_eq!(out["spec"]["schedule"], "* * * * *");
}

#[test]
fn service_ports_merge_by_port() {
    let doc = json!({"metadata": {"name": "svc"}, "spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
    ], "selector": {"app": "web"}}});
    let patch = json!({"spec": {"ports": [
        {"port": 80, "targetPort": 9090},
        {"port": 8081, "name": "metrics"},
        {"$patch": "delete", "port": 443}
    ]}});
    let out = smp(doc, patch, "", "Service");
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
            {"port": 8081, "name": "metrics"}
        ])
    );
    assert_eq!(out["spec"]["selector"], json!({"app": "web"}));
}

#[test]
fn conditions_and_owner_references() {
    let doc = json!({
        "metadata": {"name": "p", "ownerReferences": [{"uid": "u1", "name": "rs"}]},
        "status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ], "podIPs": [{"ip": "10.0.0.1"}]}
    });
    let patch = json!({
        "metadata": {"ownerReferences": [{"uid": "u2", "name": "other"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "podIPs": [{"ip": "fd00::1"}]}
    });
    let out = smp(doc, patch, "", "Pod");
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
    );
    assert_eq!(
        out["status"]["podIPs"],
        json!([{"ip": "fd00::1"}, {"ip": "10.0.0.1"}])
    );
}

#[test]
fn node_addresses_and_tolerations_atomic() {
    let doc = json!({"status": {"addresses": [{"type": "InternalIP", "address": "1.1.1.1"}, {"type": "Hostname", "address": "n"}]}});
    let out = smp(
        doc,
        json!({"status": {"addresses": [{"type": "InternalIP", "address": "2.2.2.2"}]}}),
        "",
        "Node",
    );
    assert_eq!(
        out["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "2.2.2.2"}, {"type": "Hostname", "address": "n"}])
    );

    let doc = json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}});
    let out = smp(
        doc,
        json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        "",
        "Pod",
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
}

#[test]
fn null_deletes_keys_and_nested_nulls_in_new_values_are_dropped() {
    let out = smp(
        deployment(),
        json!({
            "metadata": {"labels": {"app": null, "new": "x"}},
            "spec": {"paused": null, "minReadySeconds": 5, "revisionHistoryLimit": null},
            "status": {"observedGeneration": 1, "x": {"a": null, "b": 1, "c": [{"d": null, "e": 2}]}}
        }),
        "apps",
        "Deployment",
    );
    assert_eq!(out["metadata"]["labels"], json!({"new": "x"}));
    assert_eq!(out["spec"]["minReadySeconds"], 5);
    assert!(out["spec"].get("revisionHistoryLimit").is_none());
    assert_eq!(out["status"]["x"], json!({"b": 1, "c": [{"e": 2}]}));
}

#[test]
fn directives_in_new_values_are_removed() {
    let doc = json!({"spec": {"template": {"spec": {}}}});
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "x"}, {"name": "gone", "$patch": "delete"}]
    }}}});
    let out = smp(doc, patch, "apps", "Deployment");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "x"}])
    );
    let out = smp(
        json!({"spec": {}}),
        json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace"}}, "x": 1}}}),
        "apps",
        "Deployment",
    );
    // The map holding `$patch` is dropped from a new value.
    assert_eq!(out["spec"]["template"], json!({"metadata": {}, "x": 1}));
}

#[test]
fn type_mismatch_takes_patch_value() {
    let out = smp(
        json!({"spec": {"a": [1, 2], "b": {"c": 1}, "c": "s"}}),
        json!({"spec": {"a": {"x": null, "y": 1}, "b": "str", "c": 3}}),
        "",
        "Pod",
    );
    assert_eq!(out["spec"], json!({"a": {"y": 1}, "b": "str", "c": 3}));
}

#[test]
fn unknown_kind_replaces_lists_and_merges_maps() {
    let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "m": {"x": 1}}});
    let patch = json!({"spec": {"containers": [{"name": "c"}], "m": {"y": 2}}});
    let out = smp(doc, patch, "example.com", "Widget");
    assert_eq!(out["spec"]["containers"], json!([{"name": "c"}]));
    assert_eq!(out["spec"]["m"], json!({"x": 1, "y": 2}));
    assert!(!is_known_kind("example.com", "Widget"));
    assert!(is_known_kind("apps", "Deployment"));
    assert!(is_known_kind("networking.k8s.io", "Ingress"));
}

#[test]
fn missing_merge_key_is_an_error() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let err = strategic_merge_patch(&deployment(), &patch, "apps", "Deployment").unwrap_err();
    assert!(
        err.to_string()
            .contains("does not contain declared merge key: name"),
        "{err}"
    );
}

#[test]
fn list_of_lists_and_mixed_lists_are_errors() {
    let lists = json!({"metadata": {"finalizers": [["a"]]}});
    let err = strategic_merge_patch(
        &lists,
        &json!({"metadata": {"finalizers": [["x"]]}}),
        "",
        "Pod",
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 422);
    let doc = json!({"metadata": {"finalizers": ["a"]}});
    let err = strategic_merge_patch(
        &doc,
        &json!({"metadata": {"finalizers": [["x"]]}}),
        "",
        "Pod",
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 500);
    let err = strategic_merge_patch(
        &doc,
        &json!({"metadata": {"finalizers": [{"a": 1}]}}),
        "",
        "Pod",
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 500);
}

#[test]
fn malformed_strategic_patches_error() {
    let d = deployment();
    for p in [json!([1]), json!("x"), json!(3)] {
        assert!(strategic_merge_patch(&d, &p, "apps", "Deployment").is_err());
    }
    assert!(strategic_merge_patch(&json!([1]), &json!({}), "apps", "Deployment").is_err());
    // `null` patch is a no-op.
    assert_eq!(smp(d.clone(), Value::Null, "apps", "Deployment"), d);
    let bad = [
        json!({"spec": {"$retainKeys": "type"}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "x"}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [1], "containers": [{"name": "web"}]}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrderx": []}}}}),
        json!({"spec": {"template": {"spec": {"containers": [1, 2]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
    ];
    for p in bad {
        assert!(
            strategic_merge_patch(&d, &p, "apps", "Deployment").is_err(),
            "{p}"
        );
    }
}

#[test]
fn schema_table() {
    let dep = ["spec", "template", "spec", "containers"];
    assert_eq!(
        list_strategy("apps", "Deployment", &dep),
        Some((Strategy::Merge, Some("name")))
    );
    assert_eq!(
        list_strategy("", "Pod", &["spec", "containers"]),
        Some((Strategy::Merge, Some("name")))
    );
    assert_eq!(
        list_strategy(
            "batch",
            "CronJob",
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
                "env"
            ]
        ),
        Some((Strategy::Merge, Some("name")))
    );
    assert_eq!(
        list_strategy("", "Pod", &["spec", "containers", "volumeMounts"]),
        Some((Strategy::Merge, Some("mountPath")))
    );
    assert_eq!(
        list_strategy("", "Service", &["spec", "ports"]),
        Some((Strategy::Merge, Some("port")))
    );
    assert_eq!(
        list_strategy("", "Pod", &["metadata", "finalizers"]),
        Some((Strategy::Merge, None))
    );
    assert_eq!(list_strategy("", "Pod", &["spec", "tolerations"]), None);
    assert_eq!(
        list_strategy("example.com", "Foo", &["spec", "containers"]),
        None
    );
    let vols = field_patch_meta(
        "apps",
        "StatefulSet",
        &["spec", "template", "spec", "volumes"],
    )
    .unwrap();
    assert!(vols.retain_keys);
    let strategy = field_patch_meta("apps", "Deployment", &["spec", "strategy"]).unwrap();
    assert!(strategy.retain_keys && strategy.strategy.is_none());
    for kind in ["ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert!(list_strategy("apps", kind, &dep).is_some());
        assert!(list_strategy("apps", kind, &["status", "conditions"]).is_some());
    }
    assert!(list_strategy(
        "batch",
        "Job",
        &["spec", "template", "spec", "initContainers"]
    )
    .is_some());
    assert!(list_strategy(
        "",
        "PodTemplate",
        &["template", "spec", "ephemeralContainers"]
    )
    .is_some());
    assert!(list_strategy("", "ReplicationController", &dep).is_some());
}

// ---------------------------------------------------------------- json patch

#[test]
fn json_patch_operations() {
    let doc = json!({"a": {"b": [1, 2, 3]}, "c": "x", "d~/e": 1});
    let patch = json!([
        {"op": "add", "path": "/a/b/1", "value": 9},
        {"op": "add", "path": "/a/b/-", "value": 10},
        {"op": "remove", "path": "/a/b/0"},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "copy", "from": "/c", "path": "/a/copied"},
        {"op": "move", "from": "/a/copied", "path": "/moved"},
        {"op": "test", "path": "/moved", "value": "y"},
        {"op": "remove", "path": "/d~0~1e"},
        {"op": "add", "path": "/a/b/-1", "value": 0}
    ]);
    let out = json_patch(&doc, &patch).unwrap();
    // Negative indices count from the end of the grown array (v4 behaviour).
    assert_eq!(
        out,
        json!({"a": {"b": [9, 2, 3, 10, 0]}, "c": "y", "moved": "y"})
    );
}

#[test]
fn json_patch_test_failure_is_an_error() {
    let doc = json!({"metadata": {"resourceVersion": "5"}});
    let err = json_patch(
        &doc,
        &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}]),
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::TestFailed(_)));
    assert_eq!(err.status_code(), 422);
    // A missing key tests equal to null.
    json_patch(
        &doc,
        &json!([{"op": "test", "path": "/nope", "value": null}]),
    )
    .unwrap();
    json_patch(
        &doc,
        &json!([{"op": "test", "path": "", "value": doc.clone()}]),
    )
    .unwrap();
}

#[test]
fn json_patch_errors() {
    let doc = json!({"a": [1], "s": "x"});
    let cases = [
        (json!([{"op": "remove", "path": "/missing"}]), 422),
        (json!([{"op": "add", "path": "/x/y", "value": 1}]), 422),
        (json!([{"op": "add", "path": "/a/5", "value": 1}]), 422),
        (json!([{"op": "add", "path": "/a/x", "value": 1}]), 422),
        (json!([{"op": "replace", "path": "/a/1", "value": 1}]), 422),
        (json!([{"op": "remove", "path": "/a/-2"}]), 422),
        (json!([{"op": "add", "path": "/s/x", "value": 1}]), 422),
        (json!([{"op": "bogus", "path": "/a"}]), 422),
        (json!([{"path": "/a"}]), 422),
        (json!([{"op": "add"}]), 422),
        (json!([{"op": "move", "path": "/b"}]), 422),
        (json!([{"op": "move", "from": "/a", "path": "/a/0"}]), 422),
        (json!([{"op": "add", "path": "", "value": 1}]), 422),
        (json!([{"op": "replace", "path": "", "value": 1}]), 422),
        (json!([null]), 422),
        (json!({"op": "add"}), 400),
        (json!([1]), 400),
        (json!("x"), 400),
    ];
    for (p, code) in cases {
        let err = json_patch(&doc, &p).unwrap_err();
        assert_eq!(err.status_code(), code, "{p}: {err}");
    }
    // The document is never modified by a failed patch.
    assert_eq!(doc, json!({"a": [1], "s": "x"}));
}

#[test]
fn json_patch_v4_quirks() {
    // replace of a missing object key behaves like add.
    let out = json_patch(
        &json!({}),
        &json!([{"op": "replace", "path": "/a", "value": 1}]),
    )
    .unwrap();
    assert_eq!(out, json!({"a": 1}));
    // replace of the whole document.
    let out = json_patch(
        &json!({"a": 1}),
        &json!([{"op": "replace", "path": "", "value": {"b": 2}}]),
    )
    .unwrap();
    assert_eq!(out, json!({"b": 2}));
    // null patch is empty.
    assert_eq!(
        json_patch(&json!({"a": 1}), &Value::Null).unwrap(),
        json!({"a": 1})
    );
    let too_many = Value::Array(vec![
        json!({"op": "test", "path": "/a", "value": 1});
        10_001
    ]);
    assert_eq!(
        json_patch(&json!({"a": 1}), &too_many)
            .unwrap_err()
            .status_code(),
        413
    );
}

// ---------------------------------------------------------------- merge patch

#[test]
fn merge_patch_semantics() {
    let doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "f": "x"});
    let patch =
        json!({"a": null, "b": {"c": null, "z": {"n": null, "m": 1}}, "e": [3], "g": {"h": null}});
    let out = merge_patch(&doc, &patch).unwrap();
    assert_eq!(
        out,
        json!({"b": {"d": 3, "z": {"m": 1}}, "e": [3], "f": "x", "g": {}})
    );
    // Deleting a missing key is fine.
    assert_eq!(
        merge_patch(&json!({}), &json!({"x": null})).unwrap(),
        json!({})
    );
    // A non-object value in the patch replaces an object.
    assert_eq!(
        merge_patch(&json!({"a": {"b": 1}}), &json!({"a": 1})).unwrap(),
        json!({"a": 1})
    );
}

#[test]
fn merge_patch_malformed() {
    for p in [Value::Null, json!(1), json!("s"), json!(true)] {
        let err = merge_patch(&json!({}), &p).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }
    assert!(merge_patch(&Value::Null, &json!({})).is_err());
    // A non-object document becomes the patch.
    assert_eq!(
        merge_patch(&json!([1]), &json!({"a": null, "b": 1})).unwrap(),
        json!({"b": 1})
    );
}

// ---------------------------------------------------------------- robustness

fn samples() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(1),
        json!(1.5),
        json!("s"),
        json!([]),
        json!({}),
        json!([null]),
        json!([1, "a"]),
        json!([[1]]),
        json!([{"op": "add", "path": "/spec/x", "value": null}]),
        json!([{"op": "move", "from": "/spec", "path": "/spec/y"}]),
        json!([{"op": "copy", "from": "/metadata", "path": "/metadata/x/y"}]),
        json!({"$patch": "replace"}),
        json!({"$patch": null}),
        json!({"$retainKeys": [{"a": 1}], "a": 1}),
        json!({"$setElementOrder/": [null]}),
        json!({"$deleteFromPrimitiveList/finalizers": [{"x": 1}]}),
        json!({"spec": {"template": {"spec": {"containers": [null, {"name": null}]}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}, 1]}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [[]], "containers": []}}}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [], "containers": [{"name": "z", "$patch": "delete"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "replace"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": {"a": 1}}]}]}}}}),
        json!({"metadata": {"finalizers": [null, "a"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["z", "a", "a"], "finalizers": ["a", "z"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["x"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": []}}),
        deployment(),
    ]
}

#[test]
fn never_panics_on_arbitrary_inputs() {
    let mut docs = samples();
    docs.push(json!({"metadata": {"finalizers": ["a", "a", "b"]}}));
    docs.push(json!({"spec": {"template": {"spec": {"containers": [{"image": "noname"}, 1]}}}}));
    for doc in &docs {
        for patch in &samples() {
            let _ = json_patch(doc, patch);
            let _ = merge_patch(doc, patch);
            for (g, k) in [("apps", "Deployment"), ("", "Pod"), ("x", "Y")] {
                let _ = strategic_merge_patch(doc, patch, g, k);
            }
        }
    }
}

#[test]
fn inputs_are_not_modified() {
    let doc = deployment();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": null}]}}}});
    let before = (doc.clone(), patch.clone());
    let out = smp(doc.clone(), patch.clone(), "apps", "Deployment");
    assert!(out["spec"]["template"]["spec"]["containers"][0]
        .get("env")
        .is_none());
    assert_eq!((doc, patch), before);
}
