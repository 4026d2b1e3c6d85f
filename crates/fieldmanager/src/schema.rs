//! The type information field management needs, read from OpenAPI v3
//! component schemas: which nodes are structs, granular or atomic maps,
//! atomic/set/map lists (and their keys), or scalars.
//!
//! Rules follow upstream's OpenAPI → structured-merge-diff conversion:
//! a list without `x-kubernetes-list-type` is atomic unless it carries the
//! strategic-merge `x-kubernetes-patch-strategy: merge` (then a map keyed by
//! the merge key, or a set of primitives); structs marked
//! `x-kubernetes-map-type: atomic` (or upstream `+structType=atomic`, listed
//! in [`ATOMIC_STRUCTS`] because the generated schemas lack the marker) are
//! leaves; anything without a schema is "deduced": objects are granular maps,
//! lists are atomic.

use serde_json::{Map, Value};

/// Component schemas upstream marks `+structType=atomic` / `+mapType=atomic`.
pub const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.ConfigMapEnvSource",
    "io.k8s.api.core.v1.SecretEnvSource",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.SecretReference",
];

/// Defaults of list-map key fields, so that `k:{...}` matches whether or
/// not the client spelled the default (upstream uses the schema default).
pub fn key_default(field: &str) -> Option<Value> {
    match field {
        "protocol" => Some(Value::String("TCP".into())),
        _ => None,
    }
}

/// How a list's elements are identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    /// Associative list keyed by these fields.
    Map(Vec<String>),
}

/// A resolved node type.
#[derive(Clone, Debug)]
pub enum Kind<'a> {
    Scalar,
    /// An object with declared fields.
    Struct(&'a Map<String, Value>),
    /// `map[string]T`; `None` element means deduced.
    Map(Option<Ty<'a>>),
    /// An atomic struct or map: a leaf.
    AtomicMap,
    List(ListKind, Option<Ty<'a>>),
    /// No schema: deduce from the value.
    Deduced,
}

/// A schema node within a set of components.
#[derive(Clone, Copy, Debug)]
pub struct Ty<'a> {
    defs: &'a Map<String, Value>,
    node: &'a Value,
}

/// The component schemas of one OpenAPI document.
#[derive(Clone, Copy, Debug)]
pub struct Schema<'a> {
    defs: &'a Map<String, Value>,
}

impl<'a> Schema<'a> {
    pub fn new(defs: &'a Map<String, Value>) -> Self {
        Schema { defs }
    }

    /// The root type by component name (`io.k8s.api.apps.v1.Deployment`).
    pub fn root(&self, name: &str) -> Option<Ty<'a>> {
        self.defs.get(name).map(|node| Ty {
            defs: self.defs,
            node,
        })
    }

    /// The name of the component whose `x-kubernetes-group-version-kind`
    /// names this kind (a scan of every component: cache it).
    pub fn find_kind_name(&self, group: &str, version: &str, kind: &str) -> Option<&'a str> {
        self.defs.iter().find_map(|(name, node)| {
            let gvks = node.get("x-kubernetes-group-version-kind")?.as_array()?;
            gvks.iter()
                .any(|g| {
                    g.get("group").and_then(Value::as_str).unwrap_or("") == group
                        && g.get("version").and_then(Value::as_str) == Some(version)
                        && g.get("kind").and_then(Value::as_str) == Some(kind)
                })
                .then_some(name.as_str())
        })
    }

    /// The component whose `x-kubernetes-group-version-kind` names this kind.
    pub fn find_kind(&self, group: &str, version: &str, kind: &str) -> Option<Ty<'a>> {
        self.defs.values().find_map(|node| {
            let gvks = node.get("x-kubernetes-group-version-kind")?.as_array()?;
            gvks.iter()
                .any(|g| {
                    g.get("group").and_then(Value::as_str).unwrap_or("") == group
                        && g.get("version").and_then(Value::as_str) == Some(version)
                        && g.get("kind").and_then(Value::as_str) == Some(kind)
                })
                .then_some(Ty {
                    defs: self.defs,
                    node,
                })
        })
    }
}

