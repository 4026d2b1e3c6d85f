//! `meta.k8s.io/v1` Table rendering for Bosun.
//!
//! Mirrors upstream Kubernetes' server-side printers
//! (`pkg/printers/internalversion/printers.go`) so that an unmodified
//! `kubectl get` prints exactly the columns a real cluster prints. Like the
//! upstream API server (which always generates with `Wide: true`), rows always
//! carry the cells of priority-1 columns too; kubectl hides them unless
//! `-o wide`.
//!
//! Objects are arbitrary user JSON: every accessor tolerates missing or
//! ill-typed fields and treats them as zero/empty.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

mod columns;
mod printers;
mod util;

#[cfg(test)]
mod tests;

/// Which printer handles a (group, resource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    /// core/v1 Event.
    Event,
    /// events.k8s.io/v1 Event (same printer, renamed fields).
    EventsV1,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    ComponentStatus,
    Deployment,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    Lease,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    RuntimeClass,
    VolumeAttachment,
    EndpointSlice,
    CSINode,
    CSIDriver,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    /// Built-in types upstream serves through the generic
    /// `rest.DefaultTableConvertor` (Name + "Created At").
    DefaultCreatedAt,
    /// Anything else: Name + Age.
    Unknown,
}

impl Kind {
    fn of(group: &str, resource: &str) -> Kind {
        use Kind::*;
        match (group, resource) {
            ("", "pods") => Pod,
            ("", "podtemplates") => PodTemplate,
            ("", "replicationcontrollers") => ReplicationController,
            ("", "services") => Service,
            ("", "endpoints") => Endpoints,
            ("", "nodes") => Node,
            ("", "events") => Event,
            ("", "namespaces") => Namespace,
            ("", "secrets") => Secret,
            ("", "serviceaccounts") => ServiceAccount,
            ("", "persistentvolumes") => PersistentVolume,
            ("", "persistentvolumeclaims") => PersistentVolumeClaim,
            ("", "componentstatuses") => ComponentStatus,
            ("", "configmaps") => ConfigMap,
            ("", "resourcequotas") => ResourceQuota,
            ("", "limitranges") => DefaultCreatedAt,
            ("apps", "deployments") => Deployment,
            ("apps", "replicasets") => ReplicaSet,
            ("apps", "statefulsets") => StatefulSet,
            ("apps", "daemonsets") => DaemonSet,
            ("apps", "controllerrevisions") => ControllerRevision,
            ("batch", "jobs") => Job,
            ("batch", "cronjobs") => CronJob,
            ("discovery.k8s.io", "endpointslices") => EndpointSlice,
            ("events.k8s.io", "events") => EventsV1,
            ("coordination.k8s.io", "leases") => Lease,
            ("policy", "poddisruptionbudgets") => PodDisruptionBudget,
            ("scheduling.k8s.io", "priorityclasses") => PriorityClass,
            ("node.k8s.io", "runtimeclasses") => RuntimeClass,
            ("networking.k8s.io", "ingresses") => Ingress,
            ("networking.k8s.io", "ingressclasses") => IngressClass,
            ("networking.k8s.io", "networkpolicies") => NetworkPolicy,
            ("rbac.authorization.k8s.io", "rolebindings") => RoleBinding,
            ("rbac.authorization.k8s.io", "clusterrolebindings") => ClusterRoleBinding,
            ("rbac.authorization.k8s.io", "roles" | "clusterroles") => DefaultCreatedAt,
            ("apiextensions.k8s.io", "customresourcedefinitions") => DefaultCreatedAt,
            ("certificates.k8s.io", "certificatesigningrequests") => CertificateSigningRequest,
            ("storage.k8s.io", "storageclasses") => StorageClass,
            ("storage.k8s.io", "volumeattachments") => VolumeAttachment,
            ("storage.k8s.io", "csinodes") => CSINode,
            ("storage.k8s.io", "csidrivers") => CSIDriver,
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
                MutatingWebhookConfiguration
            }
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
                ValidatingWebhookConfiguration
            }
            _ => Unknown,
        }
    }
}

/// Column definitions (each a JSON object `{name,type,format,description,priority}`)
/// for a resource; `group` is "" for core.
pub fn column_definitions(group: &str, resource: &str) -> Vec<Value> {
    columns::definitions(Kind::of(group, resource))
}

/// The cells of one row for `obj` (the full object as JSON), in the same order
/// as [`column_definitions`]. `now` is injected for ages.
pub fn row_cells(group: &str, resource: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    printers::cells(Kind::of(group, resource), obj, now)
}

/// Human duration like apimachinery's `duration.HumanDuration`
/// ("5s", "3m2s", "4h", "2d3h", "10y" ...).
pub fn human_duration(d: Duration) -> String {
    // Allow deviation no more than 2 seconds (excluded) to tolerate machine
    // time inconsistence; it can be considered as almost now.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{}h", hours / 24, h)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{}d", hours / 24 / 365, dy)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}
