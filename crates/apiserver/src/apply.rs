//! Server-side apply and `metadata.managedFields` bookkeeping: the wiring
//! between the REST handlers/registry and the pure `bosun-fieldmanager`.
//!
//! * Every write with a field manager (the `fieldManager` parameter, else the
//!   User-Agent prefix like upstream) records an `Update` entry
//!   ([`on_create`], [`on_update`]).
//! * `PATCH` with `application/apply-patch+yaml` ([`apply`]) creates or
//!   merges the applied configuration, prunes fields the manager stopped
//!   applying, and answers 409 with `FieldManagerConflict` causes when it
//!   would change fields other managers own (unless `force=true`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bosun_fieldmanager as fm;
use serde_json::{json, Map, Value};

use crate::error::{field_cause, ApiError};
use crate::registry::{now_rfc3339, Registry, WriteOptions};
use crate::resources::{self, ResourceType};

/// Who performs a write, for managedFields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldManager {
    pub manager: String,
    /// "" for the main resource.
    pub subresource: String,
}

/// The manager of a non-apply write: `fieldManager`, else the User-Agent up
/// to the first `/` (upstream `prefixFromUserAgent`), at most 128 bytes.
pub fn field_manager(
    param: Option<&str>,
    user_agent: Option<&str>,
    sub: Option<&str>,
) -> Result<FieldManager, ApiError> {
    let manager = match param.filter(|m| !m.is_empty()) {
        Some(m) => {
            validate_manager(m)?;
            m.to_string()
        }
        None => {
            let ua = user_agent.unwrap_or("");
            let mut p: String = ua.split('/').next().unwrap_or("").to_string();
            if p.len() > 128 {
                let mut cut = 128;
                while !p.is_char_boundary(cut) {
                    cut -= 1;
                }
                p.truncate(cut);
            }
            p
        }
    };
    Ok(FieldManager {
        manager,
        subresource: sub.unwrap_or("").to_string(),
    })
}

fn patch_options_invalid(field: &str, reason: &str, detail: &str) -> ApiError {
    let msg = format!("{field}: {reason}: {detail}");
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("PatchOptions.meta.k8s.io \"\" is invalid: {msg}"),
    );
    e.causes = vec![field_cause(
        field,
        &format!("Field{}", reason.replace(' ', "")),
        format!("{reason}: {detail}"),
    )];
    e
}

fn validate_manager(m: &str) -> Result<(), ApiError> {
    if m.len() > 128 {
        return Err(patch_options_invalid(
            "fieldManager",
            "Too long",
            "may not be more than 128 bytes",
        ));
    }
    if m.chars().any(|c| c.is_control()) {
        return Err(patch_options_invalid(
            "fieldManager",
            "Invalid value",
            "must only contain printable characters",
        ));
    }
    Ok(())
}

/// Component schemas of one group's OpenAPI document.
type Defs = Arc<Map<String, Value>>;

/// Component schemas per group (built lazily, once per group).
fn schemas(group: &str) -> Defs {
    static CACHE: OnceLock<Mutex<HashMap<String, Defs>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(d) = cache.lock().ok().and_then(|c| c.get(group).cloned()) {
        return d;
    }
    let infos: Vec<bosun_openapi::ResourceInfo> = resources::in_group(group)
        .map(|r| bosun_openapi::ResourceInfo {
            group: r.group.to_string(),
            version: r.version.to_string(),
            kind: r.kind.to_string(),
            plural: r.plural.to_string(),
            namespaced: r.namespaced,
            subresources: r.subresources.iter().map(|s| s.to_string()).collect(),
            verbs: r.verbs().iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    let version = infos
        .first()
        .map(|i| i.version.clone())
        .unwrap_or("v1".into());
    let doc = bosun_openapi::group_version_document(group, &version, &infos);
    let defs = Arc::new(
        doc.pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    );
    if let Ok(mut c) = cache.lock() {
        c.insert(group.to_string(), defs.clone());
    }
    defs
}

/// The schemas of `rt`'s group and the component name of its kind, found
/// once per kind (the lookup scans every component of the group).
fn kind_schema(rt: &ResourceType) -> (Defs, Option<Arc<str>>) {
    type Key = (&'static str, &'static str, &'static str);
    static CACHE: OnceLock<Mutex<HashMap<Key, Option<Arc<str>>>>> = OnceLock::new();
    let defs = schemas(rt.group);
    let cache = CACHE.get_or_init(Default::default);
    let key = (rt.group, rt.version, rt.kind);
    if let Some(name) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return (defs, name);
    }
    let name = fm::Schema::new(&defs)
        .find_kind_name(rt.group, rt.version, rt.kind)
        .map(Arc::from);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, name.clone());
    }
    (defs, name)
}

