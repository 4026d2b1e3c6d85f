//! The `kube-system/kube-dns` Service (k3s's CoreDNS labels, no selector)
//! and its Endpoints and EndpointSlice pointing at this server, written
//! through the API so the service proxy sends the cluster DNS address here.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::net::IpAddr;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";
/// Not the endpoint controller's value: it must leave this slice alone.
pub const MANAGED_BY: &str = "bosun-dns";

#[derive(Debug, Clone)]
pub struct Registration {
    /// The Service's ClusterIP (the address in pods' resolv.conf).
    pub cluster_ip: IpAddr,
    /// Where this server is reachable from pods (the node's InternalIP).
    pub endpoint_ip: IpAddr,
    pub port: u16,
    pub node_name: Option<String>,
}

fn service(r: &Registration) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/cluster-service": "true",
            "kubernetes.io/name": "CoreDNS",
        }},
        "spec": {
            "clusterIP": r.cluster_ip.to_string(),
            "ports": ports(r, true),
        },
    })
}

fn ports(r: &Registration, service: bool) -> Value {
    let mut out = Vec::new();
    for (name, proto) in [("dns", "UDP"), ("dns-tcp", "TCP")] {
        out.push(if service {
            json!({"name": name, "port": 53, "protocol": proto, "targetPort": r.port})
        } else {
            json!({"name": name, "port": r.port, "protocol": proto})
        });
    }
    Value::Array(out)
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Creates or corrects the Service, Endpoints and EndpointSlice; safe to
/// call again (only differences are written).
pub async fn register(client: &Client, r: &Registration) -> Result<(), kube::Error> {
    let svcs: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let want = service(r);
    let mut cur = svcs.get_opt(NAME).await?;
    if let Some(s) = &cur {
        let spec = s.spec.clone().unwrap_or_default();
        if spec.cluster_ip.as_deref() != Some(&r.cluster_ip.to_string()) {
            // The ClusterIP is immutable: a new cluster DNS address means
            // a new Service.
            tracing::warn!(
                old = ?spec.cluster_ip, new = %r.cluster_ip,
                "kube-dns has another ClusterIP; recreating it"
            );
            match svcs.delete(NAME, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
            cur = None;
        } else if serde_json::to_value(&spec.ports).ok().as_ref() != Some(&want["spec"]["ports"]) {
            let patch = json!({"spec": {"ports": want["spec"]["ports"]}});
            cur = Some(
                svcs.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?,
            );
        }
    }
    let svc = match cur {
        Some(s) => s,
        None => {
            let obj: Service = serde_json::from_value(want).map_err(kube::Error::SerdeError)?;
            match svcs.create(&PostParams::default(), &obj).await {
                Ok(s) => s,
                Err(kube::Error::Api(e)) if e.code == 409 => svcs.get(NAME).await?,
                Err(e) => return Err(e),
            }
        }
    };
    let uid = svc.metadata.uid.clone().unwrap_or_default();

    let ip = r.endpoint_ip.to_string();
    let ep_ports = ports(r, false);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns",
            "endpointslice.kubernetes.io/skip-mirror": "true",
        }},
        "subsets": [{"addresses": [{"ip": ip}], "ports": ep_ports.clone()}],
    });
    apply(
        &Api::<Endpoints>::namespaced(client.clone(), NAMESPACE),
        endpoints,
        &["subsets"],
    )
    .await?;

    let mut endpoint = json!({
        "addresses": [ip],
        "conditions": {"ready": true, "serving": true, "terminating": false},
    });
    if let Some(n) = &r.node_name {
        endpoint["nodeName"] = json!(n);
    }
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": NAME,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                "k8s-app": "kube-dns",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": NAME,
                "uid": uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": if r.endpoint_ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [endpoint],
        "ports": ep_ports,
    });
    apply(
        &Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
        slice,
        &["addressType", "endpoints", "ports", "metadata"],
    )
    .await?;
    Ok(())
}

/// Create `want`, or merge-patch the `fields` of the existing object
/// that differ.
async fn apply<K>(api: &Api<K>, want: Value, fields: &[&str]) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.get_opt(NAME).await? {
        None => {
            let obj: K = serde_json::from_value(want).map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(cur) => {
            let cur = serde_json::to_value(&cur).map_err(kube::Error::SerdeError)?;
            let mut patch = serde_json::Map::new();
            for f in fields {
                let differs = if *f == "metadata" {
                    cur["metadata"]["labels"] != want["metadata"]["labels"]
                        || cur["metadata"]["ownerReferences"] != want["metadata"]["ownerReferences"]
                } else {
                    cur[*f] != want[*f]
                };
                if differs {
                    let v = if *f == "metadata" {
                        json!({"labels": want["metadata"]["labels"],
                               "ownerReferences": want["metadata"]["ownerReferences"]})
                    } else {
                        want[*f].clone()
                    };
                    patch.insert(f.to_string(), v);
                }
            }
            if patch.is_empty() {
                return Ok(());
            }
            api.patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(&Value::Object(patch)),
            )
            .await?;
            Ok(())
        }
    }
}
