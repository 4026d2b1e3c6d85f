//! The Node object: registration, status (capacity, conditions, addresses,
//! nodeInfo) and the Lease heartbeat in `kube-node-lease`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::host;
use crate::util::now;

pub const KUBELET_VERSION: &str = "v1.33.5+bosun";

/// What the node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub control_plane: bool,
    pub data_dir: PathBuf,
    pub runtime_name: String,
    pub runtime_version: String,
    /// Why containers can't run here (empty: ready).
    pub problems: Vec<String>,
    pub internal_ip: Option<String>,
    /// Port of the agent's HTTPS API (0: not served).
    pub kubelet_port: u16,
}

/// The condition readings that change over time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Readings {
    ready: bool,
    ready_message: String,
    memory_pressure: bool,
    disk_pressure: bool,
    pid_pressure: bool,
}

fn readings(info: &NodeInfo) -> Readings {
    let mem_avail = host::meminfo("MemAvailable").unwrap_or(u64::MAX);
    let disk = host::fs_space(&info.data_dir);
    let pids = host::pid_usage();
    Readings {
        ready: info.problems.is_empty(),
        ready_message: if info.problems.is_empty() {
            "kubelet is posting ready status".into()
        } else {
            format!(
                "container runtime is not ready: {}",
                info.problems.join("; ")
            )
        },
        // The kubelet's default hard eviction thresholds.
        memory_pressure: mem_avail < 100 << 20,
        disk_pressure: disk.is_some_and(|(total, avail)| total > 0 && avail * 10 < total),
        pid_pressure: pids.is_some_and(|(used, max)| max > 0 && used * 10 > max * 9),
    }
}

fn resources(info: &NodeInfo) -> (Value, Value) {
    let cpu = host::cpu_count();
    let mem = host::meminfo("MemTotal").unwrap_or(0);
    let (disk, _) = host::fs_space(&info.data_dir).unwrap_or((0, 0));
    let capacity = json!({
        "cpu": cpu.to_string(),
        "memory": format!("{}Ki", mem / 1024),
        "pods": "110",
        "ephemeral-storage": format!("{}Ki", disk / 1024),
    });
    // Upstream's defaults: no reservations, hard eviction at
    // memory.available<100Mi and nodefs.available<10%.
    let alloc_mem = mem.saturating_sub(100 << 20);
    let alloc_disk = disk / 10 * 9;
    let allocatable = json!({
        "cpu": cpu.to_string(),
        "memory": format!("{}Ki", alloc_mem / 1024),
        "pods": "110",
        "ephemeral-storage": alloc_disk.to_string(),
    });
    (capacity, allocatable)
}

fn labels(info: &NodeInfo) -> Value {
    let mut l = json!({
        "kubernetes.io/hostname": info.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": host::arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": host::arch(),
    });
    if info.control_plane {
        l["node-role.kubernetes.io/control-plane"] = json!("");
    }
    l
}

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// A node that can't run containers keeps pods away with the taint the
/// node lifecycle controller would set.
fn spec(info: &NodeInfo) -> Value {
    if info.problems.is_empty() {
        json!({})
    } else {
        json!({"taints": [{"key": NOT_READY_TAINT, "effect": "NoSchedule"}]})
    }
}

/// Node status; `previous` supplies lastTransitionTime of unchanged conditions.
fn status(info: &NodeInfo, r: &Readings, previous: Option<&Value>) -> Value {
    let now = now();
    let prev_cond = |t: &str| -> Option<(String, String)> {
        previous?
            .get("conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or("").to_string(),
                    c["lastTransitionTime"].as_str().unwrap_or("").to_string(),
                )
            })
    };
    let cond = |t: &str, status: bool, reason: &str, msg: &str| {
        let s = if status { "True" } else { "False" };
        let ltt = match prev_cond(t) {
            Some((ps, ltt)) if ps == s && !ltt.is_empty() => ltt,
            _ => now.clone(),
        };
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": ltt})
    };
    let (capacity, allocatable) = resources(info);
    let mut addresses = Vec::new();
    if let Some(ip) = &info.internal_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": info.name}));
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": [
            if r.memory_pressure {
                cond("MemoryPressure", true, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            } else {
                cond("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
            },
            if r.disk_pressure {
                cond("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure")
            } else {
                cond("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            },
            if r.pid_pressure {
                cond("PIDPressure", true, "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
            } else {
                cond("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
            },
            if r.ready {
                cond("Ready", true, "KubeletReady", &r.ready_message)
            } else {
                cond("Ready", false, "KubeletNotReady", &r.ready_message)
            },
        ],
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.kubelet_port}},
        "nodeInfo": {
            "machineID": host::read_trimmed("/etc/machine-id"),
            "systemUUID": host::read_trimmed("/sys/class/dmi/id/product_uuid"),
            "bootID": host::read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": host::kernel_version(),
            "osImage": host::os_image(),
            "containerRuntimeVersion": format!("{}://{}", info.runtime_name, info.runtime_version),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": host::arch(),
        },
    })
}

