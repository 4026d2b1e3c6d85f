//! A fake Kubernetes API for controller unit tests: an in-memory object map
//! served as a `tower::Service`, so a real `kube::Client` (and the reconcile
//! code using it) runs without a server. It answers GET, LIST (label and
//! field selectors), POST (generateName, uid, resourceVersion,
//! creationTimestamp), PUT (optimistic concurrency), PATCH (merge, strategic,
//! JSON; `/status` writes only status) and DELETE (preconditions,
//! finalizers), and records every write for assertions. No watch: tests call
//! reconciles directly and refresh reflector stores with [`Mirror`].

use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// (group/version, resource, namespace or "", name).
type Key = (String, String, String, String);

/// One write request as the server saw it.
#[derive(Debug, Clone)]
pub struct Write {
    /// create, update, patch or delete.
    pub verb: String,
    pub gv: String,
    pub resource: String,
    pub namespace: String,
    /// The object's name (for a create, the name it got).
    pub name: String,
    pub subresource: Option<String>,
    pub body: Value,
    /// The HTTP status answered.
    pub code: u16,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    seq: u64,
    now: Option<Timestamp>,
    writes: Vec<Write>,
    /// (type, reason, message) of every Event recorded, repeats included.
    events: Vec<(String, String, String)>,
    /// Injected failures: (verb, resource, matching requests to let through first, code, message).
    failures: Vec<(String, String, usize, u16, String)>,
}

/// The fake API server; clones share the same objects.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

struct Target {
    gv: String,
    resource: String,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match *segs.first()? {
        "api" => (segs.get(1)?.to_string(), &segs[2..]),
        "apis" => (format!("{}/{}", segs.get(1)?, segs.get(2)?), &segs[3..]),
        _ => return None,
    };
    let s = |i: usize| rest.get(i).map(|x| x.to_string());
    let namespaced = rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    Some(if namespaced {
        Target {
            gv,
            ns: rest[1].to_string(),
            resource: rest[2].to_string(),
            name: s(3),
            sub: s(4),
        }
    } else {
        Target {
            gv,
            ns: String::new(),
            resource: s(0)?,
            name: s(1),
            sub: s(2),
        }
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// Splits a selector on the commas outside parentheses.
fn split_requirements(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

/// Whether `labels` satisfy a label selector string (=, ==, !=, in, notin, exists, !key).
pub fn label_selector_matches(sel: &str, labels: &Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k).and_then(|v| v.as_str());
    split_requirements(sel).iter().all(|r| {
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().to_string())
                .collect()
        };
        if let Some((k, rest)) = r.split_once(" notin ") {
            return !get(k.trim()).is_some_and(|v| set(rest).iter().any(|x| x == v));
        }
        if let Some((k, rest)) = r.split_once(" in ") {
            return get(k.trim()).is_some_and(|v| set(rest).iter().any(|x| x == v));
        }
        if let Some((k, v)) = r.split_once("!=") {
            return get(k.trim()) != Some(v.trim());
        }
        if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
            return get(k.trim()) == Some(v.trim());
        }
        if let Some(k) = r.strip_prefix('!') {
            return get(k.trim()).is_none();
        }
        get(r).is_some()
    })
}

/// Whether `obj` satisfies a field selector (`a.b=c`, `a.b==c`, `a.b!=c`);
/// a missing field reads as "".
pub fn field_selector_matches(sel: &str, obj: &Value) -> bool {
    split_requirements(sel).iter().all(|r| {
        let (path, want, neg) = match r.split_once("!=") {
            Some((p, v)) => (p, v, true),
            None => match r.split_once("==").or_else(|| r.split_once('=')) {
                Some((p, v)) => (p, v, false),
                None => return false,
            },
        };
        let mut cur = obj;
        for part in path.trim().split('.') {
            cur = cur.get(part).unwrap_or(&Value::Null);
        }
        let got = match cur {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => v.to_string(),
        };
        (got == want.trim()) != neg
    })
}

