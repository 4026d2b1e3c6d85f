//! Container probes (liveness, readiness, startup) and lifecycle hook
//! handlers, with upstream kubelet semantics.
//!
//! [`ContainerProbes`] is the timing/threshold state machine of one
//! container instance (upstream's probe workers): pure, driven by the pod
//! worker with the current time, so it is tested without containers or
//! sleeps. [`Prober`] runs one handler (exec, httpGet, tcpSocket, grpc,
//! sleep); [`RealProber`] does it for real: exec through the OCI runtime,
//! network handlers from inside the pod's network namespace.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_runtime::RuncCli;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The User-Agent of HTTP probes (upstream: `kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.33";
/// Exec output kept for messages (upstream's probe read limit).
pub const MAX_OUTPUT: usize = 10 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As in event messages: `Liveness probe failed: ...`.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    fn lower(self) -> &'static str {
        match self {
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
            Kind::Startup => "startup",
        }
    }
}

/// The result of running a handler once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The check ran and failed; the message is upstream's probe output.
    Failure(String),
    /// The check could not run (upstream `Unknown`): no verdict, the
    /// result is thrown away.
    Error(String),
}

/// What a probe or hook runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    Exec(Vec<String>),
    Http(HTTPGetAction),
    Tcp(TCPSocketAction),
    Grpc(GRPCAction),
    Sleep(i64),
}

impl Handler {
    pub fn of_probe(p: &Probe) -> Option<Handler> {
        if let Some(e) = &p.exec {
            return Some(Handler::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(h) = &p.http_get {
            return Some(Handler::Http(h.clone()));
        }
        if let Some(t) = &p.tcp_socket {
            return Some(Handler::Tcp(t.clone()));
        }
        p.grpc.clone().map(Handler::Grpc)
    }

    pub fn of_hook(h: &LifecycleHandler) -> Option<Handler> {
        if let Some(e) = &h.exec {
            return Some(Handler::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(g) = &h.http_get {
            return Some(Handler::Http(g.clone()));
        }
        if let Some(t) = &h.tcp_socket {
            return Some(Handler::Tcp(t.clone()));
        }
        h.sleep.as_ref().map(|s| Handler::Sleep(s.seconds))
    }
}

/// Where handlers run: one container instance of a pod.
#[derive(Debug, Clone)]
pub struct Target {
    /// The runtime's container id.
    pub container_id: String,
    /// The pod's pinned network namespace (`None`: host network).
    pub netns: Option<PathBuf>,
    /// The address network handlers use when they name no host.
    pub pod_ip: IpAddr,
    /// The container's ports, for ports given by name.
    pub ports: Vec<ContainerPort>,
}

/// Runs handlers. The real one is [`RealProber`]; tests use fakes.
pub trait Prober: Send + Sync {
    fn run<'a>(
        &'a self,
        target: &'a Target,
        handler: &'a Handler,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome>;
}

/// Run a probe's handler, bounded by its timeout (plus a little slack so
/// the handler's own, more precise timeout message wins).
pub async fn run_probe(
    prober: &dyn Prober,
    target: &Target,
    handler: &Handler,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(
        timeout + Duration::from_millis(500),
        prober.run(target, handler, timeout),
    )
    .await
    {
        Ok(o) => o,
        Err(_) => Outcome::Failure(format!("probe timed out after {timeout:?}")),
    }
}

// ---------------------------------------------------------------------
// The state machine.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Res {
    Unknown,
    Success,
    Failure,
}

#[derive(Debug, Clone)]
struct Worker {
    kind: Kind,
    handler: Handler,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// Probe-level terminationGracePeriodSeconds (liveness, startup).
    grace: Option<i64>,
    /// The published result.
    result: Res,
    /// The last raw result and how many times in a row it came.
    last: Res,
    run: u32,
    next_at: Instant,
    in_flight: bool,
    /// A liveness/startup failure killed the container: no more probes
    /// for this instance.
    on_hold: bool,
}

/// What a probe result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    /// The readiness result flipped.
    Ready(bool),
    /// The startup probe succeeded.
    Started,
    /// A liveness or startup probe failed past its threshold: kill the
    /// container (with the probe's grace period if it has one).
    Kill {
        kind: Kind,
        message: String,
        grace: Option<i64>,
    },
}

/// A probe the worker should run now.
#[derive(Debug, Clone)]
pub struct Due {
    pub kind: Kind,
    pub handler: Handler,
    pub timeout: Duration,
}

/// The probes of one running container instance.
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    name: String,
    workers: Vec<Worker>,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(min) as u64)
}

