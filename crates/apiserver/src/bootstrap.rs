//! Objects every cluster starts with: the system namespaces, the
//! `kubernetes` service and its endpoints, and the system priority classes.

use crate::error::ApiError;
use crate::registry::{Registry, WriteOptions};
use crate::resources;
use serde_json::{json, Value};

async fn ensure_one(
    reg: &Registry,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    let rt = resources::find(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no resource {plural}")))?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    if reg.get(rt, ns, name).await.is_ok() {
        return Ok(());
    }
    match reg.create(rt, ns, obj, &WriteOptions::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn ensure(reg: &Registry, host: &str, port: u16) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure_one(
            reg,
            "",
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let kubernetes_ip = reg.service_cidr.nth(1).to_string();
    ensure_one(reg, "", "services", Some("default"), json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": kubernetes_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    })).await?;
    let ip = if host.parse::<std::net::Ipv4Addr>().is_ok() {
        host.to_string()
    } else {
        "127.0.0.1".to_string()
    };
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let eprt =
        resources::find("", "v1", "endpoints").ok_or_else(|| ApiError::internal("no endpoints"))?;
    match reg.get(eprt, Some("default"), "kubernetes").await {
        Ok(cur) if cur.get("subsets") == ep.get("subsets") => {}
        Ok(_) => {
            reg.guaranteed_update(
                eprt,
                Some("default"),
                "kubernetes",
                &WriteOptions::default(),
                |cur| {
                    let mut n = cur.clone();
                    n["subsets"] = ep["subsets"].clone();
                    Ok((n, None))
                },
            )
            .await?;
        }
        Err(_) => ensure_one(reg, "", "endpoints", Some("default"), ep.clone()).await?,
    }
    // Its EndpointSlice, kept by the API server like upstream's endpoint
    // reconciler (no managed-by label: the endpointslice controller leaves
    // it alone), so the service proxy can route the ClusterIP.
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    let esrt = resources::find("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| ApiError::internal("no endpointslices"))?;
    match reg.get(esrt, Some("default"), "kubernetes").await {
        Ok(cur)
            if cur.get("endpoints") == slice.get("endpoints")
                && cur.get("ports") == slice.get("ports") => {}
        Ok(_) => {
            reg.guaranteed_update(
                esrt,
                Some("default"),
                "kubernetes",
                &WriteOptions::default(),
                |cur| {
                    let mut n = cur.clone();
                    n["endpoints"] = slice["endpoints"].clone();
                    n["ports"] = slice["ports"].clone();
                    Ok((n, None))
                },
            )
            .await?;
        }
        Err(_) => {
            ensure_one(
                reg,
                "discovery.k8s.io",
                "endpointslices",
                Some("default"),
                slice.clone(),
            )
            .await?
        }
    }
    for (name, value, desc) in [
        ("system-node-critical", 2000001000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        ensure_one(reg, "scheduling.k8s.io", "priorityclasses", None, json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": desc,
        })).await?;
    }
    Ok(())
}
