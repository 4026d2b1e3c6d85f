//! End-to-end tests driving the real kubectl against a real `bosun server`,
//! asserting on what kubectl prints exactly as it does against upstream.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

/// Object names a fresh upstream cluster may add on its own (the root CA
/// configmap publisher); ignored when comparing lists.
fn user_names(out: &str) -> Vec<String> {
    names(out)
        .into_iter()
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a base64 string: {v}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("valid base64"),
    )
    .expect("utf-8")
}

// ---------------------------------------------------------------------------
// 1. get
// ---------------------------------------------------------------------------

#[test]
fn get_tables_and_output_formats() {
    let Some(c) = Cluster::start() else { return };

    // Namespaces: upstream columns and the four system namespaces.
    let out = c.ok(&["get", "ns"]);
    let t = table(&out);
    assert_eq!(t[0], ["NAME", "STATUS", "AGE"], "{out}");
    assert_eq!(
        names(&out),
        ["default", "kube-node-lease", "kube-public", "kube-system"],
        "{out}"
    );
    for r in &t[1..] {
        assert_eq!(r.len(), 3, "{out}");
        assert_eq!(r[1], "Active", "{out}");
    }

    assert_eq!(
        c.ok(&["create", "namespace", "other"]),
        "namespace/other created\n"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2"
        ]),
        "deployment.apps/web created\n"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "configmap",
            "c1",
            "--from-literal=a=1",
            "--from-literal=b=2"
        ]),
        "configmap/c1 created\n"
    );
    assert_eq!(
        c.ok(&["label", "cm", "c1", "app=web", "tier=fe"]),
        "configmap/c1 labeled\n"
    );
    assert_eq!(
        c.ok(&["create", "configmap", "c2", "--from-literal=a=1"]),
        "configmap/c2 created\n"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "configmap",
            "c3",
            "-n",
            "other",
            "--from-literal=x=y"
        ]),
        "configmap/c3 created\n"
    );

    // Plain table.
    let out = c.ok(&["get", "cm"]);
    let t = table(&out);
    assert_eq!(t[0], ["NAME", "DATA", "AGE"], "{out}");
    assert_eq!(user_names(&out), ["c1", "c2"], "{out}");
    let c1 = t.iter().find(|r| r[0] == "c1").expect("c1 row");
    assert_eq!(c1[1], "2", "{out}");

    // Deployments: priority-0 columns, and -o wide adds the rest.
    let out = c.ok(&["get", "deploy"]);
    let t = table(&out);
    assert_eq!(
        t[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert_eq!(&t[1][..4], ["web", "0/2", "0", "0"], "{out}");
    let out = c.ok(&["get", "deploy", "-o", "wide"]);
    let t = table(&out);
    assert_eq!(
        t[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{out}"
    );
    assert_eq!(t.len(), 2, "{out}");
    assert_eq!(&t[1][..4], ["web", "0/2", "0", "0"], "{out}");
    assert_eq!(&t[1][5..], ["nginx", "nginx:1.27", "app=web"], "{out}");

    // -o yaml and -o json show the same full object.
    let yaml_text = c.ok(&["get", "cm", "c1", "-o", "yaml"]);
    assert!(yaml_text.starts_with("apiVersion: v1\n"), "{yaml_text}");
    assert!(yaml_text.contains("\nkind: ConfigMap\n"), "{yaml_text}");
    let y: serde_yaml::Value = serde_yaml::from_str(&yaml_text).expect("valid YAML");
    let y: Value = serde_json::to_value(y).expect("yaml to json");
    let j = c.get_json(&["cm", "c1"]);
    assert_eq!(y, j, "-o yaml and -o json differ");
    assert_eq!(j["apiVersion"], "v1");
    assert_eq!(j["kind"], "ConfigMap");
    assert_eq!(j["metadata"]["name"], "c1");
    assert_eq!(j["metadata"]["namespace"], "default");
    assert_eq!(j["metadata"]["labels"], json!({"app": "web", "tier": "fe"}));
    assert_eq!(j["data"], json!({"a": "1", "b": "2"}));
    assert!(rv_of(&j) > 0);
    assert_eq!(
        j["metadata"]["uid"].as_str().map(str::len),
        Some(36),
        "uid: {j}"
    );
    assert!(
        j["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{j}"
    );

    // -o name
    assert_eq!(c.ok(&["get", "cm", "c1", "-o", "name"]), "configmap/c1\n");
    assert_eq!(
        c.ok(&["get", "deploy", "-o", "name"]),
        "deployment.apps/web\n"
    );

    // -o jsonpath
    assert_eq!(c.ok(&["get", "cm", "c1", "-o", "jsonpath={.data.b}"]), "2");
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "c1",
            "c2",
            "-o",
            "jsonpath={.items[*].metadata.name}"
        ]),
        "c1 c2"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.27"
    );

    // -A adds the NAMESPACE column.
    let out = c.ok(&["get", "cm", "-A"]);
    let t = table(&out);
    assert_eq!(t[0], ["NAMESPACE", "NAME", "DATA", "AGE"], "{out}");
    let rows: Vec<(String, String)> = t[1..]
        .iter()
        .filter(|r| r[1] != "kube-root-ca.crt")
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("default".to_string(), "c1".to_string()),
            ("default".into(), "c2".into()),
            ("other".into(), "c3".into())
        ],
        "{out}"
    );

    // -l
    assert_eq!(names(&c.ok(&["get", "cm", "-l", "app=web"])), ["c1"]);
    assert_eq!(user_names(&c.ok(&["get", "cm", "-l", "app!=web"])), ["c2"]);
    assert_eq!(
        names(&c.ok(&["get", "cm", "-l", "tier in (fe,be),app"])),
        ["c1"]
    );
    let o = c.kubectl(&["get", "cm", "-l", "app=nomatch"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "", "No resources found in default namespace.\n")
    );

    // --show-labels
    let out = c.ok(&["get", "cm", "c1", "c2", "--show-labels"]);
    let t = table(&out);
    assert_eq!(t[0], ["NAME", "DATA", "AGE", "LABELS"], "{out}");
    assert_eq!(t[1][0], "c1");
    assert_eq!(t[1][3], "app=web,tier=fe", "{out}");
    assert_eq!(t[2][0], "c2");
    assert_eq!(t[2][3], "<none>", "{out}");

    // --field-selector
    assert_eq!(
        names(&c.ok(&["get", "cm", "--field-selector", "metadata.name=c2"])),
        ["c2"]
    );
    let o = c.kubectl(&["get", "cm", "--field-selector", "metadata.name=zzz"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "", "No resources found in default namespace.\n")
    );
    let out = c.ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.namespace=other",
    ]);
    assert_eq!(
        table(&out)
            .iter()
            .skip(1)
            .filter(|r| r[1] != "kube-root-ca.crt")
            .map(|r| r[1].clone())
            .collect::<Vec<_>>(),
        ["c3"],
        "{out}"
    );

    // get all: services and deployments (category "all"), no configmaps.
    let out = c.ok(&["get", "all"]);
    let lines: Vec<Vec<&str>> = out.lines().map(cells).collect();
    assert!(
        lines.iter().any(|l| l.len() == 6
            && l[0] == "service/kubernetes"
            && l[1] == "ClusterIP"
            && l[3] == "<none>"
            && l[4] == "443/TCP"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.first() == Some(&"deployment.apps/web") && l.get(1) == Some(&"0/2")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| *l
            == [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ]),
        "{out}"
    );
    assert!(!out.contains("configmap/"), "{out}");

    // Missing objects.
    let o = c.fails(&["get", "cm", "nope"]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): configmaps \"nope\" not found\n"
    );
    let o = c.fails(&["get", "deploy", "nope"]);
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
    let o = c.fails(&["get", "cm", "c3"]);
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): configmaps \"c3\" not found\n"
    );
}

