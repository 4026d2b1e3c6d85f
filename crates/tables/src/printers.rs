//! Row printers, one per upstream `printXxx` function (always "wide").

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::util::*;
use crate::{human_duration, Kind};

fn st(x: impl Into<String>) -> Value {
    Value::String(x.into())
}

fn int(x: i64) -> Value {
    Value::from(x)
}

pub(crate) fn cells(kind: Kind, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    use Kind::*;
    match kind {
        Pod => pod(obj, now),
        PodTemplate => {
            let (names, images) = containers(obj, "/template/spec/containers");
            vec![
                st(name(obj)),
                st(names),
                st(images),
                st(format_labels(obj, "/template/metadata/labels")),
            ]
        }
        PodDisruptionBudget => {
            let fmt = |p: &str| match at(obj, p) {
                Some(v) if !v.is_null() => int_or_string(v),
                _ => "N/A".to_string(),
            };
            vec![
                st(name(obj)),
                st(fmt("/spec/minAvailable")),
                st(fmt("/spec/maxUnavailable")),
                int(i(obj, "/status/disruptionsAllowed")),
                st(age(obj, now)),
            ]
        }
        ReplicationController => {
            let (names, images) = containers(obj, "/spec/template/spec/containers");
            vec![
                st(name(obj)),
                int(opt_i(obj, "/spec/replicas").unwrap_or(1)),
                int(i(obj, "/status/replicas")),
                int(i(obj, "/status/readyReplicas")),
                st(age(obj, now)),
                st(names),
                st(images),
                st(format_labels(obj, "/spec/selector")),
            ]
        }
        ReplicaSet => {
            let (names, images) = containers(obj, "/spec/template/spec/containers");
            vec![
                st(name(obj)),
                int(opt_i(obj, "/spec/replicas").unwrap_or(1)),
                int(i(obj, "/status/replicas")),
                int(i(obj, "/status/readyReplicas")),
                st(age(obj, now)),
                st(names),
                st(images),
                st(format_label_selector(at(obj, "/spec/selector"))),
            ]
        }
        DaemonSet => {
            let (names, images) = containers(obj, "/spec/template/spec/containers");
            vec![
                st(name(obj)),
                int(i(obj, "/status/desiredNumberScheduled")),
                int(i(obj, "/status/currentNumberScheduled")),
                int(i(obj, "/status/numberReady")),
                int(i(obj, "/status/updatedNumberScheduled")),
                int(i(obj, "/status/numberAvailable")),
                st(format_labels(obj, "/spec/template/spec/nodeSelector")),
                st(age(obj, now)),
                st(names),
                st(images),
                st(format_label_selector(at(obj, "/spec/selector"))),
            ]
        }
        Job => job(obj, now),
        CronJob => {
            let last = match time(obj, "/status/lastScheduleTime") {
                Some(t) => since(Some(t), now),
                None => "<none>".to_string(),
            };
            let tz = opt_s(obj, "/spec/timeZone").unwrap_or("<none>");
            let tpl = "/spec/jobTemplate/spec";
            let (names, images) = containers(obj, &format!("{tpl}/template/spec/containers"));
            vec![
                st(name(obj)),
                st(s(obj, "/spec/schedule")),
                st(tz),
                // batch/v1 defaulting always sets suspend=false.
                st(bool_ptr(Some(b(obj, "/spec/suspend")))),
                int(arr(obj, "/status/active").len() as i64),
                st(last),
                st(age(obj, now)),
                st(names),
                st(images),
                st(format_label_selector(at(obj, &format!("{tpl}/selector")))),
            ]
        }
        Service => service(obj, now),
        Ingress => ingress(obj, now),
        IngressClass => {
            let parameters = match at(obj, "/spec/parameters") {
                Some(p @ Value::Object(_)) => {
                    let mut out = s(p, "/kind").to_string();
                    if let Some(g) = opt_s(p, "/apiGroup") {
                        out = format!("{out}.{g}");
                    }
                    format!("{out}/{}", s(p, "/name"))
                }
                _ => "<none>".to_string(),
            };
            vec![
                st(name(obj)),
                st(s(obj, "/spec/controller")),
                st(parameters),
                st(age(obj, now)),
            ]
        }
        StatefulSet => {
            let (names, images) = containers(obj, "/spec/template/spec/containers");
            vec![
                st(name(obj)),
                st(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    opt_i(obj, "/spec/replicas").unwrap_or(1)
                )),
                st(age(obj, now)),
                st(names),
                st(images),
            ]
        }
        Endpoints => vec![st(name(obj)), st(format_endpoints(obj)), st(age(obj, now))],
        Node => node(obj, now),
        Event => event(obj, now, &EventFields::CORE),
        EventsV1 => event(obj, now, &EventFields::V1),
        Namespace => {
            let phase = match s(obj, "/status/phase") {
                "" => "Active",
                p => p,
            };
            vec![st(name(obj)), st(phase), st(age(obj, now))]
        }
        Secret => {
            let mut keys: BTreeSet<String> = BTreeSet::new();
            for p in ["/data", "/stringData"] {
                if let Some(Value::Object(m)) = at(obj, p) {
                    keys.extend(m.keys().cloned());
                }
            }
            vec![
                st(name(obj)),
                st(s(obj, "/type")),
                int(keys.len() as i64),
                st(age(obj, now)),
            ]
        }
        ServiceAccount => vec![
            st(name(obj)),
            int(len_of(obj, "/secrets") as i64),
            st(age(obj, now)),
        ],
        PersistentVolume => persistent_volume(obj, now),
        PersistentVolumeClaim => persistent_volume_claim(obj, now),
        ComponentStatus => {
            let mut status = "Unknown";
            let mut message = "";
            let mut error = "";
            for c in arr(obj, "/conditions") {
                if s(c, "/type") == "Healthy" {
                    status = if s(c, "/status") == "True" {
                        "Healthy"
                    } else {
                        "Unhealthy"
                    };
                    message = s(c, "/message");
                    error = s(c, "/error");
                    break;
                }
            }
            vec![st(name(obj)), st(status), st(message), st(error)]
        }
        Deployment => {
            let (names, images) = containers(obj, "/spec/template/spec/containers");
            let selector = selector_string(at(obj, "/spec/selector"))
                .unwrap_or_else(|()| "<invalid>".to_string());
            vec![
                st(name(obj)),
                st(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    opt_i(obj, "/spec/replicas").unwrap_or(1)
                )),
                int(i(obj, "/status/updatedReplicas")),
                int(i(obj, "/status/availableReplicas")),
                st(age(obj, now)),
                st(names),
                st(images),
                st(selector),
            ]
        }
        ConfigMap => vec![
            st(name(obj)),
            int((len_of(obj, "/data") + len_of(obj, "/binaryData")) as i64),
            st(age(obj, now)),
        ],
        NetworkPolicy => vec![
            st(name(obj)),
            st(format_label_selector(Some(
                at(obj, "/spec/podSelector").unwrap_or(&Value::Null),
            ))),
            st(age(obj, now)),
        ],
        RoleBinding | ClusterRoleBinding => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for sub in arr(obj, "/subjects") {
                match s(sub, "/kind") {
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", s(sub, "/namespace"), s(sub, "/name")))
                    }
                    "User" => users.push(s(sub, "/name").to_string()),
                    "Group" => groups.push(s(sub, "/name").to_string()),
                    _ => {}
                }
            }
            vec![
                st(name(obj)),
                st(format!(
                    "{}/{}",
                    s(obj, "/roleRef/kind"),
                    s(obj, "/roleRef/name")
                )),
                st(age(obj, now)),
                st(users.join(", ")),
                st(groups.join(", ")),
                st(sas.join(", ")),
            ]
        }
        CertificateSigningRequest => csr(obj, now),
        Lease => vec![
            st(name(obj)),
            st(s(obj, "/spec/holderIdentity")),
            st(age(obj, now)),
        ],
        StorageClass => {
            let mut n = name(obj);
            let ann = |k: &str| s(obj, &format!("/metadata/annotations/{}", ptr_escape(k)));
            if ann("storageclass.kubernetes.io/is-default-class") == "true"
                || ann("storageclass.beta.kubernetes.io/is-default-class") == "true"
            {
                n.push_str(" (default)");
            }
            vec![
                st(n),
                st(s(obj, "/provisioner")),
                st(opt_s(obj, "/reclaimPolicy").unwrap_or("Delete")),
                st(opt_s(obj, "/volumeBindingMode").unwrap_or("Immediate")),
                Value::Bool(b(obj, "/allowVolumeExpansion")),
                st(age(obj, now)),
            ]
        }
        ControllerRevision => {
            let controller = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|r| b(r, "/controller"))
                .map(|r| {
                    let api_version = s(r, "/apiVersion");
                    let group = match api_version.split_once('/') {
                        Some((g, _)) => g,
                        None => "",
                    };
                    let kind = s(r, "/kind");
                    let name = s(r, "/name");
                    if group.is_empty() && kind.is_empty() {
                        name.to_string()
                    } else if group.is_empty() {
                        format!("{}/{name}", kind.to_lowercase())
                    } else {
                        format!("{}/{name}", format!("{kind}.{group}").to_lowercase())
                    }
                })
                .unwrap_or_else(|| "<none>".to_string());
            vec![
                st(name(obj)),
                st(controller),
                int(i(obj, "/revision")),
                st(age(obj, now)),
            ]
        }
        ResourceQuota => resource_quota(obj, now),
        PriorityClass => vec![
            st(name(obj)),
            int(i(obj, "/value")),
            Value::Bool(b(obj, "/globalDefault")),
            st(age(obj, now)),
            st(opt_s(obj, "/preemptionPolicy").unwrap_or("PreemptLowerPriority")),
        ],
        RuntimeClass => vec![st(name(obj)), st(s(obj, "/handler")), st(age(obj, now))],
        VolumeAttachment => vec![
            st(name(obj)),
            st(s(obj, "/spec/attacher")),
            st(s(obj, "/spec/source/persistentVolumeName")),
            st(s(obj, "/spec/nodeName")),
            Value::Bool(b(obj, "/status/attached")),
            st(age(obj, now)),
        ],
        EndpointSlice => endpoint_slice(obj, now),
        CSINode => vec![
            st(name(obj)),
            int(arr(obj, "/spec/drivers").len() as i64),
            st(age(obj, now)),
        ],
        CSIDriver => {
            let modes: Vec<String> = arr(obj, "/spec/volumeLifecycleModes")
                .iter()
                .map(scalar_string)
                .collect();
            let modes = if modes.is_empty() {
                "<none>".to_string()
            } else {
                modes.join(",")
            };
            let token_requests = match at(obj, "/spec/tokenRequests") {
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|t| s(t, "/audience"))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "<unset>".to_string(),
            };
            vec![
                st(name(obj)),
                Value::Bool(opt_b(obj, "/spec/attachRequired").unwrap_or(true)),
                Value::Bool(b(obj, "/spec/podInfoOnMount")),
                Value::Bool(b(obj, "/spec/storageCapacity")),
                st(token_requests),
                Value::Bool(b(obj, "/spec/requiresRepublish")),
                st(modes),
                st(age(obj, now)),
            ]
        }
        MutatingWebhookConfiguration | ValidatingWebhookConfiguration => vec![
            st(name(obj)),
            int(arr(obj, "/webhooks").len() as i64),
            st(age(obj, now)),
        ],
        DefaultCreatedAt => {
            // rest.DefaultTableConvertor: RFC3339 in UTC; the Go zero time
            // when unset.
            let created = time(obj, "/metadata/creationTimestamp")
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
            vec![st(name(obj)), st(created)]
        }
        Unknown => vec![st(name(obj)), st(age(obj, now))],
    }
}