impl ContainerProbes {
    /// The probes of `c`, for an instance started at `started`.
    pub fn new(c: &Container, started: Instant) -> ContainerProbes {
        let mut workers = Vec::new();
        for (kind, p) in [
            (Kind::Startup, &c.startup_probe),
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Readiness, &c.readiness_probe),
        ] {
            let Some(p) = p else { continue };
            let Some(handler) = Handler::of_probe(p) else {
                continue;
            };
            workers.push(Worker {
                kind,
                handler,
                period: secs(p.period_seconds, 10, 1),
                timeout: secs(p.timeout_seconds, 1, 1),
                // Liveness and startup must be 1 (validation); be lenient.
                success_threshold: match kind {
                    Kind::Readiness => p.success_threshold.unwrap_or(1).max(1) as u32,
                    _ => 1,
                },
                failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
                grace: match kind {
                    Kind::Readiness => None,
                    _ => p.termination_grace_period_seconds,
                },
                // Upstream's initial values: not ready, alive, unknown.
                result: match kind {
                    Kind::Readiness => Res::Failure,
                    Kind::Liveness => Res::Success,
                    Kind::Startup => Res::Unknown,
                },
                last: Res::Unknown,
                run: 0,
                next_at: started + secs(p.initial_delay_seconds, 0, 0),
                in_flight: false,
                on_hold: false,
            });
        }
        ContainerProbes {
            name: c.name.clone(),
            workers,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    fn worker(&self, kind: Kind) -> Option<&Worker> {
        self.workers.iter().find(|w| w.kind == kind)
    }

    /// `containerStatuses[].started`: the startup probe succeeded (or
    /// there is none).
    pub fn started(&self) -> bool {
        self.worker(Kind::Startup)
            .is_none_or(|w| w.result == Res::Success)
    }

    /// `containerStatuses[].ready`.
    pub fn ready(&self) -> bool {
        self.started()
            && self
                .worker(Kind::Readiness)
                .is_none_or(|w| w.result == Res::Success)
    }

    fn runnable(&self, w: &Worker) -> bool {
        if w.in_flight || w.on_hold {
            return false;
        }
        match w.kind {
            // Done once it succeeded.
            Kind::Startup => w.result != Res::Success,
            // Gated by the startup probe.
            _ => self.started(),
        }
    }

    /// The probes due at `now`, marked in flight; report each result with
    /// [`ContainerProbes::record`].
    pub fn due(&mut self, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        for i in 0..self.workers.len() {
            if !self.runnable(&self.workers[i]) || now < self.workers[i].next_at {
                continue;
            }
            let w = &mut self.workers[i];
            w.in_flight = true;
            w.next_at = now + w.period;
            out.push(Due {
                kind: w.kind,
                handler: w.handler.clone(),
                timeout: w.timeout,
            });
        }
        out
    }

    /// When the next probe is due (`None`: nothing to wait for).
    pub fn next_due(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter(|w| self.runnable(w))
            .map(|w| w.next_at)
            .min()
    }

    /// Count a result in (upstream's `doProbe`): a result is published
    /// after `successThreshold`/`failureThreshold` of them in a row.
    pub fn record(&mut self, kind: Kind, outcome: &Outcome) -> Change {
        let name = self.name.clone();
        let Some(w) = self.workers.iter_mut().find(|w| w.kind == kind) else {
            return Change::None;
        };
        w.in_flight = false;
        if w.on_hold {
            return Change::None;
        }
        let r = match outcome {
            Outcome::Success => Res::Success,
            Outcome::Failure(_) => Res::Failure,
            Outcome::Error(_) => return Change::None,
        };
        if w.last == r {
            w.run += 1;
        } else {
            w.last = r;
            w.run = 1;
        }
        if (r == Res::Failure && w.run < w.failure_threshold)
            || (r == Res::Success && w.run < w.success_threshold)
        {
            return Change::None;
        }
        let before = w.result;
        w.result = r;
        match (kind, r) {
            (Kind::Readiness, _) if before != r => Change::Ready(r == Res::Success),
            (Kind::Startup, Res::Success) if before != r => Change::Started,
            (Kind::Liveness | Kind::Startup, Res::Failure) => {
                w.on_hold = true;
                w.run = 0;
                Change::Kill {
                    kind,
                    message: format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.lower()
                    ),
                    grace: w.grace,
                }
            }
            _ => Change::None,
        }
    }
}

// ---------------------------------------------------------------------
// Lifecycle hooks.

/// `name_namespace(uid)`, upstream's `format.Pod`.
pub fn format_pod(name: &str, namespace: &str, uid: &str) -> String {
    format!("{name}_{namespace}({uid})")
}

