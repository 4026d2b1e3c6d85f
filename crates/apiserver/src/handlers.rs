//! Request routing and the REST verbs: paths, query parameters, content
//! negotiation (JSON, YAML, protobuf bodies; Table responses) and watch streams.

use crate::cache::{CacheEvent, CachedObject, EventType, WatchStart};
use crate::error::ApiError;
use crate::registry::{DeleteOptions, FieldValidation, ListOptions, Registry, WriteOptions};
use crate::resources::{self, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Largest request body accepted, like upstream's 3 MiB limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct State {
    pub registry: Arc<Registry>,
    /// TLS client config for the node agents' APIs (set at start).
    pub kubelet_tls: OnceLock<Arc<rustls::ClientConfig>>,
    token: String,
    server_address: String,
    openapi: OnceLock<OpenApi>,
}

struct OpenApi {
    root: Bytes,
    docs: HashMap<String, Bytes>,
}

impl State {
    pub fn new(registry: Arc<Registry>, token: String, server_address: String) -> Self {
        State {
            registry,
            kubelet_tls: OnceLock::new(),
            token,
            server_address,
            openapi: OnceLock::new(),
        }
    }

    fn openapi(&self) -> &OpenApi {
        self.openapi.get_or_init(build_openapi)
    }
}

fn build_openapi() -> OpenApi {
    let started = std::time::Instant::now();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for g in resources::GROUPS {
        gvs.push((g.to_string(), "v1".into()));
    }
    let mut docs = HashMap::new();
    let mut entries = Vec::new();
    for (g, v) in gvs {
        let infos: Vec<bosun_openapi::ResourceInfo> = resources::in_group(&g)
            .filter(|r| r.version == v)
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
        let doc = bosun_openapi::group_version_document(&g, &v, &infos);
        let key = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let hash = bosun_openapi::content_hash(&doc);
        docs.insert(
            key.clone(),
            Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
        );
        entries.push((key, hash));
    }
    let root = bosun_openapi::root_document(&entries);
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "built OpenAPI v3 documents"
    );
    OpenApi {
        root: Bytes::from(serde_json::to_vec(&root).unwrap_or_default()),
        docs,
    }
}

pub(crate) fn empty_body() -> Body {
    full(Bytes::new())
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    bytes_response(
        code,
        "application/json",
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    )
}

fn bytes_response(code: u16, ctype: &str, b: Bytes) -> Response<Body> {
    let mut r = Response::new(full(b));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(ctype) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status_json());
    if let Some(s) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Query(pub Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut v = Vec::new();
        for part in q.unwrap_or_default().split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            v.push((percent_decode(k), percent_decode(val)));
        }
        Query(v)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    client_cert: bool,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = route(&state, req, client_cert).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

fn authenticated(state: &State, req: &Request<Incoming>, client_cert: bool) -> bool {
    if client_cert {
        return true;
    }
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !state.token.is_empty() && t.trim() == state.token)
}

async fn route(state: &Arc<State>, req: Request<Incoming>, client_cert: bool) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    match path.as_str() {
        "/version" => return json_response(200, &version()),
        "/healthz" | "/livez" | "/readyz" => {
            return bytes_response(200, "text/plain; charset=utf-8", Bytes::from_static(b"ok"))
        }
        p if p.starts_with("/healthz/")
            || p.starts_with("/livez/")
            || p.starts_with("/readyz/") =>
        {
            return bytes_response(200, "text/plain; charset=utf-8", Bytes::from_static(b"ok"))
        }
        _ => {}
    }
    if !authenticated(state, &req, client_cert) {
        return error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(|s| s.as_str()).collect();
    match segs.as_slice() {
        ["api"] => {
            if let Some(v) = crate::discovery::wanted_aggregated(&accept) {
                return aggregated_response(crate::discovery::aggregated(true, v), v);
            }
            return json_response(200, &crate::discovery::api_versions(&state.server_address));
        }
        ["apis"] => {
            if let Some(v) = crate::discovery::wanted_aggregated(&accept) {
                return aggregated_response(crate::discovery::aggregated(false, v), v);
            }
            return json_response(200, &crate::discovery::api_group_list());
        }
        ["api", "v1"] => return opt_json(crate::discovery::api_resource_list("", "v1"), &path),
        ["apis", g] => return opt_json(crate::discovery::api_group(g), &path),
        ["apis", g, v] => return opt_json(crate::discovery::api_resource_list(g, v), &path),
        ["openapi", "v3"] => {
            return bytes_response(200, "application/json", state.openapi().root.clone())
        }
        ["openapi", "v3", rest @ ..] => {
            let key = rest.join("/");
            let oa = state.openapi();
            return match oa.docs.get(&key) {
                Some(d) => bytes_response(200, "application/json", d.clone()),
                None => not_found_path(&path),
            };
        }
        ["api", "v1", rest @ ..] => {
            let rest: Vec<&str> = rest.to_vec();
            return resource_request(state, req, "", "v1", &rest, &accept).await;
        }
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            let rest: Vec<&str> = rest.to_vec();
            return resource_request(state, req, &g, &v, &rest, &accept).await;
        }
        _ => {}
    }
    not_found_path(&path)
}