fn status_err(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

fn qualified(t: &Target) -> String {
    match t.gv.split_once('/') {
        Some((g, _)) => format!("{}.{g}", t.resource),
        None => t.resource.clone(),
    }
}

fn not_found(t: &Target, name: &str) -> (u16, Value) {
    status_err(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", qualified(t)),
    )
}

fn conflict(t: &Target, name: &str) -> (u16, Value) {
    status_err(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            qualified(t)
        ),
    )
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

/// The object with uid, creation time, generation and status kept from `cur`
/// (what a write to the main resource may not change).
fn keep_system_fields(new: &mut Value, cur: &Value) {
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "generation",
        "name",
        "namespace",
    ] {
        match cur["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    if cur.get("spec") != new.get("spec") {
        let g = cur["metadata"]["generation"].as_i64().unwrap_or(0);
        new["metadata"]["generation"] = json!(g + 1);
    }
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(|| {
            Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
        })
    }

    fn take_failure(&mut self, verb: &str, resource: &str) -> Option<(u16, Value)> {
        let i = self
            .failures
            .iter()
            .position(|(v, r, _, _, _)| v == verb && r == resource)?;
        if self.failures[i].2 > 0 {
            self.failures[i].2 -= 1;
            return None;
        }
        let (_, _, _, code, msg) = self.failures.remove(i);
        Some(status_err(code, "InternalError", msg))
    }

    /// Stores `obj` as new (uid, resourceVersion, creationTimestamp, generation).
    fn create(&mut self, t: &Target, mut obj: Value) -> (u16, Value) {
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let name = match meta_str(&obj, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&obj, "generateName") {
                Some(g) => {
                    self.seq += 1;
                    format!("{g}{}", name_suffix(self.seq))
                }
                None => {
                    return status_err(
                        422,
                        "Invalid",
                        "metadata.name: Required value: name or generateName is required".into(),
                    )
                }
            },
        };
        let key = (t.gv.clone(), t.resource.clone(), t.ns.clone(), name.clone());
        if self.objects.contains_key(&key) {
            return status_err(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(t)),
            );
        }
        self.seq += 1;
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        if !t.ns.is_empty() {
            m["namespace"] = json!(t.ns);
        }
        if m.get("uid").is_none_or(|u| u.is_null()) {
            m["uid"] = json!(format!("uid-{name}-{}", self.seq));
        }
        if m.get("creationTimestamp").is_none_or(|u| u.is_null()) {
            m["creationTimestamp"] = json!(self.now().to_string());
        }
        if m.get("generation").is_none_or(|u| u.is_null()) && t.resource != "events" {
            m["generation"] = json!(1);
        }
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        if t.resource == "pods" && obj.get("status").is_none_or(|s| s.is_null()) {
            obj["status"] = json!({"phase": "Pending"});
        }
        self.objects.insert(key, obj.clone());
        (201, obj)
    }

    /// Replaces a stored object after the resourceVersion check; a
    /// terminating object without finalizers goes away.
    fn store_update(&mut self, key: Key, t: &Target, mut new: Value, cur: &Value) -> (u16, Value) {
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(cur, "resourceVersion") {
                return conflict(t, &key.3);
            }
        }
        if t.sub.is_none() {
            keep_system_fields(&mut new, cur);
        }
        new["metadata"]["resourceVersion"] = json!(self.next_rv());
        let finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if new["metadata"].get("deletionTimestamp").is_some() && !finalizers {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, new.clone());
        }
        (200, new)
    }

    fn serve(
        &mut self,
        method: &str,
        t: &Target,
        query: Option<&str>,
        ctype: &str,
        body: Value,
    ) -> (u16, Value) {
        let name = t.name.clone().unwrap_or_default();
        let key = (t.gv.clone(), t.resource.clone(), t.ns.clone(), name.clone());
        match method {
            "GET" if t.name.is_some() => match self.objects.get(&key) {
                Some(o) => (200, o.clone()),
                None => not_found(t, &name),
            },
            "GET" => {
                let labels = query_param(query, "labelSelector").unwrap_or_default();
                let fields = query_param(query, "fieldSelector").unwrap_or_default();
                let empty = Map::new();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((gv, r, ns, _), _)| {
                        *gv == t.gv && *r == t.resource && (t.ns.is_empty() || *ns == t.ns)
                    })
                    .map(|(_, o)| o)
                    .filter(|o| {
                        let l = o["metadata"]["labels"].as_object().unwrap_or(&empty);
                        label_selector_matches(&labels, l) && field_selector_matches(&fields, o)
                    })
                    .cloned()
                    .collect();
                let kind = items
                    .first()
                    .and_then(|o| o["kind"].as_str())
                    .map(|k| format!("{k}List"))
                    .unwrap_or_else(|| "List".into());
                (
                    200,
                    json!({"apiVersion": t.gv, "kind": kind,
                        "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
                )
            }
            "POST" => self.create(t, body),
            "PUT" => {
                let Some(cur) = self.objects.get(&key).cloned() else {
                    return not_found(t, &name);
                };
                let new = match t.sub.as_deref() {
                    Some("status") => {
                        let mut n = cur.clone();
                        n["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                        if let Some(rv) = meta_str(&body, "resourceVersion") {
                            n["metadata"]["resourceVersion"] = json!(rv);
                        }
                        n
                    }
                    _ => {
                        let mut n = body;
                        match cur.get("status") {
                            Some(s) => n["status"] = s.clone(),
                            None => {
                                if let Some(m) = n.as_object_mut() {
                                    m.remove("status");
                                }
                            }
                        }
                        n
                    }
                };
                self.store_update(key, t, new, &cur)
            }
            "PATCH" => {
                let Some(cur) = self.objects.get(&key).cloned() else {
                    return not_found(t, &name);
                };
                let patched = if ctype.starts_with("application/json-patch") {
                    bosun_patch::json_patch(&cur, &body)
                } else if ctype.starts_with("application/strategic-merge-patch") {
                    let group = t.gv.split_once('/').map(|(g, _)| g).unwrap_or("");
                    let kind = cur["kind"].as_str().unwrap_or_default();
                    bosun_patch::strategic_merge_patch(&cur, &body, group, kind)
                } else if ctype.starts_with("application/merge-patch") {
                    bosun_patch::merge_patch(&cur, &body)
                } else {
                    return status_err(
                        415,
                        "UnsupportedMediaType",
                        format!("the body of the request was in an unknown format: {ctype}"),
                    );
                };
                let mut patched = match patched {
                    Ok(p) => p,
                    Err(e) => return status_err(e.status_code(), "BadRequest", e.to_string()),
                };
                let new = match t.sub.as_deref() {
                    Some("status") => {
                        let mut n = cur.clone();
                        n["status"] = patched.get("status").cloned().unwrap_or(Value::Null);
                        n["metadata"]["resourceVersion"] =
                            patched["metadata"]["resourceVersion"].clone();
                        n
                    }
                    _ => {
                        match cur.get("status") {
                            Some(s) => patched["status"] = s.clone(),
                            None => {
                                if let Some(m) = patched.as_object_mut() {
                                    m.remove("status");
                                }
                            }
                        }
                        patched
                    }
                };
                self.store_update(key, t, new, &cur)
            }
            "DELETE" => {
                let Some(cur) = self.objects.get(&key).cloned() else {
                    return not_found(t, &name);
                };
                let pre = &body["preconditions"];
                if pre["uid"]
                    .as_str()
                    .is_some_and(|u| Some(u) != meta_str(&cur, "uid"))
                {
                    return status_err(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                            pre["uid"].as_str().unwrap_or_default(),
                            meta_str(&cur, "uid").unwrap_or_default()
                        ),
                    );
                }
                if pre["resourceVersion"]
                    .as_str()
                    .is_some_and(|r| Some(r) != meta_str(&cur, "resourceVersion"))
                {
                    return conflict(t, &name);
                }
                let finalizers = cur["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if finalizers {
                    let mut n = cur.clone();
                    if n["metadata"].get("deletionTimestamp").is_none() {
                        n["metadata"]["deletionTimestamp"] = json!(self.now().to_string());
                        n["metadata"]["resourceVersion"] = json!(self.next_rv());
                        self.objects.insert(key, n.clone());
                    }
                    return (200, n);
                }
                self.objects.remove(&key);
                (200, cur)
            }
            m => status_err(
                405,
                "MethodNotAllowed",
                format!("method {m} is not supported"),
            ),
        }
    }
}

