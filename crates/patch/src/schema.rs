//! Strategic-merge-patch metadata of the built-in Kubernetes types.
//!
//! A small static type graph: each [`Ty`] lists the fields that lead to (or
//! are) fields with a `patchStrategy` / `patchMergeKey` struct tag in
//! `k8s.io/api` (the `x-kubernetes-patch-strategy` /
//! `x-kubernetes-patch-merge-key` OpenAPI extensions). Fields not listed have
//! no strategy: maps merge recursively and lists are replaced. Each kind maps
//! to its root type, so the pod template shared by Deployments, ReplicaSets,
//! StatefulSets, DaemonSets, Jobs, CronJobs, ReplicationControllers and
//! PodTemplates is described once.

/// The `patchStrategy` of a field (besides `retainKeys`, see
/// [`FieldPatchMeta::retain_keys`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `patchStrategy:"merge"`: lists merge by merge key (or as a set for
    /// primitives).
    Merge,
    /// `patchStrategy:"replace"`: maps are replaced instead of merged.
    Replace,
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FieldPatchMeta {
    pub strategy: Option<Strategy>,
    /// The field's strategy includes `retainKeys`.
    pub retain_keys: bool,
    pub merge_key: Option<&'static str>,
}

/// Node of the type graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Object with only `metadata` of interest.
    Plain,
    ObjectMeta,
    /// `{conditions: []Condition}` merged by `type` (most `status` types).
    ConditionsStatus,
    Pod,
    PodTemplate,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    /// Workloads whose spec is `{template: PodTemplateSpec}` and status has
    /// conditions (ReplicaSet, StatefulSet, DaemonSet, Job, RC).
    Workload,
    TemplateSpec,
    Deployment,
    DeploymentSpec,
    CronJob,
    CronJobSpec,
    JobTemplateSpec,
    Service,
    ServiceSpec,
    ServiceAccount,
    Node,
    NodeSpec,
    NodeStatus,
    /// Objects whose only merge list is `status.conditions`.
    Conditioned,
    ComponentStatus,
    CsiNode,
    CsiNodeSpec,
}

struct Field {
    name: &'static str,
    ty: Option<Ty>,
    meta: FieldPatchMeta,
}

const NONE: FieldPatchMeta = FieldPatchMeta {
    strategy: None,
    retain_keys: false,
    merge_key: None,
};

/// A nested struct field without strategy.
const fn nested(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty: Some(ty),
        meta: NONE,
    }
}

/// `patchStrategy:"merge" patchMergeKey:key` list of `ty` (or of opaque
/// elements).
const fn merge(name: &'static str, key: &'static str, ty: Option<Ty>) -> Field {
    Field {
        name,
        ty,
        meta: FieldPatchMeta {
            strategy: Some(Strategy::Merge),
            retain_keys: false,
            merge_key: Some(key),
        },
    }
}

/// `patchStrategy:"merge,retainKeys" patchMergeKey:key`.
const fn merge_retain(name: &'static str, key: &'static str) -> Field {
    Field {
        name,
        ty: None,
        meta: FieldPatchMeta {
            strategy: Some(Strategy::Merge),
            retain_keys: true,
            merge_key: Some(key),
        },
    }
}

/// `patchStrategy:"merge"` list of primitives (a set).
const fn merge_primitives(name: &'static str) -> Field {
    Field {
        name,
        ty: None,
        meta: FieldPatchMeta {
            strategy: Some(Strategy::Merge),
            retain_keys: false,
            merge_key: None,
        },
    }
}

/// `patchStrategy:"retainKeys"` struct field.
const fn retain(name: &'static str) -> Field {
    Field {
        name,
        ty: None,
        meta: FieldPatchMeta {
            strategy: None,
            retain_keys: true,
            merge_key: None,
        },
    }
}

const METADATA: Field = nested("metadata", Ty::ObjectMeta);
const CONDITIONS: Field = merge("conditions", "type", None);

/// A `'static` field table from const-fn field constructors.
macro_rules! f {
    ($fields:expr) => {{
        const FIELDS: &[Field] = &$fields;
        FIELDS
    }};
}