fn not_found_path(path: &str) -> Response<Body> {
    let _ = path;
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

fn opt_json(v: Option<Value>, path: &str) -> Response<Body> {
    match v {
        Some(v) => json_response(200, &v),
        None => not_found_path(path),
    }
}

fn aggregated_response(doc: Value, v: &str) -> Response<Body> {
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
    let mut r = bytes_response(
        200,
        &ct,
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.5+bosun",
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// What a path under a group-version addresses.
struct Target<'a> {
    rt: &'static ResourceType,
    ns: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(group: &str, version: &str, rest: &[&'a str]) -> Result<Target<'a>, ApiError> {
    let nf = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    if !resources::group_exists(group, version) {
        return Err(nf());
    }
    if rest.len() >= 3 && rest[0] == "namespaces" {
        if let Some(rt) = resources::find(group, version, rest[2]).filter(|r| r.namespaced) {
            let ns = Some(rest[1]);
            return match rest.len() {
                3 => Ok(Target {
                    rt,
                    ns,
                    name: None,
                    sub: None,
                }),
                4 => Ok(Target {
                    rt,
                    ns,
                    name: Some(rest[3]),
                    sub: None,
                }),
                5 => Ok(Target {
                    rt,
                    ns,
                    name: Some(rest[3]),
                    sub: Some(rest[4]),
                }),
                _ => Err(nf()),
            };
        }
    }
    let rt = rest
        .first()
        .and_then(|p| resources::find(group, version, p))
        .ok_or_else(nf)?;
    match rest.len() {
        1 => Ok(Target {
            rt,
            ns: None,
            name: None,
            sub: None,
        }),
        2 if !rt.namespaced => Ok(Target {
            rt,
            ns: None,
            name: Some(rest[1]),
            sub: None,
        }),
        3 if !rt.namespaced => Ok(Target {
            rt,
            ns: None,
            name: Some(rest[1]),
            sub: Some(rest[2]),
        }),
        _ => Err(nf()),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<(Option<String>, Bytes), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string());
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_BODY {
            return Err(too_large());
        }
    }
    let body = Limited::new(req.into_body(), MAX_BODY);
    match body.collect().await {
        Ok(c) => Ok((ct, c.to_bytes())),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large())
            } else {
                Err(ApiError::bad_request(format!(
                    "error reading request body: {e}"
                )))
            }
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {MAX_BODY}"),
    )
}

fn media_type(ct: &Option<String>) -> String {
    ct.as_deref()
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body by Content-Type; a missing type means JSON.
fn decode_body(ct: &Option<String>, body: &[u8]) -> Result<Value, ApiError> {
    let mt = media_type(ct);
    match mt.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_yaml::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => bosun_protobuf::decode(body)
            .map(|(_, _, v)| v)
            .map_err(|e| ApiError::bad_request(format!("unable to decode protobuf body: {e}"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|p| {
        let p = p.replace(' ', "");
        p.contains("as=Table") && p.contains("g=meta.k8s.io")
    })
}

fn wants_partial_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .any(|p| p.replace(' ', "").contains("as=PartialObjectMetadata"))
}

fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dryRun value: {o}; supported values: All"
            )))
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_validation: FieldValidation::parse(q.get("fieldValidation"))?,
        field_manager: None,
    })
}

