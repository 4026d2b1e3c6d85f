//! Server-side apply end to end with the real kubectl: create, re-apply,
//! change and removal of fields, managedFields per manager, conflicts with
//! the upstream text, and `--force-conflicts`.

mod common;

use common::*;
use serde_json::{json, Value};

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_string(),
                        e["operation"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no managedFields entry for {manager}: {obj}"))
}

const CM: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
data:
  a: \"1\"
  b: \"2\"
";

#[test]
fn configmap_apply_lifecycle_and_conflicts() {
    let Some(c) = Cluster::start() else { return };
    let f = c.write_file("cm.yaml", CM);
    let f = f.to_str().unwrap();
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", f]),
        "configmap/demo serverside-applied\n"
    );
    // Re-applying unchanged succeeds and changes nothing.
    let before = c.get_json(&["cm", "demo", "--show-managed-fields"]);
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", f]),
        "configmap/demo serverside-applied\n"
    );
    let after = c.get_json(&["cm", "demo", "--show-managed-fields"]);
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "a no-op apply must not write"
    );
    assert_eq!(managers(&after), [("kubectl".into(), "Apply".into())]);
    assert_eq!(
        entry(&after, "kubectl")["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    assert_eq!(entry(&after, "kubectl")["fieldsType"], "FieldsV1");
    assert_eq!(entry(&after, "kubectl")["apiVersion"], "v1");
    // managedFields are hidden unless asked for (kubectl strips them).
    let plain = c.get_json(&["cm", "demo"]);
    assert!(plain.pointer("/metadata/managedFields").is_none());

    // Change one key, drop the other: the dropped key is removed.
    c.write_file(
        "cm.yaml",
        &CM.replace("  b: \"2\"\n", "").replace("\"1\"", "\"10\""),
    );
    c.ok(&["apply", "--server-side", "-f", f]);
    let o = c.get_json(&["cm", "demo"]);
    assert_eq!(o["data"], json!({"a": "10"}));

    // Another manager changes the applied key: re-applying conflicts.
    c.ok(&[
        "patch",
        "cm",
        "demo",
        "--field-manager=other",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"99","c":"3"}}"#,
    ]);
    // An update takes the fields it changes; the applier owned only
    // `data.a`, so its entry goes away (as upstream).
    let o = c.get_json(&["cm", "demo", "--show-managed-fields"]);
    assert_eq!(managers(&o), [("other".into(), "Update".into())]);
    assert_eq!(
        entry(&o, "other")["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:c": {}}})
    );
    let out = c.fails(&["apply", "--server-side", "-f", f]);
    assert!(
        out.stderr
            .contains("Apply failed with 1 conflict: conflict with \"other\" using v1: .data.a"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--force-conflicts"), "{}", out.stderr);
    assert_eq!(c.get_json(&["cm", "demo"])["data"]["a"], "99");

    // --force-conflicts takes the field; the other manager keeps "c".
    c.ok(&["apply", "--server-side", "--force-conflicts", "-f", f]);
    let o = c.get_json(&["cm", "demo", "--show-managed-fields"]);
    assert_eq!(o["data"], json!({"a": "10", "c": "3"}));
    assert_eq!(
        entry(&o, "other")["fieldsV1"],
        json!({"f:data": {"f:c": {}}})
    );

    // fieldManager is required for apply (upstream 422 text).
    let body = c.write_file(
        "apply.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"demo"}}"#,
    );
    let (code, out) = c.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/demo",
        Some(("application/apply-patch+yaml", &body)),
        true,
        &[],
    );
    assert_eq!(code, 422, "{out}");
    assert!(
        out.contains(r#"PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"#),
        "{out}"
    );
    // A YAML body that is not an object is the client's mistake.
    let bad = c.write_file("bad.yaml", "- a\n- b\n");
    let (code, out) = c.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/demo?fieldManager=x",
        Some(("application/apply-patch+yaml", &bad)),
        true,
        &[],
    );
    assert_eq!(code, 400, "{out}");
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - name: A
          value: \"1\"
        - name: B
          value: \"2\"
";

#[test]
fn deployment_apply_conflicts_and_managed_fields() {
    let Some(c) = Cluster::start() else { return };
    let f = c.write_file("d.yaml", DEPLOY);
    let f = f.to_str().unwrap();
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", f]),
        "deployment.apps/web serverside-applied\n"
    );
    let yaml = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for want in [
        "managedFields:",
        "manager: kubectl",
        "operation: Apply",
        "fieldsType: FieldsV1",
        "f:replicas: {}",
        "f:selector: {}",
        "k:{\"name\":\"web\"}:",
        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}:",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in:\n{yaml}");
    }
    let hidden = c.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(!hidden.contains("managedFields"), "{hidden}");
    let o = c.get_json(&["deploy", "web"]);
    // Defaults were applied and are owned by no one.
    assert_eq!(o["spec"]["strategy"]["type"], "RollingUpdate");

    // Change the image and drop env B: B disappears, A stays.
    c.write_file(
        "d.yaml",
        &DEPLOY
            .replace("nginx:1.25", "nginx:1.27")
            .replace("        - name: B\n          value: \"2\"\n", ""),
    );
    c.ok(&["apply", "--server-side", "-f", f]);
    let o = c.get_json(&["deploy", "web"]);
    let ctr = &o["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["image"], "nginx:1.27");
    assert_eq!(ctr["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(o["spec"]["replicas"], 2);

    // Another manager takes replicas: applying a different value conflicts.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--field-manager=other",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    let out = c.fails(&["apply", "--server-side", "-f", f]);
    assert!(
        out.stderr.contains(
            "Apply failed with 1 conflict: conflict with \"other\" using apps/v1: .spec.replicas"
        ),
        "{}",
        out.stderr
    );
    // Applying without replicas gives up ownership without a conflict and
    // leaves the other manager's value alone.
    c.write_file(
        "d2.yaml",
        &DEPLOY
            .replace("  replicas: 2\n", "")
            .replace("nginx:1.25", "nginx:1.27"),
    );
    let f2 = c.root().join("d2.yaml");
    c.ok(&["apply", "--server-side", "-f", f2.to_str().unwrap()]);
    assert_eq!(c.get_json(&["deploy", "web"])["spec"]["replicas"], 5);
    // Forcing takes it back.
    c.ok(&["apply", "--server-side", "--force-conflicts", "-f", f]);
    let o = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert_eq!(o["spec"]["replicas"], 2);
    assert!(
        managers(&o).iter().all(|(m, _)| m != "other"),
        "{:?}",
        managers(&o)
    );

    // kubectl scale owns replicas through the scale subresource.
    c.ok(&["scale", "deploy", "web", "--replicas=3"]);
    let out = c.fails(&["apply", "--server-side", "-f", f]);
    assert!(
        out.stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(".spec.replicas"), "{}", out.stderr);
}

#[test]
fn updates_record_managers_and_apply_conflicts_with_create() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "deployment", "web", "--image=nginx:1.25"]);
    let o = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert_eq!(managers(&o), [("kubectl-create".into(), "Update".into())]);
    let e = entry(&o, "kubectl-create");
    assert!(e["time"].is_string(), "{e}");
    assert_eq!(
        e["fieldsV1"]["f:metadata"]["f:labels"]["."],
        json!({}),
        "{e}"
    );
    assert_eq!(e["fieldsV1"]["f:spec"]["f:replicas"], json!({}), "{e}");
    // Server-side apply of a different image conflicts with kubectl-create.
    let f = c.write_file(
        "d.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:1.27\n",
    );
    let out = c.fails(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
    assert!(
        out.stderr.contains(
            "conflict with \"kubectl-create\" using apps/v1: .spec.template.spec.containers[name=\"nginx\"].image"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn client_side_apply_upgrades_to_server_side() {
    let Some(c) = Cluster::start() else { return };
    let f = c.write_file("d.yaml", DEPLOY);
    let f = f.to_str().unwrap();
    c.ok(&["apply", "-f", f]);
    let o = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert_eq!(
        managers(&o),
        [("kubectl-client-side-apply".into(), "Update".into())]
    );
    // Fields the last client-side apply set may be taken over without
    // --force-conflicts (upstream's last-applied upgrade for "kubectl").
    c.write_file("d.yaml", &DEPLOY.replace("replicas: 2", "replicas: 3"));
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", f]),
        "deployment.apps/web serverside-applied\n"
    );
    let o = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    assert_eq!(o["spec"]["replicas"], 3);
    assert_eq!(entry(&o, "kubectl")["operation"], "Apply");
    // The annotation follows the server-side applied configuration...
    let la: Value = serde_json::from_str(
        o["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(la["spec"]["replicas"], 3);
    // ...so client-side apply still works afterwards.
    c.write_file("d.yaml", &DEPLOY.replace("replicas: 2", "replicas: 4"));
    c.ok(&["apply", "-f", f]);
    assert_eq!(c.get_json(&["deploy", "web"])["spec"]["replicas"], 4);

    // A field someone else changed since the client-side apply still
    // conflicts.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--field-manager=other",
        "-p",
        r#"{"spec":{"replicas":7}}"#,
    ]);
    c.write_file("d.yaml", &DEPLOY.replace("replicas: 2", "replicas: 5"));
    let out = c.fails(&["apply", "--server-side", "-f", f]);
    assert!(
        out.stderr
            .contains("conflict with \"other\" using apps/v1: .spec.replicas"),
        "{}",
        out.stderr
    );
}
