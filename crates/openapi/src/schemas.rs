//! Component schemas, generated once from `k8s-openapi`'s `schemars` implementations and
//! post-processed to look like the upstream Kubernetes OpenAPI v3 schemas.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::extensions;

pub(crate) const REF_PREFIX: &str = "#/components/schemas/";
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

pub(crate) const API_VERSION_DESC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
pub(crate) const KIND_DESC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
pub(crate) const OBJECT_META_DESC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_META_DESC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One built-in kind: its group/version/kind, a function registering its schema with the
/// generator (returning the schema name), and whether a `<Kind>List` schema exists.
struct KindEntry {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    register: fn(&mut SchemaGenerator) -> String,
    listable: bool,
}

fn register<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! kinds {
    ($( ($group:literal, $version:literal, $kind:literal, $ty:ty, $list:literal) ),* $(,)?) => {
        const KINDS: &[KindEntry] = &[
            $( KindEntry { group: $group, version: $version, kind: $kind, register: register::<$ty>, listable: $list }, )*
        ];
    };
}

kinds![
    // core/v1
    ("", "v1", "Namespace", api::core::v1::Namespace, true),
    ("", "v1", "Pod", api::core::v1::Pod, true),
    ("", "v1", "Service", api::core::v1::Service, true),
    ("", "v1", "Endpoints", api::core::v1::Endpoints, true),
    ("", "v1", "ConfigMap", api::core::v1::ConfigMap, true),
    ("", "v1", "Secret", api::core::v1::Secret, true),
    (
        "",
        "v1",
        "ServiceAccount",
        api::core::v1::ServiceAccount,
        true
    ),
    ("", "v1", "Node", api::core::v1::Node, true),
    ("", "v1", "Event", api::core::v1::Event, true),
    ("", "v1", "LimitRange", api::core::v1::LimitRange, true),
    (
        "",
        "v1",
        "ResourceQuota",
        api::core::v1::ResourceQuota,
        true
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        api::core::v1::PersistentVolume,
        true
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        api::core::v1::PersistentVolumeClaim,
        true
    ),
    (
        "",
        "v1",
        "ReplicationController",
        api::core::v1::ReplicationController,
        true
    ),
    ("", "v1", "PodTemplate", api::core::v1::PodTemplate, true),
    ("", "v1", "Binding", api::core::v1::Binding, false),
    // apps/v1
    ("apps", "v1", "Deployment", api::apps::v1::Deployment, true),
    ("apps", "v1", "ReplicaSet", api::apps::v1::ReplicaSet, true),
    (
        "apps",
        "v1",
        "StatefulSet",
        api::apps::v1::StatefulSet,
        true
    ),
    ("apps", "v1", "DaemonSet", api::apps::v1::DaemonSet, true),
    (
        "apps",
        "v1",
        "ControllerRevision",
        api::apps::v1::ControllerRevision,
        true
    ),
    // autoscaling
    (
        "autoscaling",
        "v1",
        "Scale",
        api::autoscaling::v1::Scale,
        false
    ),
    (
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        api::autoscaling::v1::HorizontalPodAutoscaler,
        true
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        api::autoscaling::v2::HorizontalPodAutoscaler,
        true
    ),
    // batch/v1
    ("batch", "v1", "Job", api::batch::v1::Job, true),
    ("batch", "v1", "CronJob", api::batch::v1::CronJob, true),
    // others
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        api::coordination::v1::Lease,
        true
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        api::discovery::v1::EndpointSlice,
        true
    ),
    ("events.k8s.io", "v1", "Event", api::events::v1::Event, true),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        api::policy::v1::PodDisruptionBudget,
        true
    ),
    ("policy", "v1", "Eviction", api::policy::v1::Eviction, false),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        api::scheduling::v1::PriorityClass,
        true
    ),
    (
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        api::node::v1::RuntimeClass,
        true
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        api::networking::v1::Ingress,
        true
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        api::networking::v1::IngressClass,
        true
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        api::networking::v1::NetworkPolicy,
        true
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        api::rbac::v1::Role,
        true
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        api::rbac::v1::RoleBinding,
        true
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        api::rbac::v1::ClusterRole,
        true
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        api::rbac::v1::ClusterRoleBinding,
        true
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        api::storage::v1::StorageClass,
        true
    ),
];

/// The schemas of every known kind and everything they reach, post-processed.
pub(crate) struct Catalog {
    pub schemas: Map<String, Value>,
    /// (group, version, kind) -> schema name, including the `<Kind>List` kinds.
    pub kinds: HashMap<(String, String, String), String>,
}

pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