// ---------------------------------------------------------------------------
// 2. kubectl create <kind>
// ---------------------------------------------------------------------------

#[test]
fn create_every_kind() {
    let Some(c) = Cluster::start() else { return };

    // configmap
    let f = c.write_file("greeting.txt", "hello\nworld\n");
    let fs = f.display().to_string();
    assert_eq!(
        c.ok(&[
            "create",
            "configmap",
            "lit",
            "--from-literal=a=b",
            "--from-literal=x=y"
        ]),
        "configmap/lit created\n"
    );
    assert_eq!(
        c.ok(&["create", "configmap", "file", &format!("--from-file={fs}")]),
        "configmap/file created\n"
    );
    assert_eq!(
        c.get_json(&["configmap", "lit"])["data"],
        json!({"a": "b", "x": "y"})
    );
    assert_eq!(
        c.get_json(&["configmap", "file"])["data"],
        json!({"greeting.txt": "hello\nworld\n"})
    );

    // secrets
    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "generic",
            "gen",
            "--from-literal=user=admin",
            "--from-literal=pass=s3cr3t"
        ]),
        "secret/gen created\n"
    );
    let s = c.get_json(&["secret", "gen"]);
    assert_eq!(s["type"], "Opaque");
    assert_eq!(
        s["data"],
        json!({"pass": b64("s3cr3t"), "user": b64("admin")})
    );

    let ck =
        rcgen::generate_simple_self_signed(vec!["tls.example.com".to_string()]).expect("rcgen");
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let crt = c.write_file("tls.crt", &cert_pem);
    let key = c.write_file("tls.key", &key_pem);
    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "tls",
            "tlss",
            &format!("--cert={}", crt.display()),
            &format!("--key={}", key.display())
        ]),
        "secret/tlss created\n"
    );
    let s = c.get_json(&["secret", "tlss"]);
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert_eq!(unb64(&s["data"]["tls.crt"]), cert_pem);
    assert_eq!(unb64(&s["data"]["tls.key"]), key_pem);

    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=registry.example.com",
            "--docker-username=u",
            "--docker-password=p",
            "--docker-email=u@example.com"
        ]),
        "secret/reg created\n"
    );
    let s = c.get_json(&["secret", "reg"]);
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    let cfg: Value =
        serde_json::from_str(&unb64(&s["data"][".dockerconfigjson"])).expect("docker config JSON");
    let auth = &cfg["auths"]["registry.example.com"];
    assert_eq!(auth["username"], "u", "{cfg}");
    assert_eq!(auth["password"], "p", "{cfg}");
    assert_eq!(unb64(&auth["auth"]), "u:p");

    // deployment
    assert_eq!(
        c.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80"
        ]),
        "deployment.apps/web created\n"
    );
    let d = c.get_json(&["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    let ctr = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["name"], "nginx");
    assert_eq!(ctr["image"], "nginx:1.27");
    assert_eq!(ctr["ports"][0]["containerPort"], 80);
    // Upstream defaulting.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "{d}");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10, "{d}");
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600, "{d}");
    assert_eq!(d["metadata"]["generation"], 1, "{d}");

    // namespace
    assert_eq!(
        c.ok(&["create", "namespace", "team-a"]),
        "namespace/team-a created\n"
    );
    let n = c.get_json(&["namespace", "team-a"]);
    assert_eq!(n["status"]["phase"], "Active");
    assert_eq!(
        n["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );

    // services
    assert_eq!(
        c.ok(&["create", "service", "clusterip", "svc-c", "--tcp=80:8080"]),
        "service/svc-c created\n"
    );
    let s = c.get_json(&["service", "svc-c"]);
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["selector"], json!({"app": "svc-c"}));
    assert_eq!(s["spec"]["ports"][0]["port"], 80);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    let ip = s["spec"]["clusterIP"].as_str().unwrap_or_default();
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "clusterIP {ip:?} not allocated: {s}"
    );
    assert_eq!(s["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(
        c.ok(&["create", "service", "nodeport", "svc-n", "--tcp=80:8080"]),
        "service/svc-n created\n"
    );
    let s = c.get_json(&["service", "svc-n"]);
    assert_eq!(s["spec"]["type"], "NodePort");
    let np = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    assert!(
        (30000..=32767).contains(&np),
        "nodePort {np} not allocated: {s}"
    );
    assert_ne!(
        s["spec"]["clusterIP"].as_str().unwrap_or_default(),
        ip,
        "two services got the same clusterIP"
    );
    let out = c.ok(&["get", "svc", "svc-n"]);
    assert_eq!(table(&out)[1][4], format!("80:{np}/TCP"), "{out}");

    // serviceaccount
    assert_eq!(
        c.ok(&["create", "serviceaccount", "robot"]),
        "serviceaccount/robot created\n"
    );
    assert_eq!(names(&c.ok(&["get", "sa", "robot"])), ["robot"]);

    // job and cronjob
    assert_eq!(
        c.ok(&[
            "create",
            "job",
            "once",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi"
        ]),
        "job.batch/once created\n"
    );
    let j = c.get_json(&["job", "once"]);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["command"], json!(["echo", "hi"]));
    assert_eq!(pod["containers"][0]["image"], "busybox:1.36");
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(j["spec"]["backoffLimit"], 6, "{j}");
    assert_eq!(j["spec"]["completions"], 1, "{j}");
    assert_eq!(j["spec"]["parallelism"], 1, "{j}");
    assert_eq!(
        c.ok(&[
            "create",
            "cronjob",
            "tick",
            "--image=busybox:1.36",
            "--schedule=*/5 * * * *",
            "--",
            "date"
        ]),
        "cronjob.batch/tick created\n"
    );
    let cj = c.get_json(&["cronjob", "tick"]);
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["date"])
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow", "{cj}");
    assert_eq!(cj["spec"]["suspend"], false, "{cj}");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3, "{cj}");
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1, "{cj}");
    let out = c.ok(&["get", "cronjob", "tick"]);
    assert_eq!(&table(&out)[1][..3], ["tick", "*/5", "*"], "{out}");

    // priorityclass (cluster-scoped)
    assert_eq!(
        c.ok(&[
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important"
        ]),
        "priorityclass.scheduling.k8s.io/high created\n"
    );
    let pc = c.get_json(&["priorityclass", "high"]);
    assert_eq!(pc["value"], 1000);
    assert_eq!(pc["description"], "important");
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority", "{pc}");
    assert!(pc["metadata"].get("namespace").is_none(), "{pc}");

    // quota
    assert_eq!(
        c.ok(&["create", "quota", "limits", "--hard=pods=10,configmaps=5"]),
        "resourcequota/limits created\n"
    );
    let q = c.get_json(&["quota", "limits"]);
    assert_eq!(q["spec"]["hard"], json!({"configmaps": "5", "pods": "10"}));

    // pdb
    assert_eq!(
        c.ok(&[
            "create",
            "pdb",
            "web-pdb",
            "--selector=app=web",
            "--min-available=1"
        ]),
        "poddisruptionbudget.policy/web-pdb created\n"
    );
    let p = c.get_json(&["pdb", "web-pdb"]);
    assert_eq!(p["spec"]["minAvailable"], 1);
    assert_eq!(p["spec"]["selector"]["matchLabels"], json!({"app": "web"}));

    // Everything is listed by get.
    assert_eq!(user_names(&c.ok(&["get", "cm"])), ["file", "lit"]);
    assert_eq!(names(&c.ok(&["get", "secrets"])), ["gen", "reg", "tlss"]);
    assert_eq!(
        names(&c.ok(&["get", "svc"])),
        ["kubernetes", "svc-c", "svc-n"]
    );
    assert!(names(&c.ok(&["get", "ns"])).contains(&"team-a".to_string()));
    assert!(names(&c.ok(&["get", "pc"])).contains(&"high".to_string()));
    assert_eq!(names(&c.ok(&["get", "job"])), ["once"]);
    assert_eq!(names(&c.ok(&["get", "cj"])), ["tick"]);
    assert_eq!(names(&c.ok(&["get", "quota"])), ["limits"]);
    assert_eq!(names(&c.ok(&["get", "pdb"])), ["web-pdb"]);

    // Creating the same again is AlreadyExists.
    let o = c.fails(&["create", "configmap", "lit", "--from-literal=a=b"]);
    assert_eq!(
        o.stderr,
        "error: failed to create configmap: configmaps \"lit\" already exists\n"
    );
    let o = c.fails(&["create", "namespace", "team-a"]);
    assert_eq!(
        o.stderr,
        "Error from server (AlreadyExists): namespaces \"team-a\" already exists\n"
    );
}

