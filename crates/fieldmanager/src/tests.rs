//! Unit tests against upstream examples, with the real built-in schemas
//! from `bosun-openapi`.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::*;

fn defs(group: &str, kind: &str, plural: &str) -> Map<String, Value> {
    let info = bosun_openapi::ResourceInfo {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced: true,
        subresources: vec![],
        verbs: vec![],
    };
    let doc = bosun_openapi::group_version_document(group, "v1", &[info]);
    doc.pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn apps() -> &'static Map<String, Value> {
    static D: OnceLock<Map<String, Value>> = OnceLock::new();
    D.get_or_init(|| defs("apps", "Deployment", "deployments"))
}

fn deploy_ty() -> Ty<'static> {
    Schema::new(apps())
        .find_kind("apps", "v1", "Deployment")
        .expect("Deployment schema")
}

fn w<'a>(manager: &'a str) -> Writer<'a> {
    Writer {
        manager,
        subresource: "",
        api_version: "apps/v1",
        time: "2026-01-01T00:00:00Z",
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

#[test]
fn path_element_encoding_roundtrip() {
    let k = PathElement::key(&[
        ("protocol".into(), json!("TCP")),
        ("containerPort".into(), json!(80)),
    ]);
    assert_eq!(k.encode(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
    assert_eq!(k.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    assert_eq!(PathElement::decode(&k.encode()).unwrap(), k);
    let v = PathElement::value(&json!("a"));
    assert_eq!(v.encode(), r#"v:"a""#);
    assert_eq!(v.to_string(), r#"[="a"]"#);
    assert!(PathElement::decode("x:1").is_err());
    assert!(PathElement::decode("k:[1]").is_err());
}

#[test]
fn applied_set_matches_upstream_fields_v1() {
    let set = to_set(&deployment(2, "nginx"), Some(deploy_ty())).unwrap();
    let mut set = set;
    set.remove_members(&[
        Path::fields(&["apiVersion"]),
        Path::fields(&["kind"]),
        Path::fields(&["metadata", "name"]),
        Path::fields(&["metadata", "namespace"]),
    ]);
    // As `kubectl apply --server-side` shows it on Kubernetes 1.33.
    let expected = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            }
        }
    });
    assert_eq!(set.to_fields_v1(), expected);
    assert_eq!(Set::from_fields_v1(&expected).unwrap(), set);
}

#[test]
fn fields_v1_rejects_garbage() {
    assert!(Set::from_fields_v1(&json!([1])).is_err());
    assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(Set::from_fields_v1(&json!({"zz": {}})).is_err());
    assert!(decode(Some(&json!([{"operation": "Bogus"}]))).is_err());
    assert!(decode(Some(&json!("x"))).is_err());
}

#[test]
fn update_on_create_marks_added_maps_and_items() {
    let new = deployment(1, "nginx");
    let skel = create_skeleton(&new);
    let entries = update(&skel, &new, Some(deploy_ty()), &[], &w("kubectl-create")).unwrap();
    assert_eq!(entries.len(), 1);
    let f = entries[0].set.to_fields_v1();
    // Like upstream: labels map and list items are members ("."), value
    // structs (spec, template) are not.
    assert_eq!(f["f:metadata"]["f:labels"][".".to_string()], json!({}));
    assert!(f["f:spec"].get(".").is_none());
    assert!(f["f:spec"]["f:template"].get(".").is_none());
    assert_eq!(f["f:spec"]["f:selector"], json!({}));
    assert!(f["f:metadata"].get("f:name").is_none());
    let containers = &f["f:spec"]["f:template"]["f:spec"]["f:containers"];
    assert!(containers.get(".").is_none(), "{containers}");
    assert_eq!(containers["k:{\"name\":\"web\"}"]["."], json!({}));
}

#[test]
fn reapply_unchanged_is_noop_and_removed_field_is_pruned() {
    let ty = Some(deploy_ty());
    let cfg = deployment(2, "nginx");
    let a = apply(None, &cfg, ty, &[], &w("kubectl"), false).unwrap();
    assert_eq!(a.object["spec"]["replicas"], 2);
    let b = apply(Some(&a.object), &cfg, ty, &a.entries, &w("kubectl"), false).unwrap();
    assert_eq!(b.object, a.object);
    assert_eq!(b.entries, a.entries);
    let mut cfg2 = cfg.clone();
    cfg2["spec"].as_object_mut().unwrap().remove("replicas");
    cfg2["metadata"].as_object_mut().unwrap().remove("labels");
    let c = apply(Some(&a.object), &cfg2, ty, &a.entries, &w("kubectl"), false).unwrap();
    assert!(c.object["spec"].get("replicas").is_none());
    assert!(c.object["metadata"]["labels"].get("app").is_none());
}

#[test]
fn field_owned_by_another_manager_is_kept_on_prune() {
    let ty = Some(deploy_ty());
    let cfg = deployment(2, "nginx");
    let a = apply(None, &cfg, ty, &[], &w("kubectl"), false).unwrap();
    // Another applier applies the same replicas: shared ownership.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let b = apply(Some(&a.object), &other, ty, &a.entries, &w("other"), false).unwrap();
    assert_eq!(b.entries.len(), 2);
    let mut cfg2 = cfg.clone();
    cfg2["spec"].as_object_mut().unwrap().remove("replicas");
    let c = apply(Some(&b.object), &cfg2, ty, &b.entries, &w("kubectl"), false).unwrap();
    assert_eq!(c.object["spec"]["replicas"], 2);
}

#[test]
fn conflict_with_updater_and_force() {
    let ty = Some(deploy_ty());
    let cfg = deployment(2, "nginx");
    let a = apply(None, &cfg, ty, &[], &w("kubectl"), false).unwrap();
    // kubectl scale-like update by another manager.
    let mut scaled = a.object.clone();
    scaled["spec"]["replicas"] = json!(5);
    let entries = update(
        &a.object,
        &scaled,
        ty,
        &a.entries,
        &w("kubectl-client-side-apply"),
    )
    .unwrap();
    let err = apply(Some(&scaled), &cfg, ty, &entries, &w("kubectl"), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let forced = apply(Some(&scaled), &cfg, ty, &entries, &w("kubectl"), true).unwrap();
    assert_eq!(forced.object["spec"]["replicas"], 2);
    // The updater lost the field and, owning nothing else, its entry.
    assert!(forced
        .entries
        .iter()
        .all(|e| e.manager != "kubectl-client-side-apply"));
    // Applying the value the other manager set is no conflict.
    let mut same = cfg.clone();
    same["spec"]["replicas"] = json!(5);
    assert!(apply(Some(&scaled), &same, ty, &entries, &w("kubectl"), false).is_ok());
}

#[test]
fn multiple_conflicts_message() {
    let c = vec![
        Conflict {
            manager: "\"a\"".into(),
            path: Path::fields(&["spec", "replicas"]),
        },
        Conflict {
            manager: "\"a\"".into(),
            path: Path::fields(&["spec", "paused"]),
        },
    ];
    assert_eq!(
        conflict_message(&c),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.paused"
    );
}

#[test]
fn merge_lists_by_key_keeps_live_only_items() {
    let ty = Some(deploy_ty());
    let mut live = deployment(1, "nginx");
    live["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "sidecar", "image": "busybox"},
        {"name": "web", "image": "nginx", "imagePullPolicy": "Always"}
    ]);
    let cfg = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
    let m = merge(Some(&live), &cfg, ty).unwrap();
    let cs = &m["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs[0]["name"], "sidecar");
    assert_eq!(cs[1]["image"], "nginx:2");
    assert_eq!(cs[1]["imagePullPolicy"], "Always");
    // Atomic lists (args) are replaced, not merged.
    live["spec"]["template"]["spec"]["containers"][1]["args"] = json!(["a", "b"]);
    let cfg =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["c"]}]}}}});
    let m = merge(Some(&live), &cfg, ty).unwrap();
    assert_eq!(
        m["spec"]["template"]["spec"]["containers"][1]["args"],
        json!(["c"])
    );
}