fn without_managed(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

fn set_managed(o: &mut Value, entries: &[fm::Entry]) {
    let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), fm::encode(entries));
    }
}

fn managed_of(o: &Value) -> Option<&Value> {
    o.pointer("/metadata/managedFields")
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
}

/// Records the creating manager's Update entry (fields compared with the
/// zero value of the kind, like upstream). Never fails the write: broken
/// input to field tracking clears managedFields, as upstream's
/// `UpdateNoErrors` does.
pub fn on_create(rt: &ResourceType, o: &mut Value, opts: &WriteOptions) {
    let Some(fmgr) = &opts.field_manager else {
        return;
    };
    let (defs, comp) = kind_schema(rt);
    let ty = comp.and_then(|n| fm::Schema::new(&defs).root(&n));
    let entries = fm::decode(managed_of(o)).unwrap_or_default();
    // Taken out (not cloned without): set again below.
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let (av, now) = (rt.api_version(), now_rfc3339());
    let w = writer(fmgr, &av, &now);
    match fm::update(&fm::create_skeleton(o), o, ty, &entries, &w) {
        Ok(e) => set_managed(o, &e),
        Err(e) => {
            tracing::warn!(kind = rt.kind, error = %e, "cannot track managed fields on create");
            set_managed(o, &[]);
        }
    }
}

/// Before a write is stored: keeps the live managedFields when the client
/// sent none, and records the writer's Update entry.
pub fn on_update(rt: &ResourceType, cur: &Value, new: &mut Value, opts: &WriteOptions) {
    if opts.field_manager.is_none() {
        // An internal write (e.g. a binding, built from the live object):
        // like upstream's storage-level updates it records no manager;
        // the live entries stay as they are, without decoding them.
        if managed_of(new).is_some() {
            return;
        }
        if let (Some(m), Some(meta)) = (
            managed_of(cur).cloned(),
            new.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("managedFields".into(), m);
        }
        return;
    }
    // Clients that do not know managedFields must not wipe them.
    let sent = managed_of(new).and_then(|m| fm::decode(Some(m)).ok());
    let entries = match sent {
        Some(e) => e,
        None => fm::decode(managed_of(cur)).unwrap_or_default(),
    };
    let Some(fmgr) = &opts.field_manager else {
        return;
    };
    let (defs, comp) = kind_schema(rt);
    let ty = comp.and_then(|n| fm::Schema::new(&defs).root(&n));
    let (av, now) = (rt.api_version(), now_rfc3339());
    let w = writer(fmgr, &av, &now);
    // The comparison skips metadata.managedFields itself, so neither
    // object needs a copy without it.
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    match fm::update(cur, new, ty, &entries, &w) {
        Ok(e) => set_managed(new, &e),
        Err(e) => {
            tracing::warn!(kind = rt.kind, error = %e, "cannot track managed fields on update");
            set_managed(new, &[]);
        }
    }
}

fn writer<'a>(f: &'a FieldManager, api_version: &'a str, time: &'a str) -> fm::Writer<'a> {
    fm::Writer {
        manager: &f.manager,
        subresource: &f.subresource,
        api_version,
        time,
    }
}

