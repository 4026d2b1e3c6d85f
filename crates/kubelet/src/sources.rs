//! ConfigMaps, Secrets and downward API fields: what volumes and env
//! read, with the kubelet's error messages.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;
use kube::Client;

use crate::util::{limit, parse_quantity, request};

/// Fetches ConfigMaps and Secrets once per pod sync.
pub struct Sources {
    client: Client,
    namespace: String,
    configmaps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources {
    pub fn new(client: Client, namespace: &str) -> Self {
        Sources {
            client,
            namespace: namespace.to_string(),
            configmaps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// `Ok(None)`: not found.
    pub async fn configmap(&mut self, name: &str) -> Result<Option<ConfigMap>, String> {
        if let Some(c) = self.configmaps.get(name) {
            return Ok(c.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let c = api
            .get_opt(name)
            .await
            .map_err(|e| format!("failed to get configmap {name:?}: {e}"))?;
        self.configmaps.insert(name.to_string(), c.clone());
        Ok(c)
    }

    pub async fn secret(&mut self, name: &str) -> Result<Option<Secret>, String> {
        if let Some(c) = self.secrets.get(name) {
            return Ok(c.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let c = api
            .get_opt(name)
            .await
            .map_err(|e| format!("failed to get secret {name:?}: {e}"))?;
        self.secrets.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Every key of a ConfigMap as bytes (data and binaryData).
    pub async fn configmap_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        match self.configmap(name).await? {
            Some(cm) => {
                let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (k, v) in cm.data.unwrap_or_default() {
                    out.insert(k, v.into_bytes());
                }
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    out.insert(k, v.0);
                }
                Ok(Some(out))
            }
            None if optional => Ok(None),
            None => Err(format!("configmap {name:?} not found")),
        }
    }

    pub async fn secret_data(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        match self.secret(name).await? {
            Some(s) => {
                let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (k, v) in s.string_data.unwrap_or_default() {
                    out.insert(k, v.into_bytes());
                }
                for (k, v) in s.data.unwrap_or_default() {
                    out.insert(k, v.0);
                }
                Ok(Some(out))
            }
            None if optional => Ok(None),
            None => Err(format!("secret {name:?} not found")),
        }
    }
}

fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a downward API `fieldRef` (env: `volume = false`).
pub fn field_value(pod: &Pod, path: &str, host_ip: &str, volume: bool) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let sub = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    if let Some(k) = sub("metadata.labels['") {
        return Ok(m
            .labels
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = sub("metadata.annotations['") {
        return Ok(m
            .annotations
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" if volume => format_map(&m.labels.clone().unwrap_or_default()),
        "metadata.annotations" if volume => format_map(&m.annotations.clone().unwrap_or_default()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => {
            if spec.and_then(|s| s.host_network).unwrap_or(false) {
                host_ip.to_string()
            } else {
                String::new()
            }
        }
        other => return Err(format!("unsupported fieldRef {other:?}")),
    })
}

/// The value of a `resourceFieldRef` for container `c` (limits default
/// to the node's allocatable, as upstream).
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, String> {
    let node_cpu = crate::host::cpu_count() as f64;
    let node_mem = crate::host::meminfo("MemTotal").unwrap_or(0) as f64;
    let v = match resource {
        "limits.cpu" => limit(c, "cpu")
            .and_then(|q| parse_quantity(&q))
            .unwrap_or(node_cpu),
        "requests.cpu" => request(c, "cpu")
            .and_then(|q| parse_quantity(&q))
            .unwrap_or(0.0),
        "limits.memory" => limit(c, "memory")
            .and_then(|q| parse_quantity(&q))
            .unwrap_or(node_mem),
        "requests.memory" => request(c, "memory")
            .and_then(|q| parse_quantity(&q))
            .unwrap_or(0.0),
        "limits.ephemeral-storage" => limit(c, "ephemeral-storage")
            .and_then(|q| parse_quantity(&q))
            .unwrap_or(0.0),
        "requests.ephemeral-storage" => request(c, "ephemeral-storage")
            .and_then(|q| parse_quantity(&q))
            .unwrap_or(0.0),
        other => return Err(format!("unsupported resourceFieldRef {other:?}")),
    };
    let d = divisor
        .and_then(parse_quantity)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(format!("{}", (v / d).ceil() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "labels": {"b": "2", "a": "x\"y"}, "annotations": {"k": "v"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [
                {"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                                            "requests": {"memory": "32Mi"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn downward_fields() {
        let p = pod();
        let f = |path: &str, vol: bool| field_value(&p, path, "10.0.0.1", vol).unwrap();
        assert_eq!(f("metadata.name", false), "p");
        assert_eq!(f("metadata.namespace", false), "ns");
        assert_eq!(f("metadata.uid", false), "u1");
        assert_eq!(f("metadata.labels['b']", false), "2");
        assert_eq!(f("metadata.annotations['k']", false), "v");
        assert_eq!(f("spec.nodeName", false), "n1");
        assert_eq!(f("spec.serviceAccountName", false), "sa");
        assert_eq!(f("status.hostIP", false), "10.0.0.1");
        assert_eq!(f("status.podIP", false), "");
        // Volumes get every label, sorted, values quoted.
        assert_eq!(f("metadata.labels", true), "a=\"x\\\"y\"\nb=\"2\"");
        assert!(field_value(&p, "metadata.labels", "", false).is_err());
        assert!(field_value(&p, "spec.bogus", "", false).is_err());
    }

    #[test]
    fn resource_fields() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(resource_value(c, "limits.cpu", None).unwrap(), "1");
        assert_eq!(resource_value(c, "limits.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(
            resource_value(c, "limits.memory", Some("1Mi")).unwrap(),
            "64"
        );
        assert_eq!(
            resource_value(c, "requests.memory", None).unwrap(),
            (32u64 << 20).to_string()
        );
        assert!(resource_value(c, "limits.gpu", None).is_err());
    }
}