/// Run a lifecycle hook; `Err` is the upstream event message.
pub async fn run_hook(
    prober: &dyn Prober,
    target: &Target,
    handler: &Handler,
    container: &str,
    pod: &str,
    timeout: Duration,
) -> Result<(), String> {
    let out = match tokio::time::timeout(timeout, prober.run(target, handler, timeout)).await {
        Ok(o) => o,
        Err(_) => Outcome::Error(format!("timed out after {timeout:?}")),
    };
    let err = match out {
        Outcome::Success => return Ok(()),
        Outcome::Failure(e) | Outcome::Error(e) => e,
    };
    Err(match handler {
        Handler::Exec(cmd) => format!(
            "Exec lifecycle hook ([{}]) for Container {container:?} in Pod {pod:?} failed - error: {err}",
            cmd.join(" ")
        ),
        Handler::Http(h) => format!(
            "HTTP lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {err}",
            h.path.as_deref().unwrap_or("")
        ),
        _ => format!("Lifecycle hook for Container {container:?} in Pod {pod:?} failed - error: {err}"),
    })
}

// ---------------------------------------------------------------------
// The real prober.

/// Runs handlers against real containers.
pub struct RealProber {
    pub runtime: RuncCli,
    /// Scratch directory for exec PID files.
    pub scratch: PathBuf,
    seq: AtomicU64,
    tls: Arc<rustls::ClientConfig>,
}

impl RealProber {
    pub fn new(runtime: RuncCli, scratch: PathBuf) -> RealProber {
        RealProber {
            runtime,
            scratch,
            seq: AtomicU64::new(0),
            tls: Arc::new(insecure_tls()),
        }
    }

    async fn exec(
        &self,
        target: &Target,
        cmd: &[String],
        timeout: Duration,
        probe: bool,
    ) -> Outcome {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let _ = std::fs::create_dir_all(&self.scratch);
        let pid_file = self
            .scratch
            .join(format!("exec-{}-{n}.pid", std::process::id()));
        let rt = self.runtime.clone();
        let id = target.container_id.clone();
        let c = cmd.to_vec();
        let r = tokio::task::spawn_blocking(move || {
            bosun_runtime::exec::exec_sync(&rt, &id, &c, Some(timeout), MAX_OUTPUT, &pid_file)
        })
        .await;
        match r {
            Ok(Ok(out)) if out.exit_code == 0 => Outcome::Success,
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out.output).into_owned();
                if probe {
                    Outcome::Failure(text)
                } else {
                    // Upstream's ExecSync error text.
                    Outcome::Failure(format!(
                        "command '{}' exited with {}: {text}, message: {text:?}",
                        cmd.join(" "),
                        out.exit_code
                    ))
                }
            }
            Ok(Err(bosun_runtime::Error::Timeout(_))) => {
                Outcome::Failure(format!("command {:?} timed out", cmd.join(" ")))
            }
            Ok(Err(e)) => Outcome::Error(e.to_string()),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    /// A TCP connection to `host` (or the pod) on `port`, from the pod's
    /// network namespace unless a host is named (as upstream, which dials
    /// from the node).
    async fn connect(
        &self,
        target: &Target,
        host: Option<&str>,
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, String> {
        if let Some(h) = host.filter(|h| !h.is_empty()) {
            let addr = format!("{h}:{port}");
            return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await
            {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
                Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
            };
        }
        let addr = SocketAddr::new(target.pod_ip, port);
        let netns = target.netns.clone();
        let r = tokio::task::spawn_blocking(move || {
            bosun_runtime::netns::connect_tcp(netns.as_deref(), addr, timeout)
        })
        .await
        .map_err(|e| e.to_string())?;
        let s = r.map_err(|e| bosun_runtime::netns::describe_connect_error(&e))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string())
    }

