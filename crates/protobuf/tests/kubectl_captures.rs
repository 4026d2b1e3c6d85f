//! Real request bodies captured from kubectl 1.32 / 1.33 (`kubectl create ...`), decoded and
//! compared with the JSON the same objects have on kubectl's JSON wire (`-o json`).

use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(name: &str, api_version: &str, kind: &str, expected: Value) {
    let (av, k, obj) = bosun_protobuf::decode(&fixture(name)).expect(name);
    assert_eq!((av.as_str(), k.as_str()), (api_version, kind), "{name}");
    assert_eq!(
        obj,
        expected,
        "{name}: got {}",
        serde_json::to_string_pretty(&obj).unwrap()
    );
}

#[test]
fn configmap_from_literal_k132() {
    // kubectl create configmap c2 --from-literal=x=y
    check(
        "k132-configmaps.pb",
        "v1",
        "ConfigMap",
        json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "c2", "creationTimestamp": null},
            "data": {"x": "y"}
        }),
    );
}

#[test]
fn configmap_from_literal_k133() {
    // kubectl 1.33: kubectl create configmap c1 --from-literal=a=b
    check(
        "k133-configmaps.pb",
        "v1",
        "ConfigMap",
        json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "c1", "creationTimestamp": null},
            "data": {"a": "b"}
        }),
    );
}

#[test]
fn deployment() {
    // kubectl create deployment d2 --image=busybox
    check(
        "k132-deployments.pb",
        "apps/v1",
        "Deployment",
        json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "d2", "creationTimestamp": null, "labels": {"app": "d2"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "d2"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "d2"}},
                    "spec": {"containers": [{"name": "busybox", "image": "busybox", "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}
        }),
    );
}

#[test]
fn namespace() {
    // kubectl create namespace n1
    check(
        "k132-namespaces.pb",
        "v1",
        "Namespace",
        json!({
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": "n1", "creationTimestamp": null},
            "spec": {}, "status": {}
        }),
    );
}

#[test]
fn secret_generic() {
    // kubectl create secret generic s1 --from-literal=a=b
    check(
        "k132-secrets.pb",
        "v1",
        "Secret",
        json!({
            "kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": "s1", "creationTimestamp": null},
            "data": {"a": "Yg=="}
        }),
    );
}

#[test]
fn service_clusterip() {
    // kubectl create service clusterip svc1 --tcp=80:80
    check(
        "k132-services.pb",
        "v1",
        "Service",
        json!({
            "kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "svc1", "creationTimestamp": null, "labels": {"app": "svc1"}},
            "spec": {
                "ports": [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 80}],
                "selector": {"app": "svc1"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        }),
    );
}

#[test]
fn serviceaccount() {
    // kubectl create serviceaccount sa1
    check(
        "k132-serviceaccounts.pb",
        "v1",
        "ServiceAccount",
        json!({
            "kind": "ServiceAccount", "apiVersion": "v1",
            "metadata": {"name": "sa1", "creationTimestamp": null}
        }),
    );
}

#[test]
fn kind_and_api_version_come_first() {
    let (_, _, obj) = bosun_protobuf::decode(&fixture("k132-deployments.pb")).unwrap();
    let keys: Vec<&String> = obj.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["kind", "apiVersion", "metadata", "spec", "status"]);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for name in [
        "k132-configmaps.pb",
        "k132-deployments.pb",
        "k132-services.pb",
        "k132-secrets.pb",
    ] {
        let body = fixture(name);
        for n in 0..body.len() {
            // Some prefixes are themselves valid protobuf (they end on a field boundary);
            // what matters is that none panics and the magic is checked.
            let r = bosun_protobuf::decode(&body[..n]);
            if n < 4 {
                assert_eq!(r.unwrap_err(), bosun_protobuf::DecodeError::MissingMagic);
            }
        }
        // Flip every byte in turn: never a panic.
        for i in 4..body.len() {
            for x in [0x00u8, 0xff, 0x80, 0x7f] {
                let mut b = body.clone();
                b[i] = x;
                let _ = bosun_protobuf::decode(&b);
            }
        }
    }
}