// ---------------------------------------------------------------------------
// 3. create -f
// ---------------------------------------------------------------------------

const MULTI_DOC: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: m1
data:
  k: v
---
apiVersion: v1
kind: Secret
metadata:
  name: m2
stringData:
  token: abc
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: m3
  labels:
    app: m3
spec:
  replicas: 1
  selector:
    matchLabels:
      app: m3
  template:
    metadata:
      labels:
        app: m3
    spec:
      containers:
      - name: web
        image: nginx:1.25
---
apiVersion: v1
kind: Service
metadata:
  name: m4
spec:
  selector:
    app: m3
  ports:
  - port: 80
    targetPort: 8080
"#;

#[test]
fn create_from_file_then_already_exists() {
    let Some(c) = Cluster::start() else { return };
    let f = c.write_file("multi.yaml", MULTI_DOC);
    let fs = f.display().to_string();
    assert_eq!(
        c.ok(&["create", "-f", &fs]),
        "configmap/m1 created\nsecret/m2 created\ndeployment.apps/m3 created\nservice/m4 created\n"
    );
    assert_eq!(c.get_json(&["cm", "m1"])["data"], json!({"k": "v"}));
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "m3",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.25"
    );
    assert_eq!(
        c.get_json(&["svc", "m4"])["spec"]["ports"][0]["targetPort"],
        8080
    );

    let o = c.fails(&["create", "-f", &fs]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        format!(
            "Error from server (AlreadyExists): error when creating \"{fs}\": configmaps \"m1\" already exists\n\
             Error from server (AlreadyExists): error when creating \"{fs}\": secrets \"m2\" already exists\n\
             Error from server (AlreadyExists): error when creating \"{fs}\": deployments.apps \"m3\" already exists\n\
             Error from server (AlreadyExists): error when creating \"{fs}\": services \"m4\" already exists\n"
        )
    );

    // A document with an unknown field is rejected by strict validation.
    let bad = c.write_file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\nspec:\n  nope: 1\n",
    );
    let o = c.fails(&["create", "-f", &bad.display().to_string()]);
    assert!(o.stderr.contains("unknown field \"spec\""), "{}", o.stderr);
    c.fails(&["get", "cm", "typo"]);

    // Secret stringData is folded into data and never stored.
    let s = c.get_json(&["secret", "m2"]);
    assert_eq!(s["data"], json!({"token": b64("abc")}), "{s}");
    assert!(s.get("stringData").is_none(), "{s}");
}

