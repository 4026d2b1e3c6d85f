//! Generic REST storage: the create/get/list/update/patch/delete semantics
//! every resource shares (metadata, optimistic concurrency, finalizers,
//! graceful deletion, subresources), with per-kind hooks.

use crate::cache::{Cache, CachedObject};
use crate::error::{field_cause, ApiError};
use crate::resources::{self, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use base64::Engine;
use bosun_store::{Revision, Store, StoreError};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    alloc: Mutex<Allocations>,
    /// Where ClusterIPs are allocated (`--service-cidr`).
    pub service_cidr: ServiceCidr,
}

/// The IPv4 range ClusterIPs come from (default 10.43.0.0/16; the
/// `kubernetes` service takes the first address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    prefix: u8,
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            base: u32::from_be_bytes([10, 43, 0, 0]),
            prefix: 16,
        }
    }
}

impl ServiceCidr {
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The n-th address of the range (n < size).
    pub fn nth(&self, n: u32) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(self.base + n % self.size())
    }

    pub fn contains(&self, ip: u32) -> bool {
        ip & !(self.size() - 1) == self.base
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.base), self.prefix)
    }
}

impl std::str::FromStr for ServiceCidr {
    type Err = String;

    /// An IPv4 CIDR between /8 and /28 whose host bits are zero.
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (ADDRESS/LENGTH)"))?;
        let ip: std::net::Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=28).contains(p))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 8 to 28"))?;
        let c = ServiceCidr {
            base: u32::from(ip),
            prefix,
        };
        if c.base & (c.size() - 1) != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(c)
    }
}

#[derive(Default)]
struct Allocations {
    cluster_ips: HashSet<u32>,
    node_ports: HashSet<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(o) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {o}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Who writes, for metadata.managedFields (None: not tracked).
    pub field_manager: Option<crate::apply::FieldManager>,
}

#[derive(Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct ListResult {
    pub rv: Revision,
    pub items: Vec<Arc<CachedObject>>,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_str<'a>(o: &'a Value, f: &str) -> Option<&'a str> {
    o.get("metadata")
        .and_then(|m| m.get(f))
        .and_then(|v| v.as_str())
}

fn set_meta(o: &mut Value, f: &str, v: Value) {
    if !o.get("metadata").is_some_and(|m| m.is_object()) {
        o["metadata"] = json!({});
    }
    o["metadata"][f] = v;
}

fn remove_meta(o: &mut Value, f: &str) {
    if let Some(m) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.remove(f);
    }
}

fn finalizers(o: &Value) -> Vec<String> {
    o.pointer("/metadata/finalizers")
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_rv(s: &str) -> Result<Revision, ApiError> {
    s.parse::<Revision>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))
}

/// Encoded form stored: the object without its resourceVersion, which is the
/// store's revision of the key.
fn encode(o: &Value) -> Vec<u8> {
    let mut c = o.clone();
    remove_meta(&mut c, "resourceVersion");
    serde_json::to_vec(&c).unwrap_or_default()
}

fn with_rv(mut o: Value, rv: Revision) -> Value {
    set_meta(&mut o, "resourceVersion", Value::String(rv.to_string()));
    o
}

fn decode_kv(kv: &bosun_store::KeyValue) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("undecodable object at {}: {e}", kv.key)))?;
    Ok(with_rv(v, kv.mod_revision))
}

fn random_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4();
    bytes.as_bytes()[..5]
        .iter()
        .map(|b| ALPHA[*b as usize % ALPHA.len()] as char)
        .collect()
}

/// Status-subresource resources keep status out of main-resource writes.
fn strips_status(rt: &ResourceType) -> bool {
    rt.has_subresource("status")
}

/// Whether anything but metadata and status differs (a spec change).
fn spec_changed(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a != b;
    };
    let skip = |k: &String| k == "metadata" || k == "status";
    a.iter()
        .filter(|(k, _)| !skip(k))
        .any(|(k, v)| b.get(k) != Some(v))
        || b.keys().filter(|k| !skip(k)).any(|k| !a.contains_key(k))
}

/// The revision a read-modify-write cycle compares against.
struct KvRev {
    mod_revision: Revision,
}

pub enum Continue {
    Token { rv: Revision, start_after: String },
}

fn encode_continue(rv: Revision, start_after: &str) -> String {
    let j = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start_after});
    base64::engine::general_purpose::URL_SAFE.encode(j.to_string())
}

