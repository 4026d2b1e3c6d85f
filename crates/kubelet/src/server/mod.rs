//! The node agent's own HTTPS API (the kubelet's port 10250), used by the
//! API server for `pods/log`, `pods/exec` and `pods/portforward`:
//! `GET /containerLogs/{ns}/{pod}/{container}`, `/exec/{ns}/{pod}/{container}`,
//! `/attach/{ns}/{pod}/{container}` and `/portForward/{ns}/{pod}`
//! (websocket or SPDY/3.1 upgrades).
//! Clients must present a certificate signed by the cluster CA.

pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::agent::Agent;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// The kubelet's default port.
pub const DEFAULT_PORT: u16 = 10250;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listen on port {port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("serving certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A bound listener, so the port can be published before serving starts.
pub struct Listener {
    tcp: TcpListener,
    pub port: u16,
    tls: Arc<rustls::ServerConfig>,
}

/// Bind `0.0.0.0:port`. When the port is taken, fall back to a free port
/// (the Node publishes whichever is used), so several agents can share a
/// host; `port == 0` always picks a free one.
pub async fn bind(port: u16, ca_pem: &str) -> Result<Listener, ServerError> {
    let tls = tls_config(ca_pem)?;
    let tcp = match TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(port, "kubelet port in use; serving on a free port instead");
            TcpListener::bind(("0.0.0.0", 0))
                .await
                .map_err(|source| ServerError::Listen { port: 0, source })?
        }
        Err(source) => return Err(ServerError::Listen { port, source }),
    };
    let port = tcp
        .local_addr()
        .map_err(|source| ServerError::Listen { port, source })?
        .port();
    Ok(Listener { tcp, port, tls })
}

fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let c = c.map_err(|e| ServerError::Tls(format!("CA: {e}")))?;
        roots
            .add(c)
            .map_err(|e| ServerError::Tls(format!("CA: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ServerError::Tls(e.to_string()))?;
    // Self-signed: the API server does not verify the kubelet's serving
    // certificate (upstream's default without --kubelet-certificate-authority).
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Some(ip) = crate::host::internal_ip() {
        names.push(ip);
    }
    names.push(crate::host::hostname());
    let ck = rcgen::generate_simple_self_signed(names)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve until the task is aborted.
pub fn serve(l: Listener, agent: Arc<Agent>) -> tokio::task::JoinHandle<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(l.tls);
    tracing::info!(port = l.port, "node agent API listening");
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match l.tcp.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "kubelet API: TLS handshake failed");
                        return;
                    }
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    let agent = agent.clone();
                    async move { Ok::<_, Infallible>(handle(agent, req, peer).await) }
                });
                let b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = b
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "kubelet API: connection error");
                }
            });
        }
    })
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn text(code: u16, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(msg.into()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Decoded query pairs, repeated keys kept in order.
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    let dec = |s: &str| -> String {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(x);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

async fn handle(agent: Arc<Agent>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    tracing::debug!(%peer, method = %req.method(), %path, "kubelet API request");
    match (req.method(), segs.as_slice()) {
        (&Method::GET, ["healthz"]) => text(200, "ok"),
        (&Method::GET, ["containerLogs", ns, pod, c]) => {
            let (ns, pod, c) = (ns.to_string(), pod.to_string(), c.to_string());
            container_logs(agent, &req, &ns, &pod, &c).await
        }
        (&Method::GET | &Method::POST, ["exec", ns, pod, c]) => {
            let (ns, pod, c) = (ns.to_string(), pod.to_string(), c.to_string());
            match find_pod(&agent, &ns, &pod).await {
                Ok(p) => remotecommand::exec(agent, req, &p, &c).await,
                Err(r) => r,
            }
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            match find_pod(&agent, &ns, &pod).await {
                Ok(p) => portforward::serve(agent, req, &p).await,
                Err(r) => r,
            }
        }
        (&Method::GET | &Method::POST, ["attach", ns, pod, c]) => {
            let (ns, pod, c) = (ns.to_string(), pod.to_string(), c.to_string());
            match find_pod(&agent, &ns, &pod).await {
                Ok(p) => remotecommand::attach(agent, req, &p, &c).await,
                Err(r) => r,
            }
        }
        _ => text(404, "404 page not found"),
    }
}

/// The pod, as JSON, if it runs on this node.
pub async fn find_pod(agent: &Agent, ns: &str, name: &str) -> Result<Value, Response<Body>> {
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(p)) => {
            let v = serde_json::to_value(p).unwrap_or_default();
            if v["spec"]["nodeName"].as_str() != Some(agent.node_name.as_str()) {
                return Err(text(404, format!("pod {ns}/{name} is not on this node")));
            }
            Ok(v)
        }
        Ok(None) => Err(text(404, format!("pod {ns}/{name} not found"))),
        Err(e) => Err(text(500, format!("reading pod {ns}/{name}: {e}"))),
    }
}

pub fn pod_uid(pod: &Value) -> &str {
    pod["metadata"]["uid"].as_str().unwrap_or("")
}

/// The runtime ID of a running container, from the pod status.
pub fn running_container_id(pod: &Value, container: &str) -> Option<String> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| pod["status"][k].as_array())
        .flatten()
        .find(|s| s["name"] == container && s["state"]["running"].is_object())
        .and_then(|s| s["containerID"].as_str())
        .and_then(|id| id.split_once("://").map(|(_, id)| id.to_string()))
}