/// Create the Node (or reconcile labels and status of an existing one).
pub async fn register(client: &Client, info: &NodeInfo) -> anyhow::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let r = readings(info);
    let existing = nodes.get_opt(&info.name).await?;
    let prev_status = existing
        .as_ref()
        .and_then(|n| serde_json::to_value(&n.status).ok());
    let st = status(info, &r, prev_status.as_ref());
    let node = match existing {
        None => {
            let obj = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": info.name, "labels": labels(info),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": spec(info),
                "status": st,
            });
            let obj: Node = serde_json::from_value(obj)?;
            match nodes.create(&PostParams::default(), &obj).await {
                Ok(n) => n,
                Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(&info.name).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Some(n) => n,
    };
    // Labels and taints on an existing node, status on both (create
    // drops status).
    let mut taints: Vec<Value> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    taints.retain(|t| t["key"] != NOT_READY_TAINT);
    taints.extend(spec(info)["taints"].as_array().cloned().unwrap_or_default());
    let patch = json!({"metadata": {"labels": labels(info)}, "spec": {"taints": taints}});
    nodes
        .patch(&info.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let node = nodes
        .patch_status(
            &info.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": st})),
        )
        .await
        .unwrap_or(node);
    Ok(node)
}

/// Post node status when the readings change, and at least every
/// `report_every`.
pub async fn status_loop(
    client: Client,
    info: Arc<NodeInfo>,
    check_every: Duration,
    report_every: Duration,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut last: Option<Readings> = Some(readings(&info));
    let mut last_post = Instant::now();
    loop {
        tokio::time::sleep(check_every).await;
        let r = readings(&info);
        if last.as_ref() == Some(&r) && last_post.elapsed() < report_every {
            continue;
        }
        let prev = match nodes.get_opt(&info.name).await {
            Ok(Some(n)) => serde_json::to_value(&n.status).ok(),
            Ok(None) => {
                // Deleted under us: register again.
                if let Err(e) = register(&client, &info).await {
                    tracing::warn!(error = %e, "re-registering node");
                }
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading node");
                continue;
            }
        };
        let st = status(&info, &r, prev.as_ref());
        match nodes
            .patch_status(
                &info.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": st})),
            )
            .await
        {
            Ok(_) => {
                last = Some(r);
                last_post = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "posting node status"),
        }
    }
}

fn micro_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Keep the node's Lease renewed every `interval`.
pub async fn lease_loop(client: Client, node: Node, interval: Duration) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let uid = node.metadata.uid.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut exists = false;
    loop {
        if !exists {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
            });
            match serde_json::from_value::<Lease>(lease) {
                Ok(l) => match leases.create(&PostParams::default(), &l).await {
                    Ok(_) => exists = true,
                    Err(kube::Error::Api(e)) if e.code == 409 => exists = true,
                    Err(e) => tracing::warn!(error = %e, "creating node lease"),
                },
                Err(e) => tracing::warn!(error = %e, "building node lease"),
            }
        }
        if exists {
            let patch = json!({"spec": {"holderIdentity": name, "renewTime": micro_now()}});
            match leases
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    exists = false;
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "renewing node lease"),
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(problems: Vec<String>) -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            control_plane: true,
            data_dir: "/".into(),
            runtime_name: "runc".into(),
            runtime_version: "1.1.5".into(),
            problems,
            internal_ip: Some("10.0.0.5".into()),
            kubelet_port: 10250,
        }
    }

    #[test]
    fn status_shape() {
        let i = info(vec![]);
        let r = readings(&i);
        let st = status(&i, &r, None);
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": st})).unwrap();
        let s = node.status.unwrap();
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(s.capacity.unwrap()["pods"].0, "110");
        assert_eq!(
            s.node_info.unwrap().container_runtime_version,
            "runc://1.1.5"
        );
        assert_eq!(labels(&i)["node-role.kubernetes.io/control-plane"], "");
    }

    #[test]
    fn not_ready_says_what_is_missing() {
        let i = info(vec!["the OCI runtime \"runc\" was not found".into()]);
        let st = status(&i, &readings(&i), None);
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "KubeletNotReady");
        assert!(ready["message"].as_str().unwrap().contains("runc"));
        // Transition time kept when the status is unchanged.
        let prev = json!({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        let st2 = status(&i, &readings(&i), Some(&prev));
        let ready2 = st2["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready2["lastTransitionTime"], "2020-01-01T00:00:00Z");
    }
}
