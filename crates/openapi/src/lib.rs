//! OpenAPI v3 documents for Bosun's API server, shaped like the ones kube-apiserver serves at
//! `/openapi/v3` and `/openapi/v3/<apis/group/version>`, as the unmodified kubectl needs them
//! for `create -f`/`apply` validation (`fieldValidation`), client-side apply (strategic merge
//! patch metadata) and `kubectl explain`.
//!
//! Component schemas come from `k8s-openapi`'s `schemars` implementations (upstream names and
//! descriptions), generated once per process and post-processed (`metadata` never required,
//! Quantity/IntOrString like upstream, list-type and patch extensions, GVK tags).

mod extensions;
mod schemas;

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use schemas::{
    catalog, closure, permissive_list_schema, permissive_schema, reference, unknown_schema_name,
    DELETE_OPTIONS, PATCH, STATUS,
};

/// A resource served under one group-version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// "status", "scale", "binding", "eviction", "ephemeralcontainers" (others are ignored).
    /// "pods/status" style names are accepted too.
    pub subresources: Vec<String>,
    /// Kubernetes verbs ("get", "list", "create", "update", "patch", "delete",
    /// "deletecollection", "watch"); empty means all of them.
    pub verbs: Vec<String>,
}

/// The document for one group-version ("api/v1" or "apis/apps/v1" keys), built from the
/// resources served there. A resource with an empty `version` is taken to belong to
/// `group`/`version`; otherwise its own group and version are used.
pub fn group_version_document(group: &str, version: &str, resources: &[ResourceInfo]) -> Value {
    let cat = catalog();
    let resources: Vec<ResourceInfo> = resources
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.version.is_empty() {
                r.group = group.to_string();
                r.version = version.to_string();
            }
            r
        })
        .collect();
    let mut paths = Map::new();
    let mut roots: Vec<String> = vec![
        STATUS.to_string(),
        DELETE_OPTIONS.to_string(),
        PATCH.to_string(),
    ];
    // Schemas synthesized for kinds the catalog does not know.
    let mut extra = Map::new();

    for r in &resources {
        let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
        let (kind_schema, known) = match cat.kinds.get(&gvk) {
            Some(name) => (name.clone(), true),
            None => {
                let name = unknown_schema_name(&r.group, &r.version, &r.kind);
                extra.insert(
                    name.clone(),
                    permissive_schema(&r.group, &r.version, &r.kind),
                );
                (name, false)
            }
        };
        let list_gvk = (
            r.group.clone(),
            r.version.clone(),
            format!("{}List", r.kind),
        );
        let list_schema = match cat.kinds.get(&list_gvk) {
            Some(name) => Some(name.clone()),
            None if !known => {
                let name = format!("{kind_schema}List");
                extra.insert(
                    name.clone(),
                    permissive_list_schema(&r.group, &r.version, &r.kind, &kind_schema),
                );
                Some(name)
            }
            None => None,
        };
        roots.push(kind_schema.clone());
        roots.extend(list_schema.clone());

        let ctx = PathCtx {
            r,
            gvk: Gvk {
                group: &r.group,
                version: &r.version,
                kind: &r.kind,
            },
            schema: &kind_schema,
            smp: known,
        };
        add_resource_paths(&mut paths, &ctx, list_schema.as_deref());

        for sub in &r.subresources {
            let sub = sub.rsplit('/').next().unwrap_or(sub);
            let sub_kind = match sub {
                "status" | "ephemeralcontainers" => {
                    Some((r.group.as_str(), r.version.as_str(), r.kind.as_str()))
                }
                "scale" => Some(("autoscaling", "v1", "Scale")),
                "binding" => Some(("", "v1", "Binding")),
                "eviction" => Some(("policy", "v1", "Eviction")),
                _ => None,
            };
            let Some((g, v, k)) = sub_kind else { continue };
            let Some(schema) = cat
                .kinds
                .get(&(g.to_string(), v.to_string(), k.to_string()))
                .cloned()
                .or_else(|| (k == r.kind).then(|| kind_schema.clone()))
            else {
                continue;
            };
            roots.push(schema.clone());
            let sctx = PathCtx {
                r,
                gvk: Gvk {
                    group: g,
                    version: v,
                    kind: k,
                },
                schema: &schema,
                smp: known,
            };
            add_subresource_paths(&mut paths, &sctx, sub);
        }
    }

    let lookup = |name: &str| cat.schemas.get(name).or_else(|| extra.get(name));
    let names = closure(roots, lookup);
    let mut components = Map::new();
    for name in names {
        if let Some(s) = lookup(&name) {
            components.insert(name, s.clone());
        }
    }
    let mut sorted_paths: Vec<(String, Value)> = paths.into_iter().collect();
    sorted_paths.sort_by(|a, b| a.0.cmp(&b.0));

    json!({
        "components": { "schemas": components },
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "openapi": "3.0.0",
        "paths": sorted_paths.into_iter().collect::<Map<String, Value>>(),
    })
}