// ---------------------------------------------------------------------------
// 4. apply
// ---------------------------------------------------------------------------

const APPLY_V1: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  a: "1"
  b: "2"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
    spec:
      containers:
      - name: web
        image: nginx:1.25
        env:
        - name: MODE
          value: one
      - name: side
        image: busybox:1.36
"#;

#[test]
fn apply_created_unchanged_configured() {
    let Some(c) = Cluster::start() else { return };
    let f = c.write_file("app.yaml", APPLY_V1);
    let fs = f.display().to_string();
    assert_eq!(
        c.ok(&["apply", "-f", &fs]),
        "configmap/app-config created\ndeployment.apps/app created\n"
    );
    let cm = c.get_json(&["cm", "app-config"]);
    let last = cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_default();
    let last: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last-applied-configuration is not JSON ({e}): {cm}"));
    assert_eq!(last["data"], json!({"a": "1", "b": "2"}));
    let rv1 = rv_of(&c.get_json(&["deploy", "app"]));

    let o = c.kubectl(&["apply", "-f", &fs]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (
            0,
            "configmap/app-config unchanged\ndeployment.apps/app unchanged\n",
            ""
        )
    );
    assert_eq!(
        rv_of(&c.get_json(&["deploy", "app"])),
        rv1,
        "an unchanged apply must not write"
    );

    // Edit: change the image and env of one container, drop a configmap key.
    let v2 = APPLY_V1
        .replace("nginx:1.25", "nginx:1.27")
        .replace("value: one", "value: two")
        .replace("  b: \"2\"\n", "  c: \"3\"\n");
    std::fs::write(&f, v2).expect("rewrite manifest");
    assert_eq!(
        c.ok(&["apply", "-f", &fs]),
        "configmap/app-config configured\ndeployment.apps/app configured\n"
    );
    assert_eq!(
        c.get_json(&["cm", "app-config"])["data"],
        json!({"a": "1", "c": "3"}),
        "apply must remove a key dropped from the manifest"
    );
    let d = c.get_json(&["deploy", "app"]);
    let ctrs = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(ctrs.as_array().map(Vec::len), Some(2), "{d}");
    assert_eq!(ctrs[0]["name"], "web");
    assert_eq!(ctrs[0]["image"], "nginx:1.27");
    assert_eq!(ctrs[0]["env"], json!([{"name": "MODE", "value": "two"}]));
    assert_eq!(ctrs[1]["name"], "side");
    assert_eq!(ctrs[1]["image"], "busybox:1.36");
    assert_eq!(d["metadata"]["generation"], 2, "{d}");
    assert!(rv_of(&d) > rv1);

    // And a third apply of the edited file changes nothing.
    assert_eq!(
        c.ok(&["apply", "-f", &fs]),
        "configmap/app-config unchanged\ndeployment.apps/app unchanged\n"
    );

    // Dropping a field from the manifest deletes it; upstream then
    // re-defaults replicas to 1.
    std::fs::write(&f, APPLY_V1.replace("  replicas: 2\n", "")).expect("rewrite manifest");
    assert_eq!(
        c.ok(&["apply", "-f", &fs]),
        "configmap/app-config configured\ndeployment.apps/app configured\n"
    );
    let d = c.get_json(&["deploy", "app"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(
        d["spec"]["replicas"], 1,
        "replicas removed by apply must be defaulted to 1: {d}"
    );

    // Fields set by others and never in the manifest survive apply.
    c.ok(&["scale", "deploy", "app", "--replicas=5"]);
    c.ok(&["label", "deploy", "app", "owner=ops"]);
    assert_eq!(
        c.ok(&["apply", "-f", &fs]),
        "configmap/app-config unchanged\ndeployment.apps/app unchanged\n"
    );
    let d = c.get_json(&["deploy", "app"]);
    assert_eq!(d["spec"]["replicas"], 5, "{d}");
    assert_eq!(d["metadata"]["labels"]["owner"], "ops", "{d}");
}

// ---------------------------------------------------------------------------
// 5. conflict on a stale replace
// ---------------------------------------------------------------------------

#[test]
fn replace_with_stale_resource_version_conflicts() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "x", "--from-literal=a=1"]);
    let old = c.ok(&["get", "cm", "x", "-o", "yaml"]);
    let f = c.write_file("x.yaml", &old.replace("a: \"1\"", "a: \"stale\""));
    let fs = f.display().to_string();
    assert_eq!(
        c.ok(&["label", "cm", "x", "fresh=yes"]),
        "configmap/x labeled\n"
    );

    let o = c.fails(&["replace", "-f", &fs]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        format!("Error from server (Conflict): error when replacing \"{fs}\": Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again\n")
    );
    let cur = c.get_json(&["cm", "x"]);
    assert_eq!(
        cur["data"],
        json!({"a": "1"}),
        "the stale replace must not be applied"
    );
    assert_eq!(cur["metadata"]["labels"], json!({"fresh": "yes"}));

    // A replace based on the current version succeeds.
    let cur_yaml = c.ok(&["get", "cm", "x", "-o", "yaml"]);
    let f2 = c.write_file("x2.yaml", &cur_yaml.replace("a: \"1\"", "a: \"new\""));
    assert_eq!(
        c.ok(&["replace", "-f", &f2.display().to_string()]),
        "configmap/x replaced\n"
    );
    let now = c.get_json(&["cm", "x"]);
    assert_eq!(now["data"], json!({"a": "new"}));
    assert!(rv_of(&now) > rv_of(&cur));
    assert_eq!(now["metadata"]["uid"], cur["metadata"]["uid"]);
}

// ---------------------------------------------------------------------------
// 6. get -w
// ---------------------------------------------------------------------------

