//! Decoding bodies through the `k8s-openapi` types, as the upstream API server
//! decodes into Go structs: wrong types are rejected, unknown fields are
//! found (for `fieldValidation`) and dropped.

use k8s_openapi::api;
use serde_json::Value;

/// The result of decoding a body through its typed form.
pub struct Decoded {
    /// The object as re-encoded from the typed form (unknown fields gone).
    pub object: Value,
    /// JSON paths of fields the typed form did not know.
    pub unknown_fields: Vec<String>,
}

fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &Value,
) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Decodes `v` as the built-in kind, returning the normalized object.
pub fn decode(group: &str, kind: &str, v: &Value) -> Result<Decoded, String> {
    let mut input = v.clone();
    normalize_quantities(&mut input, false);
    macro_rules! m {
        ($($g:literal, $k:literal => $t:ty;)*) => {
            match (group, kind) {
                $(($g, $k) => roundtrip::<$t>(&input),)*
                _ => Ok(input.clone()),
            }
        };
    }
    let out = m! {
        "", "Namespace" => api::core::v1::Namespace;
        "", "Pod" => api::core::v1::Pod;
        "", "Service" => api::core::v1::Service;
        "", "Endpoints" => api::core::v1::Endpoints;
        "", "ConfigMap" => api::core::v1::ConfigMap;
        "", "Secret" => api::core::v1::Secret;
        "", "ServiceAccount" => api::core::v1::ServiceAccount;
        "", "Node" => api::core::v1::Node;
        "", "Event" => api::core::v1::Event;
        "", "LimitRange" => api::core::v1::LimitRange;
        "", "ResourceQuota" => api::core::v1::ResourceQuota;
        "", "PersistentVolume" => api::core::v1::PersistentVolume;
        "", "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim;
        "", "Binding" => api::core::v1::Binding;
        "apps", "Deployment" => api::apps::v1::Deployment;
        "apps", "ReplicaSet" => api::apps::v1::ReplicaSet;
        "apps", "StatefulSet" => api::apps::v1::StatefulSet;
        "apps", "DaemonSet" => api::apps::v1::DaemonSet;
        "apps", "ControllerRevision" => api::apps::v1::ControllerRevision;
        "batch", "Job" => api::batch::v1::Job;
        "batch", "CronJob" => api::batch::v1::CronJob;
        "coordination.k8s.io", "Lease" => api::coordination::v1::Lease;
        "discovery.k8s.io", "EndpointSlice" => api::discovery::v1::EndpointSlice;
        "events.k8s.io", "Event" => api::events::v1::Event;
        "policy", "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget;
        "scheduling.k8s.io", "PriorityClass" => api::scheduling::v1::PriorityClass;
        "node.k8s.io", "RuntimeClass" => api::node::v1::RuntimeClass;
        "autoscaling", "Scale" => api::autoscaling::v1::Scale;
    }?;
    let mut unknown_fields = Vec::new();
    diff_fields(&input, &out, "", &mut unknown_fields);
    Ok(Decoded {
        object: out,
        unknown_fields,
    })
}

/// Fields present (and non-null) in `input` but absent from `typed`.
fn diff_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => diff_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    // Empty objects of optional structs may vanish in the
                    // typed form without being unknown.
                    None if v.as_object().is_some_and(|o| o.is_empty()) => {}
                    None if v.as_array().is_some_and(|o| o.is_empty()) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                diff_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// YAML users write `cpu: 1`; upstream accepts numbers for Quantity fields,
/// the k8s-openapi type does not, so turn numbers in quantity maps into strings.
fn normalize_quantities(v: &mut Value, in_quantity_map: bool) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                let qmap = matches!(
                    k.as_str(),
                    "limits"
                        | "requests"
                        | "capacity"
                        | "allocatable"
                        | "hard"
                        | "used"
                        | "overhead"
                        | "max"
                        | "min"
                        | "default"
                        | "defaultRequest"
                        | "maxLimitRequestRatio"
                );
                if in_quantity_map {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                        continue;
                    }
                }
                if matches!(k.as_str(), "sizeLimit" | "storage") {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                        continue;
                    }
                }
                normalize_quantities(child, qmap);
            }
        }
        Value::Array(a) => {
            for x in a {
                normalize_quantities(x, false);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_and_quantities() {
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","creationTimestamp":null},
            "spec":{"containers":[{"name":"c","image":"i","bogus":1,"resources":{"limits":{"cpu":1}}}]}});
        let d = decode("", "Pod", &pod).unwrap();
        assert_eq!(
            d.unknown_fields,
            vec!["spec.containers[0].bogus".to_string()]
        );
        assert_eq!(
            d.object.pointer("/spec/containers/0/resources/limits/cpu"),
            Some(&json!("1"))
        );
        assert!(d.object.pointer("/spec/containers/0/bogus").is_none());
    }

    #[test]
    fn wrong_type_is_error() {
        let cm =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p"},"data":{"a":1}});
        assert!(decode("", "ConfigMap", &cm).is_err());
    }
}