fn build_catalog() -> Catalog {
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut kinds = HashMap::new();
    let mut lists = Vec::new();
    for k in KINDS {
        let name = (k.register)(&mut gen);
        if k.listable {
            lists.push((k, name.clone()));
        }
        kinds.insert((k.group.into(), k.version.into(), k.kind.into()), name);
    }
    let status = register::<meta::Status>(&mut gen);
    let delete_options = register::<meta::DeleteOptions>(&mut gen);
    register::<meta::Patch>(&mut gen);
    register::<meta::ListMeta>(&mut gen);
    register::<meta::ObjectMeta>(&mut gen);
    kinds.insert(("".into(), "v1".into(), "Status".into()), status);
    kinds.insert(
        ("".into(), "v1".into(), "DeleteOptions".into()),
        delete_options,
    );

    let mut defs = gen.take_definitions(true);
    for (k, item_name) in lists {
        let list_name = format!("{item_name}List");
        defs.insert(list_name.clone(), list_schema(k.kind, &item_name));
        kinds.insert(
            (k.group.into(), k.version.into(), format!("{}List", k.kind)),
            list_name,
        );
    }

    for schema in defs.values_mut() {
        strip_required_metadata(schema);
    }
    special_types(&mut defs);
    extensions::apply(&mut defs);

    // GVK tags on the top-level kinds (an array, as upstream).
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for ((g, v, k), name) in &kinds {
        by_name
            .entry(name.clone())
            .or_default()
            .push(json!({"group": g, "kind": k, "version": v}));
    }
    // DeleteOptions is served by every group-version upstream.
    let gvs: BTreeSet<(&str, &str)> = KINDS.iter().map(|k| (k.group, k.version)).collect();
    let del = by_name.entry(DELETE_OPTIONS.to_string()).or_default();
    for (g, v) in gvs {
        if !g.is_empty() {
            del.push(json!({"group": g, "kind": "DeleteOptions", "version": v}));
        }
    }
    for (name, mut gvks) in by_name {
        gvks.sort_by_key(|a| (a["group"].to_string(), a["version"].to_string()));
        gvks.dedup();
        if let Some(Value::Object(obj)) = defs.get_mut(&name) {
            obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
        }
    }

    // Sort by name, like upstream.
    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Catalog {
        schemas: sorted.into_iter().collect(),
        kinds,
    }
}

pub(crate) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// A `$ref` with siblings, wrapped in `allOf` as upstream does.
fn reference_with(name: &str, description: &str) -> Value {
    json!({ "allOf": [reference(name)], "default": {}, "description": description })
}

fn list_schema(kind: &str, item_name: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "properties": {
            "apiVersion": { "description": API_VERSION_DESC, "type": "string" },
            "items": {
                "description": format!("Items is the list of {kind} objects."),
                "items": reference(item_name),
                "type": "array",
            },
            "kind": { "description": KIND_DESC, "type": "string" },
            "metadata": reference_with(LIST_META, LIST_META_DESC),
        },
        "required": ["items"],
        "type": "object",
    })
}

/// A permissive schema for a kind this crate does not know (e.g. a custom resource).
pub(crate) fn permissive_schema(group: &str, version: &str, kind: &str) -> Value {
    json!({
        "description": format!("{kind} is served by this server; its schema is not known, so any fields are accepted."),
        "properties": {
            "apiVersion": { "description": API_VERSION_DESC, "type": "string" },
            "kind": { "description": KIND_DESC, "type": "string" },
            "metadata": reference_with(OBJECT_META, OBJECT_META_DESC),
        },
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-group-version-kind": [{ "group": group, "kind": kind, "version": version }],
    })
}

/// The permissive list schema for an unknown kind.
pub(crate) fn permissive_list_schema(
    group: &str,
    version: &str,
    kind: &str,
    item_name: &str,
) -> Value {
    let mut s = list_schema(kind, item_name);
    s["x-kubernetes-group-version-kind"] =
        json!([{ "group": group, "kind": format!("{kind}List"), "version": version }]);
    s
}

/// Schema name for a kind this crate does not know, following the upstream naming of custom
/// resources (reversed group, then version and kind).
pub(crate) fn unknown_schema_name(group: &str, version: &str, kind: &str) -> String {
    if group.is_empty() {
        return format!("io.k8s.api.core.{version}.{kind}");
    }
    let mut parts: Vec<&str> = group.split('.').collect();
    if parts.len() == 1 {
        // Built-in style group without dots ("apps", "batch", ...).
        return format!("io.k8s.api.{group}.{version}.{kind}");
    }
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// k8s-openapi marks `metadata` as required because it is not an `Option` in Rust; upstream
/// never requires it.
fn strip_required_metadata(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(req)) = obj.get_mut("required") {
        req.retain(|r| r != "metadata");
        if req.is_empty() {
            obj.remove("required");
        }
    }
}

/// Kubernetes special types, as upstream's v3 documents describe them.
fn special_types(defs: &mut Map<String, Value>) {
    if let Some(Value::Object(q)) = defs.get_mut(QUANTITY) {
        q.remove("x-kubernetes-int-or-string");
        q.insert(
            "oneOf".into(),
            json!([{ "type": "string" }, { "type": "number" }]),
        );
    }
    if let Some(Value::Object(s)) = defs.get_mut(INT_OR_STRING) {
        s.insert("format".into(), json!("int-or-string"));
        s.insert(
            "oneOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
        s.insert("x-kubernetes-int-or-string".into(), json!(true));
    }
    // Time, MicroTime: k8s-openapi already emits {type: string, format: date-time}.
}

/// Every schema name referenced (transitively) from `roots`, using `lookup` to find schemas.
pub(crate) fn closure<'a>(
    roots: impl IntoIterator<Item = String>,
    lookup: impl Fn(&str) -> Option<&'a Value>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.into_iter().collect();
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = lookup(&name) {
            collect_refs(schema, &mut |r| {
                if !seen.contains(r) {
                    stack.push(r.to_string());
                }
            });
        }
    }
    seen
}

pub(crate) fn collect_refs(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj {
                if let (true, Some(target)) = (k == "$ref", child.as_str()) {
                    if let Some(name) = target.strip_prefix(REF_PREFIX) {
                        f(name);
                    }
                } else {
                    collect_refs(child, f);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|c| collect_refs(c, f)),
        _ => {}
    }
}