#[test]
fn get_watch_sees_add_modify_delete() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "pre", "--from-literal=a=1"]);
    let ev = c.spawn_kubectl_lines(&["get", "cm", "-w", "--output-watch-events"]);
    let plain = c.spawn_kubectl_lines(&["get", "cm", "-w"]);

    // Initial list first.
    let l = ev.next(20 * SEC);
    assert_eq!(cells(&l), ["EVENT", "NAME", "DATA", "AGE"]);
    let seen = ev.until(20 * SEC, |l| cells(l).get(1) == Some(&"pre"));
    assert_eq!(
        &cells(seen.last().expect("pre row"))[..3],
        ["ADDED", "pre", "1"]
    );
    let l = plain.next(20 * SEC);
    assert_eq!(cells(&l), ["NAME", "DATA", "AGE"]);
    let seen = plain.until(20 * SEC, |l| cells(l).first() == Some(&"pre"));
    assert_eq!(&cells(seen.last().expect("pre row"))[..2], ["pre", "1"]);

    c.ok(&["create", "configmap", "w", "--from-literal=a=1"]);
    c.ok(&["patch", "configmap", "w", "-p", r#"{"data":{"b":"2"}}"#]);
    c.ok(&["delete", "configmap", "w"]);

    let rows: Vec<Vec<String>> = ev
        .until(20 * SEC, |l| l.starts_with("DELETED"))
        .iter()
        .map(|l| cells(l).iter().map(|s| s.to_string()).collect())
        .filter(|r: &Vec<String>| r.get(1).map(String::as_str) != Some("kube-root-ca.crt"))
        .collect();
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("ADDED", "w", "1"),
            ("MODIFIED", "w", "2"),
            ("DELETED", "w", "2")
        ]
    );

    let rows: Vec<Vec<String>> = plain
        .until(20 * SEC, |l| {
            cells(l).first() == Some(&"w") && cells(l).get(1) == Some(&"2")
        })
        .iter()
        .map(|l| cells(l).iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].as_str(), r[1].as_str()))
            .collect::<Vec<_>>(),
        [("w", "1"), ("w", "2")]
    );
    // The deletion prints the last state once more.
    let l = plain.next(20 * SEC);
    assert_eq!(&cells(&l)[..2], ["w", "2"]);

    // Nothing else arrives, and both watchers are still running.
    ev.assert_quiet(Duration::from_millis(300));
    let (mut ev, mut plain) = (ev, plain);
    assert!(
        ev.running() && plain.running(),
        "kubectl get -w exited early"
    );
}

// ---------------------------------------------------------------------------
// 7. wait
// ---------------------------------------------------------------------------

#[test]
fn wait_for_delete_jsonpath_and_condition() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "gone", "--from-literal=a=1"]);
    c.ok(&["create", "configmap", "val", "--from-literal=a=a"]);
    c.ok(&["create", "deployment", "d", "--image=nginx"]);

    let mut w_del = c.spawn_kubectl_lines(&["wait", "--for=delete", "cm/gone", "--timeout=30s"]);
    let mut w_jp = c.spawn_kubectl_lines(&[
        "wait",
        "--for=jsonpath={.data.a}=b",
        "cm/val",
        "--timeout=30s",
    ]);
    let mut w_cond = c.spawn_kubectl_lines(&[
        "wait",
        "--for=condition=Available",
        "deploy/d",
        "--timeout=30s",
    ]);

    // None of the conditions hold yet: all three must still be waiting.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        w_del.running(),
        "wait --for=delete returned while the object exists"
    );
    assert!(
        w_jp.running(),
        "wait --for=jsonpath returned before the value matched"
    );
    assert!(
        w_cond.running(),
        "wait --for=condition returned before the condition was set"
    );

    c.ok(&["delete", "cm", "gone", "--wait=false"]);
    c.ok(&["patch", "cm", "val", "-p", r#"{"data":{"a":"b"}}"#]);
    let status = json!({"status": {"conditions": [{
        "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
        "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"
    }]}});
    assert_eq!(
        c.ok(&[
            "patch",
            "deploy",
            "d",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string()
        ]),
        "deployment.apps/d patched\n"
    );

    assert!(
        w_del.wait_exit(30 * SEC).success(),
        "wait --for=delete failed"
    );
    assert_eq!(w_del.drain(), ["configmap/gone condition met"]);
    assert!(
        w_jp.wait_exit(30 * SEC).success(),
        "wait --for=jsonpath failed"
    );
    assert_eq!(w_jp.drain(), ["configmap/val condition met"]);
    assert!(
        w_cond.wait_exit(30 * SEC).success(),
        "wait --for=condition failed"
    );
    assert_eq!(w_cond.drain(), ["deployment.apps/d condition met"]);

    // The status subresource only changed status.
    let d = c.get_json(&["deploy", "d"]);
    assert_eq!(d["status"]["conditions"][0]["type"], "Available");
    assert_eq!(
        d["metadata"]["generation"], 1,
        "a status write must not bump generation: {d}"
    );

    // Already true: returns at once. Never true: times out with exit 1.
    assert_eq!(
        c.ok(&[
            "wait",
            "--for=condition=Available=True",
            "deploy/d",
            "--timeout=5s"
        ]),
        "deployment.apps/d condition met\n"
    );
    let o = c.fails(&[
        "wait",
        "--for=condition=Progressing",
        "deploy/d",
        "--timeout=1s",
    ]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr,
        "error: timed out waiting for the condition on deployments/d\n"
    );
}

// ---------------------------------------------------------------------------
// 8. delete
// ---------------------------------------------------------------------------

#[test]
fn delete_variants() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "a", "--from-literal=a=1"]);
    c.ok(&["create", "deployment", "d", "--image=nginx"]);
    assert_eq!(
        c.ok(&["run", "p", "--image=nginx", "--restart=Never"]),
        "pod/p created\n"
    );
    let pod = c.get_json(&["pod", "p"]);
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");

    // Default --wait=true: returns once the object is gone.
    let o = c.kubectl(&["delete", "cm", "a"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "configmap \"a\" deleted\n", "")
    );
    assert_eq!(
        c.fails(&["get", "cm", "a"]).stderr,
        "Error from server (NotFound): configmaps \"a\" not found\n"
    );

    let o = c.kubectl(&["delete", "deploy", "d", "--cascade=background"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "deployment.apps \"d\" deleted\n", "")
    );
    assert_eq!(
        c.fails(&["get", "deploy", "d"]).stderr,
        "Error from server (NotFound): deployments.apps \"d\" not found\n"
    );

    let o = c.kubectl(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "pod \"p\" force deleted\n");
    assert_eq!(
        o.stderr,
        "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n"
    );
    assert_eq!(
        c.fails(&["get", "pod", "p"]).stderr,
        "Error from server (NotFound): pods \"p\" not found\n"
    );

    // An unbound pod is deleted at once even with the default grace period.
    c.ok(&["run", "q", "--image=nginx", "--restart=Never"]);
    assert_eq!(
        c.ok(&["delete", "pod", "q", "--timeout=20s"]),
        "pod \"q\" deleted\n"
    );
    c.fails(&["get", "pod", "q"]);

    let o = c.kubectl(&["delete", "cm", "nope", "--ignore-not-found"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
    let o = c.fails(&["delete", "cm", "nope"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): configmaps \"nope\" not found\n"
    );

    // delete by label selector
    c.ok(&["create", "configmap", "l1"]);
    c.ok(&["create", "configmap", "l2"]);
    c.ok(&["create", "configmap", "keep"]);
    c.ok(&["label", "cm", "l1", "l2", "grp=x"]);
    assert_eq!(
        c.ok(&["delete", "cm", "-l", "grp=x"]),
        "configmap \"l1\" deleted\nconfigmap \"l2\" deleted\n"
    );
    assert_eq!(user_names(&c.ok(&["get", "cm"])), ["keep"]);
}

// ---------------------------------------------------------------------------
// 9. label, annotate, patch
// ---------------------------------------------------------------------------

#[test]
fn label_add_overwrite_remove() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "x", "--from-literal=a=1"]);

    // labels
    assert_eq!(
        c.ok(&["label", "cm", "x", "env=dev", "team=a"]),
        "configmap/x labeled\n"
    );
    let o = c.fails(&["label", "cm", "x", "env=prod"]);
    assert_eq!(
        o.stderr,
        "error: 'env' already has a value (dev), and --overwrite is false\n"
    );
    assert_eq!(
        c.ok(&["label", "cm", "x", "env=prod", "--overwrite"]),
        "configmap/x labeled\n"
    );
    assert_eq!(
        c.get_json(&["cm", "x"])["metadata"]["labels"],
        json!({"env": "prod", "team": "a"})
    );
    assert_eq!(
        c.ok(&["label", "cm", "x", "team-"]),
        "configmap/x unlabeled\n"
    );
    assert_eq!(
        c.get_json(&["cm", "x"])["metadata"]["labels"],
        json!({"env": "prod"})
    );
    assert_eq!(
        c.ok(&["label", "cm", "x", "env-"]),
        "configmap/x unlabeled\n"
    );
    // Upstream drops the emptied map (omitempty): no `labels: {}`.
    assert_eq!(
        c.ok(&["get", "cm", "x", "-o", "jsonpath={.metadata.labels}"]),
        "",
        "an emptied labels map must be omitted"
    );
}