fn decode_continue(s: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(|r| r.as_i64()).ok_or_else(bad)?;
    let start = v.get("start").and_then(|r| r.as_str()).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

fn matches(obj: &Value, opts: &ListOptions) -> bool {
    if let Some(ls) = &opts.label_selector {
        if !ls.matches(obj.pointer("/metadata/labels").and_then(|l| l.as_object())) {
            return false;
        }
    }
    if let Some(fs) = &opts.field_selector {
        if !fs.matches(obj) {
            return false;
        }
    }
    true
}

fn ip_to_u32(s: &str) -> Option<u32> {
    s.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>) -> Self {
        let mut alloc = Allocations::default();
        if let Some(svc) = resources::find("", "v1", "services") {
            let (_, items) = cache.list(svc, &svc.key_prefix());
            for o in items {
                if let Some(ip) = o
                    .value
                    .pointer("/spec/clusterIP")
                    .and_then(|v| v.as_str())
                    .and_then(ip_to_u32)
                {
                    alloc.cluster_ips.insert(ip);
                }
                for p in o
                    .value
                    .pointer("/spec/ports")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(np) = p.get("nodePort").and_then(|n| n.as_u64()) {
                        alloc.node_ports.insert(np as u16);
                    }
                }
            }
        }
        Registry {
            store,
            cache,
            alloc: Mutex::new(alloc),
            service_cidr: ServiceCidr::default(),
        }
    }

    pub fn with_service_cidr(mut self, cidr: ServiceCidr) -> Self {
        self.service_cidr = cidr;
        self
    }

    pub async fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = rt.key(ns, name);
        match self.store.get(&key).await? {
            Some(kv) => decode_kv(&kv),
            None => Err(ApiError::not_found(rt.group, rt.plural, name)),
        }
    }

    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let prefix = match ns {
            Some(ns) if rt.namespaced => rt.namespace_prefix(ns),
            _ => rt.key_prefix(),
        };
        let exact = opts.resource_version_match.as_deref() == Some("Exact");
        if let Some(m) = opts.resource_version_match.as_deref() {
            if !matches!(m, "Exact" | "NotOlderThan") {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: \"{m}\""
                )));
            }
            if opts
                .resource_version
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
        }
        // Continuation and exact reads are served from the store at the
        // snapshot revision; everything else from the cache.
        let store_read = if let Some(tok) = &opts.continue_token {
            let (rv, start) = decode_continue(tok)?;
            Some((rv, Some(start)))
        } else if exact {
            let rv = parse_rv(opts.resource_version.as_deref().unwrap_or_default())?;
            Some((rv, None))
        } else {
            None
        };
        if let Some((rv, start_after)) = store_read {
            return self.list_from_store(&prefix, rv, start_after, opts).await;
        }
        match opts.resource_version.as_deref() {
            None | Some("") => {
                // Consistent read: the cache must have caught up with the store.
                let cur = self.store.current_revision().await?;
                if !self.cache.wait_for(cur).await {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        "Too large resource version: the watch cache is behind the store",
                    ));
                }
            }
            Some("0") => {}
            Some(rv) => {
                let rv = parse_rv(rv)?;
                if !self.cache.wait_for(rv).await {
                    let mut e = ApiError::new(
                        504,
                        "Timeout",
                        format!(
                            "Too large resource version: {rv}, current: {}",
                            self.cache.current_rv()
                        ),
                    );
                    e.retry_after = Some(1);
                    return Err(e);
                }
            }
        }
        let (rv, all) = match opts.field_selector.as_ref().and_then(|f| f.pinned_name()) {
            Some(name) if ns.is_some() || !rt.namespaced => {
                let key = rt.key(ns, name);
                let (rv, _) = (self.cache.current_rv(), ());
                (rv, self.cache.get(rt, &key).into_iter().collect::<Vec<_>>())
            }
            _ => self.cache.list(rt, &prefix),
        };
        let filtered: Vec<_> = all
            .into_iter()
            .filter(|o| matches(&o.value, opts))
            .collect();
        if opts.limit > 0 && filtered.len() > opts.limit {
            let remaining = (opts.label_selector.is_none() && opts.field_selector.is_none())
                .then_some((filtered.len() - opts.limit) as i64);
            let items: Vec<_> = filtered.into_iter().take(opts.limit).collect();
            let last = items.last().map(|o| o.key.clone()).unwrap_or_default();
            return Ok(ListResult {
                rv,
                items,
                continue_token: Some(encode_continue(rv, &last)),
                remaining,
            });
        }
        Ok(ListResult {
            rv,
            items: filtered,
            continue_token: None,
            remaining: None,
        })
    }

    async fn list_from_store(
        &self,
        prefix: &str,
        rv: Revision,
        mut start_after: Option<String>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let mut items = Vec::new();
        loop {
            let want = if opts.limit > 0 {
                opts.limit - items.len()
            } else {
                0
            };
            let page = self
                .store
                .range(prefix, start_after.as_deref(), want.max(if opts.limit > 0 { 1 } else { 0 }), Some(rv))
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } => ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."),
                    other => other.into(),
                })?;
            for kv in &page.kvs {
                let v: Value = match serde_json::from_slice(&kv.value) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                let obj = CachedObject::new(kv.key.clone(), kv.mod_revision, v);
                if matches(&obj.value, opts) {
                    items.push(Arc::new(obj));
                }
            }
            start_after = page.kvs.last().map(|k| k.key.clone());
            if !page.more {
                return Ok(ListResult {
                    rv,
                    items,
                    continue_token: None,
                    remaining: None,
                });
            }
            if opts.limit > 0 && items.len() >= opts.limit {
                let last = start_after.unwrap_or_default();
                // Like etcd3's count, only exact without selectors.
                let remaining = if opts.label_selector.is_none() && opts.field_selector.is_none() {
                    let rest = self.store.range(prefix, Some(&last), 0, Some(rv)).await?;
                    Some(rest.kvs.len() as i64)
                } else {
                    None
                };
                return Ok(ListResult {
                    rv,
                    items,
                    continue_token: Some(encode_continue(rv, &last)),
                    remaining,
                });
            }
        }
    }

    /// Checks apiVersion/kind/namespace of a body against the endpoint.
    pub(crate) fn check_type(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        o: &mut Value,
    ) -> Result<(), ApiError> {
        if !o.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let av = o
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let kind = o
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        if !av.is_empty() && av != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        if !kind.is_empty() && kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({}) for this endpoint",
                rt.kind
            )));
        }
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        if !o.get("metadata").is_some_and(|m| m.is_object()) {
            o["metadata"] = json!({});
        }
        if rt.namespaced {
            let ns = ns.unwrap_or("default");
            if let Some(bns) = meta_str(o, "namespace") {
                if !bns.is_empty() && bns != ns {
                    return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
                }
            }
            set_meta(o, "namespace", json!(ns));
        } else {
            remove_meta(o, "namespace");
        }
        Ok(())
    }

    /// Decodes through the typed form, applying the field validation mode.
    pub(crate) fn typed(
        &self,
        rt: &ResourceType,
        o: &Value,
        fv: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let d = crate::typed::decode(rt.group, rt.kind, o).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                rt.kind, rt.version, rt.kind
            ))
        })?;
        if !d.unknown_fields.is_empty() {
            match fv {
                FieldValidation::Strict => {
                    let list: Vec<String> = d
                        .unknown_fields
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        rt.kind,
                        rt.version,
                        rt.kind,
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => {
                    for f in &d.unknown_fields {
                        warnings.push(format!("unknown field \"{f}\""));
                    }
                }
                FieldValidation::Ignore => {}
            }
        }
        Ok(d.object)
    }

    async fn check_namespace(&self, rt: &ResourceType, ns: Option<&str>) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or("default");
        let nsrt = resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces"))?;
        let key = nsrt.key(None, ns);
        let found = match self.cache.get(nsrt, &key) {
            Some(o) => Some(o.value.clone()),
            // Just created namespaces may not have reached the cache yet.
            None => match self.store.get(&key).await? {
                Some(kv) => Some(decode_kv(&kv)?),
                None => None,
            },
        };
        match found {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(v) => {
                if meta_str(&v, "deletionTimestamp").is_some() {
                    let mut e = ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        rt.plural,
                        "",
                    ));
                    e.message = format!("unable to create new content in namespace {ns} because it is being terminated");
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    pub async fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut o: Value,
        opts: &WriteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let mut warnings = Vec::new();
        self.check_type(rt, ns, &mut o)?;
        let mut o = self.typed(rt, &o, opts.field_validation, &mut warnings)?;
        let name = meta_str(&o, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            if let Some(gn) = meta_str(&o, "generateName").filter(|g| !g.is_empty()) {
                let n = format!("{gn}{}", random_suffix());
                set_meta(&mut o, "name", json!(n));
            }
        }
        let name = meta_str(&o, "name").unwrap_or_default().to_string();
        set_meta(&mut o, "uid", json!(uuid::Uuid::new_v4().to_string()));
        set_meta(&mut o, "creationTimestamp", json!(now_rfc3339()));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            remove_meta(&mut o, f);
        }
        if rt.tracks_generation() {
            set_meta(&mut o, "generation", json!(1));
        } else {
            remove_meta(&mut o, "generation");
        }
        // Nodes may carry status on create (the kubelet registers that way).
        if strips_status(rt) && rt.kind != "Node" {
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
        }
        normalize(rt, &mut o);
        self.on_create(rt, &mut o).await?;
        crate::apply::on_create(rt, &mut o, opts);
        let causes = crate::validation::validate_object(rt, &o);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt.group, rt.kind, &name, causes));
        }
        self.check_namespace(rt, ns).await?;
        let allocated = self.allocate(rt, &mut o, None)?;
        if opts.dry_run {
            self.release_allocations(&allocated);
            return Ok((o, warnings));
        }
        let key = rt.key(ns, &name);
        match self.store.create(&key, encode(&o)).await {
            Ok(rev) => Ok((with_rv(o, rev), warnings)),
            Err(e) => {
                self.release_allocations(&allocated);
                match e {
                    StoreError::AlreadyExists(_) => {
                        Err(ApiError::already_exists(rt.group, rt.plural, &name))
                    }
                    other => Err(other.into()),
                }
            }
        }
    }

    /// The RuntimeClass admission plugin: the class must exist; its pod
    /// overhead becomes the pod's, its scheduling nodeSelector and
    /// tolerations are merged into the pod's (a conflicting selector or
    /// overhead is refused).
    async fn admit_runtime_class(&self, o: &mut Value, pod_name: &str) -> Result<(), ApiError> {
        let Some(class) = o
            .pointer("/spec/runtimeClassName")
            .and_then(|v| v.as_str())
            .filter(|c| !c.is_empty())
            .map(String::from)
        else {
            return Ok(());
        };
        let forbidden =
            |msg: String| ApiError::forbidden(format!("pods \"{pod_name}\" is forbidden: {msg}"));
        let rcrt = resources::find("node.k8s.io", "v1", "runtimeclasses")
            .ok_or_else(|| ApiError::internal("no runtimeclasses"))?;
        let Some(kv) = self.store.get(&rcrt.key(None, &class)).await? else {
            return Err(forbidden(format!(
                "pod rejected: RuntimeClass \"{class}\" not found"
            )));
        };
        let rc = decode_kv(&kv)?;
        if let Some(fixed) = rc.pointer("/overhead/podFixed").filter(|f| !f.is_null()) {
            match o.pointer("/spec/overhead").filter(|v| !v.is_null()) {
                Some(have) if !quantities_equal(have, fixed) => return Err(forbidden(
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                )),
                _ => o["spec"]["overhead"] = fixed.clone(),
            }
        }
        if let Some(sel) = rc
            .pointer("/scheduling/nodeSelector")
            .and_then(|s| s.as_object())
        {
            let spec = &mut o["spec"];
            if !spec["nodeSelector"].is_object() {
                spec["nodeSelector"] = json!({});
            }
            for (k, v) in sel {
                match spec["nodeSelector"].get(k) {
                    Some(have) if have != v => {
                        return Err(forbidden(format!(
                            "pod rejected: conflict: runtimeClass.scheduling.nodeSelector[{k}] = {}; pod.spec.nodeSelector[{k}] = {}",
                            v.as_str().unwrap_or_default(),
                            have.as_str().unwrap_or_default()
                        )))
                    }
                    _ => spec["nodeSelector"][k] = v.clone(),
                }
            }
        }
        if let Some(tols) = rc
            .pointer("/scheduling/tolerations")
            .and_then(|t| t.as_array())
        {
            let spec = &mut o["spec"];
            if !spec["tolerations"].is_array() {
                spec["tolerations"] = json!([]);
            }
            if let Some(have) = spec["tolerations"].as_array_mut() {
                for t in tols {
                    if !have.contains(t) {
                        have.push(t.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Kind-specific admission on create.
    async fn on_create(&self, rt: &ResourceType, o: &mut Value) -> Result<(), ApiError> {
        match (rt.group, rt.kind) {
            ("", "Pod") => {
                // The Priority admission plugin: priority and preemptionPolicy
                // come from the PriorityClass and may not contradict it.
                let pod_name = meta_str(o, "name").unwrap_or_default().to_string();
                let pc = o
                    .pointer("/spec/priorityClassName")
                    .and_then(|v| v.as_str())
                    .map(String::from);
                let mut priority = 0i64;
                let mut policy = "PreemptLowerPriority".to_string();
                if let Some(pc) = pc.filter(|p| !p.is_empty()) {
                    let pcrt = resources::find("scheduling.k8s.io", "v1", "priorityclasses")
                        .ok_or_else(|| ApiError::internal("no priorityclasses"))?;
                    match self.store.get(&pcrt.key(None, &pc)).await? {
                        Some(kv) => {
                            let v = decode_kv(&kv)?;
                            priority = v.get("value").and_then(|x| x.as_i64()).unwrap_or(0);
                            if let Some(pp) = v.get("preemptionPolicy").and_then(|p| p.as_str()) {
                                policy = pp.to_string();
                            }
                        }
                        None => {
                            return Err(ApiError::forbidden(format!(
                                "pods \"{pod_name}\" is forbidden: no PriorityClass with name {pc} was found"
                            )))
                        }
                    }
                }
                if let Some(p) = o.pointer("/spec/priority").and_then(|p| p.as_i64()) {
                    if p != priority {
                        return Err(ApiError::forbidden(format!("pods \"{pod_name}\" is forbidden: the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name")));
                    }
                }
                if let Some(p) = o.pointer("/spec/preemptionPolicy").and_then(|p| p.as_str()) {
                    if p != policy {
                        return Err(ApiError::forbidden(format!("pods \"{pod_name}\" is forbidden: the string value of PreemptionPolicy ({p}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name")));
                    }
                }
                o["spec"]["preemptionPolicy"] = json!(policy);
                o["spec"]["priority"] = json!(priority);
                self.admit_runtime_class(o, &pod_name).await?;
                o["status"] = json!({"phase": "Pending", "qosClass": qos_class(o)});
            }
            ("", "Namespace") => {
                o["status"] = json!({"phase": "Active"});
            }
            _ => {}
        }
        Ok(())
    }

    fn allocate(
        &self,
        rt: &ResourceType,
        o: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<Alloc>, ApiError> {
        if rt.kind != "Service" || !rt.group.is_empty() {
            return Ok(vec![]);
        }
        let name = meta_str(o, "name").unwrap_or_default().to_string();
        let mut done = Vec::new();
        let mut alloc = self.alloc.lock().unwrap_or_else(|p| p.into_inner());
        let ty = o
            .pointer("/spec/type")
            .and_then(|t| t.as_str())
            .unwrap_or("ClusterIP")
            .to_string();
        if ty != "ExternalName" && old.is_none() {
            let want = o
                .pointer("/spec/clusterIP")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            if want != "None" {
                let ip = if want.is_empty() {
                    // Skip .0 (network), .1 (the kubernetes service) and
                    // the broadcast address. Like upstream, dynamic IPs come
                    // from the upper part of the range first; the lower band
                    // (min(max(16, size/16), 256) addresses) is kept for
                    // static ones such as kube-dns's .10.
                    let size = self.service_cidr.size();
                    let band = (size / 16).clamp(16, 256).min(size / 2);
                    let rand = uuid::Uuid::new_v4().as_u128() as u32;
                    let free = |lo: u32, hi: u32| -> Option<u32> {
                        let len = hi.checked_sub(lo).filter(|l| *l > 0)?;
                        (0..len)
                            .map(|i| lo + (rand % len + i) % len)
                            .filter(|off| *off >= 2 && *off < size - 1)
                            .map(|off| u32::from(self.service_cidr.nth(off)))
                            .find(|ip| !alloc.cluster_ips.contains(ip))
                    };
                    let found = free(band, size).or_else(|| free(0, band));
                    found.ok_or_else(|| {
                        ApiError::internal("failed to allocate a serviceIP: range is full")
                    })?
                } else {
                    let ip = ip_to_u32(&want).ok_or_else(|| {
                        ApiError::invalid(
                            "",
                            "Service",
                            &name,
                            vec![field_cause(
                                "spec.clusterIPs[0]",
                                "FieldValueInvalid",
                                format!("Invalid value: \"{want}\": must be a valid IP address"),
                            )],
                        )
                    })?;
                    if !self.service_cidr.contains(ip) {
                        let range = self.service_cidr;
                        return Err(ApiError::invalid("", "Service", &name, vec![field_cause("spec.clusterIPs", "FieldValueInvalid", format!("Invalid value: []string{{\"{want}\"}}: failed to allocate IP {want}: the provided IP ({want}) is not in the valid range. The range of valid IPs is {range}"))]));
                    }
                    if alloc.cluster_ips.contains(&ip) {
                        return Err(ApiError::invalid("", "Service", &name, vec![field_cause("spec.clusterIPs", "FieldValueInvalid", format!("Invalid value: []string{{\"{want}\"}}: failed to allocate IP {want}: provided IP is already allocated"))]));
                    }
                    ip
                };
                alloc.cluster_ips.insert(ip);
                done.push(Alloc::Ip(ip));
                let s = std::net::Ipv4Addr::from(ip).to_string();
                o["spec"]["clusterIP"] = json!(s);
                o["spec"]["clusterIPs"] = json!([s]);
            } else {
                o["spec"]["clusterIPs"] = json!(["None"]);
            }
            o["spec"]["ipFamilies"] = json!(["IPv4"]);
            o["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            let old_ports: Vec<(i64, u16)> = old
                .and_then(|o| o.pointer("/spec/ports"))
                .and_then(|p| p.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            Some((
                                p.get("port")?.as_i64()?,
                                p.get("nodePort")?.as_u64()? as u16,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Some(ports) = o.pointer_mut("/spec/ports").and_then(|p| p.as_array_mut()) {
                for p in ports {
                    let port = p.get("port").and_then(|x| x.as_i64()).unwrap_or(0);
                    match p.get("nodePort").and_then(|n| n.as_u64()) {
                        Some(np) => {
                            let np = np as u16;
                            let reused = old_ports.iter().any(|(_, o)| *o == np);
                            if !reused {
                                if !(30000..=32767).contains(&np) {
                                    return Err(ApiError::invalid("", "Service", &name, vec![field_cause("spec.ports[0].nodePort", "FieldValueInvalid", format!("Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"))]));
                                }
                                if alloc.node_ports.contains(&np) {
                                    return Err(ApiError::invalid("", "Service", &name, vec![field_cause("spec.ports[0].nodePort", "FieldValueInvalid", format!("Invalid value: {np}: provided port is already allocated"))]));
                                }
                                alloc.node_ports.insert(np);
                                done.push(Alloc::Port(np));
                            }
                        }
                        None => {
                            if let Some((_, np)) = old_ports.iter().find(|(op, _)| *op == port) {
                                p["nodePort"] = json!(np);
                                continue;
                            }
                            let start = (uuid::Uuid::new_v4().as_u128() % 2768) as u16;
                            let np = (0..2768u16)
                                .map(|i| 30000 + (start + i) % 2768)
                                .find(|np| !alloc.node_ports.contains(np))
                                .ok_or_else(|| ApiError::internal("range of node ports is full"))?;
                            alloc.node_ports.insert(np);
                            done.push(Alloc::Port(np));
                            p["nodePort"] = json!(np);
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    fn release_allocations(&self, allocs: &[Alloc]) {
        let mut alloc = self.alloc.lock().unwrap_or_else(|p| p.into_inner());
        for a in allocs {
            match a {
                Alloc::Ip(ip) => {
                    alloc.cluster_ips.remove(ip);
                }
                Alloc::Port(p) => {
                    alloc.node_ports.remove(p);
                }
            }
        }
    }

    fn release_object(&self, rt: &ResourceType, o: &Value) {
        if rt.kind != "Service" || !rt.group.is_empty() {
            return;
        }
        let mut allocs = Vec::new();
        if let Some(ip) = o
            .pointer("/spec/clusterIP")
            .and_then(|v| v.as_str())
            .and_then(ip_to_u32)
        {
            allocs.push(Alloc::Ip(ip));
        }
        for p in o
            .pointer("/spec/ports")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(np) = p.get("nodePort").and_then(|n| n.as_u64()) {
                allocs.push(Alloc::Port(np as u16));
            }
        }
        self.release_allocations(&allocs);
    }

    /// Read-modify-write with retries on store conflicts. `precondition` is a
    /// client-supplied resourceVersion that must match (409 otherwise).
    pub async fn guaranteed_update<F>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        mut f: F,
    ) -> Result<(Value, Vec<String>), ApiError>
    where
        F: FnMut(&Value) -> Result<(Value, Option<String>), ApiError>,
    {
        let key = rt.key(ns, name);
        // The first read comes from the watch cache (usually current); a
        // stale read only costs a CAS conflict and a retry from the store.
        let mut from_cache = true;
        for _ in 0..16 {
            let cached = if from_cache {
                self.cache.get(rt, &key)
            } else {
                None
            };
            let (cur, mod_revision) = match cached {
                Some(o) => (o.value.clone(), o.rv),
                None => {
                    from_cache = false;
                    let Some(kv) = self.store.get(&key).await? else {
                        return Err(ApiError::not_found(rt.group, rt.plural, name));
                    };
                    (decode_kv(&kv)?, kv.mod_revision)
                }
            };
            let kv = KvRev { mod_revision };
            let (mut new, precondition) = f(&cur)?;
            if let Some(p) = precondition.filter(|p| !p.is_empty()) {
                if p != kv.mod_revision.to_string() {
                    if from_cache {
                        from_cache = false;
                        continue;
                    }
                    return Err(ApiError::conflict(rt.group, rt.plural, name, "the object has been modified; please apply your changes to the latest version and try again"));
                }
            }
            // Immutable metadata.
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match cur.get("metadata").and_then(|m| m.get(f)) {
                    Some(v) => set_meta(&mut new, f, v.clone()),
                    None => remove_meta(&mut new, f),
                }
            }
            // Objects are defaulted whenever they are decoded, like upstream.
            normalize(rt, &mut new);
            if meta_str(&new, "name") != Some(name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&new, "name").unwrap_or_default()
                )));
            }
            if rt.tracks_generation() && spec_changed(&new, &cur) {
                let g = cur
                    .pointer("/metadata/generation")
                    .and_then(|g| g.as_i64())
                    .unwrap_or(0);
                set_meta(&mut new, "generation", json!(g + 1));
            }
            set_meta(
                &mut new,
                "resourceVersion",
                json!(kv.mod_revision.to_string()),
            );
            crate::apply::on_update(rt, &cur, &mut new, opts);
            if new == cur {
                // A no-op against a possibly stale cached copy must be
                // confirmed against the store.
                if from_cache {
                    from_cache = false;
                    continue;
                }
                return Ok((cur, vec![]));
            }
            let causes = crate::validation::validate_object(rt, &new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(rt.group, rt.kind, name, causes));
            }
            if opts.dry_run {
                return Ok((new, vec![]));
            }
            // Removing the last finalizer of a deleted object deletes it.
            let gone = meta_str(&new, "deletionTimestamp").is_some()
                && finalizers(&new).is_empty()
                && !(rt.kind == "Namespace" && namespace_has_spec_finalizers(&new))
                && !(rt.kind == "Pod"
                    && rt.group.is_empty()
                    && new
                        .pointer("/metadata/deletionGracePeriodSeconds")
                        .and_then(|g| g.as_i64())
                        .unwrap_or(0)
                        > 0);
            if gone {
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(d) => {
                        self.release_object(rt, &new);
                        return Ok((with_rv(new, d.mod_revision), vec![]));
                    }
                    Err(StoreError::Conflict { .. }) => {
                        from_cache = false;
                        continue;
                    }
                    Err(StoreError::NotFound(_)) => {
                        return Err(ApiError::not_found(rt.group, rt.plural, name))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match self.store.update(&key, encode(&new), kv.mod_revision).await {
                Ok(kv2) => return Ok((with_rv(new, kv2.mod_revision), vec![])),
                Err(StoreError::Conflict { .. }) => {
                    from_cache = false;
                    continue;
                }
                Err(StoreError::NotFound(_)) => {
                    return Err(ApiError::not_found(rt.group, rt.plural, name))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            rt.group,
            rt.plural,
            name,
            "too many concurrent updates; please try again",
        ))
    }

    /// PUT of the main resource or a subresource ("status").
    pub async fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        sub: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        self.check_type(rt, ns, &mut body)?;
        let mut warnings = Vec::new();
        let body = self.typed(rt, &body, opts.field_validation, &mut warnings)?;
        let precondition = meta_str(&body, "resourceVersion").map(String::from);
        let (o, mut w) = self
            .guaranteed_update(rt, ns, name, opts, |cur| {
                Ok((merge_for_write(rt, cur, &body, sub), precondition.clone()))
            })
            .await?;
        warnings.append(&mut w);
        Ok((o, warnings))
    }

    #[allow(clippy::too_many_arguments)]
    /// PATCH: apply the patch to the current object (or its subresource view) and write.
    pub async fn patch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        patch_type: &str,
        patch: &Value,
        sub: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let mut warnings = Vec::new();
        let fv = opts.field_validation;
        let (o, mut w) = self
            .guaranteed_update(rt, ns, name, opts, |cur| {
                let patched = apply_patch(rt, cur, patch_type, patch)?;
                let mut patched = patched;
                let mut ws = Vec::new();
                self.check_type(rt, ns, &mut patched)?;
                let patched = self.typed(rt, &patched, fv, &mut ws)?;
                // A resourceVersion in the patch is a precondition.
                let pre = patch
                    .pointer("/metadata/resourceVersion")
                    .and_then(|v| v.as_str())
                    .map(String::from);
                let mut patched = patched;
                if pre.is_none() {
                    set_meta(
                        &mut patched,
                        "resourceVersion",
                        cur.pointer("/metadata/resourceVersion")
                            .cloned()
                            .unwrap_or(Value::Null),
                    );
                }
                Ok((merge_for_write(rt, cur, &patched, sub), pre))
            })
            .await?;
        warnings.append(&mut w);
        Ok((o, warnings))
    }

    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = rt.key(ns, name);
        for _ in 0..16 {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(rt.group, rt.plural, name));
            };
            let cur = decode_kv(&kv)?;
            if let Some(uid) = &opts.precondition_uid {
                if meta_str(&cur, "uid") != Some(uid.as_str()) {
                    return Err(ApiError::conflict(rt.group, rt.plural, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(&cur, "uid").unwrap_or_default())));
                }
            }
            if let Some(rv) = &opts.precondition_rv {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(rt.group, rt.plural, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", kv.mod_revision)));
                }
            }
            let mut new = cur.clone();
            let mut fins = finalizers(&cur);
            match opts.propagation.as_deref() {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                _ => {}
            }
            if !fins.is_empty() {
                set_meta(&mut new, "finalizers", json!(fins));
            }
            let already = meta_str(&cur, "deletionTimestamp").is_some();
            let mut graceful = false;
            if rt.group.is_empty() && rt.kind == "Pod" {
                let bound = cur
                    .pointer("/spec/nodeName")
                    .and_then(|v| v.as_str())
                    .is_some_and(|n| !n.is_empty());
                let terminal = matches!(
                    cur.pointer("/status/phase").and_then(|v| v.as_str()),
                    Some("Succeeded" | "Failed")
                );
                let mut grace = opts.grace_period.unwrap_or_else(|| {
                    cur.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(|g| g.as_i64())
                        .unwrap_or(30)
                });
                if !bound || terminal {
                    grace = 0;
                }
                if grace < 0 {
                    grace = 1;
                }
                let cur_grace = cur
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(|g| g.as_i64());
                if grace > 0 {
                    // Graceful: the node agent removes the pod once its containers stopped.
                    let shorten = cur_grace.is_none_or(|c| grace < c);
                    if !already || shorten {
                        let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                        set_meta(
                            &mut new,
                            "deletionTimestamp",
                            json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                        );
                        set_meta(&mut new, "deletionGracePeriodSeconds", json!(grace));
                    }
                    graceful = true;
                } else if !fins.is_empty() {
                    set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
                }
            }
            if rt.group.is_empty() && rt.kind == "Namespace" && namespace_has_spec_finalizers(&cur)
            {
                graceful = true;
                new["status"]["phase"] = json!("Terminating");
            }
            if graceful || !fins.is_empty() {
                if !already || new != cur {
                    if meta_str(&new, "deletionTimestamp").is_none() {
                        set_meta(&mut new, "deletionTimestamp", json!(now_rfc3339()));
                        if meta_str(&new, "deletionGracePeriodSeconds").is_none()
                            && new
                                .pointer("/metadata/deletionGracePeriodSeconds")
                                .is_none()
                        {
                            set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
                        }
                    }
                    if opts.dry_run {
                        return Ok(new);
                    }
                    match self.store.update(&key, encode(&new), kv.mod_revision).await {
                        Ok(kv2) => return Ok(with_rv(new, kv2.mod_revision)),
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                return Ok(cur);
            }
            if opts.dry_run {
                return Ok(cur);
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(d) => {
                    self.release_object(rt, &cur);
                    return Ok(with_rv(cur, d.mod_revision));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound(_)) => {
                    return Err(ApiError::not_found(rt.group, rt.plural, name))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            rt.group,
            rt.plural,
            name,
            "too many concurrent updates; please try again",
        ))
    }

    /// POST pods/NAME/binding.
    pub async fn bind(
        &self,
        ns: Option<&str>,
        name: &str,
        binding: &Value,
    ) -> Result<(), ApiError> {
        let rt = resources::find("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods"))?;
        let node = binding
            .pointer("/target/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![field_cause(
                    "target.name",
                    "FieldValueRequired",
                    "Required value",
                )],
            ));
        }
        self.guaranteed_update(rt, ns, name, &WriteOptions::default(), |cur| {
            if meta_str(cur, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict("", "pods", name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(n) = cur.pointer("/spec/nodeName").and_then(|v| v.as_str()).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict("", "pods", name, &format!("pod {name} is already assigned to node \"{n}\"")));
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            let conds = new["status"].get("conditions").and_then(|c| c.as_array()).cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c.get("type").and_then(|t| t.as_str()) != Some("PodScheduled")).collect();
            conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
            new["status"]["conditions"] = json!(conds);
            Ok((new, None))
        })
        .await
        .map(|_| ())
    }

    /// The autoscaling/v1 Scale view of a scalable object.
    pub fn scale_of(_rt: &ResourceType, o: &Value) -> Value {
        let selector = o
            .pointer("/spec/selector")
            .and_then(|s| LabelSelector::from_object(s).ok())
            .map(|s| s.to_string_form())
            .unwrap_or_default();
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": o.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                "namespace": o.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
                "uid": o.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                "resourceVersion": o.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
                "creationTimestamp": o.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
            },
            "spec": {"replicas": o.pointer("/spec/replicas").and_then(|r| r.as_i64()).unwrap_or(0)},
            "status": {"replicas": o.pointer("/status/replicas").and_then(|r| r.as_i64()).unwrap_or(0), "selector": selector},
        })
    }

    /// PUT or PATCH of /scale: `f` turns the current Scale into the new one.
    pub async fn update_scale<F>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        mut f: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let (o, _) = self
            .guaranteed_update(rt, ns, name, opts, |cur| {
                let scale = Self::scale_of(rt, cur);
                let new_scale = f(&scale)?;
                let replicas = new_scale
                    .pointer("/spec/replicas")
                    .and_then(|r| r.as_i64())
                    .unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        name,
                        vec![field_cause(
                            "spec.replicas",
                            "FieldValueInvalid",
                            format!(
                                "Invalid value: {replicas}: must be greater than or equal to 0"
                            ),
                        )],
                    ));
                }
                let pre = new_scale
                    .pointer("/metadata/resourceVersion")
                    .and_then(|v| v.as_str())
                    .map(String::from);
                let mut new = cur.clone();
                new["spec"]["replicas"] = json!(replicas);
                Ok((new, pre))
            })
            .await?;
        Ok(Self::scale_of(rt, &o))
    }
}

