//! Simulated ("hollow") nodes, like kwok: Node objects that register, keep
//! their Lease heartbeat, report Ready, and mark pods bound to them Running
//! (and finish their deletion), without running containers. An API client
//! only: everything goes through the Kubernetes API.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("watch: {0}")]
    Watch(#[from] watcher::Error),
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub count: usize,
    /// Node names are `{prefix}{index}`.
    pub prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// Lease renewal period (the kubelet's default is 10 s).
    pub lease_interval: Duration,
    /// Mark bound pods Running; off for pure scheduler benchmarks.
    pub run_pods: bool,
    /// Extra labels on every node.
    pub labels: Vec<(String, String)>,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            count: 1,
            prefix: "sim-node-".into(),
            cpu: "4".into(),
            memory: "32Gi".into(),
            pods: 110,
            lease_interval: Duration::from_secs(10),
            run_pods: true,
            labels: vec![],
        }
    }
}

fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn node_object(spec: &NodeSpec, name: &str) -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("type", "simulated"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    for (k, v) in &spec.labels {
        labels.insert(k.clone(), json!(v));
    }
    let resources = json!({"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods.to_string(), "ephemeral-storage": "100Gi"});
    let cond = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"bosun.dev/simulated": "true", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            // Documentation range (RFC 5737): simulated nodes are never contacted.
            "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "simulated",
                "osImage": "Bosun simulated node", "containerRuntimeVersion": "simulated://0",
                "kubeletVersion": "v1.33.5-bosun-sim", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    })
}

/// Registers the nodes (idempotently) and their leases.
pub async fn register(client: &Client, spec: &NodeSpec) -> Result<Vec<String>, SimError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let names: Vec<String> = (0..spec.count)
        .map(|i| format!("{}{i}", spec.prefix))
        .collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let nodes = nodes.clone();
            let leases = leases.clone();
            let spec = spec.clone();
            async move {
                let obj: Node = serde_json::from_value(node_object(&spec, &name)).map_err(kube::Error::SerdeError)?;
                match nodes.create(&PostParams::default(), &obj).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let status = json!({"status": obj.status});
                        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                    }
                    Err(e) => return Err(SimError::from(e)),
                }
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
                });
                let lease: Lease = serde_json::from_value(lease).map_err(kube::Error::SerdeError)?;
                match leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    Err(e) => Err(SimError::from(e)),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(names)
}

/// Renews every node's lease once per interval, spread over the interval.
async fn heartbeat(client: Client, names: Vec<String>, interval: Duration) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let per = interval
        .checked_div(names.len().max(1) as u32)
        .unwrap_or(interval);
    loop {
        for name in &names {
            let patch = json!({"spec": {"renewTime": now_micro()}});
            if let Err(e) = leases
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(node = %name, error = %e, "lease renewal failed");
            }
            tokio::time::sleep(per).await;
        }
    }
}

fn running_status(pod: &Pod, node_ip: &str) -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    json!({"name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true,
                        "restartCount": 0, "state": {"running": {"startedAt": now}}})
                })
                .collect()
        })
        .unwrap_or_default();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({"status": {
        "phase": "Running",
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": node_ip, "podIPs": [{"ip": node_ip}],
        "startTime": now,
        "containerStatuses": containers,
    }})
}

/// Drives the pods bound to our nodes: Running once bound, gone once deleted.
async fn pods_loop(client: Client, names: Vec<String>) -> Result<(), SimError> {
    let ours: Arc<HashSet<String>> = Arc::new(names.into_iter().collect());
    let all: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields("spec.nodeName!=");
    let mut stream = watcher::watcher(all, cfg).applied_objects().boxed();
    while let Some(pod) = stream.try_next().await? {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !ours.contains(&node) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&name, &dp).await {
                tracing::debug!(pod = %name, error = %e, "finishing deletion failed");
            }
            continue;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Pending" || phase.is_empty() {
            let mut st = running_status(&pod, "192.0.2.1");
            // A stale watch event must not restart a pod already marked
            // Running (its condition times would move): the version is a
            // precondition, and a conflict means a newer event is coming.
            st["metadata"] = json!({"resourceVersion": pod.metadata.resource_version});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&st))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "status update failed");
            }
        }
    }
    Ok(())
}

/// Registers the nodes and keeps them alive until the future is dropped.
pub async fn run(client: Client, spec: NodeSpec) -> Result<(), SimError> {
    let names = register(&client, &spec).await?;
    tracing::info!(count = names.len(), "simulated nodes registered");
    let hb = tokio::spawn(heartbeat(
        client.clone(),
        names.clone(),
        spec.lease_interval,
    ));
    let result = if spec.run_pods {
        pods_loop(client, names).await
    } else {
        std::future::pending::<()>().await;
        Ok(())
    };
    hb.abort();
    result
}