/// The root `/openapi/v3` document given (path key, hash) pairs, e.g.
/// `("apis/apps/v1", "0123ABCD")`.
pub fn root_document(entries: &[(String, String)]) -> Value {
    let mut paths = Map::new();
    let mut sorted: Vec<&(String, String)> = entries.iter().collect();
    sorted.sort();
    for (key, hash) in sorted {
        let key = key.trim_start_matches('/');
        paths.insert(
            key.to_string(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

/// A stable content hash of a document: 128-bit FNV-1a of its compact JSON serialization,
/// as 32 uppercase hex digits.
pub fn content_hash(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:032X}")
}

/// The path key ("api/v1" or "apis/<group>/<version>") for a group-version.
pub fn path_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl Gvk<'_> {
    fn value(&self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

struct PathCtx<'a> {
    r: &'a ResourceInfo,
    /// The GVK the operations are tagged with (the resource's, or e.g. Scale for /scale).
    gvk: Gvk<'a>,
    /// The schema of request/response bodies.
    schema: &'a str,
    /// Whether strategic merge patch is offered (not for unknown kinds, as for CRDs).
    smp: bool,
}

impl PathCtx<'_> {
    fn has(&self, verb: &str) -> bool {
        self.r.verbs.is_empty() || self.r.verbs.iter().any(|v| v == verb)
    }

    /// "AppsV1", "CoreV1", "RbacAuthorizationV1".
    fn gv_ident(&self) -> String {
        let group = if self.r.group.is_empty() {
            "core"
        } else {
            self.r.group.trim_end_matches(".k8s.io")
        };
        let mut out = String::new();
        for part in group.split(['.', '-']) {
            out.push_str(&capitalize(part));
        }
        out.push_str(&capitalize(&self.r.version));
        out
    }

    fn tag(&self) -> String {
        let group = if self.r.group.is_empty() {
            "core".to_string()
        } else {
            self.r.group.trim_end_matches(".k8s.io").replace('.', "_")
        };
        format!("{group}_{}", self.r.version)
    }

    fn op_id(&self, verb: &str, collection: bool, suffix: &str) -> String {
        format!(
            "{verb}{}{}{}{}{suffix}",
            self.gv_ident(),
            if collection { "Collection" } else { "" },
            if self.r.namespaced { "Namespaced" } else { "" },
            self.r.kind
        )
    }

    fn prefix(&self) -> String {
        format!("/{}", path_key(&self.r.group, &self.r.version))
    }

    fn collection_path(&self) -> String {
        if self.r.namespaced {
            format!(
                "{}/namespaces/{{namespace}}/{}",
                self.prefix(),
                self.r.plural
            )
        } else {
            format!("{}/{}", self.prefix(), self.r.plural)
        }
    }

    fn item_path(&self) -> String {
        format!("{}/{{name}}", self.collection_path())
    }

    fn path_params(&self, item: bool) -> Value {
        let mut params = Vec::new();
        if item {
            params.push(json!({
                "description": format!("name of the {}", self.r.kind),
                "in": "path", "name": "name", "required": true,
                "schema": { "type": "string", "uniqueItems": true },
            }));
        }
        if self.r.namespaced {
            params.push(json!({
                "description": "object name and auth scope, such as for teams and projects",
                "in": "path", "name": "namespace", "required": true,
                "schema": { "type": "string", "uniqueItems": true },
            }));
        }
        params.push(query_param("pretty", "string", PRETTY_DESC));
        Value::Array(params)
    }

    fn op(
        &self,
        action: &str,
        description: String,
        operation_id: String,
        params: Vec<Value>,
        responses: Value,
    ) -> Map<String, Value> {
        let mut op = Map::new();
        op.insert("description".into(), json!(description));
        op.insert("operationId".into(), json!(operation_id));
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        op.insert("responses".into(), responses);
        op.insert("tags".into(), json!([self.tag()]));
        op.insert("x-kubernetes-action".into(), json!(action));
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.value());
        op
    }

    fn read_op(&self, what: &str, suffix: &str) -> Value {
        Value::Object(self.op(
            "get",
            format!("read {what} of the specified {}", self.r.kind),
            self.op_id("read", false, suffix),
            vec![],
            responses(&[("200", "OK", self.schema)]),
        ))
    }

    fn replace_op(&self, what: &str, suffix: &str) -> Value {
        let mut op = self.op(
            "put",
            format!("replace {what} of the specified {}", self.r.kind),
            self.op_id("replace", false, suffix),
            write_params(false),
            responses(&[("200", "OK", self.schema), ("201", "Created", self.schema)]),
        );
        op.insert("requestBody".into(), body(self.schema));
        Value::Object(op)
    }

    fn patch_op(&self, what: &str, suffix: &str) -> Value {
        let mut op = self.op(
            "patch",
            format!("partially update {what} of the specified {}", self.r.kind),
            self.op_id("patch", false, suffix),
            write_params(true),
            responses(&[("200", "OK", self.schema), ("201", "Created", self.schema)]),
        );
        let mut content = Map::new();
        let mut types = vec![
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ];
        if self.smp {
            types.push("application/strategic-merge-patch+json");
        }
        for t in types {
            content.insert(t.into(), json!({ "schema": reference(PATCH) }));
        }
        op.insert(
            "requestBody".into(),
            json!({ "content": content, "required": true }),
        );
        Value::Object(op)
    }

    fn create_op(&self, description: String, operation_id: String) -> Value {
        let mut op = self.op(
            "post",
            description,
            operation_id,
            write_params(false),
            responses(&[
                ("200", "OK", self.schema),
                ("201", "Created", self.schema),
                ("202", "Accepted", self.schema),
            ]),
        );
        op.insert("requestBody".into(), body(self.schema));
        Value::Object(op)
    }
}

const PRETTY_DESC: &str = "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).";
const DRY_RUN_DESC: &str = "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER_DESC: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.";
const FIELD_MANAGER_PATCH_DESC: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).";
const FIELD_VALIDATION_DESC: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";
const FORCE_DESC: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.";

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        query_param("dryRun", "string", DRY_RUN_DESC),
        query_param(
            "fieldManager",
            "string",
            if patch {
                FIELD_MANAGER_PATCH_DESC
            } else {
                FIELD_MANAGER_DESC
            },
        ),
        query_param("fieldValidation", "string", FIELD_VALIDATION_DESC),
    ];
    if patch {
        params.push(query_param("force", "boolean", FORCE_DESC));
    }
    params
}