fn pod_has_container(pod: &Value, c: &str) -> bool {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .any(|x| x["name"] == c)
}

async fn container_logs(
    agent: Arc<Agent>,
    req: &Request<Incoming>,
    ns: &str,
    name: &str,
    container: &str,
) -> Response<Body> {
    let opts = match logs::LogOptions::parse(&query_pairs(req.uri().query()), chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return text(400, e),
    };
    let pod = match find_pod(&agent, ns, name).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !pod_has_container(&pod, container) {
        return text(
            400,
            format!("container {container} is not valid for pod {name}"),
        );
    }
    let uid = pod_uid(&pod).to_string();
    let dir = agent.dirs.logs(ns, name, &uid).join(container);
    let instances = logs::instances(&dir);
    let n = if opts.previous {
        match instances.len().checked_sub(2).map(|i| instances[i]) {
            Some(n) => n,
            None => {
                return text(
                    400,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{name}\" not found"
                    ),
                )
            }
        }
    } else {
        match instances.last() {
            Some(n) => *n,
            None => {
                return text(
                    400,
                    format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"),
                )
            }
        }
    };
    let current = dir.join(format!("{n}.log"));
    let files = logs::instance_files(&current);
    let id = format!("{uid}-{container}-{n}");
    let bundle = agent.rt.bundle_dir(&id);
    let follow = opts.follow && !opts.previous;
    let tail = opts.tail_lines;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        let mut fmt = logs::Formatter::new(opts);
        let (first, offset) = logs::read_all(&files, &mut fmt, tail);
        if !first.is_empty() && tx.blocking_send(Bytes::from(first)).is_err() {
            return;
        }
        if !follow {
            return;
        }
        let next = dir.join(format!("{}.log", n + 1));
        let shim = bosun_runtime::ShimHandle { id, bundle };
        let stopped = || next.exists() || !shim.bundle.exists() || !shim.shim_alive();
        logs::follow(&current, offset, &mut fmt, &stopped, &mut |b| {
            if b.is_empty() {
                return !tx.is_closed();
            }
            tx.blocking_send(Bytes::from(b)).is_ok()
        });
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let b = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A Status object for the error channel of exec/attach.
pub fn status_failure(message: &str, reason: &str, exit_code: Option<i32>) -> Value {
    let mut s = json!({"metadata": {}, "status": "Failure", "message": message, "reason": reason});
    if let Some(c) = exit_code {
        s["details"] = json!({"causes": [{"reason": "ExitCode", "message": c.to_string()}]});
    } else {
        s["code"] = json!(500);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = query_pairs(Some("command=ls&command=%2Ftmp&command=a+b&stdout=true&x"));
        let v: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            v,
            [
                ("command", "ls"),
                ("command", "/tmp"),
                ("command", "a b"),
                ("stdout", "true"),
                ("x", "")
            ]
        );
    }

    #[test]
    fn running_ids() {
        let pod = json!({"status": {"containerStatuses": [
            {"name": "a", "containerID": "runc://u-a-0", "state": {"running": {}}},
            {"name": "b", "containerID": "runc://u-b-0", "state": {"terminated": {}}},
        ]}});
        assert_eq!(running_container_id(&pod, "a").as_deref(), Some("u-a-0"));
        assert_eq!(running_container_id(&pod, "b"), None);
        assert_eq!(running_container_id(&pod, "c"), None);
    }
}