/// Drops nulls from an applied configuration: a null means "not set" there.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn field_error(e: fm::FieldError, rt: &ResourceType, name: &str) -> ApiError {
    match e {
        fm::FieldError::Conflicts(cs) => {
            let mut err = ApiError::new(409, "Conflict", fm::conflict_message(&cs));
            err.causes = cs
                .iter()
                .map(|c| {
                    field_cause(
                        &c.path.to_string(),
                        "FieldManagerConflict",
                        format!("conflict with {}", c.manager),
                    )
                })
                .collect();
            err
        }
        fm::FieldError::Invalid(m) => ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {m}", rt.kind),
        ),
        fm::FieldError::InvalidFieldsV1(m) => {
            ApiError::bad_request(format!("invalid managedFields: {m}"))
        }
    }
}

/// Parsed apply request parameters.
pub struct ApplyRequest<'a> {
    pub manager: Option<&'a str>,
    pub force: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub body: &'a [u8],
}

/// `PATCH` with `application/apply-patch+yaml`: create the object if it is
/// absent (201), else merge it (200). Returns the object and status code.
pub async fn apply(
    reg: &Registry,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    req: &ApplyRequest<'_>,
    opts: &WriteOptions,
) -> Result<(Value, u16, Vec<String>), ApiError> {
    let manager = match req.manager.filter(|m| !m.is_empty()) {
        Some(m) => m,
        None => {
            return Err(patch_options_invalid(
                "fieldManager",
                "Required value",
                "is required for apply patch",
            ))
        }
    };
    validate_manager(manager)?;
    let force = match req.force {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "invalid boolean value for force: {o}"
            )))
        }
    };
    let mut config: Value = serde_yaml::from_slice(req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    drop_nulls(&mut config);
    for (f, want) in [
        ("apiVersion", rt.api_version()),
        ("kind", rt.kind.to_string()),
    ] {
        match config.get(f).and_then(Value::as_str) {
            Some(v) if v != want => {
                return Err(ApiError::bad_request(if f == "kind" {
                    format!("the kind in the data ({v}) does not match the expected kind ({want}) for this endpoint")
                } else {
                    format!("the API version in the data ({v}) does not match the expected API version ({want})")
                }))
            }
            Some(_) => {}
            None => {
                return Err(ApiError::bad_request(format!(
                    "{f} must be set in the applied configuration"
                )))
            }
        }
    }
    if !config.get("metadata").is_some_and(Value::is_object) {
        config["metadata"] = json!({});
    }
    if config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none()
    {
        config["metadata"]["name"] = json!(name);
    }
    if let Some(ns) = ns.filter(|_| rt.namespaced) {
        if config
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none()
        {
            config["metadata"]["namespace"] = json!(ns);
        }
    }
    let fmgr = FieldManager {
        manager: manager.to_string(),
        subresource: req.sub.unwrap_or("").to_string(),
    };
    // The registry must not record an Update on top of the Apply entry.
    let plain = WriteOptions {
        field_manager: None,
        ..opts.clone()
    };
    let (defs, comp) = kind_schema(rt);
    let ty = comp.and_then(|n| fm::Schema::new(&defs).root(&n));
    let av = rt.api_version();
    for _ in 0..4 {
        match reg.get(rt, ns, name).await {
            Err(e) if e.code == 404 && req.sub.is_none() => {
                let now = now_rfc3339();
                let w = writer(&fmgr, &av, &now);
                let a = fm::apply(None, &config, ty, &[], &w, force)
                    .map_err(|e| field_error(e, rt, name))?;
                let mut obj = a.object;
                set_managed(&mut obj, &a.entries);
                tracing::debug!(kind = rt.kind, name, manager, "apply creates");
                match reg.create(rt, ns, obj, &plain).await {
                    Ok((o, w)) => return Ok((o, 201, w)),
                    // Created concurrently: merge into it instead.
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let precondition = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        let has_status = rt.has_subresource("status");
        let (o, w) = reg
            .guaranteed_update(rt, ns, name, &plain, |cur| {
                let entries = fm::decode(managed_of(cur)).unwrap_or_default();
                let live = without_managed(cur);
                let now = now_rfc3339();
                let w = writer(&fmgr, &av, &now);
                let a = apply_upgrading_csa(&live, &config, ty, &entries, &w, force)
                    .map_err(|e| field_error(e, rt, name))?;
                let mut new = a.object;
                // The main resource never changes status and the status
                // subresource only status (upstream resets those fields).
                if has_status {
                    let keep_status = req.sub.is_none();
                    let base = if keep_status { &new } else { &live };
                    let mut out = base.clone();
                    let status = if keep_status {
                        live.get("status")
                    } else {
                        new.get("status")
                    };
                    if let Some(m) = out.as_object_mut() {
                        match status {
                            Some(s) => {
                                m.insert("status".into(), s.clone());
                            }
                            None => {
                                m.remove("status");
                            }
                        }
                    }
                    new = out;
                }
                let mut ws = Vec::new();
                reg.check_type(rt, ns, &mut new)?;
                let mut new = reg.typed(rt, &new, opts.field_validation, &mut ws)?;
                set_managed(&mut new, &a.entries);
                if precondition.is_none() {
                    if let Some(rv) = cur.pointer("/metadata/resourceVersion") {
                        new["metadata"]["resourceVersion"] = rv.clone();
                    }
                }
                Ok((new, precondition.clone()))
            })
            .await?;
        return Ok((o, 200, w));
    }
    Err(ApiError::conflict(
        rt.group,
        rt.plural,
        name,
        "the object was created and deleted concurrently; please try again",
    ))
}

/// `force` on a patch that is not an apply (upstream 422).
pub fn force_forbidden() -> ApiError {
    patch_options_invalid(
        "force",
        "Forbidden",
        "may not be specified for non-apply patch",
    )
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn last_applied(o: &Value) -> Option<&str> {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Apply, with upstream's client-side → server-side apply upgrade for the
/// `kubectl` manager (`lastAppliedManager` / `lastAppliedUpdater`): conflicts
/// on fields whose live value is still what the last client-side apply set
/// are not conflicts (the user applied them), and the last-applied
/// annotation follows the server-side applied configuration so that a later
/// client-side apply keeps working.
fn apply_upgrading_csa(
    live: &Value,
    config: &Value,
    ty: Option<fm::Ty<'_>>,
    entries: &[fm::Entry],
    w: &fm::Writer<'_>,
    force: bool,
) -> Result<fm::Applied, fm::FieldError> {
    let csa = (w.manager == "kubectl")
        .then(|| last_applied(live))
        .flatten();
    let mut applied = match fm::apply(Some(live), config, ty, entries, w, force) {
        Err(fm::FieldError::Conflicts(cs)) if csa.is_some() => {
            let allowed = csa
                .and_then(|la| serde_json::from_str::<Value>(la).ok())
                .and_then(|la| {
                    let set = fm::to_set(&la, ty).ok()?;
                    let differs = fm::compare(Some(&la), Some(live), ty).ok()?.modified;
                    Some(set.difference(&differs))
                })
                .unwrap_or_default();
            let rest: Vec<fm::Conflict> =
                cs.into_iter().filter(|c| !allowed.has(&c.path)).collect();
            if !rest.is_empty() {
                return Err(fm::FieldError::Conflicts(rest));
            }
            tracing::debug!("apply upgrades client-side apply ownership");
            fm::apply(Some(live), config, ty, entries, w, true)?
        }
        other => other?,
    };
    if csa.is_some() {
        let mut la = config.clone();
        if let Some(a) = la
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        {
            a.remove(LAST_APPLIED);
        }
        if let Some(m) = applied
            .object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            let ann = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(ann) = ann.as_object_mut() {
                ann.insert(LAST_APPLIED.into(), json!(la.to_string()));
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cost of managedFields per write (run with `--release --ignored
    /// --nocapture`); a figure, not a pass/fail check.
    #[test]
    #[ignore]
    fn managed_fields_cost() {
        let rt = crate::resources::find("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "securityContext": {}, "enableServiceLinks": true, "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
            "status": {"phase": "Pending", "qosClass": "Burstable"}});
        let opts = WriteOptions {
            field_manager: Some(FieldManager {
                manager: "bench".into(),
                subresource: String::new(),
            }),
            ..Default::default()
        };
        let _ = schemas("");
        let n = 2000;
        let t = std::time::Instant::now();
        let mut o = pod.clone();
        for _ in 0..n {
            o = pod.clone();
            on_create(rt, &mut o, &opts);
        }
        eprintln!("on_create: {:?} per pod", t.elapsed() / n);
        let mut upd = o.clone();
        upd["spec"]["nodeName"] = json!("n1");
        let t = std::time::Instant::now();
        for _ in 0..n {
            let mut u = upd.clone();
            on_update(rt, &o, &mut u, &opts);
        }
        eprintln!("on_update: {:?} per pod", t.elapsed() / n);
        let t = std::time::Instant::now();
        for _ in 0..n {
            let _ = pod.clone();
        }
        eprintln!("clone alone: {:?}", t.elapsed() / n);
    }

    #[test]
    fn manager_from_param_or_user_agent() {
        let m = field_manager(Some("me"), Some("kubectl/v1.32.5 (linux/amd64)"), None).unwrap();
        assert_eq!(m.manager, "me");
        let m = field_manager(None, Some("kubectl/v1.32.5 (linux/amd64)"), Some("status")).unwrap();
        assert_eq!(
            (m.manager.as_str(), m.subresource.as_str()),
            ("kubectl", "status")
        );
        let long = "é".repeat(100);
        let m = field_manager(None, Some(&long), None).unwrap();
        assert!(m.manager.len() <= 128);
        let e = field_manager(Some(&"x".repeat(129)), None, None).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(field_manager(Some("a\u{7}"), None, None).is_err());
    }

    #[test]
    fn conflicts_become_409_with_causes() {
        let rt = resources::find("apps", "v1", "deployments").expect("deployments");
        let e = field_error(
            fm::FieldError::Conflicts(vec![fm::Conflict {
                manager: "\"kubectl-client-side-apply\" using apps/v1".into(),
                path: fm::Path::fields(&["spec", "replicas"]),
            }]),
            rt,
            "web",
        );
        assert_eq!(e.code, 409);
        assert_eq!(e.reason, "Conflict");
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let s = e.status_json();
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldManagerConflict");
        assert_eq!(s["details"]["causes"][0]["field"], ".spec.replicas");
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );
    }

    #[test]
    fn nulls_dropped_and_last_applied_upgrade() {
        let mut v = json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]});
        drop_nulls(&mut v);
        assert_eq!(v, json!({"b": {"d": 1}, "e": [{}]}));
        let rt = resources::find("", "v1", "configmaps").expect("configmaps");
        let defs = schemas(rt.group);
        let ty = fm::Schema::new(&defs).find_kind("", "v1", "ConfigMap");
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"1\"}}"}}, "data": {"a": "1"}});
        let csa = fm::Writer {
            manager: "kubectl-client-side-apply",
            subresource: "",
            api_version: "v1",
            time: "t",
        };
        let entries = fm::update(&json!({}), &live, ty, &[], &csa).unwrap();
        let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}});
        let w = fm::Writer {
            manager: "kubectl",
            subresource: "",
            api_version: "v1",
            time: "t",
        };
        let a = apply_upgrading_csa(&live, &cfg, ty, &entries, &w, false).unwrap();
        assert_eq!(a.object["data"]["a"], "2");
        let la = a.object["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(la.contains("\"a\":\"2\""), "{la}");
        // Another manager name gets the plain conflict.
        let w = fm::Writer {
            manager: "other",
            ..w
        };
        assert!(apply_upgrading_csa(&live, &cfg, ty, &entries, &w, false).is_err());
    }
}