#[test]
fn annotate_add_overwrite_remove() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "x", "--from-literal=a=1"]);
    assert_eq!(
        c.ok(&["annotate", "cm", "x", "note=one", "owner=me"]),
        "configmap/x annotated\n"
    );
    let o = c.fails(&["annotate", "cm", "x", "note=two"]);
    assert_eq!(o.stderr, "error: --overwrite is false but found the following declared annotation(s): 'note' already has a value (one)\n");
    assert_eq!(
        c.ok(&["annotate", "cm", "x", "note=two", "--overwrite"]),
        "configmap/x annotated\n"
    );
    assert_eq!(
        c.get_json(&["cm", "x"])["metadata"]["annotations"],
        json!({"note": "two", "owner": "me"})
    );
    assert_eq!(
        c.ok(&["annotate", "cm", "x", "note-"]),
        "configmap/x annotated\n"
    );
    assert_eq!(
        c.get_json(&["cm", "x"])["metadata"]["annotations"],
        json!({"owner": "me"})
    );
    assert_eq!(
        c.ok(&["annotate", "cm", "x", "owner-"]),
        "configmap/x annotated\n"
    );
    assert_eq!(
        c.ok(&["get", "cm", "x", "-o", "jsonpath={.metadata.annotations}"]),
        "",
        "an emptied annotations map must be omitted"
    );
}