    /// GET over HTTP(S): the status code.
    async fn http_get(
        &self,
        target: &Target,
        h: &HTTPGetAction,
        timeout: Duration,
    ) -> Result<u16, String> {
        let port = resolve_port(&h.port, &target.ports)?;
        let host_name = h.host.clone().filter(|s| !s.is_empty());
        let shown_host = host_name
            .clone()
            .unwrap_or_else(|| target.pod_ip.to_string());
        let https = h
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let url = format!(
            "{}://{}{path}",
            if https { "https" } else { "http" },
            join_host_port(&shown_host, port)
        );
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let req = http_request(&path, &join_host_port(&shown_host, port), &headers);
        let work = async {
            let tcp = self
                .connect(target, host_name.as_deref(), port, timeout)
                .await?;
            if https {
                let name = rustls::pki_types::ServerName::try_from(shown_host.clone())
                    .map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                http_exchange(tls, &req).await
            } else {
                http_exchange(tcp, &req).await
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(code)) => Ok(code),
            Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
            Err(_) => Err(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        }
    }

    async fn grpc(&self, target: &Target, g: &GRPCAction, timeout: Duration) -> Outcome {
        let service = g.service.clone().unwrap_or_default();
        let port = g.port.clamp(0, 65535) as u16;
        let authority = join_host_port(&target.pod_ip.to_string(), port);
        let tcp = match self.connect(target, None, port, timeout).await {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failure(format!(
                    "timeout: failed to connect service {authority:?} within {}s: {e}",
                    timeout.as_secs()
                ))
            }
        };
        match tokio::time::timeout(timeout, grpc_health_check(tcp, &authority, &service)).await {
            Ok(Ok(1)) => Outcome::Success,
            Ok(Ok(s)) => Outcome::Failure(format!(
                "service unhealthy (responded with {:?})",
                serving_status_name(s)
            )),
            Ok(Err(GrpcError::Status(12, msg))) => Outcome::Failure(format!(
                "this server doesn't implement the grpc health protocol (grpc.health.v1.Health): {msg}"
            )),
            Ok(Err(GrpcError::Status(code, msg))) => Outcome::Failure(format!(
                "rpc error: code = {} desc = {msg}",
                grpc_code_name(code)
            )),
            Ok(Err(GrpcError::Other(e))) => Outcome::Failure(e),
            Err(_) => Outcome::Failure(format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            )),
        }
    }
}

impl Prober for RealProber {
    fn run<'a>(
        &'a self,
        target: &'a Target,
        handler: &'a Handler,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match handler {
                Handler::Exec(cmd) => self.exec(target, cmd, timeout, true).await,
                Handler::Http(h) => match self.http_get(target, h, timeout).await {
                    Ok(code) if (200..400).contains(&code) => Outcome::Success,
                    Ok(code) => {
                        Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
                    }
                    Err(e) => Outcome::Failure(e),
                },
                Handler::Tcp(t) => {
                    let port = match resolve_port(&t.port, &target.ports) {
                        Ok(p) => p,
                        Err(e) => return Outcome::Error(e),
                    };
                    match self.connect(target, t.host.as_deref(), port, timeout).await {
                        Ok(_) => Outcome::Success,
                        Err(e) => Outcome::Failure(e),
                    }
                }
                Handler::Grpc(g) => self.grpc(target, g, timeout).await,
                Handler::Sleep(s) => {
                    tokio::time::sleep(Duration::from_secs((*s).max(0) as u64)).await;
                    Outcome::Success
                }
            }
        })
    }
}

/// A prober for lifecycle hooks: exec failures carry upstream's hook
/// wording and HTTP hooks only fail when the request fails.
pub struct HookProber<'a>(pub &'a RealProber);