fn ref_name(node: &Value) -> Option<&str> {
    let r = node.get("$ref").and_then(Value::as_str).or_else(|| {
        node.get("allOf")?
            .as_array()?
            .iter()
            .find_map(|s| s.get("$ref")?.as_str())
    })?;
    Some(r.rsplit('/').next().unwrap_or(r))
}

impl<'a> Ty<'a> {
    fn at(&self, node: &'a Value) -> Ty<'a> {
        Ty {
            defs: self.defs,
            node,
        }
    }

    /// Follows `$ref` / `allOf: [{$ref}]` to the definition, returning it
    /// with its component name.
    fn deref(&self) -> (Ty<'a>, Option<&'a str>) {
        let mut cur = *self;
        let mut name = None;
        for _ in 0..8 {
            match ref_name(cur.node).and_then(|n| self.defs.get_key_value(n)) {
                Some((n, def)) => {
                    name = Some(n.as_str());
                    cur = cur.at(def);
                }
                None => break,
            }
        }
        (cur, name)
    }

    pub fn kind(&self) -> Kind<'a> {
        // List/map extensions sit on the property node, not the target.
        let ext = self.node;
        let (t, name) = self.deref();
        let node = t.node;
        let map_atomic =
            |n: &Value| n.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
        if map_atomic(ext) || map_atomic(node) || name.is_some_and(|n| ATOMIC_STRUCTS.contains(&n))
        {
            return Kind::AtomicMap;
        }
        if node.get("x-kubernetes-int-or-string").is_some() {
            return Kind::Scalar;
        }
        let ty = node.get("type").and_then(Value::as_str);
        if let Some(items) = node.get("items") {
            let lt = ext
                .get("x-kubernetes-list-type")
                .or_else(|| node.get("x-kubernetes-list-type"))
                .and_then(Value::as_str);
            let keys: Vec<String> = ext
                .get("x-kubernetes-list-map-keys")
                .or_else(|| node.get("x-kubernetes-list-map-keys"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let strategy = ext
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .unwrap_or("");
            let merge_key = ext
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str);
            let lk = match lt {
                Some("map") if !keys.is_empty() => ListKind::Map(keys),
                Some("set") => ListKind::Set,
                Some(_) => ListKind::Atomic,
                None if strategy.split(',').any(|s| s == "merge") => match merge_key {
                    Some(k) => ListKind::Map(vec![k.to_string()]),
                    None => ListKind::Set,
                },
                None => ListKind::Atomic,
            };
            return Kind::List(lk, Some(t.at(items)));
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            return Kind::Struct(props);
        }
        if let Some(ap) = node.get("additionalProperties") {
            return Kind::Map(ap.is_object().then(|| t.at(ap)));
        }
        match ty {
            Some("object") | None => Kind::Deduced,
            _ => Kind::Scalar,
        }
    }

    /// The type of field `name` of a struct.
    pub fn field(&self, props: &'a Map<String, Value>, name: &str) -> Option<Ty<'a>> {
        props.get(name).map(|n| self.at(n))
    }
}

/// A type, or "deduced" when unknown.
pub type OptTy<'a> = Option<Ty<'a>>;

/// The kind of an optional type; values decide when there is no schema.
pub fn kind_of<'a>(ty: OptTy<'a>, v: Option<&Value>) -> Kind<'a> {
    match ty.map(|t| t.kind()) {
        Some(Kind::Deduced) | None => match v {
            Some(Value::Object(_)) => Kind::Map(None),
            Some(Value::Array(_)) => Kind::List(ListKind::Atomic, None),
            _ => Kind::Scalar,
        },
        Some(k) => k,
    }
}

/// Child type of a struct/map node for key `k`.
pub fn child_ty<'a>(kind: &Kind<'a>, ty: OptTy<'a>, k: &str) -> OptTy<'a> {
    match (kind, ty) {
        (Kind::Struct(props), Some(t)) => {
            let (d, _) = t.deref();
            d.field(props, k)
        }
        (Kind::Map(elem), _) => *elem,
        _ => None,
    }
}

/// Whether `k` is a declared field of a struct (map entries of undeclared
/// keys are members of a field set, struct fields are not).
pub fn declared(kind: &Kind<'_>, k: &str) -> bool {
    matches!(kind, Kind::Struct(props) if props.contains_key(k))
}