/// Escapes a map key for use in a JSON pointer.
fn ptr_escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    opt_s(obj, &format!("/metadata/annotations/{}", ptr_escape(key)))
}

// ---------------------------------------------------------------- pods

fn is_restartable_init(spec_init: &[Value], container_name: &str) -> bool {
    spec_init
        .iter()
        .find(|c| s(c, "/name") == container_name)
        .map(|c| s(c, "/restartPolicy") == "Always")
        .unwrap_or(false)
}

fn has_condition(obj: &Value, path: &str, ty: &str) -> bool {
    arr(obj, path)
        .iter()
        .any(|c| s(c, "/type") == ty && s(c, "/status") == "True")
}

/// Latest of `current` and `lastState.terminated.finishedAt` of `status`.
fn later_restart(current: Option<DateTime<Utc>>, status: &Value) -> Option<DateTime<Utc>> {
    let finished = time(status, "/lastState/terminated/finishedAt");
    match (current, finished) {
        (Some(c), Some(f)) if f > c => Some(f),
        (None, Some(f)) => Some(f),
        (c, _) => c,
    }
}

fn terminated_reason(term: &Value, prefix: &str) -> String {
    let reason = s(term, "/reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = i(term, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", i(term, "/exitCode"))
    }
}

fn present(v: &Value, path: &str) -> bool {
    matches!(at(v, path), Some(x) if !x.is_null())
}