#[test]
fn patch_strategic_merge_and_json() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "x", "--from-literal=a=1"]);
    // strategic merge: containers merge by name.
    c.ok(&[
        "create",
        "deployment",
        "d",
        "--image=nginx:1.25",
        "--image=busybox:1.36",
    ]);
    let before = c.get_json(&["deploy", "d"]);
    let names_images = |d: &Value| -> Vec<(String, String)> {
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["image"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        names_images(&before),
        [
            ("nginx".to_string(), "nginx:1.25".to_string()),
            ("busybox".into(), "busybox:1.36".into())
        ]
    );
    assert_eq!(
        c.ok(&["patch", "deploy", "d", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"busybox","image":"busybox:1.37"},{"name":"extra","image":"redis:7"}]}}}}"#]),
        "deployment.apps/d patched\n"
    );
    let d = c.get_json(&["deploy", "d"]);
    let mut got = names_images(&d);
    got.sort();
    assert_eq!(
        got,
        [
            ("busybox".to_string(), "busybox:1.37".to_string()),
            ("extra".into(), "redis:7".into()),
            ("nginx".into(), "nginx:1.25".into())
        ],
        "strategic merge must merge containers by name: {d}"
    );
    // $patch: delete removes one element by name.
    c.ok(&[
        "patch",
        "deploy",
        "d",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"extra","$patch":"delete"}]}}}}"#,
    ]);
    let mut got = names_images(&c.get_json(&["deploy", "d"]));
    got.sort();
    assert_eq!(
        got,
        [
            ("busybox".to_string(), "busybox:1.37".to_string()),
            ("nginx".into(), "nginx:1.25".into())
        ]
    );
    // A patch that changes nothing.
    assert_eq!(
        c.ok(&["patch", "deploy", "d", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}}"#]),
        "deployment.apps/d patched (no change)\n"
    );

    // merge patch: replaces lists wholesale, null deletes.
    assert_eq!(
        c.ok(&[
            "patch",
            "cm",
            "x",
            "--type=merge",
            "-p",
            r#"{"data":{"a":null,"b":"2"},"metadata":{"labels":{"m":"1"}}}"#
        ]),
        "configmap/x patched\n"
    );
    let x = c.get_json(&["cm", "x"]);
    assert_eq!(x["data"], json!({"b": "2"}));
    assert_eq!(x["metadata"]["labels"], json!({"m": "1"}));
    assert_eq!(
        c.ok(&[
            "patch",
            "cm",
            "x",
            "--type=merge",
            "-p",
            r#"{"data":{"b":"2"}}"#
        ]),
        "configmap/x patched (no change)\n"
    );
    c.ok(&["patch", "deploy", "d", "--type=merge", "-p", r#"{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"only","image":"alpine:3"}]}}}}"#]);
    let d = c.get_json(&["deploy", "d"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        names_images(&d),
        [("only".to_string(), "alpine:3".to_string())],
        "merge patch replaces the list: {d}"
    );

    // json patch
    assert_eq!(
        c.ok(&["patch", "deploy", "d", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/replicas","value":4},{"op":"add","path":"/metadata/labels/patched","value":"yes"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"alpine:3.20"}]"#]),
        "deployment.apps/d patched\n"
    );
    let d = c.get_json(&["deploy", "d"]);
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["labels"]["patched"], "yes");
    assert_eq!(
        names_images(&d),
        [("only".to_string(), "alpine:3.20".to_string())]
    );
    // A failing test op leaves the object alone.
    let o = c.fails(&["patch", "deploy", "d", "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]"#]);
    assert!(
        o.stderr.starts_with("The request is invalid") || o.stderr.contains("Error from server"),
        "{}",
        o.stderr
    );
    assert_eq!(c.get_json(&["deploy", "d"])["spec"]["replicas"], 4);
    // Patching something that does not exist.
    let o = c.fails(&["patch", "cm", "nope", "-p", r#"{"data":{"a":"1"}}"#]);
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): configmaps \"nope\" not found\n"
    );
}

// ---------------------------------------------------------------------------
// 10. describe
// ---------------------------------------------------------------------------

fn event_yaml(
    name: &str,
    kind: &str,
    api_version: &str,
    obj: &str,
    uid: &str,
    reason: &str,
    message: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Event
metadata:
  name: {name}
involvedObject:
  apiVersion: {api_version}
  kind: {kind}
  name: {obj}
  namespace: default
  uid: {uid}
reason: {reason}
message: {message}
type: Normal
source:
  component: e2e-test
firstTimestamp: "2024-01-01T00:00:00Z"
lastTimestamp: "2024-01-01T00:00:00Z"
count: 1
"#
    )
}

/// The rows of the `Events:` table at the end of a describe output.
fn events_rows(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("Events:"));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no Events: section in\n{out}"));
    if first.trim_end() == "Events:  <none>" || first.trim_end() == "Events:\t<none>" {
        return Vec::new();
    }
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        cells(rest.first().unwrap_or(&"")),
        ["Type", "Reason", "Age", "From", "Message"],
        "{out}"
    );
    assert_eq!(
        cells(rest.get(1).unwrap_or(&"")),
        ["----", "------", "----", "----", "-------"],
        "{out}"
    );
    rest[2..]
        .iter()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn describe_with_events() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ]);
    c.ok(&["create", "configmap", "cfg", "--from-literal=key1=value1"]);
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["label", "ns", "team", "owner=me"]);

    // Before any event.
    let out = c.ok(&["describe", "cm", "cfg"]);
    assert!(events_rows(&out).is_empty(), "{out}");

    let duid = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]);
    let cuid = c.ok(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.uid}"]);
    let f = c.write_file(
        "events.yaml",
        &format!(
            "{}---\n{}---\n{}",
            event_yaml(
                "web.1",
                "Deployment",
                "apps/v1",
                "web",
                &duid,
                "ScalingReplicaSet",
                "Scaled up replica set web-abc to 2"
            ),
            event_yaml(
                "cfg.1",
                "ConfigMap",
                "v1",
                "cfg",
                &cuid,
                "Touched",
                "configmap was touched"
            ),
            // An event for another object of the same name must not show up.
            event_yaml(
                "other.1",
                "ConfigMap",
                "v1",
                "web",
                "00000000-0000-0000-0000-000000000000",
                "Unrelated",
                "not for web"
            ),
        ),
    );
    assert_eq!(
        c.ok(&["create", "-f", &f.display().to_string()]),
        "event/web.1 created\nevent/cfg.1 created\nevent/other.1 created\n"
    );

    let out = c.ok(&["describe", "deployment", "web"]);
    let has = |line: &str| out.lines().any(|l| cells(l) == cells(line));
    assert!(has("Name: web"), "{out}");
    assert!(has("Namespace: default"), "{out}");
    assert!(has("Labels: app=web"), "{out}");
    assert!(has("Selector: app=web"), "{out}");
    assert!(
        has("Replicas: 2 desired | 0 updated | 0 total | 0 available | 0 unavailable"),
        "{out}"
    );
    assert!(has("StrategyType: RollingUpdate"), "{out}");
    assert!(
        has("RollingUpdateStrategy: 25% max unavailable, 25% max surge"),
        "{out}"
    );
    assert!(has("Image: nginx:1.27"), "{out}");
    let ev = events_rows(&out);
    assert_eq!(ev.len(), 1, "{out}");
    assert_eq!(ev[0][0], "Normal");
    assert_eq!(ev[0][1], "ScalingReplicaSet");
    assert_eq!(ev[0][3], "e2e-test");
    assert_eq!(ev[0][4..].join(" "), "Scaled up replica set web-abc to 2");

    let out = c.ok(&["describe", "configmap", "cfg"]);
    let has = |line: &str| out.lines().any(|l| cells(l) == cells(line));
    assert!(has("Name: cfg"), "{out}");
    assert!(has("Namespace: default"), "{out}");
    assert!(has("key1:"), "{out}");
    assert!(has("value1"), "{out}");
    let ev = events_rows(&out);
    assert_eq!(ev.len(), 1, "{out}");
    assert_eq!(&ev[0][..2], ["Normal", "Touched"]);
    assert_eq!(ev[0][4..].join(" "), "configmap was touched");

    let out = c.ok(&["describe", "namespace", "team"]);
    let has = |line: &str| out.lines().any(|l| cells(l) == cells(line));
    assert!(has("Name: team"), "{out}");
    assert!(has("Status: Active"), "{out}");
    assert!(out.contains("kubernetes.io/metadata.name=team"), "{out}");
    assert!(out.contains("owner=me"), "{out}");
    assert!(has("No resource quota."), "{out}");
    assert!(has("No LimitRange resource."), "{out}");

    let o = c.fails(&["describe", "cm", "nope"]);
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): configmaps \"nope\" not found\n"
    );
}

// ---------------------------------------------------------------------------
// 11. explain, api-resources, api-versions, cluster-info
// ---------------------------------------------------------------------------

