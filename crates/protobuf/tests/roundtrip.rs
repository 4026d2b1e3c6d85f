//! Objects built with k8s-pb's prost types, protobuf-encoded, wrapped in the `k8s\0` +
//! runtime.Unknown envelope, decoded, and compared with their Kubernetes JSON.

use std::collections::BTreeMap;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn body(api_version: &str, kind: &str, obj: &impl Message) -> Vec<u8> {
    let env = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(obj.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut b = bosun_protobuf::MAGIC.to_vec();
    b.extend(env.encode_to_vec());
    b
}

fn decode(api_version: &str, kind: &str, obj: &impl Message) -> Value {
    let (av, k, v) = bosun_protobuf::decode(&body(api_version, kind, obj)).unwrap();
    assert_eq!((av.as_str(), k.as_str()), (api_version, kind));
    v
}

fn assert_json(got: Value, expected: Value) {
    assert_eq!(
        got,
        expected,
        "got {}",
        serde_json::to_string_pretty(&got).unwrap()
    );
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity { string: s(v) }))
        .collect()
}

fn int_port(p: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(p),
        str_val: s(""),
    })
}

fn str_port(p: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(p),
    })
}

#[test]
fn pod_with_resources_probes_and_timestamps() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            namespace: s("default"),
            uid: s(""),
            generation: Some(0),
            labels: [("app".to_string(), "web".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_704_067_200),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            termination_grace_period_seconds: Some(0), // pointer: an explicit 0 is kept
            host_network: Some(false),                 // plain bool: false is omitted
            volumes: vec![core::Volume {
                name: s("cfg"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("app-config"),
                        }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: s("web"),
                image: s("nginx:1.27"),
                ports: vec![core::ContainerPort {
                    name: s("http"),
                    container_port: Some(8080),
                    protocol: s("TCP"),
                    ..Default::default()
                }],
                resources: Some(core::ResourceRequirements {
                    limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
                    requests: quantities(&[("cpu", "100m")]),
                    ..Default::default()
                }),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: int_port(8080),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    initial_delay_seconds: Some(5),
                    period_seconds: Some(0),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        tcp_socket: Some(core::TcpSocketAction {
                            port: str_port("http"),
                            host: s(""),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                env: vec![core::EnvVar {
                    name: s("MODE"),
                    value: s("prod"),
                    value_from: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            pod_ip: s("10.0.0.7"),
            start_time: Some(meta::Time {
                seconds: Some(1_704_067_261),
                nanos: Some(5),
            }),
            ..Default::default()
        }),
    };
    assert_json(
        decode("v1", "Pod", &pod),
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {
                "name": "web", "namespace": "default",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"app": "web"}
            },
            "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 420}}],
                "containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                        "requests": {"cpu": "100m"}
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "initialDelaySeconds": 5
                    },
                    "readinessProbe": {"tcpSocket": {"port": "http"}}
                }],
                "terminationGracePeriodSeconds": 0
            },
            "status": {"phase": "Running", "podIP": "10.0.0.7", "startTime": "2024-01-01T00:01:01Z"}
        }),
    );
}

#[test]
fn secret_bytes_are_base64_and_immutable_false_is_kept() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: s("tls"),
            ..Default::default()
        }),
        data: [("bin".to_string(), vec![0u8, 0xff, 0x10])].into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
        immutable: Some(false),
    };
    assert_json(
        decode("v1", "Secret", &secret),
        json!({
            "kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": "tls"},
            "data": {"bin": "AP8Q"},
            "type": "Opaque",
            "immutable": false
        }),
    );
}

#[test]
fn deployment_with_zero_replicas() {
    use k8s_pb::api::apps::v1 as apps;
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("d"),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            paused: Some(false),
            min_ready_seconds: Some(0),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: str_port("25%"),
                    max_surge: int_port(1),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    assert_json(
        decode("apps/v1", "Deployment", &d),
        json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 0,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}
            }
        }),
    );
}

