//! Defaulting of built-in kinds, as pkg/apis/*/v1/defaults.go does it, so
//! that `kubectl get -o yaml` shows what it would on Kubernetes.

use serde_json::{json, Map, Value};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(|x| x.is_null()) {
        m.insert(k.to_string(), v);
    }
}

fn child<'a>(m: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    let e = m.entry(k.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    // Just made sure it is an object.
    e.as_object_mut().expect("object")
}

fn image_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container_defaults(c: &mut Value) {
    let Some(c) = obj(c) else { return };
    let image = c
        .get("image")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(|p| p.as_array_mut()) {
        for p in ports {
            if let Some(p) = obj(p) {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(|p| p.as_object_mut()) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(|h| h.as_object_mut()) {
                set_default(h, "path", json!("/"));
                set_default(h, "scheme", json!("HTTP"));
            }
        }
    }
}

pub fn pod_spec(spec: &mut Value) {
    let Some(s) = obj(spec) else { return };
    set_default(s, "restartPolicy", json!("Always"));
    set_default(s, "terminationGracePeriodSeconds", json!(30));
    set_default(s, "dnsPolicy", json!("ClusterFirst"));
    set_default(s, "securityContext", json!({}));
    set_default(s, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        if let Some(cs) = s.get_mut(list).and_then(|c| c.as_array_mut()) {
            for c in cs {
                container_defaults(c);
            }
        }
    }
    if let Some(sa) = s.get("serviceAccount").cloned() {
        set_default(s, "serviceAccountName", sa);
    }
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(|t| t.as_object_mut()) {
        if let Some(ps) = t.get_mut("spec") {
            pod_spec(ps);
        }
    }
}

/// Applies defaults for `kind` in `group` to `o` in place.
pub fn apply(group: &str, kind: &str, o: &mut Value) {
    let Some(root) = obj(o) else { return };
    match (group, kind) {
        ("", "Pod") => {
            let spec = child(root, "spec");
            let mut sv = Value::Object(std::mem::take(spec));
            pod_spec(&mut sv);
            if let Value::Object(m) = sv {
                *spec = m;
            }
            set_default(spec, "serviceAccountName", json!("default"));
            set_default(spec, "serviceAccount", json!("default"));
            set_default(spec, "enableServiceLinks", json!(true));
            // DefaultTolerationSeconds admission.
            let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
            if let Some(ts) = tolerations.as_array_mut() {
                for key in [
                    "node.kubernetes.io/not-ready",
                    "node.kubernetes.io/unreachable",
                ] {
                    let has = ts.iter().any(|t| {
                        t.get("key").and_then(|k| k.as_str()) == Some(key)
                            && t.get("effect")
                                .and_then(|e| e.as_str())
                                .is_none_or(|e| e == "NoExecute")
                    });
                    if !has {
                        ts.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                    }
                }
            }
        }
        ("apps", "Deployment") => {
            let spec = child(root, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(|t| t.as_str()) == Some("RollingUpdate") {
                let ru = child(strategy, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
            template(spec);
        }
        ("apps", "ReplicaSet") => {
            let spec = child(root, "spec");
            set_default(spec, "replicas", json!(1));
            template(spec);
        }
        ("apps", "StatefulSet") => {
            let spec = child(root, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = child(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us.get("type").and_then(|t| t.as_str()) == Some("RollingUpdate") {
                let ru = child(us, "rollingUpdate");
                set_default(ru, "partition", json!(0));
            }
            let rp = child(spec, "persistentVolumeClaimRetentionPolicy");
            set_default(rp, "whenDeleted", json!("Retain"));
            set_default(rp, "whenScaled", json!("Retain"));
            template(spec);
        }
        ("apps", "DaemonSet") => {
            let spec = child(root, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = child(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us.get("type").and_then(|t| t.as_str()) == Some("RollingUpdate") {
                let ru = child(us, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
            template(spec);
        }
        ("batch", "Job") => {
            let uid = root
                .get("metadata")
                .and_then(|m| m.get("uid"))
                .and_then(|u| u.as_str())
                .unwrap_or_default()
                .to_string();
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|u| u.as_str())
                .unwrap_or_default()
                .to_string();
            let spec = child(root, "spec");
            job_spec(spec, &uid, &name);
        }
        ("batch", "CronJob") => {
            let spec = child(root, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(js) = spec
                .get_mut("jobTemplate")
                .and_then(|j| j.get_mut("spec"))
                .and_then(|s| s.as_object_mut())
            {
                set_default(js, "backoffLimit", json!(6));
                set_default(js, "completionMode", json!("NonIndexed"));
                set_default(js, "suspend", json!(false));
                set_default(js, "podReplacementPolicy", json!("TerminatingOrFailed"));
                template(js);
            }
        }
        ("", "Service") => {
            let spec = child(root, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            let ty = spec
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string();
            if ty != "ExternalName" {
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                set_default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(|p| p.as_array_mut()) {
                for p in ports {
                    if let Some(p) = obj(p) {
                        set_default(p, "protocol", json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            set_default(p, "targetPort", port);
                        }
                    }
                }
            }
        }
        ("", "Namespace") => {
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|u| u.as_str())
                .unwrap_or_default()
                .to_string();
            let meta = child(root, "metadata");
            child(meta, "labels").insert("kubernetes.io/metadata.name".into(), json!(name));
            let spec = child(root, "spec");
            set_default(spec, "finalizers", json!(["kubernetes"]));
        }
        ("", "Secret") => set_default(root, "type", json!("Opaque")),
        ("", "PersistentVolumeClaim") => {
            let spec = child(root, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("", "PersistentVolume") => {
            let spec = child(root, "spec");
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(root, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        _ => {}
    }
}

fn job_spec(spec: &mut Map<String, Value>, uid: &str, name: &str) {
    if spec.get("completions").is_none_or(|v| v.is_null())
        && spec.get("parallelism").is_none_or(|v| v.is_null())
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    // Generated selector (manualSelector unset), like the upstream job strategy.
    if spec.get("manualSelector").and_then(|m| m.as_bool()) != Some(true) && !uid.is_empty() {
        if spec.get("selector").is_none_or(|s| s.is_null()) {
            spec.insert(
                "selector".into(),
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            );
        }
        if let Some(t) = spec.get_mut("template").and_then(|t| t.as_object_mut()) {
            let meta = child(t, "metadata");
            let labels = child(meta, "labels");
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", uid),
                ("batch.kubernetes.io/job-name", name),
                ("controller-uid", uid),
                ("job-name", name),
            ] {
                labels.entry(k.to_string()).or_insert_with(|| json!(v));
            }
        }
    }
    template(spec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(
            image_pull_policy("localhost:5000/busybox:1"),
            "IfNotPresent"
        );
    }

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        apply("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }
}
