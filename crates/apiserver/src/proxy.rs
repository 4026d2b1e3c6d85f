//! The pods/log, pods/exec, pods/attach and pods/portforward subresources:
//! validated here (pod, container, state), then proxied to the node
//! agent's API at the node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, with a client
//! certificate from the cluster CA. Upgrades (websocket, SPDY) are
//! answered with the agent's 101 and then spliced byte for byte.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

use crate::error::ApiError;
use crate::handlers::{error_response, Body, State};
use crate::resources;
use crate::tls::TlsError;

/// Accepts any serving certificate: like upstream without
/// `--kubelet-certificate-authority`, the agent's certificate is not checked
/// (the agent authenticates us, not the reverse).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client TLS config for node agents: `tls/kubelet-client.{crt,key}`
/// (created on first use, signed by the cluster CA).
pub fn client_config(data_dir: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let dir = data_dir.join("tls");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    let crt = dir.join("kubelet-client.crt");
    let key = dir.join("kubelet-client.key");
    if !crt.exists() || !key.exists() {
        let ca_crt = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        let ca_pem = std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?;
        let ca_kp = KeyPair::from_pem(&std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_kp)?;
        let kp = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bosun-apiserver-kubelet-client");
        dn.push(DnType::OrganizationName, "system:masters");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = chrono::Utc::now();
        use chrono::Datelike;
        params.not_before = rcgen::date_time_ymd(now.year() - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(now.year() + 5, 1, 1);
        let cert = params.signed_by(&kp, &issuer)?;
        std::fs::write(&key, kp.serialize_pem()).map_err(io(&key))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(io(&key))?;
        std::fs::write(&crt, cert.pem()).map_err(io(&crt))?;
    }
    let crt_pem = std::fs::read_to_string(&crt).map_err(io(&crt))?;
    let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut crt_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem(crt.clone()))?;
    let pkey = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|_| TlsError::Pem(key.clone()))?
        .ok_or_else(|| TlsError::Pem(key.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_client_auth_cert(chain, pkey)?;
    // Upgrades need HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn q_get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn container_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn all_container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The container a request means, like upstream's defaulting.
pub fn pick_container(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    if let Some(c) = asked.filter(|c| !c.is_empty()) {
        if all_container_names(pod).iter().any(|x| x == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(d) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
    {
        if container_names(pod).iter().any(|x| x == d) {
            return Ok(d.to_string());
        }
    }
    let names = container_names(pod);
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

fn container_status<'a>(pod: &'a Value, c: &str) -> Option<&'a Value> {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod["status"][k].as_array())
    .flatten()
    .find(|s| s["name"] == c)
}

/// Upstream's "is waiting to start" check: a container that never ran
/// has no logs and nothing to exec into.
fn check_started(pod: &Value, c: &str) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let st = container_status(pod, c);
    let waiting = match st {
        None => Some("ContainerCreating".to_string()),
        Some(s) if s["state"]["waiting"].is_object() => {
            let ran_before = s["lastState"]["terminated"].is_object();
            // A restarting container has logs from its last run.
            if ran_before {
                None
            } else {
                Some(
                    s["state"]["waiting"]["reason"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        .unwrap_or("ContainerCreating")
                        .to_string(),
                )
            }
        }
        Some(_) => None,
    };
    match waiting {
        Some(reason) => Err(ApiError::bad_request(format!(
            "container \"{c}\" in pod \"{name}\" is waiting to start: {reason}"
        ))),
        None => Ok(()),
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Serve pods/{log,exec,attach,portforward} of `ns/name`.
pub async fn pod_stream(
    state: &Arc<State>,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    sub: &str,
    q: &[(String, String)],
) -> Response<Body> {
    match pod_stream_inner(state, req, ns, name, sub, q).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn pod_stream_inner(
    state: &Arc<State>,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    sub: &str,
    q: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let allowed = match sub {
        "log" => req.method() == Method::GET,
        _ => req.method() == Method::GET || req.method() == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let pods = resources::find("", "v1", "pods")
        .ok_or_else(|| ApiError::new(500, "InternalError", "pods not served"))?;
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let path = if sub == "portforward" {
        if pod["status"]["phase"] != "Running" {
            return Err(ApiError::bad_request(format!(
                "pod {name} is not running (phase {})",
                pod["status"]["phase"].as_str().unwrap_or("Pending")
            )));
        }
        format!("/portForward/{}/{}", encode(ns), encode(name))
    } else {
        let c = pick_container(&pod, q_get(q, "container"))?;
        if sub != "log" {
            let phase = pod["status"]["phase"].as_str().unwrap_or("");
            if phase == "Succeeded" || phase == "Failed" {
                return Err(ApiError::bad_request(format!(
                    "cannot {sub} into a container in a completed pod; current phase is {phase}"
                )));
            }
        }
        check_started(&pod, &c)?;
        let verb = match sub {
            "log" => "containerLogs",
            other => other,
        };
        format!("/{verb}/{}/{}/{}", encode(ns), encode(name), encode(&c))
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = resources::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::new(500, "InternalError", "nodes not served"))?;
    let node = state.registry.get(nodes, None, node_name).await?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(0);
    let addrs = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addrs
                .iter()
                .find(|a| a["type"] == *t)
                .and_then(|a| a["address"].as_str())
        })
        .unwrap_or("127.0.0.1")
        .to_string();
    if port == 0 || port > u16::MAX as u64 {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node_name} does not serve the kubelet API"),
        ));
    }
    let tls =
        state.kubelet_tls.get().cloned().ok_or_else(|| {
            ApiError::new(503, "ServiceUnavailable", "no kubelet client credentials")
        })?;
    let query = req
        .uri()
        .query()
        .map(|s| format!("?{s}"))
        .unwrap_or_default();
    proxy(req, tls, &host, port as u16, &format!("{path}{query}")).await
}

fn upstream_error(code: u16, message: String) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    ApiError::new(if code == 0 { 500 } else { code }, reason, message)
}

async fn proxy(
    mut req: Request<Incoming>,
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    path_and_query: &str,
) -> Result<Response<Body>, ApiError> {
    let unreachable =
        |e: String| ApiError::new(502, "InternalError", format!("error dialing backend: {e}"));
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| unreachable(format!("dial tcp {host}:{port}: i/o timeout")))?
    .map_err(|e| unreachable(format!("dial tcp {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let sni = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("static name"));
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(sni, tcp)
        .await
        .map_err(|e| unreachable(format!("tls: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended");
        }
    });
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(path_and_query);
    for (k, v) in req.headers() {
        if k == header::HOST || k == header::AUTHORIZATION || k == header::CONTENT_LENGTH {
            continue;
        }
        out = out.header(k, v);
    }
    out = out.header(header::HOST, format!("{host}:{port}"));
    let out = out
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(c), Ok(b)) => (c, b),
                (c, b) => {
                    tracing::debug!(client = c.is_ok(), backend = b.is_ok(), "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        });
        let mut r = Response::new(crate::handlers::empty_body());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            r.headers_mut().append(k, v.clone());
        }
        return Ok(r);
    }
    if status.as_u16() >= 400 {
        let body = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(upstream_error(status.as_u16(), msg));
    }
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/plain"));
    let body = resp.into_body().map_err(std::io::Error::other).boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, ctype);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaulting() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pick_container(&one, None).unwrap(), "a");
        assert_eq!(pick_container(&one, Some("a")).unwrap(), "a");
        let e = pick_container(&one, Some("x")).unwrap_err();
        assert_eq!(e.code, 400);
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let e = pick_container(&two, None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let mut dflt = two.clone();
        dflt["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(pick_container(&dflt, None).unwrap(), "b");
    }

    #[test]
    fn waiting_containers() {
        let p = json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            {"name": "b", "state": {"running": {}}},
            {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {}}},
        ]}});
        assert_eq!(
            check_started(&p, "a").unwrap_err().message,
            "container \"a\" in pod \"p\" is waiting to start: ImagePullBackOff"
        );
        assert!(check_started(&p, "b").is_ok());
        assert!(check_started(&p, "c").is_ok());
        assert_eq!(
            check_started(&p, "z").unwrap_err().message,
            "container \"z\" in pod \"p\" is waiting to start: ContainerCreating"
        );
    }

    #[test]
    fn path_encoding() {
        assert_eq!(encode("a-b.c"), "a-b.c");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