fn list_params() -> Vec<Value> {
    vec![
        query_param("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored."),
        query_param("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize."),
        query_param("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        query_param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        query_param("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."),
        query_param("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"),
        query_param("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"),
        query_param("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection."),
        query_param("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        query_param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query_param("dryRun", "string", DRY_RUN_DESC),
        query_param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately."),
        query_param("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the object from the storage. WARNING: This may potentially break the cluster if the workload associated with the resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value is false, and the user must opt in to enable it"),
        query_param("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both."),
        query_param("propagationPolicy", "string", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground."),
    ]
}

fn responses(entries: &[(&str, &str, &str)]) -> Value {
    let mut out = Map::new();
    for (code, description, schema) in entries {
        let mut content = Map::new();
        for t in [
            "application/json",
            "application/vnd.kubernetes.protobuf",
            "application/yaml",
        ] {
            content.insert(t.into(), json!({ "schema": reference(schema) }));
        }
        out.insert(
            code.to_string(),
            json!({ "content": content, "description": description }),
        );
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

fn body(schema: &str) -> Value {
    json!({ "content": { "*/*": { "schema": reference(schema) } }, "required": true })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn add_resource_paths(paths: &mut Map<String, Value>, ctx: &PathCtx, list_schema: Option<&str>) {
    let kind = &ctx.r.kind;
    // Collection: list, create, deletecollection.
    let mut coll = Map::new();
    if let Some(list_schema) = list_schema {
        if ctx.has("list") {
            coll.insert(
                "get".into(),
                Value::Object(ctx.op(
                    "list",
                    format!("list or watch objects of kind {kind}"),
                    ctx.op_id("list", false, ""),
                    list_params(),
                    responses(&[("200", "OK", list_schema)]),
                )),
            );
        }
    }
    if ctx.has("create") {
        coll.insert(
            "post".into(),
            ctx.create_op(format!("create a {kind}"), ctx.op_id("create", false, "")),
        );
    }
    if ctx.has("deletecollection") {
        let mut params = delete_params();
        params.extend(list_params());
        let mut op = ctx.op(
            "deletecollection",
            format!("delete collection of {kind}"),
            ctx.op_id("delete", true, ""),
            params,
            responses(&[("200", "OK", STATUS)]),
        );
        op.insert("requestBody".into(), body(DELETE_OPTIONS));
        coll.insert("delete".into(), Value::Object(op));
    }
    if !coll.is_empty() {
        coll.insert("parameters".into(), ctx.path_params(false));
        paths.insert(ctx.collection_path(), Value::Object(coll));
    }

    // Cluster-wide list of a namespaced resource.
    if let (true, Some(list_schema), true) = (ctx.r.namespaced, list_schema, ctx.has("list")) {
        let mut op = ctx.op(
            "list",
            format!("list or watch objects of kind {kind}"),
            format!("list{}{}ForAllNamespaces", ctx.gv_ident(), kind),
            list_params(),
            responses(&[("200", "OK", list_schema)]),
        );
        let mut params = vec![query_param("pretty", "string", PRETTY_DESC)];
        if let Some(Value::Array(p)) = op.remove("parameters") {
            params.extend(p);
        }
        op.insert("parameters".into(), Value::Array(params));
        paths.insert(
            format!("{}/{}", ctx.prefix(), ctx.r.plural),
            json!({ "get": op }),
        );
    }

    // Item: read, replace, patch, delete.
    let mut item = Map::new();
    if ctx.has("get") {
        item.insert(
            "get".into(),
            Value::Object(ctx.op(
                "get",
                format!("read the specified {kind}"),
                ctx.op_id("read", false, ""),
                vec![],
                responses(&[("200", "OK", ctx.schema)]),
            )),
        );
    }
    if ctx.has("update") {
        let mut op = ctx.op(
            "put",
            format!("replace the specified {kind}"),
            ctx.op_id("replace", false, ""),
            write_params(false),
            responses(&[("200", "OK", ctx.schema), ("201", "Created", ctx.schema)]),
        );
        op.insert("requestBody".into(), body(ctx.schema));
        item.insert("put".into(), Value::Object(op));
    }
    if ctx.has("patch") {
        let mut op = ctx.patch_op("", "");
        if let Some(d) = op.get_mut("description") {
            *d = json!(format!("partially update the specified {kind}"));
        }
        item.insert("patch".into(), op);
    }
    if ctx.has("delete") {
        let mut op = ctx.op(
            "delete",
            format!("delete a {kind}"),
            ctx.op_id("delete", false, ""),
            delete_params(),
            responses(&[("200", "OK", STATUS), ("202", "Accepted", STATUS)]),
        );
        op.insert("requestBody".into(), body(DELETE_OPTIONS));
        item.insert("delete".into(), Value::Object(op));
    }
    if !item.is_empty() {
        item.insert("parameters".into(), ctx.path_params(true));
        paths.insert(ctx.item_path(), Value::Object(item));
    }
}

fn add_subresource_paths(paths: &mut Map<String, Value>, ctx: &PathCtx, sub: &str) {
    let mut item = Map::new();
    match sub {
        "status" | "scale" | "ephemeralcontainers" => {
            let suffix = capitalize(sub);
            let what = match sub {
                "status" => "status",
                "scale" => "scale",
                _ => "ephemeralcontainers",
            };
            item.insert("get".into(), ctx.read_op(what, &suffix));
            item.insert("put".into(), ctx.replace_op(what, &suffix));
            item.insert("patch".into(), ctx.patch_op(what, &suffix));
        }
        "binding" | "eviction" => {
            let id = format!(
                "create{}{}{}{}",
                ctx.gv_ident(),
                if ctx.r.namespaced { "Namespaced" } else { "" },
                ctx.r.kind,
                capitalize(sub)
            );
            item.insert(
                "post".into(),
                ctx.create_op(format!("create {sub} of a {}", ctx.r.kind), id),
            );
        }
        _ => return,
    }
    item.insert("parameters".into(), ctx.path_params(true));
    paths.insert(format!("{}/{sub}", ctx.item_path()), Value::Object(item));
}

/// The names of all kinds this crate has real schemas for, as (group, version, kind).
pub fn known_kinds() -> Vec<(String, String, String)> {
    let set: BTreeSet<_> = catalog().kinds.keys().cloned().collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests;