/// A 5-character generateName suffix from a sequence number (deterministic).
fn name_suffix(n: u64) -> String {
    let a = crate::common_rs::ALPHANUMS;
    let mut x = n;
    (0..5)
        .map(|_| {
            let c = a[(x % a.len() as u64) as usize] as char;
            x /= a.len() as u64;
            c
        })
        .collect()
}

fn key_of<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> Key {
    (
        K::api_version(&()).into_owned(),
        K::plural(&()).into_owned(),
        ns.to_string(),
        name.to_string(),
    )
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let ctype = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let method = parts.method.as_str();
        let (code, out) = match parse_path(parts.uri.path()) {
            None => status_err(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
            ),
            Some(t) => {
                let verb = match method {
                    "POST" => Some("create"),
                    "PUT" => Some("update"),
                    "PATCH" => Some("patch"),
                    "DELETE" => Some("delete"),
                    _ => None,
                };
                let mut st = self.lock();
                let res = verb
                    .and_then(|v| st.take_failure(v, &t.resource))
                    .unwrap_or_else(|| {
                        st.serve(method, &t, parts.uri.query(), &ctype, body.clone())
                    });
                if t.resource == "events" && res.0 < 300 && matches!(verb, Some("create" | "patch"))
                {
                    let s = |f: &str| res.1[f].as_str().unwrap_or_default().to_string();
                    st.events.push((s("type"), s("reason"), s("message")));
                }
                if let Some(verb) = verb {
                    let name = t.name.clone().unwrap_or_else(|| {
                        meta_str(&res.1, "name").unwrap_or_default().to_string()
                    });
                    st.writes.push(Write {
                        verb: verb.into(),
                        gv: t.gv.clone(),
                        resource: t.resource.clone(),
                        namespace: t.ns.clone(),
                        name,
                        subresource: t.sub.clone(),
                        body,
                        code: res.0,
                    });
                }
                res
            }
        };
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&out).unwrap_or_default()))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }

    /// Pins the server's clock (creation and deletion timestamps).
    pub fn set_now(&self, t: Timestamp) {
        self.lock().now = Some(t);
    }

    /// After `after` more `verb` (create/update/patch/delete) requests on
    /// `resource` succeed, the next one fails with `code`.
    pub fn fail(&self, verb: &str, resource: &str, after: usize, code: u16, message: &str) {
        self.lock()
            .failures
            .push((verb.into(), resource.into(), after, code, message.into()));
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// The writes so far, forgetting them.
    pub fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut self.lock().writes)
    }

    /// Stores a fixture as if created through the API (uid, resourceVersion
    /// and creationTimestamp filled when missing), not recorded as a write.
    pub fn insert<K>(&self, obj: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let mut v = serde_json::to_value(obj).expect("fixture serializes");
        v["apiVersion"] = json!(K::api_version(&()));
        v["kind"] = json!(K::kind(&()));
        let t = Target {
            gv: K::api_version(&()).into_owned(),
            resource: K::plural(&()).into_owned(),
            ns: meta_str(&v, "namespace").unwrap_or_default().to_string(),
            name: None,
            sub: None,
        };
        let (code, out) = self.lock().create(&t, v);
        assert_eq!(code, 201, "fixture not stored: {out}");
        serde_json::from_value(out).expect("fixture deserializes")
    }

    pub fn get<K>(&self, ns: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let v = self.lock().objects.get(&key_of::<K>(ns, name)).cloned()?;
        Some(serde_json::from_value(v).expect("stored object deserializes"))
    }

    /// Every stored object of kind K (all namespaces), in key order.
    pub fn list<K>(&self) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let (gv, res) = (K::api_version(&()), K::plural(&()));
        self.lock()
            .objects
            .iter()
            .filter(|((g, r, _, _), _)| *g == gv && *r == res)
            .map(|(_, v)| serde_json::from_value(v.clone()).expect("stored object deserializes"))
            .collect()
    }

    /// Changes a stored object as another actor would (new resourceVersion,
    /// not recorded as a write).
    pub fn modify<K>(&self, ns: &str, name: &str, f: impl FnOnce(&mut K)) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let key = key_of::<K>(ns, name);
        let mut st = self.lock();
        let v = st
            .objects
            .get(&key)
            .cloned()
            .expect("object to modify exists");
        let mut obj: K = serde_json::from_value(v).expect("stored object deserializes");
        f(&mut obj);
        let mut v = serde_json::to_value(&obj).expect("object serializes");
        v["metadata"]["resourceVersion"] = json!(st.next_rv());
        st.objects.insert(key, v.clone());
        serde_json::from_value(v).expect("object deserializes")
    }

    /// Removes a stored object as another actor would.
    pub fn remove<K: Resource<DynamicType = ()>>(&self, ns: &str, name: &str) {
        self.lock().objects.remove(&key_of::<K>(ns, name));
    }

    /// (type, reason, message) of the Events recorded so far (repeats
    /// included), in order; [`FakeApi::take_writes`] does not clear them.
    pub fn events(&self) -> Vec<(String, String, String)> {
        self.lock().events.clone()
    }

    /// A reflector store of kind K, filled from the fake now and on every
    /// [`Mirror::sync`] (an informer that has caught up).
    pub fn mirror<K>(&self) -> Mirror<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + 'static,
    {
        let (store, writer) = reflector::store();
        let mut m = Mirror {
            api: self.clone(),
            store,
            writer,
        };
        m.sync();
        m
    }
}