#[test]
fn duplicate_and_missing_keys_are_errors() {
    let ty = Some(deploy_ty());
    let cfg =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
    assert!(matches!(to_set(&cfg, ty), Err(FieldError::Invalid(_))));
    let cfg = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    assert!(matches!(to_set(&cfg, ty), Err(FieldError::Invalid(_))));
    let cfg = json!({"spec": {"template": {"spec": {"containers": ["x"]}}}});
    assert!(to_set(&cfg, ty).is_err());
}

#[test]
fn removing_a_container_removes_it_unless_owned_elsewhere() {
    let ty = Some(deploy_ty());
    let mut cfg = deployment(1, "nginx");
    cfg["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]);
    let a = apply(None, &cfg, ty, &[], &w("kubectl"), false).unwrap();
    cfg["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "x"}]);
    let b = apply(Some(&a.object), &cfg, ty, &a.entries, &w("kubectl"), false).unwrap();
    assert_eq!(
        b.object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn untyped_objects_are_deduced() {
    let cfg = json!({"data": {"a": "1", "b": "2"}, "list": [1, 2]});
    let s = to_set(&cfg, None).unwrap();
    assert_eq!(
        s.to_fields_v1(),
        json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}, "f:list": {}})
    );
}

#[test]
fn configmap_data_keys_owned_individually() {
    let d = defs("", "ConfigMap", "configmaps");
    let ty = Schema::new(&d).find_kind("", "v1", "ConfigMap");
    assert!(ty.is_some());
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let mut s = to_set(&cfg, ty).unwrap();
    s.remove_members(&[
        Path::fields(&["apiVersion"]),
        Path::fields(&["kind"]),
        Path::fields(&["metadata", "name"]),
    ]);
    assert_eq!(s.to_fields_v1(), json!({"f:data": {"f:a": {}}}));
    let wr = Writer {
        manager: "m",
        subresource: "",
        api_version: "v1",
        time: "t",
    };
    let a = apply(None, &cfg, ty, &[], &wr, false).unwrap();
    let enc = encode(&a.entries);
    assert_eq!(enc[0]["manager"], "m");
    assert_eq!(enc[0]["operation"], "Apply");
    assert_eq!(enc[0]["fieldsType"], "FieldsV1");
    assert_eq!(decode(Some(&enc)).unwrap(), a.entries);
}