#[derive(Debug, Clone, Copy)]
enum Alloc {
    Ip(u32),
    Port(u16),
}

fn namespace_has_spec_finalizers(o: &Value) -> bool {
    o.pointer("/spec/finalizers")
        .and_then(|f| f.as_array())
        .is_some_and(|a| !a.is_empty())
}

/// Combines the current object with a written one according to what the
/// endpoint may change: the main resource never changes status (when status
/// is a subresource) and the status subresource changes only status.
fn merge_for_write(rt: &ResourceType, cur: &Value, written: &Value, sub: Option<&str>) -> Value {
    match sub {
        Some("status") => {
            let mut new = cur.clone();
            new["status"] = written.get("status").cloned().unwrap_or(Value::Null);
            if new["status"].is_null() {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
            // Status writers may still update labels/annotations? Upstream: no.
            set_meta(
                &mut new,
                "resourceVersion",
                written
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            new
        }
        _ => {
            let mut new = written.clone();
            if strips_status(rt) {
                match cur.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            // Finalizers may be cleared through the main resource; the spec
            // finalizers of a namespace only through /finalize.
            if rt.kind == "Namespace" && rt.group.is_empty() {
                new["spec"] = cur.get("spec").cloned().unwrap_or(json!({}));
            }
            new
        }
    }
}

fn apply_patch(
    rt: &ResourceType,
    cur: &Value,
    patch_type: &str,
    patch: &Value,
) -> Result<Value, ApiError> {
    let bad = patch_error;
    match patch_type {
        "application/json-patch+json" => bosun_patch::json_patch(cur, patch).map_err(bad),
        "application/merge-patch+json" => bosun_patch::merge_patch(cur, patch).map_err(bad),
        "application/strategic-merge-patch+json" => {
            bosun_patch::strategic_merge_patch(cur, patch, rt.group, rt.kind).map_err(bad)
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Defaults plus the conversions upstream's decoding does: empty metadata
/// maps vanish (Go's omitempty) and Secret stringData folds into data.
fn normalize(rt: &ResourceType, o: &mut Value) {
    crate::defaults::apply(rt.group, rt.kind, o);
    if let Some(meta) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for f in [
            "labels",
            "annotations",
            "finalizers",
            "ownerReferences",
            "managedFields",
        ] {
            let empty = match meta.get(f) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(f);
            }
        }
    }
    if rt.group.is_empty() && rt.kind == "Secret" {
        if let Some(Value::Object(sd)) = o.as_object_mut().and_then(|m| m.remove("stringData")) {
            if !o.get("data").is_some_and(|d| d.is_object()) {
                o["data"] = json!({});
            }
            for (k, v) in sd {
                let raw = v.as_str().unwrap_or_default();
                o["data"][k.as_str()] =
                    json!(base64::engine::general_purpose::STANDARD.encode(raw));
            }
        }
    }
}

/// Maps a patch failure to the status upstream answers, except that a
/// malformed patch is the client's mistake and never a 500.
pub fn patch_error(e: bosun_patch::PatchError) -> ApiError {
    match e.status_code() {
        400 => ApiError::bad_request(e.to_string()),
        413 => ApiError::new(413, "RequestEntityTooLarge", e.to_string()),
        _ => ApiError::new(422, "Invalid", e.to_string()),
    }
}

/// Pod QoS class from container requests/limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| {
            pod.pointer(&format!("/spec/{l}"))
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
        })
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(|r| r.as_object());
        let lim = c.pointer("/resources/limits").and_then(|r| r.as_object());
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Two resource lists are equal (both went through the typed round-trip,
/// which writes quantities in canonical form).
fn quantities_equal(a: &Value, b: &Value) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cidr() {
        let c: ServiceCidr = "172.16.105.0/24".parse().unwrap();
        assert_eq!(c.size(), 256);
        assert_eq!(c.nth(1).to_string(), "172.16.105.1");
        assert!(c.contains(u32::from(std::net::Ipv4Addr::new(172, 16, 105, 200))));
        assert!(!c.contains(u32::from(std::net::Ipv4Addr::new(172, 16, 106, 1))));
        assert_eq!(c.to_string(), "172.16.105.0/24");
        assert_eq!(ServiceCidr::default().to_string(), "10.43.0.0/16");
        assert!("10.43.0.1/16".parse::<ServiceCidr>().is_err());
        assert!("10.43.0.0".parse::<ServiceCidr>().is_err());
        assert!("10.43.0.0/30".parse::<ServiceCidr>().is_err());
    }

    #[test]
    fn qos() {
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{"name": "a"}]}})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(
                &json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(
                &json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}})
            ),
            "Burstable"
        );
    }

    #[test]
    fn continue_roundtrip() {
        let t = encode_continue(42, "/registry/pods/default/a");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/pods/default/a".to_string())
        );
        assert!(decode_continue("garbage!").is_err());
    }
}