fn fields(ty: Ty) -> &'static [Field] {
    match ty {
        Ty::Plain => f!([METADATA]),
        // meta/v1 ObjectMeta
        Ty::ObjectMeta => f!([
            merge_primitives("finalizers"),
            merge("ownerReferences", "uid", None),
        ]),
        Ty::ConditionsStatus => f!([CONDITIONS]),
        // core/v1
        Ty::Pod => f!([
            METADATA,
            nested("spec", Ty::PodSpec),
            nested("status", Ty::PodStatus),
        ]),
        Ty::PodTemplate => f!([METADATA, nested("template", Ty::PodTemplateSpec)]),
        Ty::PodTemplateSpec => f!([METADATA, nested("spec", Ty::PodSpec)]),
        Ty::PodSpec => f!([
            merge_retain("volumes", "name"),
            merge("initContainers", "name", Some(Ty::Container)),
            merge("containers", "name", Some(Ty::Container)),
            // EphemeralContainerCommon carries the same tags as Container.
            merge("ephemeralContainers", "name", Some(Ty::Container)),
            merge("imagePullSecrets", "name", None),
            merge("hostAliases", "ip", None),
            merge("topologySpreadConstraints", "topologyKey", None),
            merge_retain("resourceClaims", "name"),
            merge("schedulingGates", "name", None),
        ]),
        Ty::Container => f!([
            merge("ports", "containerPort", None),
            merge("env", "name", None),
            merge("volumeMounts", "mountPath", None),
            merge("volumeDevices", "devicePath", None),
        ]),
        Ty::PodStatus => f!([
            CONDITIONS,
            merge("podIPs", "ip", None),
            merge("hostIPs", "ip", None),
            merge_retain("resourceClaimStatuses", "name"),
        ]),
        Ty::Service => f!([
            METADATA,
            nested("spec", Ty::ServiceSpec),
            nested("status", Ty::ConditionsStatus),
        ]),
        Ty::ServiceSpec => f!([merge("ports", "port", None)]),
        Ty::ServiceAccount => f!([METADATA, merge("secrets", "name", None)]),
        Ty::Node => f!([
            METADATA,
            nested("spec", Ty::NodeSpec),
            nested("status", Ty::NodeStatus),
        ]),
        Ty::NodeSpec => f!([merge_primitives("podCIDRs")]),
        Ty::NodeStatus => f!([CONDITIONS, merge("addresses", "type", None)]),
        Ty::ComponentStatus => f!([METADATA, CONDITIONS]),
        // apps/v1, batch/v1, core/v1 ReplicationController
        Ty::Workload => f!([
            METADATA,
            nested("spec", Ty::TemplateSpec),
            nested("status", Ty::ConditionsStatus),
        ]),
        Ty::TemplateSpec => f!([nested("template", Ty::PodTemplateSpec)]),
        Ty::Deployment => f!([
            METADATA,
            nested("spec", Ty::DeploymentSpec),
            nested("status", Ty::ConditionsStatus),
        ]),
        Ty::DeploymentSpec => f!([nested("template", Ty::PodTemplateSpec), retain("strategy"),]),
        Ty::CronJob => f!([METADATA, nested("spec", Ty::CronJobSpec)]),
        Ty::CronJobSpec => f!([nested("jobTemplate", Ty::JobTemplateSpec)]),
        Ty::JobTemplateSpec => f!([METADATA, nested("spec", Ty::TemplateSpec)]),
        // Namespace, PVC, PDB, ServiceCIDR, HPA (v2), APIService, ...
        Ty::Conditioned => f!([METADATA, nested("status", Ty::ConditionsStatus)]),
        // storage/v1
        Ty::CsiNode => f!([METADATA, nested("spec", Ty::CsiNodeSpec)]),
        Ty::CsiNodeSpec => f!([merge("drivers", "name", None)]),
    }
}

fn normalize_group(group: &str) -> &str {
    group.strip_suffix(".k8s.io").unwrap_or(group)
}