impl Prober for HookProber<'_> {
    fn run<'a>(
        &'a self,
        target: &'a Target,
        handler: &'a Handler,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match handler {
                Handler::Exec(cmd) => self.0.exec(target, cmd, timeout, false).await,
                Handler::Http(h) => match self.0.http_get(target, h, timeout).await {
                    Ok(_) => Outcome::Success,
                    Err(e) => Outcome::Failure(e),
                },
                other => self.0.run(target, other, timeout).await,
            }
        })
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A port number, or a container port's name.
pub fn resolve_port(p: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let n = match p {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match ports.iter().find(|cp| cp.name.as_deref() == Some(s)) {
            Some(cp) => cp.container_port,
            None => match s.parse::<i32>() {
                Ok(n) => n,
                Err(_) => return Err(format!("couldn't find port: {s:?}")),
            },
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

fn http_request(path: &str, host: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut h: Vec<(String, String)> = vec![
        ("Host".into(), host.into()),
        ("User-Agent".into(), USER_AGENT.into()),
        ("Accept".into(), "*/*".into()),
    ];
    // The probe's headers replace the defaults of the same name.
    for (k, _) in headers {
        h.retain(|(d, _)| !d.eq_ignore_ascii_case(k));
    }
    for (k, v) in headers {
        h.push((k.clone(), v.clone()));
    }
    h.push(("Connection".into(), "close".into()));
    let mut out = format!("GET {path} HTTP/1.1\r\n");
    for (k, v) in h {
        // Header injection: no line breaks in names or values.
        if k.contains(['\r', '\n']) || v.contains(['\r', '\n']) {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Send a request and read the response's status line.
async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
) -> Result<u16, String> {
    s.write_all(req).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&buf[..end]);
        }
        if buf.len() > 8192 {
            return Err("malformed HTTP response: status line too long".into());
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if proto.starts_with("HTTP/") => Ok(c),
        _ => Err(format!("malformed HTTP response {line:?}")),
    }
}

/// TLS without certificate verification (upstream probes skip it too).
fn insecure_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            // Only fails for a provider without protocol versions.
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .expect("ring supports TLS 1.2")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        });
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

// ---------------------------------------------------------------------
// gRPC health checking: one unary call over HTTP/2.

#[derive(Debug)]
enum GrpcError {
    /// A non-OK grpc-status and its message.
    Status(u32, String),
    Other(String),
}

fn grpc_code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

fn serving_status_name(s: u64) -> &'static str {
    match s {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// `HealthCheckRequest { string service = 1; }` in a gRPC frame.
fn grpc_request_frame(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// `HealthCheckResponse { ServingStatus status = 1; }` from a gRPC frame
/// (status 0 when absent, as protobuf defaults).
fn parse_health_response(frame: &[u8]) -> Result<u64, String> {
    if frame.len() < 5 {
        return Err("grpc: short response".into());
    }
    if frame[0] != 0 {
        return Err("grpc: compressed response not supported".into());
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let msg = frame
        .get(5..5 + len)
        .ok_or_else(|| "grpc: truncated response".to_string())?;
    let mut pos = 0;
    let mut status = 0;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos).ok_or("grpc: bad response")?;
        match key & 7 {
            0 => {
                let v = get_varint(msg, &mut pos).ok_or("grpc: bad response")?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let l = get_varint(msg, &mut pos).ok_or("grpc: bad response")? as usize;
                pos = pos.checked_add(l).ok_or("grpc: bad response")?;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return Err("grpc: bad response".into()),
        }
    }
    Ok(status)
}

/// `grpc.health.v1.Health/Check` over an HTTP/2 connection (h2c): the
/// serving status.
async fn grpc_health_check<S>(io: S, authority: &str, service: &str) -> Result<u64, GrpcError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let other = |e: &dyn std::fmt::Display| GrpcError::Other(format!("rpc error: {e}"));
    let (client, conn) = h2::client::handshake(io).await.map_err(|e| other(&e))?;
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let mut client = client.ready().await.map_err(|e| other(&e))?;
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{authority}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", USER_AGENT)
            .body(())
            .map_err(|e| other(&e))?;
        let (resp, mut send) = client.send_request(req, false).map_err(|e| other(&e))?;
        send.send_data(bytes::Bytes::from(grpc_request_frame(service)), true)
            .map_err(|e| other(&e))?;
        let resp = resp.await.map_err(|e| other(&e))?;
        let (parts, mut body) = resp.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(GrpcError::Other(format!(
                "rpc error: unexpected HTTP status {}",
                parts.status
            )));
        }
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| other(&e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
            if data.len() > 64 * 1024 {
                return Err(GrpcError::Other("rpc error: response too large".into()));
            }
        }
        let trailers = body.trailers().await.map_err(|e| other(&e))?;
        // A "trailers-only" response carries the status in its headers.
        let status_of = |h: &http::HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
                .map(|c| {
                    let msg = h
                        .get("grpc-message")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    (c, msg)
                })
        };
        let (code, msg) = trailers
            .as_ref()
            .and_then(status_of)
            .or_else(|| status_of(&parts.headers))
            .unwrap_or((2, "missing grpc-status".into()));
        if code != 0 {
            return Err(GrpcError::Status(code, msg));
        }
        parse_health_response(&data).map_err(GrpcError::Other)
    }
    .await;
    conn_task.abort();
    result
}