/// upstream `printPod`.
pub(crate) fn pod(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec_init = arr(obj, "/spec/initContainers");
    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut total_containers = arr(obj, "/spec/containers").len() as i64;
    let mut ready_containers: i64 = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_init_restart: Option<DateTime<Utc>> = None;

    // The API server defaults a new pod's phase to Pending.
    let pod_phase = match s(obj, "/status/phase") {
        "" => "Pending",
        p => p,
    };
    let status_reason = s(obj, "/status/reason");
    let mut reason = if status_reason.is_empty() {
        pod_phase.to_string()
    } else {
        status_reason.to_string()
    };

    for c in arr(obj, "/status/conditions") {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    for c in spec_init {
        if s(c, "/restartPolicy") == "Always" {
            total_containers += 1;
        }
    }

    let mut initializing = false;
    for (idx, container) in arr(obj, "/status/initContainerStatuses").iter().enumerate() {
        let restart_count = i(container, "/restartCount");
        restarts += restart_count;
        last_restart = later_restart(last_restart, container);
        let restartable = is_restartable_init(spec_init, s(container, "/name"));
        if restartable {
            restartable_init_restarts += restart_count;
            last_restartable_init_restart = later_restart(last_restartable_init_restart, container);
        }
        let terminated = at(container, "/state/terminated").filter(|v| v.is_object());
        let waiting_reason = s(container, "/state/waiting/reason");
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        if restartable && b(container, "/started") {
            if b(container, "/ready") {
                ready_containers += 1;
            }
            continue;
        }
        if let Some(term) = terminated {
            reason = terminated_reason(term, "Init:");
        } else if present(container, "/state/waiting")
            && !waiting_reason.is_empty()
            && waiting_reason != "PodInitializing"
        {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{}/{}", idx, spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(obj, "/status/conditions", "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for container in arr(obj, "/status/containerStatuses").iter().rev() {
            restarts += i(container, "/restartCount");
            last_restart = later_restart(last_restart, container);
            let waiting_reason = s(container, "/state/waiting/reason");
            let terminated = at(container, "/state/terminated").filter(|v| v.is_object());
            if present(container, "/state/waiting") && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(term) = terminated {
                reason = terminated_reason(term, "");
            } else if b(container, "/ready") && present(container, "/state/running") {
                has_running = true;
                ready_containers += 1;
            }
        }
        // Change pod status back to "Running" if there is at least one
        // container still reporting as "Running" status.
        if reason == "Completed" && has_running {
            reason = if has_condition(obj, "/status/conditions", "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if deleting(obj) && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(obj) && pod_phase != "Failed" && pod_phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(obj, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip"))
        .filter(|ip| !ip.is_empty())
        .or_else(|| opt_s(obj, "/status/podIP").filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let node_name = match s(obj, "/spec/nodeName") {
        "" => "<none>",
        n => n,
    };
    let nominated = match s(obj, "/status/nominatedNodeName") {
        "" => "<none>",
        n => n,
    };
    let gates = arr(obj, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(obj, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = s(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| s(c, "/type") == ty)
                    .map(|c| s(c, "/status") == "True")
                    .unwrap_or(false)
            })
            .count();
        format!("{}/{}", true_count, gates.len())
    };

    vec![
        st(name(obj)),
        st(format!("{ready_containers}/{total_containers}")),
        st(reason),
        st(restarts_str),
        st(age(obj, now)),
        st(pod_ip),
        st(node_name),
        st(nominated),
        st(readiness_gates),
    ]
}

// ---------------------------------------------------------------- batch

fn job_condition(obj: &Value, ty: &str) -> bool {
    // upstream hasJobCondition: the first condition of that type decides.
    arr(obj, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == ty)
        .map(|c| s(c, "/status") == "True")
        .unwrap_or(false)
}

fn job(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = i(obj, "/status/succeeded");
    let completions = match opt_i(obj, "/spec/completions") {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = i(obj, "/spec/parallelism");
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let duration = match (
        time(obj, "/status/startTime"),
        time(obj, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.signed_duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start)),
    };
    let status = if job_condition(obj, "Complete") {
        "Complete"
    } else if job_condition(obj, "Failed") {
        "Failed"
    } else if deleting(obj) {
        "Terminating"
    } else if job_condition(obj, "Suspended") {
        "Suspended"
    } else if job_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(obj, "/spec/template/spec/containers");
    vec![
        st(name(obj)),
        st(status),
        st(completions),
        st(duration),
        st(age(obj, now)),
        st(names),
        st(images),
        st(format_label_selector(at(obj, "/spec/selector"))),
    ]
}

// ---------------------------------------------------------------- services

fn service(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // The API server defaults type to ClusterIP.
    let svc_type = match s(obj, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = arr(obj, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_s(obj, "/spec/clusterIP"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let external_ips: Vec<String> = arr(obj, "/spec/externalIPs")
        .iter()
        .map(scalar_string)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|ing| {
                    let ip = s(ing, "/ip");
                    let host = s(ing, "/hostname");
                    if !ip.is_empty() {
                        Some(ip)
                    } else if !host.is_empty() {
                        Some(host)
                    } else {
                        None
                    }
                })
                .collect();
            let mut all: Vec<String> = lb.iter().map(|x| x.to_string()).collect();
            if !external_ips.is_empty() {
                all.extend(external_ips);
                all.join(",")
            } else if !all.is_empty() {
                all.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port");
            let protocol = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            let node_port = i(p, "/nodePort");
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        st(name(obj)),
        st(svc_type),
        st(cluster_ip),
        st(external),
        st(ports),
        st(age(obj, now)),
        st(format_labels(obj, "/spec/selector")),
    ]
}

fn ingress(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let class = opt_s(obj, "/spec/ingressClassName").unwrap_or("<none>");
    let rules = arr(obj, "/spec/rules");
    let max = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == max {
            more = true;
        }
        let host = s(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    let hosts = if list.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", list.join(","), rules.len() - max)
    } else {
        list.join(",")
    };
    let address: BTreeSet<&str> = arr(obj, "/status/loadBalancer/ingress")
        .iter()
        .filter_map(|ing| {
            let ip = s(ing, "/ip");
            let host = s(ing, "/hostname");
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    let ports = if arr(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        st(name(obj)),
        st(class),
        st(hosts),
        st(address.into_iter().collect::<Vec<_>>().join(",")),
        st(ports),
        st(age(obj, now)),
    ]
}

/// upstream `formatEndpoints(endpoints, nil)`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            // Headless services with no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(a, "/ip"), &i(port, "/port").to_string()));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        return "<unset>".to_string();
    }
    ret
}

fn endpoint_slice(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let max = 3;
    let (mut ports, mut more, mut count) = (Vec::new(), false, 0usize);
    for p in arr(obj, "/ports") {
        if ports.len() < max {
            let num = match opt_i(p, "/port") {
                Some(n) => n.to_string(),
                None => opt_s(p, "/name").unwrap_or("*").to_string(),
            };
            ports.push(num);
        } else if ports.len() == max {
            more = true;
        }
        count += 1;
    }
    let ports = list_with_more(&ports, more, count, max);

    let (mut eps, mut more, mut count) = (Vec::new(), false, 0usize);
    for ep in arr(obj, "/endpoints") {
        for a in arr(ep, "/addresses") {
            if eps.len() < max {
                eps.push(scalar_string(a));
            } else if eps.len() == max {
                more = true;
            }
            count += 1;
        }
    }
    let eps = list_with_more(&eps, more, count, max);
    vec![
        st(name(obj)),
        st(s(obj, "/addressType")),
        st(ports),
        st(eps),
        st(age(obj, now)),
    ]
}

// ---------------------------------------------------------------- nodes

fn node(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Last condition of type Ready wins (upstream builds a map by type).
    let ready = arr(obj, "/status/conditions")
        .iter()
        .rfind(|c| s(c, "/type") == "Ready");
    let mut status: Vec<&str> = vec![match ready {
        Some(c) if s(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if b(obj, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let mut roles: BTreeSet<String> = BTreeSet::new();
    for (k, v) in str_map(obj, "/metadata/labels") {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v);
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let unknown_if_empty = |p: &str| match s(obj, p) {
        "" => "<unknown>".to_string(),
        x => x.to_string(),
    };
    vec![
        st(name(obj)),
        st(status.join(",")),
        st(roles),
        st(age(obj, now)),
        st(s(obj, "/status/nodeInfo/kubeletVersion")),
        st(address("InternalIP")),
        st(address("ExternalIP")),
        st(unknown_if_empty("/status/nodeInfo/osImage")),
        st(unknown_if_empty("/status/nodeInfo/kernelVersion")),
        st(unknown_if_empty("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

// ---------------------------------------------------------------- events

/// Field paths of an Event in core/v1 vs events.k8s.io/v1.
struct EventFields {
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    involved: &'static str,
    message: &'static str,
    source_component: &'static str,
    source_host: &'static str,
}

impl EventFields {
    const CORE: EventFields = EventFields {
        first_timestamp: "/firstTimestamp",
        last_timestamp: "/lastTimestamp",
        count: "/count",
        involved: "/involvedObject",
        message: "/message",
        source_component: "/source/component",
        source_host: "/source/host",
    };
    const V1: EventFields = EventFields {
        first_timestamp: "/deprecatedFirstTimestamp",
        last_timestamp: "/deprecatedLastTimestamp",
        count: "/deprecatedCount",
        involved: "/regarding",
        message: "/note",
        source_component: "/deprecatedSource/component",
        source_host: "/deprecatedSource/host",
    };
}

fn event(obj: &Value, now: DateTime<Utc>, f: &EventFields) -> Vec<Value> {
    let first = match time(obj, f.first_timestamp) {
        Some(t) => since(Some(t), now),
        None => since(time(obj, "/eventTime"), now),
    };
    let mut last = match time(obj, f.last_timestamp) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = i(obj, f.count);
    match at(obj, "/series") {
        Some(series @ Value::Object(_)) => {
            last = since(time(series, "/lastObservedTime"), now);
            count = i(series, "/count");
        }
        _ => {
            if count == 0 {
                // Singleton events don't have a count set in the new API.
                count = 1;
            }
        }
    }
    let involved_kind = s(obj, &format!("{}/kind", f.involved)).to_lowercase();
    let involved_name = s(obj, &format!("{}/name", f.involved));
    let target = if involved_name.is_empty() {
        involved_kind
    } else {
        format!("{involved_kind}/{involved_name}")
    };
    let component = match s(obj, f.source_component) {
        "" => s(obj, "/reportingController"),
        c => c,
    };
    let instance = match s(obj, f.source_host) {
        "" => s(obj, "/reportingInstance"),
        h => h,
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        st(last),
        st(s(obj, "/type")),
        st(s(obj, "/reason")),
        st(target),
        st(s(obj, &format!("{}/fieldPath", f.involved))),
        st(source),
        st(s(obj, f.message).trim()),
        st(first),
        int(count),
        st(name(obj)),
    ]
}

// ---------------------------------------------------------------- storage

fn persistent_volume(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match at(obj, "/spec/claimRef") {
        Some(c @ Value::Object(_)) => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
        _ => String::new(),
    };
    let phase = if deleting(obj) {
        "Terminating".to_string()
    } else {
        s(obj, "/status/phase").to_string()
    };
    let class = annotation(obj, "volume.beta.kubernetes.io/storage-class")
        .unwrap_or_else(|| s(obj, "/spec/storageClassName"));
    vec![
        st(name(obj)),
        st(quantity(at(obj, "/spec/capacity/storage"))),
        st(access_modes(arr(obj, "/spec/accessModes"))),
        st(s(obj, "/spec/persistentVolumeReclaimPolicy")),
        st(phase),
        st(claim),
        st(class),
        st(opt_s(obj, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        st(s(obj, "/status/reason")),
        st(age(obj, now)),
        st(opt_s(obj, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

fn persistent_volume_claim(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if deleting(obj) {
        "Terminating".to_string()
    } else {
        s(obj, "/status/phase").to_string()
    };
    let volume_name = s(obj, "/spec/volumeName");
    let (capacity, modes) = if volume_name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(at(obj, "/status/capacity/storage")),
            access_modes(arr(obj, "/status/accessModes")),
        )
    };
    let class = annotation(obj, "volume.beta.kubernetes.io/storage-class")
        .or_else(|| opt_s(obj, "/spec/storageClassName"))
        .unwrap_or("");
    vec![
        st(name(obj)),
        st(phase),
        st(volume_name),
        st(capacity),
        st(modes),
        st(class),
        st(opt_s(obj, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        st(age(obj, now)),
        st(opt_s(obj, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

// ---------------------------------------------------------------- misc

fn resource_quota(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // The quota controller copies spec.hard into status.hard right after
    // creation; fall back to spec.hard while status is still empty.
    let hard_path = if len_of(obj, "/status/hard") > 0 {
        "/status/hard"
    } else {
        "/spec/hard"
    };
    let mut resources: Vec<String> = match at(obj, hard_path) {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    resources.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for r in &resources {
        let used = quantity(at(obj, "/status/used").and_then(|u| u.get(r.as_str())));
        let hard = quantity(at(obj, hard_path).and_then(|h| h.get(r.as_str())));
        let text = format!("{r}: {used}/{hard}");
        let pieces: Vec<&str> = r.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![
        st(name(obj)),
        st(requests.join(", ")),
        st(limits.join(", ")),
        st(age(obj, now)),
    ]
}

fn csr(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (mut approved, mut denied, mut failed) = (false, false, false);
    for c in arr(obj, "/status/conditions") {
        match s(c, "/type") {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut status = if denied {
        "Denied".to_string()
    } else if approved {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if failed {
        status.push_str(",Failed");
    }
    if !s(obj, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    let signer = match s(obj, "/spec/signerName") {
        "" => "<none>",
        x => x,
    };
    let requested = match opt_i(obj, "/spec/expirationSeconds") {
        Some(secs) => human_duration(chrono::Duration::seconds(secs)),
        None => "<none>".to_string(),
    };
    vec![
        st(name(obj)),
        st(age(obj, now)),
        st(signer),
        st(s(obj, "/spec/username")),
        st(requested),
        st(status),
    ]
}