/// The root type of a built-in kind, `None` for kinds without a schema
/// (custom resources).
pub(crate) fn kind_type(group: &str, kind: &str) -> Option<Ty> {
    let ty = match (normalize_group(group), kind) {
        ("", "Pod") => Ty::Pod,
        ("", "PodTemplate") => Ty::PodTemplate,
        ("", "ReplicationController") => Ty::Workload,
        ("", "Service") => Ty::Service,
        ("", "ServiceAccount") => Ty::ServiceAccount,
        ("", "Node") => Ty::Node,
        ("", "Namespace" | "PersistentVolumeClaim") => Ty::Conditioned,
        ("", "ComponentStatus") => Ty::ComponentStatus,
        (
            "",
            "ConfigMap" | "Secret" | "Endpoints" | "Event" | "LimitRange" | "ResourceQuota"
            | "PersistentVolume" | "Binding",
        ) => Ty::Plain,
        ("apps", "Deployment") => Ty::Deployment,
        ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") => Ty::Workload,
        ("apps", "ControllerRevision") => Ty::Plain,
        ("batch", "Job") => Ty::Workload,
        ("batch", "CronJob") => Ty::CronJob,
        ("policy", "PodDisruptionBudget") => Ty::Conditioned,
        ("policy", "Eviction") => Ty::Plain,
        ("discovery", "EndpointSlice") => Ty::Plain,
        ("networking", "ServiceCIDR") => Ty::Conditioned,
        ("networking", "Ingress" | "IngressClass" | "NetworkPolicy" | "IPAddress") => Ty::Plain,
        ("coordination", "Lease") => Ty::Plain,
        ("scheduling", "PriorityClass") => Ty::Plain,
        ("node", "RuntimeClass") => Ty::Plain,
        ("autoscaling", "HorizontalPodAutoscaler") => Ty::Conditioned,
        ("autoscaling", "Scale") => Ty::Plain,
        ("storage", "CSINode") => Ty::CsiNode,
        ("storage", "StorageClass" | "CSIDriver" | "VolumeAttachment" | "CSIStorageCapacity") => {
            Ty::Plain
        }
        ("rbac.authorization", "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") => {
            Ty::Plain
        }
        ("events", "Event") => Ty::Plain,
        ("apiregistration", "APIService") => Ty::Conditioned,
        ("flowcontrol.apiserver", "FlowSchema" | "PriorityLevelConfiguration") => Ty::Conditioned,
        ("apiextensions", "CustomResourceDefinition") => Ty::Plain,
        (
            "admissionregistration",
            "ValidatingWebhookConfiguration"
            | "MutatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding",
        ) => Ty::Plain,
        ("certificates", "CertificateSigningRequest") => Ty::Plain,
        _ => return None,
    };
    Some(ty)
}

/// Whether `group`/`kind` is a built-in kind with a strategic-merge-patch
/// schema. Upstream kube-apiserver answers 415 Unsupported Media Type to a
/// strategic merge patch of any other kind (custom resources).
pub fn is_known_kind(group: &str, kind: &str) -> bool {
    kind_type(group, kind).is_some()
}

/// A position in the type graph; `None` when the type is unknown (no
/// metadata below this point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Schema(pub(crate) Option<Ty>);

impl Schema {
    /// Metadata of field `key` of this type and the schema of its value (of
    /// its elements for lists).
    pub(crate) fn lookup(self, key: &str) -> (Schema, FieldPatchMeta) {
        let Some(ty) = self.0 else {
            return (Schema(None), NONE);
        };
        match fields(ty).iter().find(|f| f.name == key) {
            Some(f) => (Schema(f.ty), f.meta),
            None => (Schema(None), NONE),
        }
    }
}

pub(crate) fn root_schema(group: &str, kind: &str) -> Schema {
    Schema(kind_type(group, kind))
}

/// Patch metadata of the field at `path` (field names from the object root,
/// list and map steps elided), e.g. `["spec","template","spec","containers"]`
/// for a Deployment. `None` if the field has no strategy or merge key.
pub fn field_patch_meta(group: &str, kind: &str, path: &[&str]) -> Option<FieldPatchMeta> {
    let mut schema = root_schema(group, kind);
    let mut meta = NONE;
    for (i, step) in path.iter().enumerate() {
        schema.0?;
        let (next, m) = schema.lookup(step);
        if i + 1 == path.len() {
            meta = m;
        }
        schema = next;
    }
    (meta != NONE).then_some(meta)
}

/// The list strategy and merge key of the list at `path` (see
/// [`field_patch_meta`]); `None` for lists that are replaced.
pub fn list_strategy(
    group: &str,
    kind: &str,
    path: &[&str],
) -> Option<(Strategy, Option<&'static str>)> {
    let meta = field_patch_meta(group, kind, path)?;
    Some((meta.strategy?, meta.merge_key))
}
