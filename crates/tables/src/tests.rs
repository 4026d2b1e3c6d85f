use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::{column_definitions, human_duration, row_cells};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-10T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// RFC3339 timestamp `secs` seconds before `now()`.
fn ago(secs: i64) -> String {
    (now() - Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn names(group: &str, resource: &str) -> Vec<String> {
    column_definitions(group, resource)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn wide_names(group: &str, resource: &str) -> Vec<String> {
    column_definitions(group, resource)
        .iter()
        .filter(|c| c["priority"] == 1)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn row(group: &str, resource: &str, obj: Value) -> Vec<Value> {
    let cells = row_cells(group, resource, &obj, now());
    assert_eq!(
        cells.len(),
        column_definitions(group, resource).len(),
        "cell count must match column count for {group}/{resource}"
    );
    cells
}

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_secs)})
}

// ------------------------------------------------------------ human_duration

#[test]
fn human_duration_boundaries() {
    let cases: &[(i64, &str)] = &[
        (-2, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (1, "1s"),
        (119, "119s"),
        (120, "2m"),
        (121, "2m1s"),
        (182, "3m2s"),
        (599, "9m59s"),
        (600, "10m"),
        (601, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (4 * 3600 + 30 * 60, "4h30m"),
        (8 * 3600 - 1, "7h59m"),
        (8 * 3600, "8h"),
        (48 * 3600 - 1, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400 - 1, "7d23h"),
        (8 * 86400, "8d"),
        (2 * 365 * 86400 - 1, "729d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 86400 * 5, "2y5d"),
        (8 * 365 * 86400 - 1, "7y364d"),
        (8 * 365 * 86400, "8y"),
        (10 * 365 * 86400, "10y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::seconds(*secs)), *want, "{secs}s");
    }
    // Sub-second negative skew truncates toward zero, like Go's int(d.Seconds()).
    assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
    assert_eq!(human_duration(Duration::milliseconds(-2500)), "<invalid>");
    assert_eq!(human_duration(Duration::milliseconds(1999)), "1s");
}

// ------------------------------------------------------------ column shapes

#[test]
fn first_column_is_name() {
    let c = &column_definitions("", "pods")[0];
    assert_eq!(c["name"], "Name");
    assert_eq!(c["type"], "string");
    assert_eq!(c["format"], "name");
    assert_eq!(c["priority"], 0);
    assert!(c["description"]
        .as_str()
        .unwrap()
        .starts_with("Name must be unique within a namespace."));
}

#[test]
fn column_names_match_upstream() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "",
            "pods",
            &[
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates",
            ],
        ),
        ("", "namespaces", &["Name", "Status", "Age"]),
        (
            "",
            "nodes",
            &[
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime",
            ],
        ),
        (
            "",
            "services",
            &[
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector",
            ],
        ),
        ("", "endpoints", &["Name", "Endpoints", "Age"]),
        (
            "discovery.k8s.io",
            "endpointslices",
            &["Name", "AddressType", "Ports", "Endpoints", "Age"],
        ),
        ("", "configmaps", &["Name", "Data", "Age"]),
        ("", "secrets", &["Name", "Type", "Data", "Age"]),
        ("", "serviceaccounts", &["Name", "Secrets", "Age"]),
        (
            "",
            "events",
            &[
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name",
            ],
        ),
        ("", "limitranges", &["Name", "Created At"]),
        ("", "resourcequotas", &["Name", "Request", "Limit", "Age"]),
        (
            "",
            "persistentvolumes",
            &[
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "VolumeMode",
            ],
        ),
        (
            "",
            "persistentvolumeclaims",
            &[
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode",
            ],
        ),
        (
            "apps",
            "deployments",
            &[
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
        ),
        (
            "apps",
            "replicasets",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
        ),
        (
            "apps",
            "statefulsets",
            &["Name", "Ready", "Age", "Containers", "Images"],
        ),
        (
            "apps",
            "daemonsets",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
        ),
        (
            "apps",
            "controllerrevisions",
            &["Name", "Controller", "Revision", "Age"],
        ),
        (
            "batch",
            "jobs",
            &[
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
        ),
        (
            "batch",
            "cronjobs",
            &[
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
        ),
        ("coordination.k8s.io", "leases", &["Name", "Holder", "Age"]),
        (
            "policy",
            "poddisruptionbudgets",
            &[
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age",
            ],
        ),
        (
            "scheduling.k8s.io",
            "priorityclasses",
            &["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"],
        ),
        ("node.k8s.io", "runtimeclasses", &["Name", "Handler", "Age"]),
        ("example.com", "widgets", &["Name", "Age"]),
        ("", "widgets", &["Name", "Age"]),
    ];
    for (group, resource, want) in cases {
        assert_eq!(names(group, resource), *want, "{group}/{resource}");
    }
    assert_eq!(
        names("events.k8s.io", "events"),
        names("", "events"),
        "events.k8s.io uses the core event printer"
    );
}

#[test]
fn wide_columns_have_priority_one() {
    assert_eq!(
        wide_names("", "pods"),
        ["IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    assert_eq!(
        wide_names("", "nodes"),
        [
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    assert_eq!(wide_names("", "services"), ["Selector"]);
    assert_eq!(
        wide_names("", "events"),
        ["Subobject", "Source", "First Seen", "Count", "Name"]
    );
    assert_eq!(wide_names("", "persistentvolumes"), ["VolumeMode"]);
    assert_eq!(wide_names("", "persistentvolumeclaims"), ["VolumeMode"]);
    assert_eq!(
        wide_names("apps", "deployments"),
        ["Containers", "Images", "Selector"]
    );
    assert_eq!(wide_names("apps", "statefulsets"), ["Containers", "Images"]);
    assert_eq!(
        wide_names("batch", "cronjobs"),
        ["Containers", "Images", "Selector"]
    );
    // Upstream declares PreemptionPolicy without a priority.
    assert!(wide_names("scheduling.k8s.io", "priorityclasses").is_empty());
    // Types & the date column of the default convertor.
    let lr = column_definitions("", "limitranges");
    assert_eq!(lr[1]["type"], "date");
    let ds = column_definitions("apps", "daemonsets");
    assert_eq!(ds[1]["type"], "integer");
    let cj = column_definitions("batch", "cronjobs");
    assert_eq!(cj[3]["type"], "boolean");
    assert_eq!(column_definitions("", "pods")[3]["type"], "string");
}

// ------------------------------------------------------------ pods

fn pod(status: Value) -> Value {
    json!({
        "metadata": meta("nginx", 300),
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "nginx", "image": "nginx:1.25"}]
        },
        "status": status
    })
}

fn pod_status_cell(obj: Value) -> String {
    row("", "pods", obj)[2].as_str().unwrap().to_string()
}

#[test]
fn pod_running_full_row() {
    let obj = pod(json!({
        "phase": "Running",
        "podIP": "10.244.0.5",
        "podIPs": [{"ip": "10.244.0.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{
            "name": "nginx", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": ago(290)}}
        }]
    }));
    assert_eq!(
        row("", "pods", obj),
        vec![
            json!("nginx"),
            json!("1/1"),
            json!("Running"),
            json!("0"),
            json!("5m"),
            json!("10.244.0.5"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>"),
        ]
    );
}

#[test]
fn pod_pending_defaults() {
    // No status at all: Pending, 0/1, no IP/node.
    let obj = json!({"metadata": {"name": "p", "creationTimestamp": ago(5)},
                     "spec": {"containers": [{"name": "a"}]}});
    assert_eq!(
        row("", "pods", obj),
        vec![
            json!("p"),
            json!("0/1"),
            json!("Pending"),
            json!("0"),
            json!("5s"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
        ]
    );
}

#[test]
fn pod_container_creating() {
    let obj = pod(json!({
        "phase": "Pending",
        "containerStatuses": [{
            "name": "nginx", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        }]
    }));
    assert_eq!(pod_status_cell(obj), "ContainerCreating");
}

#[test]
fn pod_crash_loop_with_restart_age() {
    let obj = pod(json!({
        "phase": "Running",
        "containerStatuses": [{
            "name": "nginx", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                         "finishedAt": ago(45)}}
        }]
    }));
    let cells = row("", "pods", obj);
    assert_eq!(cells[1], "0/1");
    assert_eq!(cells[2], "CrashLoopBackOff");
    assert_eq!(cells[3], "4 (45s ago)");
}

#[test]
fn pod_restarts_without_finished_at_is_plain_number() {
    let obj = pod(json!({
        "phase": "Running",
        "containerStatuses": [{
            "name": "nginx", "ready": true, "restartCount": 2,
            "state": {"running": {}}
        }]
    }));
    assert_eq!(row("", "pods", obj)[3], "2");
}

#[test]
fn pod_image_pull_backoff() {
    let obj = pod(json!({
        "phase": "Pending",
        "containerStatuses": [{"name": "nginx", "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff"}}}]
    }));
    assert_eq!(pod_status_cell(obj), "ImagePullBackOff");
}

#[test]
fn pod_completed_and_error_states() {
    let completed = pod(json!({
        "phase": "Succeeded",
        "containerStatuses": [{"name": "nginx", "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    }));
    assert_eq!(pod_status_cell(completed), "Completed");

    let signal = pod(json!({
        "phase": "Failed",
        "containerStatuses": [{"name": "nginx",
            "state": {"terminated": {"exitCode": 137, "signal": 9}}}]
    }));
    assert_eq!(pod_status_cell(signal), "Signal:9");

    let exit = pod(json!({
        "phase": "Failed",
        "containerStatuses": [{"name": "nginx",
            "state": {"terminated": {"exitCode": 3}}}]
    }));
    assert_eq!(pod_status_cell(exit), "ExitCode:3");

    let oom = pod(json!({
        "phase": "Running",
        "containerStatuses": [{"name": "nginx",
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    }));
    assert_eq!(pod_status_cell(oom), "OOMKilled");
}

#[test]
fn pod_completed_with_running_sibling() {
    let mut obj = pod(json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [
            {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "ready": true, "state": {"running": {}}}
        ]
    }));
    obj["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
    // Statuses are walked last-to-first, so "a"'s Completed wins, then is
    // turned into NotReady because "b" is running but the pod isn't Ready.
    let cells = row("", "pods", obj.clone());
    assert_eq!(cells[1], "1/2");
    assert_eq!(cells[2], "NotReady");

    obj["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    assert_eq!(pod_status_cell(obj), "Running");
}

#[test]
fn pod_init_containers() {
    let base = |init_statuses: Value| {
        json!({
            "metadata": meta("web", 60),
            "spec": {
                "initContainers": [{"name": "init-a"}, {"name": "init-b"}],
                "containers": [{"name": "app"}]
            },
            "status": {
                "phase": "Pending",
                "initContainerStatuses": init_statuses,
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]
            }
        })
    };
    // First init container running.
    let obj = base(json!([
        {"name": "init-a", "state": {"running": {}}},
        {"name": "init-b", "state": {"waiting": {"reason": "PodInitializing"}}}
    ]));
    assert_eq!(pod_status_cell(obj), "Init:0/2");

    // First done, second running.
    let obj = base(json!([
        {"name": "init-a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "init-b", "state": {"running": {}}}
    ]));
    assert_eq!(pod_status_cell(obj), "Init:1/2");

    // Failed init container.
    let obj = base(json!([
        {"name": "init-a", "restartCount": 3,
         "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(130)}}}
    ]));
    let cells = row("", "pods", obj);
    assert_eq!(cells[2], "Init:Error");
    assert_eq!(cells[3], "3 (2m10s ago)");

    // Failed without reason.
    let obj = base(json!([
        {"name": "init-a", "state": {"terminated": {"exitCode": 2}}}
    ]));
    assert_eq!(pod_status_cell(obj), "Init:ExitCode:2");
    let obj = base(json!([
        {"name": "init-a", "state": {"terminated": {"exitCode": 0, "signal": 15}}}
    ]));
    // exitCode 0 counts as success regardless of the signal; with no further
    // init statuses reported the app container's state shows through.
    assert_eq!(pod_status_cell(obj), "PodInitializing");
    let obj = base(json!([
        {"name": "init-a", "state": {"terminated": {"exitCode": 143, "signal": 15}}}
    ]));
    assert_eq!(pod_status_cell(obj), "Init:Signal:15");

    // Waiting with a reason.
    let obj = base(json!([
        {"name": "init-a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    ]));
    assert_eq!(pod_status_cell(obj), "Init:CrashLoopBackOff");

    // All done: falls through to the app container's waiting reason.
    let obj = base(json!([
        {"name": "init-a", "state": {"terminated": {"exitCode": 0}}},
        {"name": "init-b", "state": {"terminated": {"exitCode": 0}}}
    ]));
    assert_eq!(pod_status_cell(obj), "PodInitializing");
}

#[test]
fn pod_sidecar_init_container_counts() {
    let obj = json!({
        "metadata": meta("web", 60),
        "spec": {
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true,
                "restartCount": 1, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
        }
    });
    let cells = row("", "pods", obj);
    assert_eq!(cells[1], "2/2");
    assert_eq!(cells[2], "Running");
    assert_eq!(cells[3], "1 (10m ago)");
}

#[test]
fn pod_terminating_and_unknown() {
    let mut obj = pod(json!({
        "phase": "Running",
        "containerStatuses": [{"name": "nginx", "ready": true, "state": {"running": {}}}]
    }));
    obj["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(pod_status_cell(obj.clone()), "Terminating");

    obj["status"]["reason"] = json!("NodeLost");
    assert_eq!(pod_status_cell(obj.clone()), "Unknown");

    // Terminal phases are not shown as Terminating.
    let mut done = pod(json!({
        "phase": "Succeeded",
        "containerStatuses": [{"name": "nginx", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    }));
    done["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(pod_status_cell(done), "Completed");
}

#[test]
fn pod_status_reason_and_scheduling_gated() {
    let evicted = pod(json!({"phase": "Failed", "reason": "Evicted"}));
    assert_eq!(pod_status_cell(evicted), "Evicted");
    let gated = pod(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
    }));
    assert_eq!(pod_status_cell(gated), "SchedulingGated");
}

#[test]
fn pod_wide_cells() {
    let obj = json!({
        "metadata": meta("p", 10),
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "a"}],
            "readinessGates": [{"conditionType": "example.com/ready"}, {"conditionType": "example.com/lb"}]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.9",
            "nominatedNodeName": "n2",
            "conditions": [{"type": "example.com/ready", "status": "True"},
                           {"type": "example.com/lb", "status": "False"}]
        }
    });
    let cells = row("", "pods", obj);
    assert_eq!(
        cells[5..],
        [json!("10.0.0.9"), json!("n1"), json!("n2"), json!("1/2")]
    );
}

// ------------------------------------------------------------ core

#[test]
fn namespace_row() {
    let obj = json!({"metadata": meta("kube-system", 86400 * 3), "status": {"phase": "Active"}});
    assert_eq!(
        row("", "namespaces", obj),
        [json!("kube-system"), json!("Active"), json!("3d")]
    );
    let terminating = json!({"metadata": meta("x", 10), "status": {"phase": "Terminating"}});
    assert_eq!(row("", "namespaces", terminating)[1], "Terminating");
}

#[test]
fn node_rows() {
    let obj = json!({
        "metadata": {"name": "cp-1", "creationTimestamp": ago(86400 * 20),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true",
                       "kubernetes.io/hostname": "cp-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Ubuntu 24.04 LTS",
                         "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://1.7.0"}
        }
    });
    assert_eq!(
        row("", "nodes", obj),
        [
            json!("cp-1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,etcd"),
            json!("20d"),
            json!("v1.33.0"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Ubuntu 24.04 LTS"),
            json!("6.8.0"),
            json!("containerd://1.7.0"),
        ]
    );
    let not_ready = json!({"metadata": {"name": "w", "labels": {"kubernetes.io/role": "worker"}},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let cells = row("", "nodes", not_ready);
    assert_eq!(cells[1], "NotReady");
    assert_eq!(cells[2], "worker");
    assert_eq!(cells[3], "<unknown>");
    assert_eq!(cells[7], "<unknown>");
    let bare = json!({"metadata": {"name": "b"}});
    let cells = row("", "nodes", bare);
    assert_eq!(cells[1], "Unknown");
    assert_eq!(cells[2], "<none>");
}

#[test]
fn service_rows() {
    let cluster_ip = json!({
        "metadata": meta("web", 120),
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                 "selector": {"app": "web", "tier": "fe"}}
    });
    assert_eq!(
        row("", "services", cluster_ip),
        [
            json!("web"),
            json!("ClusterIP"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80/TCP,53/UDP"),
            json!("2m"),
            json!("app=web,tier=fe"),
        ]
    );
    let node_port = json!({
        "metadata": meta("np", 10),
        "spec": {"type": "NodePort", "clusterIPs": ["10.96.1.1"], "externalIPs": ["1.2.3.4"],
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}
    });
    let cells = row("", "services", node_port);
    assert_eq!(cells[3], "1.2.3.4");
    assert_eq!(cells[4], "80:30080/TCP");
    assert_eq!(cells[6], "<none>");

    let lb = json!({"metadata": meta("lb", 10),
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.2.2", "ports": [{"port": 443, "nodePort": 31443}]}});
    let cells = row("", "services", lb.clone());
    assert_eq!(cells[3], "<pending>");
    assert_eq!(cells[4], "443:31443/TCP");
    let mut lb_ready = lb;
    lb_ready["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "a.example.com"}]}});
    assert_eq!(
        row("", "services", lb_ready)[3],
        "203.0.113.9,a.example.com"
    );

    let headless =
        json!({"metadata": meta("h", 10), "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
    let cells = row("", "services", headless);
    assert_eq!(cells[1], "ClusterIP");
    assert_eq!(cells[2], "None");
    assert_eq!(cells[4], "<none>");

    let ext = json!({"metadata": meta("e", 10), "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let cells = row("", "services", ext);
    assert_eq!(cells[2], "<none>");
    assert_eq!(cells[3], "db.example.com");
}

#[test]
fn endpoints_rows() {
    let obj = json!({
        "metadata": meta("web", 60),
        "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}],
            "ports": [{"port": 80}, {"port": 443}]
        }, {
            "addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]
        }]
    });
    assert_eq!(
        row("", "endpoints", obj),
        [
            json!("web"),
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 4 more..."),
            json!("60s")
        ]
    );
    let v6 = json!({"metadata": meta("v6", 1), "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(row("", "endpoints", v6)[1], "[fd00::1]:80");
    let headless =
        json!({"metadata": meta("h", 1), "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
    assert_eq!(row("", "endpoints", headless)[1], "10.0.0.1");
    let empty = json!({"metadata": meta("e", 1)});
    assert_eq!(row("", "endpoints", empty)[1], "<none>");
}

#[test]
fn endpointslice_rows() {
    let obj = json!({
        "metadata": meta("web-abc", 60),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}, {"name": "named"}, {}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
                      {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4", "10.0.0.5"]}]
    });
    assert_eq!(
        row("discovery.k8s.io", "endpointslices", obj),
        [
            json!("web-abc"),
            json!("IPv4"),
            json!("80,named,*"),
            json!("10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."),
            json!("60s")
        ]
    );
    let empty = json!({"metadata": meta("e", 1), "addressType": "IPv6"});
    let cells = row("discovery.k8s.io", "endpointslices", empty);
    assert_eq!(cells[2], "<unset>");
    assert_eq!(cells[3], "<unset>");
}

#[test]
fn configmap_secret_serviceaccount_rows() {
    let cm = json!({"metadata": meta("cfg", 30), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(
        row("", "configmaps", cm),
        [json!("cfg"), json!(3), json!("30s")]
    );
    let cm_empty = json!({"metadata": meta("kube-root-ca.crt", 30)});
    assert_eq!(row("", "configmaps", cm_empty)[1], 0);

    let secret = json!({"metadata": meta("tls", 7200), "type": "kubernetes.io/tls",
                        "data": {"tls.crt": "x", "tls.key": "y"}});
    assert_eq!(
        row("", "secrets", secret),
        [
            json!("tls"),
            json!("kubernetes.io/tls"),
            json!(2),
            json!("120m")
        ]
    );

    let sa = json!({"metadata": meta("default", 60), "secrets": [{"name": "default-token"}]});
    assert_eq!(
        row("", "serviceaccounts", sa),
        [json!("default"), json!(1), json!("60s")]
    );
    let sa0 = json!({"metadata": meta("default", 60)});
    assert_eq!(row("", "serviceaccounts", sa0)[1], 0);
}

#[test]
fn core_event_rows() {
    let obj = json!({
        "metadata": meta("nginx.17a", 300),
        "involvedObject": {"kind": "Pod", "name": "nginx", "namespace": "default",
                           "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled", "type": "Normal", "message": "  Successfully pulled image \"nginx\"\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(300), "lastTimestamp": ago(30), "count": 3
    });
    assert_eq!(
        row("", "events", obj),
        [
            json!("30s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/nginx"),
            json!("spec.containers{nginx}"),
            json!("kubelet, node-1"),
            json!("Successfully pulled image \"nginx\""),
            json!("5m"),
            json!(3),
            json!("nginx.17a"),
        ]
    );
    // New-style event: eventTime only, reporting controller, no count.
    let obj = json!({
        "metadata": meta("e2", 10),
        "involvedObject": {"kind": "Node"},
        "reason": "Scheduled", "type": "Normal", "message": "ok",
        "eventTime": "2024-01-10T11:59:50.123456Z",
        "reportingComponent": "", "reportingController": "default-scheduler", "reportingInstance": ""
    });
    let cells = row("", "events", obj);
    assert_eq!(cells[0], "9s");
    assert_eq!(cells[3], "node");
    assert_eq!(cells[5], "default-scheduler");
    assert_eq!(cells[7], "9s");
    assert_eq!(cells[8], 1);
    // Series overrides last seen and count.
    let obj = json!({
        "metadata": meta("e3", 10),
        "involvedObject": {"kind": "Pod", "name": "x"},
        "eventTime": ago(600),
        "series": {"count": 7, "lastObservedTime": ago(5)}
    });
    let cells = row("", "events", obj);
    assert_eq!(cells[0], "5s");
    assert_eq!(cells[7], "10m");
    assert_eq!(cells[8], 7);
    let missing = json!({"metadata": {"name": "e4"}});
    let cells = row("", "events", missing);
    assert_eq!(cells[0], "<unknown>");
    assert_eq!(cells[3], "");
}

#[test]
fn events_v1_rows() {
    let obj = json!({
        "metadata": meta("nginx.17b", 100),
        "regarding": {"kind": "Deployment", "name": "web", "fieldPath": ""},
        "reason": "ScalingReplicaSet", "type": "Normal",
        "note": "Scaled up replica set web-abc to 3",
        "eventTime": null,
        "reportingController": "deployment-controller", "reportingInstance": "",
        "deprecatedSource": {"component": "deployment-controller"},
        "deprecatedFirstTimestamp": ago(100), "deprecatedLastTimestamp": ago(100),
        "deprecatedCount": 1
    });
    assert_eq!(
        row("events.k8s.io", "events", obj),
        [
            json!("100s"),
            json!("Normal"),
            json!("ScalingReplicaSet"),
            json!("deployment/web"),
            json!(""),
            json!("deployment-controller"),
            json!("Scaled up replica set web-abc to 3"),
            json!("100s"),
            json!(1),
            json!("nginx.17b"),
        ]
    );
}

#[test]
fn limitrange_created_at() {
    let obj = json!({"metadata": {"name": "limits", "creationTimestamp": "2024-01-09T08:07:06Z"}});
    assert_eq!(
        row("", "limitranges", obj),
        [json!("limits"), json!("2024-01-09T08:07:06Z")]
    );
}

#[test]
fn resourcequota_rows() {
    let obj = json!({
        "metadata": meta("quota", 3600),
        "spec": {"hard": {"pods": "10"}},
        "status": {
            "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "limits.cpu": "8",
                     "requests.memory": "4Gi"},
            "used": {"pods": "2", "requests.cpu": "500m", "limits.cpu": "1", "requests.memory": "256Mi"}
        }
    });
    assert_eq!(
        row("", "resourcequotas", obj),
        [
            json!("quota"),
            json!("pods: 2/10, requests.cpu: 500m/4, requests.memory: 256Mi/4Gi"),
            json!("limits.cpu: 1/8, limits.memory: 0/8Gi"),
            json!("60m"),
        ]
    );
    // Before the quota controller has filled in status.
    let fresh = json!({"metadata": meta("q", 1), "spec": {"hard": {"pods": "10", "services": 5}}});
    assert_eq!(
        row("", "resourcequotas", fresh)[1],
        "pods: 0/10, services: 0/5"
    );
}

#[test]
fn persistentvolume_rows() {
    let obj = json!({
        "metadata": meta("pv-1", 86400),
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
                 "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}
    });
    assert_eq!(
        row("", "persistentvolumes", obj),
        [
            json!("pv-1"),
            json!("10Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("standard"),
            json!("<unset>"),
            json!(""),
            json!("24h"),
            json!("Filesystem"),
        ]
    );
    let mut del = json!({"metadata": meta("pv-2", 1),
        "spec": {"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"], "volumeAttributesClassName": "gold"},
        "status": {"phase": "Released", "reason": "Oops"}});
    del["metadata"]["deletionTimestamp"] = json!(ago(0));
    del["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "legacy"});
    let cells = row("", "persistentvolumes", del);
    assert_eq!(cells[1], "0");
    assert_eq!(cells[2], "ROX,RWOP");
    assert_eq!(cells[4], "Terminating");
    assert_eq!(cells[6], "legacy");
    assert_eq!(cells[7], "gold");
    assert_eq!(cells[8], "Oops");
    assert_eq!(cells[10], "<unset>");
}

#[test]
fn persistentvolumeclaim_rows() {
    let bound = json!({
        "metadata": meta("data", 600),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": "standard", "volumeName": "pvc-123", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
    });
    assert_eq!(
        row("", "persistentvolumeclaims", bound),
        [
            json!("data"),
            json!("Bound"),
            json!("pvc-123"),
            json!("1Gi"),
            json!("RWO"),
            json!("standard"),
            json!("<unset>"),
            json!("10m"),
            json!("Filesystem"),
        ]
    );
    let pending = json!({"metadata": meta("p", 5),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"}});
    let cells = row("", "persistentvolumeclaims", pending);
    assert_eq!(cells[2..6], [json!(""), json!(""), json!(""), json!("")]);
}

// ------------------------------------------------------------ apps

fn template(containers: Value) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
}

#[test]
fn deployment_rows() {
    let obj = json!({
        "metadata": meta("web", 3600 * 5 + 60 * 7),
        "spec": {"replicas": 3,
                 "selector": {"matchLabels": {"app": "web"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                                   {"key": "canary", "operator": "DoesNotExist"}]},
                 "template": template(json!([{"name": "web", "image": "nginx:1.25"},
                                             {"name": "sidecar", "image": "envoy:1.30"}]))},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        row("apps", "deployments", obj),
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("5h7m"),
            json!("web,sidecar"),
            json!("nginx:1.25,envoy:1.30"),
            json!("app=web,!canary,tier in (be,fe)"),
        ]
    );
    // Fresh deployment without status; selector left empty.
    let fresh = json!({"metadata": meta("d", 1), "spec": {"template": template(json!([]))}});
    let cells = row("apps", "deployments", fresh);
    assert_eq!(cells[1], "0/1");
    assert_eq!(cells[2], 0);
    assert_eq!(cells[7], "");
    let bad = json!({"metadata": meta("d", 1), "spec": {"replicas": 0,
        "selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
    let cells = row("apps", "deployments", bad);
    assert_eq!(cells[1], "0/0");
    assert_eq!(cells[7], "<invalid>");
}

#[test]
fn replicaset_rows() {
    let obj = json!({
        "metadata": meta("web-6d4b", 600),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "6d4b"}},
                 "template": template(json!([{"name": "web", "image": "nginx"}]))},
        "status": {"replicas": 3, "readyReplicas": 1}
    });
    assert_eq!(
        row("apps", "replicasets", obj),
        [
            json!("web-6d4b"),
            json!(3),
            json!(3),
            json!(1),
            json!("10m"),
            json!("web"),
            json!("nginx"),
            json!("app=web,pod-template-hash=6d4b"),
        ]
    );
    let empty = json!({"metadata": meta("x", 1), "spec": {"replicas": 0}});
    let cells = row("apps", "replicasets", empty);
    assert_eq!(cells[1..4], [json!(0), json!(0), json!(0)]);
    assert_eq!(cells[7], "<none>");
}

#[test]
fn statefulset_rows() {
    let obj = json!({
        "metadata": meta("db", 86400 * 400),
        "spec": {"replicas": 3, "template": template(json!([{"name": "pg", "image": "postgres:16"}]))},
        "status": {"replicas": 3, "readyReplicas": 3}
    });
    assert_eq!(
        row("apps", "statefulsets", obj),
        [
            json!("db"),
            json!("3/3"),
            json!("400d"),
            json!("pg"),
            json!("postgres:16")
        ]
    );
}

#[test]
fn daemonset_rows() {
    let obj = json!({
        "metadata": meta("kube-proxy", 86400 * 2 + 3600 * 3),
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                 "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                       "containers": [{"name": "kube-proxy", "image": "kube-proxy:v1.33"}]}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2}
    });
    assert_eq!(
        row("apps", "daemonsets", obj),
        [
            json!("kube-proxy"),
            json!(3),
            json!(3),
            json!(2),
            json!(3),
            json!(2),
            json!("kubernetes.io/os=linux"),
            json!("2d3h"),
            json!("kube-proxy"),
            json!("kube-proxy:v1.33"),
            json!("k8s-app=kube-proxy"),
        ]
    );
    let bare = json!({"metadata": meta("x", 1)});
    assert_eq!(row("apps", "daemonsets", bare)[6], "<none>");
}

#[test]
fn controllerrevision_rows() {
    let obj = json!({
        "metadata": {"name": "web-7c9", "creationTimestamp": ago(60),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "other"},
                                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
        "revision": 2
    });
    assert_eq!(
        row("apps", "controllerrevisions", obj),
        [
            json!("web-7c9"),
            json!("statefulset.apps/web"),
            json!(2),
            json!("60s")
        ]
    );
    let core_owner = json!({"metadata": {"name": "r", "ownerReferences":
        [{"apiVersion": "v1", "kind": "Widget", "name": "w", "controller": true}]}, "revision": 1});
    assert_eq!(
        row("apps", "controllerrevisions", core_owner)[1],
        "widget/w"
    );
    let orphan = json!({"metadata": {"name": "r"}});
    assert_eq!(row("apps", "controllerrevisions", orphan)[1], "<none>");
}

// ------------------------------------------------------------ batch

#[test]
fn job_rows() {
    let complete = json!({
        "metadata": meta("pi", 600),
        "spec": {"completions": 1, "parallelism": 1,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                 "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
        "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(570),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                  {"type": "Complete", "status": "True"}]}
    });
    assert_eq!(
        row("batch", "jobs", complete),
        [
            json!("pi"),
            json!("Complete"),
            json!("1/1"),
            json!("30s"),
            json!("10m"),
            json!("pi"),
            json!("perl:5.34"),
            json!("batch.kubernetes.io/controller-uid=abc"),
        ]
    );
    let running = json!({"metadata": meta("r", 200), "spec": {"parallelism": 3},
        "status": {"startTime": ago(190), "succeeded": 1}});
    let cells = row("batch", "jobs", running);
    assert_eq!(cells[1], "Running");
    assert_eq!(cells[2], "1/1 of 3");
    assert_eq!(cells[3], "3m10s");
    assert_eq!(cells[7], "<none>");

    let failed = json!({"metadata": meta("f", 1), "spec": {"completions": 5},
        "status": {"conditions": [{"type": "FailureTarget", "status": "True"},
                                  {"type": "Failed", "status": "True"}]}});
    let cells = row("batch", "jobs", failed);
    assert_eq!(cells[1], "Failed");
    assert_eq!(cells[2], "0/5");
    assert_eq!(cells[3], "");

    let target = json!({"metadata": meta("t", 1),
        "status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}});
    assert_eq!(row("batch", "jobs", target)[1], "FailureTarget");
    let suspended = json!({"metadata": meta("s", 1),
        "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(row("batch", "jobs", suspended)[1], "Suspended");
    let mut deleting = json!({"metadata": meta("d", 1),
        "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    deleting["metadata"]["deletionTimestamp"] = json!(ago(0));
    assert_eq!(row("batch", "jobs", deleting)[1], "Terminating");
}

#[test]
fn cronjob_rows() {
    let obj = json!({
        "metadata": meta("hello", 86400),
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(65)}
    });
    assert_eq!(
        row("batch", "cronjobs", obj),
        [
            json!("hello"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("65s"),
            json!("24h"),
            json!("hello"),
            json!("busybox"),
            json!("<none>"),
        ]
    );
    let tz = json!({"metadata": meta("c", 1), "spec": {"schedule": "0 0 * * *", "timeZone": "Etc/UTC", "suspend": true}});
    let cells = row("batch", "cronjobs", tz);
    assert_eq!(cells[2], "Etc/UTC");
    assert_eq!(cells[3], "True");
    assert_eq!(cells[4], 0);
    assert_eq!(cells[5], "<none>");
}

// ------------------------------------------------------------ other groups

#[test]
fn lease_pdb_priorityclass_runtimeclass_rows() {
    let lease =
        json!({"metadata": meta("kube-scheduler", 120), "spec": {"holderIdentity": "cp-1_abc"}});
    assert_eq!(
        row("coordination.k8s.io", "leases", lease),
        [json!("kube-scheduler"), json!("cp-1_abc"), json!("2m")]
    );
    let no_holder = json!({"metadata": meta("l", 1), "spec": {}});
    assert_eq!(row("coordination.k8s.io", "leases", no_holder)[1], "");

    let pdb = json!({"metadata": meta("web", 60), "spec": {"minAvailable": 2},
                     "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        row("policy", "poddisruptionbudgets", pdb),
        [
            json!("web"),
            json!("2"),
            json!("N/A"),
            json!(1),
            json!("60s")
        ]
    );
    let pdb2 = json!({"metadata": meta("web", 60), "spec": {"maxUnavailable": "25%"}});
    let cells = row("policy", "poddisruptionbudgets", pdb2);
    assert_eq!(cells[1..4], [json!("N/A"), json!("25%"), json!(0)]);

    let pc = json!({"metadata": meta("system-cluster-critical", 86400 * 9),
                    "value": 2000000000, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(
        row("scheduling.k8s.io", "priorityclasses", pc),
        [
            json!("system-cluster-critical"),
            json!(2000000000),
            json!(false),
            json!("9d"),
            json!("PreemptLowerPriority")
        ]
    );

    let rc = json!({"metadata": meta("gvisor", 60), "handler": "runsc"});
    assert_eq!(
        row("node.k8s.io", "runtimeclasses", rc),
        [json!("gvisor"), json!("runsc"), json!("60s")]
    );
}

#[test]
fn extra_printers() {
    let ing = json!({"metadata": meta("web", 60),
        "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                 "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}});
    assert_eq!(
        row("networking.k8s.io", "ingresses", ing),
        [
            json!("web"),
            json!("nginx"),
            json!("a.example.com,b.example.com"),
            json!("10.0.0.9"),
            json!("80, 443"),
            json!("60s")
        ]
    );
    let rb = json!({"metadata": meta("rb", 60), "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "namespace": "ci", "name": "builder"}]});
    assert_eq!(
        row("rbac.authorization.k8s.io", "rolebindings", rb),
        [
            json!("rb"),
            json!("ClusterRole/view"),
            json!("60s"),
            json!("alice"),
            json!("devs"),
            json!("ci/builder")
        ]
    );
    let sc = json!({"metadata": {"name": "standard", "creationTimestamp": ago(60),
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
    assert_eq!(
        row("storage.k8s.io", "storageclasses", sc),
        [
            json!("standard (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("60s")
        ]
    );
    let np = json!({"metadata": meta("deny", 60), "spec": {"podSelector": {}}});
    assert_eq!(row("networking.k8s.io", "networkpolicies", np)[1], "<none>");
    let wh = json!({"metadata": meta("wh", 60), "webhooks": [{}, {}]});
    assert_eq!(
        row(
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            wh
        )[1],
        2
    );
    let csr = json!({"metadata": meta("csr-1", 60),
        "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "alice", "expirationSeconds": 86400},
        "status": {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}});
    assert_eq!(
        row("certificates.k8s.io", "certificatesigningrequests", csr),
        [
            json!("csr-1"),
            json!("60s"),
            json!("kubernetes.io/kube-apiserver-client"),
            json!("alice"),
            json!("24h"),
            json!("Approved,Issued")
        ]
    );
    let role = json!({"metadata": {"name": "admin", "creationTimestamp": "2024-01-01T00:00:00Z"}});
    assert_eq!(
        row("rbac.authorization.k8s.io", "clusterroles", role),
        [json!("admin"), json!("2024-01-01T00:00:00Z")]
    );
    let tpl = json!({"metadata": meta("t", 1), "template": template(json!([{"name": "a", "image": "b"}]))});
    assert_eq!(
        row("", "podtemplates", tpl),
        [json!("t"), json!("a"), json!("b"), json!("app=web")]
    );
}

#[test]
fn unknown_resource_rows() {
    let obj = json!({"metadata": meta("thing", 90), "spec": {"x": 1}});
    assert_eq!(
        row("example.com", "widgets", obj),
        [json!("thing"), json!("90s")]
    );
}

// ------------------------------------------------------------ robustness

#[test]
fn garbage_input_never_panics() {
    let resources: &[(&str, &str)] = &[
        ("", "pods"),
        ("", "podtemplates"),
        ("", "replicationcontrollers"),
        ("", "services"),
        ("", "endpoints"),
        ("", "nodes"),
        ("", "events"),
        ("", "namespaces"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "componentstatuses"),
        ("", "configmaps"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "controllerrevisions"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("discovery.k8s.io", "endpointslices"),
        ("events.k8s.io", "events"),
        ("coordination.k8s.io", "leases"),
        ("policy", "poddisruptionbudgets"),
        ("scheduling.k8s.io", "priorityclasses"),
        ("node.k8s.io", "runtimeclasses"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("networking.k8s.io", "networkpolicies"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("rbac.authorization.k8s.io", "roles"),
        ("certificates.k8s.io", "certificatesigningrequests"),
        ("storage.k8s.io", "storageclasses"),
        ("storage.k8s.io", "volumeattachments"),
        ("storage.k8s.io", "csinodes"),
        ("storage.k8s.io", "csidrivers"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        ("x", "y"),
    ];
    let inputs = [
        json!(null),
        json!(42),
        json!("pod"),
        json!([1, 2, 3]),
        json!({}),
        json!({"metadata": "nope", "spec": [], "status": 7}),
        json!({
            "metadata": {"name": 5, "creationTimestamp": "not a time", "labels": [1],
                         "deletionTimestamp": 3, "ownerReferences": {"a": 1}},
            "spec": {"containers": "x", "initContainers": [null, 1, {"name": 2}],
                     "replicas": "abc", "selector": {"matchExpressions": [1, {"operator": 5}]},
                     "ports": [null, {"port": "80"}], "clusterIPs": [null], "readinessGates": [1]},
            "status": {"containerStatuses": [null, {"state": 1}, {"state": {"terminated": "x"}}],
                       "initContainerStatuses": [{"state": {"terminated": {"exitCode": "1"}}}],
                       "conditions": "bad", "podIPs": [{"ip": 1}], "hard": {"cpu": null},
                       "loadBalancer": {"ingress": [null]}},
            "subsets": [{"addresses": [null], "ports": [{}]}],
            "endpoints": [{"addresses": [1, null]}],
            "series": {"count": "x"},
            "involvedObject": null,
            "data": "x"
        }),
    ];
    for (group, resource) in resources {
        let cols = column_definitions(group, resource).len();
        for input in &inputs {
            let cells = row_cells(group, resource, input, now());
            assert_eq!(cells.len(), cols, "{group}/{resource} on {input}");
        }
    }
}

#[test]
fn zero_creation_timestamp_is_unknown() {
    let obj = json!({"metadata": {"name": "x", "creationTimestamp": "0001-01-01T00:00:00Z"}});
    assert_eq!(row("", "configmaps", obj)[2], "<unknown>");
    let future = json!({"metadata": {"name": "x", "creationTimestamp": ago(-60)}});
    assert_eq!(row("", "configmaps", future)[2], "<invalid>");
}
