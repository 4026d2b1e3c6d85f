//! Malformed and unauthenticated requests, sent raw (curl with the admin
//! client certificate from the data dir, or `kubectl create --raw`).

mod common;

use common::*;
use serde_json::{json, Value};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[track_caller]
fn status(code: u16, body: &str, want_code: u16, want_reason: &str) -> Value {
    assert_eq!(code, want_code, "body: {body}");
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], want_code, "{v}");
    assert_eq!(v["reason"], want_reason, "{v}");
    v
}

#[test]
fn bad_requests_are_rejected_and_create_nothing() {
    let Some(c) = Cluster::start() else { return };
    // Watch every configmap and secret write from here on.
    let mut watches = Vec::new();
    for res in ["configmaps", "secrets"] {
        let (code, body) = c.curl("GET", &format!("/api/v1/{res}"), None, true, &[]);
        assert_eq!(code, 200, "{body}");
        let rv = rv_of(&serde_json::from_str::<Value>(&body).expect("list JSON"));
        let path = format!("/api/v1/{res}?watch=true&resourceVersion={rv}");
        watches.push(c.spawn_kubectl_json(&["get", "--raw", &path]));
    }

    // Malformed JSON.
    let f = c.write_file(
        "malformed.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"mal""#,
    );
    let (code, body) = c.curl("POST", CMS, Some(("application/json", &f)), true, &[]);
    let v = status(code, &body, 400, "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("couldn't get version/kind; json parse error"),
        "{v}"
    );
    let o = c.fails(&["create", "--raw", CMS, "-f", &f.display().to_string()]);
    assert!(
        o.stderr.starts_with("Error from server (BadRequest): "),
        "{}",
        o.stderr
    );
    // Not JSON at all.
    let f = c.write_file("garbage.json", "this is not json");
    let (code, body) = c.curl("POST", CMS, Some(("application/json", &f)), true, &[]);
    status(code, &body, 400, "BadRequest");

    // Over 3 MiB: 413, whether the length is declared or the body is chunked.
    let mut big = String::from(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":""#,
    );
    big.push_str(&"a".repeat(3 * 1024 * 1024 + 10));
    big.push_str(r#""}}"#);
    let f = c.write_file("big.json", &big);
    let (code, body) = c.curl(
        "POST",
        CMS,
        Some(("application/json", &f)),
        true,
        &["--http1.1"],
    );
    let v = status(code, &body, 413, "RequestEntityTooLarge");
    assert_eq!(v["message"], "Request entity too large: limit is 3145728");
    let (code, body) = c.curl(
        "POST",
        CMS,
        Some(("application/json", &f)),
        true,
        &["--http1.1", "-H", "Transfer-Encoding: chunked"],
    );
    status(code, &body, 413, "RequestEntityTooLarge");
    // kubectl (HTTP/2) gets the same answer.
    let o = c.fails(&["create", "--raw", CMS, "-f", &f.display().to_string()]);
    assert_eq!(
        o.stderr,
        "Error from server (RequestEntityTooLarge): Request entity too large: limit is 3145728\n"
    );

    // Unknown resource, unknown group, unknown version.
    for path in [
        "/api/v1/foos",
        "/api/v1/namespaces/default/foos",
        "/apis/nope.example.com/v1/foos",
        "/apis/apps/v9/deployments",
        "/apis/nope.example.com/v1",
    ] {
        let (code, body) = c.curl("GET", path, None, true, &[]);
        assert_eq!(code, 404, "GET {path}: {body}");
        let v = status(code, &body, 404, "NotFound");
        assert_eq!(
            v["message"], "the server could not find the requested resource",
            "GET {path}"
        );
    }
    let f = c.write_file(
        "cm.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"to-foos"}}"#,
    );
    let (code, body) = c.curl(
        "POST",
        "/api/v1/namespaces/default/foos",
        Some(("application/json", &f)),
        true,
        &[],
    );
    status(code, &body, 404, "NotFound");
    let o = c.fails(&["get", "--raw", "/api/v1/foos"]);
    assert_eq!(
        o.stderr,
        "Error from server (NotFound): the server could not find the requested resource\n"
    );

    // A Secret POSTed to the configmaps collection.
    let f = c.write_file("secret.json", r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"wrong-kind"},"stringData":{"a":"b"}}"#);
    let (code, body) = c.curl("POST", CMS, Some(("application/json", &f)), true, &[]);
    let v = status(code, &body, 400, "BadRequest");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.contains("Secret") && msg.contains("ConfigMap"), "{msg}");

    // Namespace in the body differs from the URL.
    let f = c.write_file("otherns.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nsmismatch","namespace":"kube-system"}}"#);
    let (code, body) = c.curl("POST", CMS, Some(("application/json", &f)), true, &[]);
    let v = status(code, &body, 400, "BadRequest");
    assert_eq!(
        v["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    // Invalid name: 422 Invalid with a cause.
    let f = c.write_file(
        "badname.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
    );
    let (code, body) = c.curl("POST", CMS, Some(("application/json", &f)), true, &[]);
    let v = status(code, &body, 422, "Invalid");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"#),
        "{msg}"
    );
    assert_eq!(v["details"]["name"], "Bad_Name", "{v}");
    assert_eq!(v["details"]["kind"], "ConfigMap", "{v}");
    let causes = v["details"]["causes"]
        .as_array()
        .unwrap_or_else(|| panic!("no causes: {v}"));
    assert_eq!(causes.len(), 1, "{v}");
    assert_eq!(causes[0]["reason"], "FieldValueInvalid");
    assert_eq!(causes[0]["field"], "metadata.name");
    assert!(
        causes[0]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(r#"Invalid value: "Bad_Name": "#),
        "{v}"
    );
    // ... and kubectl renders it the upstream way.
    let y = c.write_file(
        "badname.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let o = c.fails(&["create", "-f", &y.display().to_string()]);
    assert!(
        o.stderr.starts_with(r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#),
        "{}",
        o.stderr
    );

    // PUT whose body names another object.
    c.ok(&["create", "configmap", "real"]);
    let f = c.write_file(
        "rename.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"},"data":{"x":"y"}}"#,
    );
    let (code, body) = c.curl(
        "PUT",
        &format!("{CMS}/real"),
        Some(("application/json", &f)),
        true,
        &[],
    );
    let v = status(code, &body, 400, "BadRequest");
    assert_eq!(
        v["message"],
        "the name of the object (other) does not match the name on the URL (real)"
    );
    c.ok(&["delete", "configmap", "real"]);

    // None of the above created or changed anything else.
    let after = c.get_json(&["cm"]);
    let names: Vec<&str> = after["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert!(
        names.is_empty(),
        "bad requests created configmaps: {names:?}"
    );
    assert_eq!(
        c.get_json(&["secrets"])["items"],
        json!([]),
        "a Secret was created through /configmaps"
    );
    for ns in ["default", "kube-system"] {
        let o = c.kubectl(&["get", "cm", "-n", ns, "nsmismatch"]);
        assert_eq!(o.code, 1);
    }
    // The only writes were the create and delete of "real" (then a marker).
    c.ok(&["create", "configmap", "zz-end"]);
    c.ok(&["create", "secret", "generic", "zz-end"]);
    let seen = |w: &Spawned<Value>| -> Vec<String> {
        w.until(std::time::Duration::from_secs(20), |e| {
            e["object"]["metadata"]["name"] == "zz-end"
        })
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or_default(),
                e["object"]["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
    };
    assert_eq!(
        seen(&watches[0]),
        ["ADDED real", "DELETED real", "ADDED zz-end"],
        "configmap writes"
    );
    assert_eq!(seen(&watches[1]), ["ADDED zz-end"], "secret writes");
}

#[test]
fn requests_without_credentials_are_401() {
    let Some(c) = Cluster::start() else { return };
    let unauthorized = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401});
    for path in [CMS, "/api", "/apis", "/api/v1/namespaces"] {
        let (code, body) = c.curl("GET", path, None, false, &[]);
        assert_eq!(code, 401, "GET {path} without credentials: {body}");
        let v: Value = serde_json::from_str(&body).expect("Status JSON");
        assert_eq!(v, unauthorized);
    }
    // A wrong bearer token is no better.
    let (code, _) = c.curl(
        "GET",
        CMS,
        None,
        false,
        &["-H", "Authorization: Bearer not-the-token"],
    );
    assert_eq!(code, 401);
    // Writes without credentials are refused and change nothing.
    let f = c.write_file(
        "cm.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"anon"}}"#,
    );
    let (code, _) = c.curl("POST", CMS, Some(("application/json", &f)), false, &[]);
    assert_eq!(code, 401);
    c.fails(&["get", "cm", "anon"]);
    // Health endpoints stay open, like upstream's anonymous /readyz.
    let (code, body) = c.curl("GET", "/readyz", None, false, &[]);
    assert_eq!((code, body.as_str()), (200, "ok"));
    // The bearer token in the data dir is accepted.
    let token = std::fs::read_to_string(c.data.join("token")).expect("token file");
    let (code, _) = c.curl(
        "GET",
        CMS,
        None,
        false,
        &["-H", &format!("Authorization: Bearer {}", token.trim())],
    );
    assert_eq!(code, 200);

    // kubectl with a kubeconfig whose token the server does not know.
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {}\n    server: {}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: nobody\n  name: c\ncurrent-context: c\nusers:\n- name: nobody\n  user:\n    token: bogus\n",
        c.data.join("tls/ca.crt").display(),
        c.server_url()
    );
    let kcf = c.write_file("anon.kubeconfig", &kc);
    let o = c.fails(&["--kubeconfig", &kcf.display().to_string(), "get", "cm"]);
    assert_eq!(o.code, 1);
    // (Unauthorized) when discovery is cached, else the discovery error.
    let last = o.stderr.lines().last().unwrap_or_default();
    assert!(
        last == "error: You must be logged in to the server (Unauthorized)"
            || last == "error: You must be logged in to the server (the server has asked for the client to provide credentials)",
        "{}",
        o.stderr
    );
}