/// A reflector store kept in step with the fake on demand.
pub struct Mirror<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    api: FakeApi,
    pub store: Store<K>,
    writer: reflector::store::Writer<K>,
}

impl<K> Mirror<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + 'static,
{
    /// Replaces the store's contents with the fake's objects (a relist).
    pub fn sync(&mut self) {
        self.writer.apply_watcher_event(&watcher::Event::Init);
        for o in self.api.list::<K>() {
            self.writer
                .apply_watcher_event(&watcher::Event::InitApply(o));
        }
        self.writer.apply_watcher_event(&watcher::Event::InitDone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::Api;

    fn pod(name: &str, labels: Value, node: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    }

    #[test]
    fn selectors() {
        let l = json!({"app": "web", "tier": "fe"});
        let l = l.as_object().unwrap();
        assert!(label_selector_matches("", l));
        assert!(label_selector_matches("app=web,tier", l));
        assert!(label_selector_matches("app in (a, web),!x", l));
        assert!(!label_selector_matches("app notin (web)", l));
        assert!(!label_selector_matches("app!=web", l));
        let o = json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}});
        assert!(field_selector_matches(
            "spec.nodeName=n1,metadata.name!=b",
            &o
        ));
        assert!(!field_selector_matches("spec.nodeName==n2", &o));
        assert_eq!(
            percent_decode("app%3Dweb%2Cx+in+%28a%29"),
            "app=web,x in (a)"
        );
    }

    #[tokio::test]
    async fn crud_through_a_client() {
        let fake = FakeApi::new();
        let t0: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        fake.set_now(t0);
        let api: Api<Pod> = Api::namespaced(fake.client(), "default");
        fake.insert(&pod("a", json!({"app": "web"}), "n1"));
        fake.insert(&pod("b", json!({"app": "db"}), "n2"));
        let lp = ListParams::default().labels("app=web");
        let l = api.list(&lp).await.unwrap();
        assert_eq!(l.items.len(), 1);
        assert!(l.metadata.resource_version.is_some());
        let lp = ListParams::default().fields("spec.nodeName=n2");
        assert_eq!(
            api.list(&lp).await.unwrap().items[0]
                .metadata
                .name
                .as_deref(),
            Some("b")
        );

        let mut p = pod("", json!({}), "");
        p.metadata.name = None;
        p.metadata.generate_name = Some("gen-".into());
        let c = api.create(&PostParams::default(), &p).await.unwrap();
        let name = c.metadata.name.clone().unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9);
        assert!(c.metadata.uid.is_some());
        assert_eq!(
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            Some(t0)
        );
        assert_eq!(
            c.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Pending")
        );

        // Stale resourceVersion: 409 Conflict.
        let mut stale = c.clone();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
        stale.metadata.labels = Some([("z".to_string(), "z".to_string())].into());
        let e = api
            .replace(&name, &PostParams::default(), &stale)
            .await
            .unwrap_err();
        assert!(matches!(&e, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"));
        let e = api.create(&PostParams::default(), &c).await.unwrap_err();
        assert!(matches!(&e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));

        // A status patch writes only status.
        let sp = json!({"metadata": {"labels": {"q": "r"}}, "status": {"phase": "Running"}});
        let got = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&sp))
            .await
            .unwrap();
        assert_eq!(got.status.unwrap().phase.as_deref(), Some("Running"));
        assert!(!got.metadata.labels.unwrap().contains_key("q"));

        api.delete(&name, &DeleteParams::default()).await.unwrap();
        assert!(api.get_opt(&name).await.unwrap().is_none());
        let e = api.get("nope").await.unwrap_err();
        assert!(matches!(&e, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"));
        let verbs: Vec<String> = fake.writes().iter().map(|w| w.verb.clone()).collect();
        assert_eq!(
            verbs,
            ["create", "patch", "update", "create", "patch", "delete"]
        );
        let w = &fake.writes()[4];
        assert_eq!((w.gv.as_str(), w.resource.as_str()), ("v1", "pods"));
        assert_eq!(
            (w.namespace.as_str(), w.name.as_str()),
            ("default", name.as_str())
        );
        assert_eq!((w.subresource.as_deref(), w.code), (Some("status"), 200));

        // Cluster-scoped and other groups share the same map.
        let cms: Api<ConfigMap> = Api::namespaced(fake.client(), "kube-system");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        assert!(fake.get::<ConfigMap>("kube-system", "x").is_some());
    }
}