async fn resource_request(
    state: &Arc<State>,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[&str],
    accept: &str,
) -> Response<Body> {
    let t = match parse_target(group, version, rest) {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let q = Query::parse(req.uri().query());
    let method = req.method().clone();
    match verb(state, req, &t, &q, &method, accept).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn verb(
    state: &Arc<State>,
    req: Request<Incoming>,
    t: &Target<'_>,
    q: &Query,
    method: &Method,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let reg = &state.registry;
    let rt = t.rt;
    let ns = if rt.namespaced { t.ns } else { None };
    if let (Some(sub @ ("log" | "exec" | "attach" | "portforward")), Some(name), "Pod") =
        (t.sub, t.name, rt.kind)
    {
        return Ok(
            crate::proxy::pod_stream(state, req, ns.unwrap_or("default"), name, sub, &q.0).await,
        );
    }
    if let Some(sub) = t.sub {
        let ok = rt.has_subresource(sub) || (rt.kind == "Namespace" && sub == "finalize");
        if !ok {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    }
    // The writer for managedFields; read before the body consumes `req`.
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let fmgr = crate::apply::field_manager(q.get("fieldManager"), user_agent.as_deref(), t.sub)?;
    match (t.name, method) {
        (None, &Method::GET) => {
            if q.flag("watch") {
                return watch(state, rt, t.ns, q, accept).await;
            }
            let opts = list_options(rt, q)?;
            let res = reg.list(rt, t.ns, &opts).await?;
            Ok(list_response(rt, &res, accept, q))
        }
        (None, &Method::POST) => {
            let opts = WriteOptions {
                field_manager: Some(fmgr.clone()),
                ..write_options(q)?
            };
            let (ct, body) = read_body(req).await?;
            let obj = decode_body(&ct, &body)?;
            if rt.namespaced && t.ns.is_none() {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let (o, warnings) = reg.create(rt, ns, obj, &opts).await?;
            Ok(with_warnings(json_response(201, &o), &warnings))
        }
        (None, &Method::DELETE) => {
            let opts = list_options(rt, q)?;
            let (ct, body) = read_body(req).await?;
            let dopts = delete_options(q, &ct, &body)?;
            let res = reg.list(rt, t.ns, &opts).await?;
            let mut items = Vec::new();
            for o in &res.items {
                let name = o
                    .value
                    .pointer("/metadata/name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default();
                let ons = o.namespace().map(|s| s.to_string());
                match reg.delete(rt, ons.as_deref(), name, &dopts).await {
                    Ok(v) => items.push(v),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                200,
                &json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": {}, "items": items}),
            ))
        }
        (Some(name), &Method::GET) => match t.sub {
            Some("scale") => {
                let o = reg.get(rt, ns, name).await?;
                Ok(json_response(200, &Registry::scale_of(rt, &o)))
            }
            _ => {
                let o = reg.get(rt, ns, name).await?;
                if wants_table(accept) && t.sub.is_none() {
                    let obj = Arc::new(CachedObject::new(String::new(), rv_of(&o), o));
                    let table = table(
                        rt,
                        &[obj],
                        &rv_of_str(&Value::Null),
                        None,
                        include_object(q),
                        true,
                    );
                    return Ok(json_response(200, &table));
                }
                if wants_partial_metadata(accept) {
                    return Ok(json_response(200, &partial(&o)));
                }
                Ok(json_response(200, &o))
            }
        },
        (Some(name), &Method::PUT) => {
            let opts = WriteOptions {
                field_manager: Some(fmgr.clone()),
                ..write_options(q)?
            };
            let (ct, body) = read_body(req).await?;
            let obj = decode_body(&ct, &body)?;
            match t.sub {
                Some("scale") => {
                    let replicas = obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
                    let pre = obj.pointer("/metadata/resourceVersion").cloned();
                    let s = reg
                        .update_scale(rt, ns, name, &opts, |cur| {
                            let mut n = cur.clone();
                            n["spec"]["replicas"] = replicas.clone();
                            if let Some(p) = &pre {
                                n["metadata"]["resourceVersion"] = p.clone();
                            }
                            Ok(n)
                        })
                        .await?;
                    Ok(json_response(200, &s))
                }
                Some("finalize") => {
                    let fins = obj
                        .pointer("/spec/finalizers")
                        .cloned()
                        .unwrap_or(json!([]));
                    let (o, _) = reg
                        .guaranteed_update(rt, None, name, &opts, |cur| {
                            let mut n = cur.clone();
                            n["spec"]["finalizers"] = fins.clone();
                            Ok((n, None))
                        })
                        .await?;
                    Ok(json_response(200, &o))
                }
                sub => {
                    let (o, warnings) = reg.update(rt, ns, name, obj, sub, &opts).await?;
                    Ok(with_warnings(json_response(200, &o), &warnings))
                }
            }
        }
        (Some(name), &Method::PATCH) => {
            let opts = WriteOptions {
                field_manager: Some(fmgr.clone()),
                ..write_options(q)?
            };
            let (ct, body) = read_body(req).await?;
            let mt = media_type(&ct);
            if mt == "application/apply-patch+yaml" && t.sub != Some("scale") {
                let req = crate::apply::ApplyRequest {
                    manager: q.get("fieldManager"),
                    force: q.get("force"),
                    sub: t.sub,
                    body: &body,
                };
                let (o, code, warnings) =
                    crate::apply::apply(reg, rt, ns, name, &req, &opts).await?;
                return Ok(with_warnings(json_response(code, &o), &warnings));
            }
            if q.get("force").is_some() {
                return Err(crate::apply::force_forbidden());
            }
            if !matches!(
                mt.as_str(),
                "application/json-patch+json"
                    | "application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
            ) {
                return Err(ApiError::unsupported_media_type(&mt));
            }
            let patch: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            match t.sub {
                Some("scale") => {
                    let scale_rt = ScaleType;
                    let s = reg
                        .update_scale(rt, ns, name, &opts, |cur| scale_rt.patch(cur, &mt, &patch))
                        .await?;
                    Ok(json_response(200, &s))
                }
                sub => {
                    let (o, warnings) = reg.patch(rt, ns, name, &mt, &patch, sub, &opts).await?;
                    Ok(with_warnings(json_response(200, &o), &warnings))
                }
            }
        }
        (Some(name), &Method::DELETE) if t.sub.is_none() => {
            let (ct, body) = read_body(req).await?;
            let dopts = delete_options(q, &ct, &body)?;
            let o = reg.delete(rt, ns, name, &dopts).await?;
            if o.pointer("/metadata/deletionTimestamp").is_some() && exists(reg, rt, ns, name).await
            {
                return Ok(json_response(200, &o));
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": o.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
                }),
            ))
        }
        (Some(name), &Method::POST) if t.sub == Some("binding") => {
            let (ct, body) = read_body(req).await?;
            let b = decode_body(&ct, &body)?;
            reg.bind(ns, name, &b).await?;
            Ok(json_response(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

async fn exists(reg: &Registry, rt: &ResourceType, ns: Option<&str>, name: &str) -> bool {
    reg.get(rt, ns, name).await.is_ok()
}

/// Patching the autoscaling/v1 Scale view.
struct ScaleType;
impl ScaleType {
    fn patch(&self, cur: &Value, mt: &str, patch: &Value) -> Result<Value, ApiError> {
        let bad = crate::registry::patch_error;
        match mt {
            "application/json-patch+json" => bosun_patch::json_patch(cur, patch).map_err(bad),
            "application/merge-patch+json" => bosun_patch::merge_patch(cur, patch).map_err(bad),
            _ => {
                bosun_patch::strategic_merge_patch(cur, patch, "autoscaling", "Scale").map_err(bad)
            }
        }
    }
}

fn delete_options(q: &Query, ct: &Option<String>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    let b: Value = if body.iter().all(|c| c.is_ascii_whitespace()) {
        json!({})
    } else {
        decode_body(ct, body)?
    };
    o.grace_period = b.get("gracePeriodSeconds").and_then(|v| v.as_i64());
    o.propagation = b
        .get("propagationPolicy")
        .and_then(|v| v.as_str())
        .map(String::from);
    if b.get("orphanDependents").and_then(|v| v.as_bool()) == Some(true) && o.propagation.is_none()
    {
        o.propagation = Some("Orphan".into());
    }
    o.precondition_uid = b
        .pointer("/preconditions/uid")
        .and_then(|v| v.as_str())
        .map(String::from);
    o.precondition_rv = b
        .pointer("/preconditions/resourceVersion")
        .and_then(|v| v.as_str())
        .map(String::from);
    o.dry_run = b
        .get("dryRun")
        .and_then(|v| v.as_array())
        .is_some_and(|a| a.iter().any(|x| x == "All"));
    if let Some(g) = q.get("gracePeriodSeconds") {
        o.grace_period = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?,
        );
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if q.get("dryRun") == Some("All") {
        o.dry_run = true;
    }
    if let Some(p) = &o.propagation {
        if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::invalid("", "DeleteOptions", "", vec![crate::error::field_cause("propagationPolicy", "FieldValueNotSupported", format!("Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""))]));
        }
    }
    Ok(o)
}

fn list_options(rt: &ResourceType, q: &Query) -> Result<ListOptions, ApiError> {
    let label_selector = match q.get("labelSelector") {
        Some(s) if !s.is_empty() => Some(LabelSelector::parse(s)?),
        _ => None,
    };
    let field_selector = match q.get("fieldSelector") {
        Some(s) if !s.is_empty() => Some(FieldSelector::parse(s, rt.kind)?),
        _ => None,
    };
    let limit = match q.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?
            .max(0) as usize,
        _ => 0,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(String::from),
        resource_version: q.get("resourceVersion").map(String::from),
        resource_version_match: q
            .get("resourceVersionMatch")
            .filter(|c| !c.is_empty())
            .map(String::from),
    })
}

fn rv_of(o: &Value) -> i64 {
    o.pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn rv_of_str(_: &Value) -> String {
    String::new()
}

#[derive(Clone, Copy, PartialEq)]
enum IncludeObject {
    None,
    Metadata,
    Object,
}

fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

fn partial(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
}

fn table(
    rt: &ResourceType,
    items: &[Arc<CachedObject>],
    rv: &str,
    cont: Option<&str>,
    inc: IncludeObject,
    with_columns: bool,
) -> Value {
    let now = chrono::Utc::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row =
                json!({"cells": bosun_tables::row_cells(rt.group, rt.plural, &o.value, now)});
            match inc {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial(&o.value),
                IncludeObject::Object => row["object"] = o.value.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if !rv.is_empty() {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let cols = if with_columns {
        bosun_tables::column_definitions(rt.group, rt.plural)
    } else {
        vec![]
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": cols, "rows": rows})
}

fn list_response(
    rt: &ResourceType,
    res: &crate::registry::ListResult,
    accept: &str,
    q: &Query,
) -> Response<Body> {
    let rv = res.rv.to_string();
    if wants_table(accept) {
        return json_response(
            200,
            &table(
                rt,
                &res.items,
                &rv,
                res.continue_token.as_deref(),
                include_object(q),
                true,
            ),
        );
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = &res.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = res.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    if wants_partial_metadata(accept) {
        let items: Vec<Value> = res.items.iter().map(|o| partial(&o.value)).collect();
        return json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
        );
    }
    // Splice the cached encodings instead of re-serializing every object.
    let head = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta});
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.pop(); // trailing '}'
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in res.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(o.json());
    }
    out.extend_from_slice(b"]}");
    bytes_response(200, "application/json", Bytes::from(out))
}

enum Mode {
    Json,
    Table(IncludeObject),
    Partial,
}

fn encode_event(
    rt: &ResourceType,
    ty: &str,
    obj: &CachedObject,
    mode: &Mode,
    first: &mut bool,
) -> Bytes {
    let mut out = Vec::with_capacity(obj.json().len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    match mode {
        Mode::Json => out.extend_from_slice(obj.json()),
        Mode::Partial => {
            out.extend_from_slice(&serde_json::to_vec(&partial(&obj.value)).unwrap_or_default())
        }
        Mode::Table(inc) => {
            let single = Arc::new(CachedObject::new(
                obj.key.clone(),
                obj.rv,
                obj.value.clone(),
            ));
            let t = table(rt, &[single], &obj.rv.to_string(), None, *inc, *first);
            *first = false;
            out.extend_from_slice(&serde_json::to_vec(&t).unwrap_or_default());
        }
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

struct WatchFilter {
    prefix: String,
    opts: ListOptions,
}

impl WatchFilter {
    fn matches(&self, o: &CachedObject) -> bool {
        if !o.key.starts_with(&self.prefix) {
            return false;
        }
        if let Some(ls) = &self.opts.label_selector {
            if !ls.matches(
                o.value
                    .pointer("/metadata/labels")
                    .and_then(|l| l.as_object()),
            ) {
                return false;
            }
        }
        if let Some(fs) = &self.opts.field_selector {
            if !fs.matches(&o.value) {
                return false;
            }
        }
        true
    }

    /// The event type a watcher with this filter sees, if any: objects that
    /// start or stop matching appear as ADDED or DELETED, like upstream.
    fn translate(&self, e: &CacheEvent) -> Option<&'static str> {
        let now = self.matches(&e.obj);
        match e.ty {
            EventType::Added => now.then_some("ADDED"),
            EventType::Deleted => now.then_some("DELETED"),
            EventType::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

async fn watch(
    state: &Arc<State>,
    rt: &'static ResourceType,
    ns: Option<&str>,
    q: &Query,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let mut opts = list_options(rt, q)?;
    opts.limit = 0;
    let prefix = match ns {
        Some(ns) if rt.namespaced => rt.namespace_prefix(ns),
        _ => rt.key_prefix(),
    };
    let cache = state.registry.cache.clone();
    let start = match q.get("resourceVersion") {
        None | Some("") | Some("0") => WatchStart::Now,
        Some(rv) => {
            let rv: i64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if rv > cache.current_rv() && !cache.wait_for(rv).await {
                let mut e = ApiError::new(
                    504,
                    "Timeout",
                    format!(
                        "Too large resource version: {rv}, current: {}",
                        cache.current_rv()
                    ),
                );
                e.retry_after = Some(1);
                return Err(e);
            }
            WatchStart::From(rv)
        }
    };
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(1800);
    let mode = if wants_table(accept) {
        Mode::Table(include_object(q))
    } else if wants_partial_metadata(accept) {
        Mode::Partial
    } else {
        Mode::Json
    };
    let filter = WatchFilter {
        prefix: prefix.clone(),
        opts,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    match cache.subscribe(rt, start, &prefix) {
        Err(oldest) => {
            let rv = q.get("resourceVersion").unwrap_or_default();
            let st =
                ApiError::gone(format!("too old resource version: {rv} ({oldest})")).status_json();
            let ev = json!({"type": "ERROR", "object": st});
            let mut line = serde_json::to_vec(&ev).unwrap_or_default();
            line.push(b'\n');
            let _ = tx.send(Ok(Frame::data(Bytes::from(line)))).await;
        }
        Ok(mut sub) => {
            tokio::spawn(async move {
                let mut first = true;
                let mut last_rv = sub.start_rv;
                for e in &sub.backlog {
                    if let Some(ty) = filter.translate(e) {
                        last_rv = last_rv.max(e.obj.rv);
                        if tx
                            .send(Ok(Frame::data(encode_event(
                                rt, ty, &e.obj, &mode, &mut first,
                            ))))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
                tokio::pin!(deadline);
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut deadline => return,
                        _ = tick.tick(), if bookmarks => {
                            let rv = cache.current_rv().max(last_rv);
                            let mut b = json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}}}).to_string();
                            b.push('\n');
                            if tx.send(Ok(Frame::data(Bytes::from(b)))).await.is_err() { return; }
                        }
                        _ = tx.closed() => return,
                        ev = sub.live.recv() => {
                            match ev {
                                Ok(e) => {
                                    if let Some(ty) = filter.translate(&e) {
                                        last_rv = last_rv.max(e.obj.rv);
                                        if tx.send(Ok(Frame::data(encode_event(rt, ty, &e.obj, &mode, &mut first)))).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                                // A watcher that cannot keep up is closed; the client resumes from its last version.
                                Err(_) => return,
                            }
                        }
                    }
                }
            });
        }
    }
    let stream = tokio_stream_from(rx);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "fieldSelector=metadata.name%3Dx&labelSelector=a+in+(b)&x=%ZZ",
        ));
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=x"));
        assert_eq!(q.get("labelSelector"), Some("a in (b)"));
        assert_eq!(q.get("x"), Some("%ZZ"));
    }

    #[test]
    fn targets() {
        let t = parse_target("", "v1", &["namespaces", "default", "pods", "p", "status"]).unwrap();
        assert_eq!(
            (t.rt.plural, t.ns, t.name, t.sub),
            ("pods", Some("default"), Some("p"), Some("status"))
        );
        let t = parse_target("", "v1", &["namespaces", "default"]).unwrap();
        assert_eq!((t.rt.plural, t.name), ("namespaces", Some("default")));
        let t = parse_target("", "v1", &["namespaces", "x", "finalize"]).unwrap();
        assert_eq!(t.sub, Some("finalize"));
        assert!(parse_target("", "v1", &["nope"]).is_err());
        assert!(parse_target("nope", "v1", &["pods"]).is_err());
        let t = parse_target("apps", "v1", &["deployments"]).unwrap();
        assert_eq!(t.ns, None);
    }
}
