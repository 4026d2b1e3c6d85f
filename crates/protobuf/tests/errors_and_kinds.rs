//! Malformed bodies give a DecodeError (never a panic), and every required built-in kind resolves.

use bosun_protobuf::{decode, DecodeError, MAGIC};

/// A length-delimited field.
fn ld(tag: u8, data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 128 && tag < 16);
    let mut v = vec![(tag << 3) | 2, data.len() as u8];
    v.extend_from_slice(data);
    v
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let tm = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
    let mut b = MAGIC.to_vec();
    b.extend(ld(1, &tm));
    b.extend(ld(2, raw));
    b
}

#[test]
fn no_magic() {
    assert_eq!(decode(b""), Err(DecodeError::MissingMagic));
    assert_eq!(decode(b"k8s"), Err(DecodeError::MissingMagic));
    assert_eq!(
        decode(br#"{"kind":"ConfigMap"}"#),
        Err(DecodeError::MissingMagic)
    );
}

#[test]
fn empty_envelope() {
    assert_eq!(decode(MAGIC), Err(DecodeError::MissingTypeMeta));
}

#[test]
fn truncated() {
    let raw = ld(1, &ld(1, b"name"));
    let body = envelope("v1", "ConfigMap", &raw);
    assert!(decode(&body).is_ok());
    assert_eq!(decode(&body[..body.len() - 1]), Err(DecodeError::Truncated));
    // A varint running off the end.
    let mut b = MAGIC.to_vec();
    b.extend([0x0a, 0xff]);
    assert_eq!(decode(&b), Err(DecodeError::Truncated));
    // An over-long varint.
    let mut b = MAGIC.to_vec();
    b.extend([
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ]);
    assert_eq!(decode(&b), Err(DecodeError::BadVarint));
}

#[test]
fn unknown_kind() {
    let body = envelope("v1", "Frobnicator", &[]);
    assert!(matches!(
        decode(&body),
        Err(DecodeError::UnknownKind { .. })
    ));
    let body = envelope("example.com/v1", "Widget", &[]);
    assert!(matches!(
        decode(&body),
        Err(DecodeError::UnknownKind { .. })
    ));
}

#[test]
fn wrong_wire_type() {
    // ConfigMap.metadata (1) as a varint.
    let body = envelope("v1", "ConfigMap", &[0x08, 0x01]);
    assert!(matches!(decode(&body), Err(DecodeError::WireType { .. })));
    // A group wire type.
    let body = envelope("v1", "ConfigMap", &[0x0b]);
    assert!(matches!(decode(&body), Err(DecodeError::BadKey { .. })));
}

#[test]
fn gzip_content_encoding_is_refused() {
    let mut body = envelope("v1", "ConfigMap", &[]);
    body.extend(ld(3, b"gzip"));
    assert_eq!(
        decode(&body),
        Err(DecodeError::UnsupportedEncoding("gzip".into()))
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = ld(1, &ld(1, b"c"));
    raw.extend([0xf8, 0x07, 0x05]); // field 127, varint
    raw.extend(ld(15, b"zzz"));
    let (_, _, v) = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}})
    );
}

#[test]
fn deep_nesting_is_refused() {
    // JSONSchemaProps.not (field 28) nests without bound; build a chain deeper than allowed
    // by hand-encoding lengths with multi-byte varints.
    fn wrap(inner: Vec<u8>) -> Vec<u8> {
        let mut v = vec![0xe2, 0x01]; // field 28, wire type 2
        let mut n = inner.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend(inner);
        v
    }
    let mut props = Vec::new();
    for _ in 0..200 {
        props = wrap(props);
    }
    let r = bosun_protobuf::decode_raw("apiextensions.k8s.io/v1", "JSONSchemaProps", &props);
    assert_eq!(r, Err(DecodeError::TooDeep));
}

#[test]
fn every_required_kind_decodes() {
    let kinds: &[(&str, &[&str])] = &[
        (
            "v1",
            &[
                "Pod",
                "Service",
                "ConfigMap",
                "Secret",
                "Namespace",
                "ServiceAccount",
                "Node",
                "Event",
                "Endpoints",
                "LimitRange",
                "ResourceQuota",
                "PersistentVolume",
                "PersistentVolumeClaim",
                "ReplicationController",
                "PodTemplate",
                "Binding",
            ],
        ),
        (
            "apps/v1",
            &[
                "Deployment",
                "ReplicaSet",
                "StatefulSet",
                "DaemonSet",
                "ControllerRevision",
            ],
        ),
        ("batch/v1", &["Job", "CronJob"]),
        ("coordination.k8s.io/v1", &["Lease"]),
        ("discovery.k8s.io/v1", &["EndpointSlice"]),
        ("events.k8s.io/v1", &["Event"]),
        ("policy/v1", &["PodDisruptionBudget", "Eviction"]),
        ("scheduling.k8s.io/v1", &["PriorityClass"]),
        ("node.k8s.io/v1", &["RuntimeClass"]),
        ("autoscaling/v1", &["Scale", "HorizontalPodAutoscaler"]),
        (
            "rbac.authorization.k8s.io/v1",
            &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
        ),
        (
            "networking.k8s.io/v1",
            &["Ingress", "IngressClass", "NetworkPolicy"],
        ),
        ("storage.k8s.io/v1", &["StorageClass"]),
        ("authentication.k8s.io/v1", &["TokenRequest"]),
    ];
    // metadata (field 1) = ObjectMeta { name (1) = "x" }
    let raw = ld(1, &ld(1, b"x"));
    for (av, ks) in kinds {
        for k in *ks {
            assert!(bosun_protobuf::supports(av, k), "{av} {k}");
            let (_, _, v) =
                decode(&envelope(av, k, &raw)).unwrap_or_else(|e| panic!("{av} {k}: {e}"));
            assert_eq!(v["metadata"]["name"], "x", "{av} {k}");
            assert_eq!(v["kind"], *k);
            assert_eq!(v["apiVersion"], *av);
        }
    }
    let (_, _, v) = decode(&envelope("v1", "DeleteOptions", &[0x08, 0x00])).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
    );
}
