use super::*;
use crate::schemas::collect_refs;

fn res(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    subs: &[&str],
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        verbs: [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

fn core_v1() -> Vec<ResourceInfo> {
    let mut v = vec![
        res("", "v1", "Namespace", "namespaces", false, &["status"]),
        res(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            &["status", "binding", "eviction", "log"],
        ),
        res("", "v1", "Service", "services", true, &["status"]),
        res("", "v1", "Endpoints", "endpoints", true, &[]),
        res("", "v1", "ConfigMap", "configmaps", true, &[]),
        res("", "v1", "Secret", "secrets", true, &[]),
        res("", "v1", "ServiceAccount", "serviceaccounts", true, &[]),
        res("", "v1", "Node", "nodes", false, &["status"]),
        res("", "v1", "Event", "events", true, &[]),
        res("", "v1", "LimitRange", "limitranges", true, &[]),
        res(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["status"],
        ),
        res(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["status"],
        ),
        res(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["status"],
        ),
        res(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["status", "scale"],
        ),
    ];
    let mut binding = res("", "v1", "Binding", "bindings", true, &[]);
    binding.verbs = vec!["create".into()];
    v.push(binding);
    v
}

fn apps_v1() -> Vec<ResourceInfo> {
    vec![
        res(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
        ),
        res(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["status", "scale"],
        ),
        res(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["status", "scale"],
        ),
        res("apps", "v1", "DaemonSet", "daemonsets", true, &["status"]),
        res(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
        ),
    ]
}

/// Every `$ref` in the document points at a schema in `components.schemas`.
fn assert_refs_resolve(doc: &Value) {
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut missing = Vec::new();
    let mut count = 0;
    collect_refs(doc, &mut |r| {
        count += 1;
        if !schemas.contains_key(r) {
            missing.push(r.to_string());
        }
    });
    // Also catch refs that do not use the components prefix at all.
    fn raw_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, c) in o {
                    if k == "$ref" {
                        if let Some(s) = c.as_str() {
                            out.push(s.to_string());
                        }
                    } else {
                        raw_refs(c, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| raw_refs(c, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    raw_refs(doc, &mut all);
    assert!(
        all.iter().all(|r| r.starts_with("#/components/schemas/")),
        "refs outside components: {:?}",
        all.iter()
            .filter(|r| !r.starts_with("#/components/schemas/"))
            .collect::<Vec<_>>()
    );
    assert!(count > 0);
    assert!(missing.is_empty(), "unresolved refs: {missing:?}");
}

#[test]
fn apps_v1_patch_operation_is_what_kubectl_needs() {
    let doc = group_version_document("apps", "v1", &apps_v1());
    assert_eq!(doc["openapi"], "3.0.0");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params = patch["parameters"].as_array().unwrap();
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for n in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(names.contains(&n), "missing {n} in {names:?}");
    }
    let fv = params
        .iter()
        .find(|p| p["name"] == "fieldValidation")
        .unwrap();
    assert_eq!(fv["in"], "query");
    assert_eq!(fv["schema"]["type"], "string");
    assert!(fv["description"].as_str().unwrap().contains("Strict"));
    let content = patch["requestBody"]["content"].as_object().unwrap();
    for t in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(t), "missing {t}");
    }
    for m in ["get", "put", "delete"] {
        assert!(item[m].is_object(), "missing {m}");
    }
    assert!(item["put"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));

    let coll = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(coll["post"]["x-kubernetes-action"], "post");
    assert!(coll["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert_eq!(coll["get"]["x-kubernetes-action"], "list");
    assert_eq!(
        coll["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentList"
    );
    assert!(doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object());

    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
}

#[test]
fn apps_v1_deployment_schema() {
    let doc = group_version_document("apps", "v1", &apps_v1());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let d = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        d["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(d["description"].as_str().unwrap().contains("Deployment"));
    assert_eq!(d["type"], "object");
    // metadata is never required, as upstream.
    assert!(d.get("required").is_none());
    assert_eq!(
        d["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(d["properties"]["metadata"]["description"].is_string());
    let list = &schemas["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
    );
    assert_eq!(list["required"], json!(["items"]));
    // Reached from the pod template.
    assert!(schemas.contains_key("io.k8s.api.core.v1.Container"));
    let strategy = &schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"]["properties"];
    assert!(strategy["maxSurge"].is_object());
    let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["x-kubernetes-int-or-string"], true);
    assert_eq!(ios["format"], "int-or-string");
    let conds = &schemas["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
    assert_eq!(conds["x-kubernetes-patch-merge-key"], "type");
    assert_eq!(conds["x-kubernetes-list-type"], "map");
    assert_refs_resolve(&doc);
}

#[test]
fn core_v1_container_reachable_with_merge_keys() {
    let doc = group_version_document("", "v1", &core_v1());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let spec = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"];
    let containers = &spec["containers"];
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(
        spec["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );

    let c = &schemas["io.k8s.api.core.v1.Container"];
    assert!(c["description"].is_string());
    assert_eq!(c["required"], json!(["name"]));
    assert_eq!(
        c["properties"]["env"]["x-kubernetes-patch-merge-key"],
        "name"
    );
    assert_eq!(
        c["properties"]["ports"]["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(
        c["properties"]["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(meta["finalizers"]["x-kubernetes-list-type"], "set");
    assert_eq!(
        meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
        "uid"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"],
        "date-time"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );

    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}"));
    assert!(paths.contains_key("/api/v1/namespaces/{name}"));
    assert!(paths.contains_key("/api/v1/nodes/{name}/status"));
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
            ["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Binding", "version": "v1"})
    );
    assert!(paths["/api/v1/namespaces/{namespace}/bindings"]["post"].is_object());
    assert!(paths
        .get("/api/v1/namespaces/{namespace}/bindings/{name}")
        .is_none());
    assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/log"));
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]["operationId"],
        "patchCoreV1NamespacedConfigMap"
    );
    assert_refs_resolve(&doc);
}

#[test]
fn every_known_kind_in_its_document_and_refs_resolve() {
    use std::collections::BTreeMap;
    let mut by_gv: BTreeMap<(String, String), Vec<ResourceInfo>> = BTreeMap::new();
    for (g, v, k) in known_kinds() {
        if k.ends_with("List") || k == "Status" || k == "DeleteOptions" {
            continue;
        }
        let plural = format!("{}s", k.to_lowercase());
        by_gv.entry((g.clone(), v.clone())).or_default().push(res(
            &g,
            &v,
            &k,
            &plural,
            true,
            &["status"],
        ));
    }
    assert!(by_gv.len() >= 12, "{by_gv:?}");
    for ((g, v), rs) in by_gv {
        let doc = group_version_document(&g, &v, &rs);
        assert_refs_resolve(&doc);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in &rs {
            let tagged = schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!({"group": g, "kind": r.kind, "version": v})))
            });
            assert!(tagged, "{g}/{v} {} not tagged", r.kind);
        }
        for s in schemas.values() {
            if let Some(Value::Array(req)) = s.get("required") {
                assert!(!req.contains(&json!("metadata")));
            }
        }
    }
}

#[test]
fn extension_table_names_existing_properties() {
    let cat = schemas::catalog();
    for (schema, prop) in extensions::table_entries() {
        let p = &cat
            .schemas
            .get(&schema)
            .unwrap_or_else(|| panic!("no schema {schema}"))["properties"][prop];
        assert!(p.is_object(), "no property {schema}.{prop}");
        assert_eq!(p["type"], "array", "{schema}.{prop} is not a list");
    }
}

#[test]
fn unknown_kind_gets_permissive_schema_without_smp() {
    let r = res(
        "stable.example.com",
        "v1",
        "CronTab",
        "crontabs",
        true,
        &["status"],
    );
    let doc = group_version_document("stable.example.com", "v1", &[r]);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let s = &schemas["com.example.stable.v1.CronTab"];
    assert_eq!(s["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(
        s["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
    );
    assert!(schemas.contains_key("com.example.stable.v1.CronTabList"));
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        ["patch"];
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/merge-patch+json"));
    assert_refs_resolve(&doc);
}

#[test]
fn verbs_limit_operations() {
    let mut r = res("", "v1", "Event", "events", true, &[]);
    r.verbs = vec!["get".into(), "list".into()];
    let doc = group_version_document("", "v1", &[r]);
    let item = &doc["paths"]["/api/v1/namespaces/{namespace}/events/{name}"];
    assert!(item["get"].is_object());
    assert!(item.get("patch").is_none());
    assert!(doc["paths"]["/api/v1/namespaces/{namespace}/events"]
        .get("post")
        .is_none());
}

#[test]
fn root_document_and_hash() {
    let apps = group_version_document("apps", "v1", &apps_v1());
    let fewer = group_version_document("apps", "v1", &apps_v1()[..2]);
    let h1 = content_hash(&apps);
    assert_eq!(
        h1,
        content_hash(&group_version_document("apps", "v1", &apps_v1()))
    );
    let h2 = content_hash(&fewer);
    assert_ne!(h1, h2);
    assert!(h1
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));

    let root = root_document(&[
        (path_key("apps", "v1"), h1.clone()),
        (path_key("", "v1"), "ABC".into()),
    ]);
    assert_eq!(
        root["paths"]["apis/apps/v1"]["serverRelativeURL"],
        format!("/openapi/v3/apis/apps/v1?hash={h1}")
    );
    assert_eq!(
        root["paths"]["api/v1"]["serverRelativeURL"],
        "/openapi/v3/api/v1?hash=ABC"
    );
    let root2 = root_document(&[
        (path_key("apps", "v1"), h2),
        (path_key("", "v1"), "ABC".into()),
    ]);
    assert_ne!(content_hash(&root), content_hash(&root2));
}

#[test]
fn generation_time_and_size_of_api_v1() {
    let t0 = std::time::Instant::now();
    let _ = schemas::catalog();
    let catalog_time = t0.elapsed();
    let t1 = std::time::Instant::now();
    let doc = group_version_document("", "v1", &core_v1());
    let doc_time = t1.elapsed();
    let bytes = serde_json::to_vec(&doc).unwrap();
    let t2 = std::time::Instant::now();
    let _ = content_hash(&doc);
    let hash_time = t2.elapsed();
    eprintln!(
        "api/v1: catalog (once, maybe already built by another test) {catalog_time:?}, document {doc_time:?}, hash {hash_time:?}; {} bytes, {} schemas, {} paths",
        bytes.len(),
        doc["components"]["schemas"].as_object().unwrap().len(),
        doc["paths"].as_object().unwrap().len()
    );
}

#[test]
fn empty_version_defaults_to_document_group_version() {
    let mut r = res("", "", "Deployment", "deployments", true, &[]);
    r.verbs = vec!["patch".into()];
    let doc = group_version_document("apps", "v1", &[r]);
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
}