#[test]
fn lease_micro_time() {
    use k8s_pb::api::coordination::v1 as coord;
    let lease = coord::Lease {
        metadata: Some(meta::ObjectMeta {
            name: s("node1"),
            namespace: s("kube-node-lease"),
            ..Default::default()
        }),
        spec: Some(coord::LeaseSpec {
            holder_identity: s("node1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_704_067_200),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        }),
    };
    assert_json(
        decode("coordination.k8s.io/v1", "Lease", &lease),
        json!({
            "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": "node1", "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": "node1",
                "leaseDurationSeconds": 40,
                "renewTime": "2024-01-01T00:00:00.123456Z"
            }
        }),
    );
}

#[test]
fn delete_options_in_a_group_version() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    for av in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        assert_json(
            decode(av, "DeleteOptions", &opts),
            json!({
                "kind": "DeleteOptions", "apiVersion": av,
                "gracePeriodSeconds": 0,
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }),
        );
    }
}

#[test]
fn scale_rolebinding_networkpolicy_pdb() {
    use k8s_pb::api::autoscaling::v1 as autoscaling;
    use k8s_pb::api::networking::v1 as net;
    use k8s_pb::api::policy::v1 as policy;
    use k8s_pb::api::rbac::v1 as rbac;

    let scale = autoscaling::Scale {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            ..Default::default()
        }),
        spec: Some(autoscaling::ScaleSpec { replicas: Some(3) }),
        status: None,
    };
    assert_json(
        decode("autoscaling/v1", "Scale", &scale),
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
               "metadata": {"name": "web"}, "spec": {"replicas": 3}}),
    );

    let rb = rbac::RoleBinding {
        metadata: Some(meta::ObjectMeta {
            name: s("rb"),
            ..Default::default()
        }),
        subjects: vec![rbac::Subject {
            kind: s("ServiceAccount"),
            name: s("default"),
            namespace: s("ns"),
            api_group: s(""),
        }],
        role_ref: Some(rbac::RoleRef {
            api_group: s("rbac.authorization.k8s.io"),
            kind: s("Role"),
            name: s("reader"),
        }),
    };
    assert_json(
        decode("rbac.authorization.k8s.io/v1", "RoleBinding", &rb),
        json!({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
               "metadata": {"name": "rb"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "ns"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}}),
    );

    let np = net::NetworkPolicy {
        metadata: Some(meta::ObjectMeta {
            name: s("np"),
            ..Default::default()
        }),
        spec: Some(net::NetworkPolicySpec {
            pod_selector: Some(meta::LabelSelector::default()),
            ingress: vec![net::NetworkPolicyIngressRule {
                ports: vec![net::NetworkPolicyPort {
                    protocol: s("TCP"),
                    port: str_port("http"),
                    end_port: None,
                }],
                from: vec![net::NetworkPolicyPeer {
                    ip_block: Some(net::IpBlock {
                        cidr: s("10.0.0.0/8"),
                        except: vec![],
                    }),
                    ..Default::default()
                }],
            }],
            policy_types: vec!["Ingress".into()],
            ..Default::default()
        }),
    };
    assert_json(
        decode("networking.k8s.io/v1", "NetworkPolicy", &np),
        json!({"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
               "metadata": {"name": "np"},
               "spec": {"podSelector": {},
                        "ingress": [{"ports": [{"protocol": "TCP", "port": "http"}],
                                     "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
                        "policyTypes": ["Ingress"]}}),
    );

    let pdb = policy::PodDisruptionBudget {
        metadata: Some(meta::ObjectMeta {
            name: s("pdb"),
            ..Default::default()
        }),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: str_port("50%"),
            ..Default::default()
        }),
        status: None,
    };
    assert_json(
        decode("policy/v1", "PodDisruptionBudget", &pdb),
        json!({"kind": "PodDisruptionBudget", "apiVersion": "policy/v1",
               "metadata": {"name": "pdb"}, "spec": {"minAvailable": "50%"}}),
    );
}

#[test]
fn managed_fields_and_owner_references() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("c"),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("rs"),
                uid: s("1234"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("v1"),
                time: Some(meta::Time {
                    seconds: Some(1_704_067_200),
                    nanos: None,
                }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:data":{".":{}}}"#.to_vec()),
                }),
                subresource: s(""),
            }],
            ..Default::default()
        }),
        binary_data: [("b".to_string(), b"hi".to_vec())].into(),
        ..Default::default()
    };
    assert_json(
        decode("v1", "ConfigMap", &cm),
        json!({"kind": "ConfigMap", "apiVersion": "v1",
               "metadata": {
                   "name": "c",
                   "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                        "uid": "1234", "controller": true, "blockOwnerDeletion": false}],
                   "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                                      "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                                      "fieldsV1": {"f:data": {".": {}}}}]
               },
               "binaryData": {"b": "aGk="}}),
    );
}