#[test]
fn explain_discovery_and_cluster_info() {
    let Some(c) = Cluster::start() else { return };
    let out = c.ok(&["explain", "pod.spec.containers"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "KIND:       Pod", "{out}");
    assert_eq!(lines[1], "VERSION:    v1", "{out}");
    assert!(lines.contains(&"FIELD: containers <[]Container>"), "{out}");
    assert!(lines.contains(&"DESCRIPTION:"), "{out}");
    assert!(lines.contains(&"FIELDS:"), "{out}");
    assert!(out.contains("\n  image\t<string>\n"), "{out}");
    assert!(out.contains("\n  name\t<string> -required-\n"), "{out}");
    let out = c.ok(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("FIELD: replicas <integer>"), "{out}");
    let o = c.fails(&["explain", "pod.spec.nope"]);
    assert!(
        o.stderr.contains("field \"nope\" does not exist"),
        "{}",
        o.stderr
    );

    let out = c.ok(&["api-resources"]);
    let t = table(&out);
    assert_eq!(
        t[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    for want in [
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["configmaps", "cm", "v1", "true", "ConfigMap"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["cronjobs", "cj", "batch/v1", "true", "CronJob"],
        [
            "priorityclasses",
            "pc",
            "scheduling.k8s.io/v1",
            "false",
            "PriorityClass",
        ],
    ] {
        assert!(
            t.iter().any(|r| r == &want),
            "api-resources lacks {want:?}:\n{out}"
        );
    }
    assert!(
        t.iter().any(|r| r == &["secrets", "v1", "true", "Secret"]),
        "{out}"
    );
    let out = c.ok(&["api-resources", "--api-group=apps", "-o", "name"]);
    assert!(out.lines().any(|l| l == "deployments.apps"), "{out}");
    assert!(!out.lines().any(|l| l == "configmaps"), "{out}");

    let out = c.ok(&["api-versions"]);
    let v: Vec<&str> = out.lines().collect();
    for want in ["apps/v1", "batch/v1", "policy/v1", "v1"] {
        assert!(v.contains(&want), "api-versions lacks {want}:\n{out}");
    }
    let mut sorted = v.clone();
    sorted.sort();
    assert_eq!(v, sorted, "api-versions is sorted");

    let o = c.kubectl(&["cluster-info"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout,
        // The kube-dns service (cluster DNS) is listed like k3s's CoreDNS.
        format!("Kubernetes control plane is running at https://127.0.0.1:{p}\nCoreDNS is running at https://127.0.0.1:{p}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy\n\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n", p = c.port)
    );
}

// ---------------------------------------------------------------------------
// 12. scale
// ---------------------------------------------------------------------------

#[test]
fn scale_deployment() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "deployment", "web", "--image=nginx"]);
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "1"
    );
    assert_eq!(
        c.ok(&["scale", "deploy", "web", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    assert_eq!(
        c.ok(&[
            "scale",
            "deploy",
            "web",
            "--current-replicas=3",
            "--replicas=5"
        ]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let o = c.fails(&[
        "scale",
        "deploy",
        "web",
        "--current-replicas=3",
        "--replicas=6",
    ]);
    assert_eq!(o.stderr, "error: Expected replicas to be 3, was 5\n");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let scale: Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]))
    .expect("Scale JSON");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    let o = c.fails(&["scale", "deploy", "nope", "--replicas=2"]);
    assert_eq!(
        o.stderr,
        "error: no objects passed to scale deployments.apps \"nope\" not found\n"
    );
}

// ---------------------------------------------------------------------------
// 17. pagination
// ---------------------------------------------------------------------------

#[test]
fn pagination_with_chunk_size_and_continue() {
    let Some(c) = Cluster::start() else { return };
    let want: Vec<String> = (1..=7).map(|i| format!("page-{i}")).collect();
    for n in &want {
        c.ok(&["create", "configmap", n]);
    }
    let o = c.kubectl(&["get", "cm", "--chunk-size=2", "-v=6"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(user_names(&o.stdout), want, "{}", o.stdout);
    assert_eq!(table(&o.stdout)[0], ["NAME", "DATA", "AGE"]);
    let pages = o
        .stderr
        .lines()
        .filter(|l| l.contains("/api/v1/namespaces/default/configmaps?") && l.contains("limit=2"))
        .count();
    assert!(
        pages >= 4,
        "kubectl should have fetched 4 pages of 2, saw {pages} requests:\n{}",
        o.stderr
    );

    let mut got = Vec::new();
    let mut cont = String::new();
    let mut rounds = 0;
    let mut list_rv = None;
    let mut bad_remaining: Vec<String> = Vec::new();
    loop {
        rounds += 1;
        assert!(rounds <= 10, "continue never ends");
        let mut path = "/api/v1/namespaces/default/configmaps?limit=2".to_string();
        if !cont.is_empty() {
            path.push_str(&format!("&continue={cont}"));
        }
        let page: Value = serde_json::from_str(&c.ok(&["get", "--raw", &path])).expect("list JSON");
        assert_eq!(page["kind"], "ConfigMapList");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2, "limit=2 returned {} items", items.len());
        got.extend(items.iter().map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }));
        // All pages are a consistent snapshot at the first page's version.
        let rv = page["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(list_rv.get_or_insert(rv.clone()), &rv);
        match page["metadata"]["continue"].as_str() {
            Some(next) if !next.is_empty() => {
                let remaining = page["metadata"]["remainingItemCount"].as_u64();
                if remaining != Some((7 - got.len()) as u64) {
                    bad_remaining.push(format!(
                        "page {rounds}: remainingItemCount {remaining:?}, want {}",
                        7 - got.len()
                    ));
                }
                cont = next.to_string();
            }
            _ => {
                assert!(
                    page["metadata"].get("remainingItemCount").is_none(),
                    "{page}"
                );
                break;
            }
        }
    }
    got.retain(|n| n != "kube-root-ca.crt");
    assert_eq!(got, want);
    assert_eq!(rounds, 4);
    // Upstream (etcd3 store) sets remainingItemCount on every page that has a continue token.
    assert!(bad_remaining.is_empty(), "{bad_remaining:?}");

    // A garbage continue token is a 400.
    let o = c.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=2&continue=garbage",
    ]);
    assert!(
        o.stderr.starts_with("Error from server (BadRequest)"),
        "{}",
        o.stderr
    );
}