/// The address handlers use for a pod: loopback inside its own network
/// namespace (pods have no other interface yet), the node's IP for
/// host-network pods.
pub fn pod_address(host_network: bool, host_ip: &str) -> IpAddr {
    if host_network {
        host_ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HTTPHeader};
    use std::sync::Mutex;

    fn exec_probe(period: i32, delay: i32, fail: i32, succ: i32) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            period_seconds: Some(period),
            initial_delay_seconds: Some(delay),
            failure_threshold: Some(fail),
            success_threshold: Some(succ),
            timeout_seconds: Some(1),
            ..Probe::default()
        }
    }

    fn ctr() -> Container {
        Container {
            name: "app".into(),
            ..Container::default()
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A prober answering from a script per kind (last answer repeats),
    /// counting calls.
    struct Fake {
        answers: Mutex<Vec<(Kind, Vec<Outcome>)>>,
        calls: Mutex<Vec<Kind>>,
        delay: Duration,
    }

    impl Fake {
        fn new(answers: Vec<(Kind, Vec<Outcome>)>) -> Fake {
            Fake {
                answers: Mutex::new(answers),
                calls: Mutex::new(Vec::new()),
                delay: Duration::ZERO,
            }
        }
    }

    fn kind_of(h: &Handler) -> Kind {
        match h {
            Handler::Exec(c) if c[0] == "live" => Kind::Liveness,
            Handler::Exec(c) if c[0] == "ready" => Kind::Readiness,
            _ => Kind::Startup,
        }
    }

    impl Prober for Fake {
        fn run<'a>(
            &'a self,
            _t: &'a Target,
            h: &'a Handler,
            _timeout: Duration,
        ) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let k = kind_of(h);
                self.calls.lock().unwrap().push(k);
                let mut a = self.answers.lock().unwrap();
                let list = &mut a.iter_mut().find(|(kk, _)| *kk == k).unwrap().1;
                if list.len() > 1 {
                    list.remove(0)
                } else {
                    list[0].clone()
                }
            })
        }
    }

    fn target() -> Target {
        Target {
            container_id: "c".into(),
            netns: None,
            pod_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: vec![],
        }
    }

    fn with_cmd(mut p: Probe, cmd: &str) -> Probe {
        p.exec = Some(ExecAction {
            command: Some(vec![cmd.into()]),
        });
        p
    }

    /// Drive the probes like the pod worker does, at `now`.
    async fn step(p: &mut ContainerProbes, prober: &dyn Prober, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        for d in p.due(now) {
            let o = run_probe(prober, &target(), &d.handler, d.timeout).await;
            out.push(p.record(d.kind, &o));
        }
        out
    }

    #[tokio::test]
    async fn liveness_kills_after_failure_threshold() {
        let mut c = ctr();
        let mut lp = with_cmd(exec_probe(2, 3, 3, 1), "live");
        lp.termination_grace_period_seconds = Some(5);
        c.liveness_probe = Some(lp);
        let t0 = Instant::now();
        let mut p = ContainerProbes::new(&c, t0);
        let f = Fake::new(vec![(
            Kind::Liveness,
            vec![
                Outcome::Success,
                Outcome::Failure("x".into()),
                Outcome::Failure("x".into()),
                Outcome::Success,
                Outcome::Failure("boom".into()),
            ],
        )]);
        assert!(p.ready() && p.started());
        // Initial delay: nothing before 3 s.
        assert!(step(&mut p, &f, t0 + s(2)).await.is_empty());
        assert_eq!(p.next_due(), Some(t0 + s(3)));
        assert_eq!(step(&mut p, &f, t0 + s(3)).await, vec![Change::None]);
        // Not due again until a period later.
        assert!(step(&mut p, &f, t0 + s(4)).await.is_empty());
        assert_eq!(step(&mut p, &f, t0 + s(5)).await, vec![Change::None]);
        assert_eq!(step(&mut p, &f, t0 + s(7)).await, vec![Change::None]);
        // A success resets the run of failures.
        assert_eq!(step(&mut p, &f, t0 + s(9)).await, vec![Change::None]);
        assert_eq!(step(&mut p, &f, t0 + s(11)).await, vec![Change::None]);
        assert_eq!(step(&mut p, &f, t0 + s(13)).await, vec![Change::None]);
        assert_eq!(
            step(&mut p, &f, t0 + s(15)).await,
            vec![Change::Kill {
                kind: Kind::Liveness,
                message: "Container app failed liveness probe, will be restarted".into(),
                grace: Some(5),
            }]
        );
        // On hold for this instance.
        assert_eq!(p.next_due(), None);
        assert!(step(&mut p, &f, t0 + s(100)).await.is_empty());
        assert_eq!(f.calls.lock().unwrap().len(), 7);
    }

    #[tokio::test]
    async fn readiness_flips_both_ways_with_thresholds() {
        let mut c = ctr();
        c.readiness_probe = Some(with_cmd(exec_probe(1, 0, 2, 2), "ready"));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new(&c, t0);
        let f = Fake::new(vec![(
            Kind::Readiness,
            vec![
                Outcome::Success,
                Outcome::Error("no verdict".into()),
                Outcome::Success,
                Outcome::Failure("a".into()),
                Outcome::Failure("b".into()),
                Outcome::Success,
            ],
        )]);
        assert!(!p.ready() && p.started());
        assert_eq!(step(&mut p, &f, t0).await, vec![Change::None]);
        // An error is no verdict and doesn't break the run.
        assert_eq!(step(&mut p, &f, t0 + s(1)).await, vec![Change::None]);
        assert_eq!(step(&mut p, &f, t0 + s(2)).await, vec![Change::Ready(true)]);
        assert!(p.ready());
        assert_eq!(step(&mut p, &f, t0 + s(3)).await, vec![Change::None]);
        assert_eq!(
            step(&mut p, &f, t0 + s(4)).await,
            vec![Change::Ready(false)]
        );
        assert!(!p.ready());
        assert_eq!(step(&mut p, &f, t0 + s(5)).await, vec![Change::None]);
        assert_eq!(step(&mut p, &f, t0 + s(6)).await, vec![Change::Ready(true)]);
        // Readiness failures never kill.
        assert_ne!(p.next_due(), None);
    }

    #[tokio::test]
    async fn startup_gates_liveness_and_readiness() {
        let mut c = ctr();
        c.startup_probe = Some(with_cmd(exec_probe(1, 0, 10, 1), "start"));
        c.liveness_probe = Some(with_cmd(exec_probe(1, 0, 1, 1), "live"));
        c.readiness_probe = Some(with_cmd(exec_probe(1, 0, 1, 1), "ready"));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new(&c, t0);
        let f = Fake::new(vec![
            (
                Kind::Startup,
                vec![
                    Outcome::Failure("no".into()),
                    Outcome::Failure("no".into()),
                    Outcome::Success,
                ],
            ),
            (Kind::Liveness, vec![Outcome::Success]),
            (Kind::Readiness, vec![Outcome::Success]),
        ]);
        assert!(!p.started() && !p.ready());
        step(&mut p, &f, t0).await;
        step(&mut p, &f, t0 + s(1)).await;
        assert_eq!(*f.calls.lock().unwrap(), vec![Kind::Startup, Kind::Startup]);
        assert_eq!(step(&mut p, &f, t0 + s(2)).await, vec![Change::Started]);
        assert!(p.started() && !p.ready());
        // Now the others run; the startup probe is done.
        let ch = step(&mut p, &f, t0 + s(3)).await;
        assert_eq!(ch, vec![Change::None, Change::Ready(true)]);
        assert!(p.ready());
        let calls = f.calls.lock().unwrap().clone();
        assert_eq!(calls.iter().filter(|k| **k == Kind::Startup).count(), 3);
    }

    #[tokio::test]
    async fn startup_failure_kills() {
        let mut c = ctr();
        c.startup_probe = Some(with_cmd(exec_probe(1, 0, 2, 1), "start"));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new(&c, t0);
        let f = Fake::new(vec![(Kind::Startup, vec![Outcome::Failure("no".into())])]);
        assert_eq!(step(&mut p, &f, t0).await, vec![Change::None]);
        let ch = step(&mut p, &f, t0 + s(1)).await;
        assert!(
            matches!(&ch[..], [Change::Kill { kind: Kind::Startup, message, .. }] if message == "Container app failed startup probe, will be restarted"),
            "{ch:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_handler_times_out() {
        let mut f = Fake::new(vec![(Kind::Liveness, vec![Outcome::Success])]);
        f.delay = s(60);
        let h = Handler::Exec(vec!["live".into()]);
        let t = tokio::time::Instant::now();
        let o = run_probe(&f, &target(), &h, s(2)).await;
        assert!(
            matches!(o, Outcome::Failure(ref m) if m.contains("timed out")),
            "{o:?}"
        );
        assert!(t.elapsed() < s(3));
    }

    #[test]
    fn in_flight_probe_is_not_launched_twice() {
        let mut c = ctr();
        c.readiness_probe = Some(with_cmd(exec_probe(1, 0, 1, 1), "ready"));
        let t0 = Instant::now();
        let mut p = ContainerProbes::new(&c, t0);
        assert_eq!(p.due(t0).len(), 1);
        assert!(p.due(t0 + s(5)).is_empty());
        assert_eq!(p.next_due(), None);
        p.record(Kind::Readiness, &Outcome::Success);
        assert_eq!(p.due(t0 + s(5)).len(), 1);
    }

    #[test]
    fn ports_by_number_and_name() {
        let ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..ContainerPort::default()
        }];
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ports),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("nope".into()), &ports).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &ports).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &ports).is_err());
    }

    #[test]
    fn request_and_status_line() {
        let req = http_request(
            "/healthz",
            "127.0.0.1:8080",
            &[
                ("X-Custom".into(), "v".into()),
                ("user-agent".into(), "mine".into()),
            ],
        );
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("X-Custom: v\r\n"));
        assert!(text.contains("user-agent: mine\r\n"));
        assert!(!text.contains("kube-probe"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 200"), Ok(200));
        assert!(parse_status_line(b"garbage").is_err());
    }

    /// The real prober's HTTP, TCP and gRPC against local servers (host
    /// network: no netns).
    #[tokio::test]
    async fn real_network_handlers() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(String::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let code = if req.starts_with("GET /bad") {
                    500
                } else {
                    200
                };
                *seen2.lock().unwrap() = req;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let rp = RealProber::new(RuncCli::new("/nonexistent", dir.path()), dir.path().into());
        let mut t = target();
        t.ports = vec![ContainerPort {
            name: Some("web".into()),
            container_port: port as i32,
            ..ContainerPort::default()
        }];
        let get = |path: &str| {
            Handler::Http(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("web".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Probe".into(),
                    value: "1".into(),
                }]),
                ..HTTPGetAction::default()
            })
        };
        assert_eq!(rp.run(&t, &get("/ok"), s(2)).await, Outcome::Success);
        let req = seen.lock().unwrap().clone();
        assert!(req.contains("User-Agent: kube-probe/1.33\r\n"), "{req}");
        assert!(req.contains("X-Probe: 1\r\n"), "{req}");
        assert_eq!(
            rp.run(&t, &get("/bad"), s(2)).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let tcp = |p: i32| {
            Handler::Tcp(TCPSocketAction {
                port: IntOrString::Int(p),
                host: None,
            })
        };
        assert_eq!(rp.run(&t, &tcp(port as i32), s(2)).await, Outcome::Success);
        // A closed port.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            rp.run(&t, &tcp(closed as i32), s(2)).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        match rp
            .run(
                &t,
                &Handler::Http(HTTPGetAction {
                    port: IntOrString::Int(closed as i32),
                    path: Some("/x".into()),
                    ..HTTPGetAction::default()
                }),
                s(2),
            )
            .await
        {
            Outcome::Failure(m) => assert_eq!(
                m,
                format!("Get \"http://127.0.0.1:{closed}/x\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
            ),
            o => panic!("{o:?}"),
        }
        // Hooks: an HTTP error status is not a hook failure.
        let hp = HookProber(&rp);
        assert!(run_hook(&hp, &t, &get("/bad"), "c", "p_ns(u)", s(2))
            .await
            .is_ok());
    }

    /// A minimal gRPC health server on h2.
    async fn grpc_server(status: u8, grpc_status: &'static str) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(s).await.unwrap();
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let mut body = req.into_body();
                        let mut got = Vec::new();
                        while let Some(Ok(d)) = body.data().await {
                            got.extend_from_slice(&d);
                        }
                        assert_eq!(got, grpc_request_frame("svc"));
                        let resp = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        if grpc_status == "0" {
                            let msg = [0x08, status];
                            let mut frame = vec![0, 0, 0, 0, 2];
                            frame.extend_from_slice(&msg);
                            send.send_data(bytes::Bytes::from(frame), false).unwrap();
                        }
                        let mut tr = http::HeaderMap::new();
                        tr.insert("grpc-status", grpc_status.parse().unwrap());
                        tr.insert("grpc-message", "nope".parse().unwrap());
                        send.send_trailers(tr).unwrap();
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_health() {
        let dir = tempfile::tempdir().unwrap();
        let rp = RealProber::new(RuncCli::new("/nonexistent", dir.path()), dir.path().into());
        let t = target();
        let h = |port: u16| {
            Handler::Grpc(GRPCAction {
                port: port as i32,
                service: Some("svc".into()),
            })
        };
        let p = grpc_server(1, "0").await;
        assert_eq!(rp.run(&t, &h(p), s(2)).await, Outcome::Success);
        let p = grpc_server(2, "0").await;
        assert_eq!(
            rp.run(&t, &h(p), s(2)).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let p = grpc_server(0, "12").await;
        assert_eq!(
            rp.run(&t, &h(p), s(2)).await,
            Outcome::Failure("this server doesn't implement the grpc health protocol (grpc.health.v1.Health): nope".into())
        );
    }

    #[test]
    fn health_response_parsing() {
        assert_eq!(parse_health_response(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(parse_health_response(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(parse_health_response(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(parse_health_response(&[1, 0, 0, 0, 0]).is_err());
        let f = grpc_request_frame("");
        assert_eq!(f, vec![0, 0, 0, 0, 0]);
    }
}
