//! Bosun's node agent (the kubelet): registers its Node, keeps the node
//! Lease renewed, watches the pods bound to it (`spec.nodeName` field
//! selector) and runs them as Linux containers through `bosun-runtime`
//! (sandbox, volumes, init containers, containers, restarts with
//! back-off), reporting status like the kubelet. An API client only.
//!
//! Files live under `<data-dir>/agent`: `pods/<uid>` (volumes, hosts,
//! resolv.conf), `logs/<ns>_<name>_<uid>/<container>/<n>.log` (CRI
//! format), `runtime` (sandboxes and bundles), `runc` (the OCI runtime's
//! state); images under `<data-dir>/images` (archives in
//! `<data-dir>/images/import` are imported at start).

pub mod agent;
pub mod dns;
pub mod env;
pub mod host;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod server;
pub mod sources;
pub mod util;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bosun_runtime::{ContainerRuntime, LinuxMounter, RuncCli, RuntimeConfig, ShimCommand};
use kube::Client;

pub use node::KUBELET_VERSION;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node name (default: the hostname).
    pub node_name: Option<String>,
    /// Data directory (`agent/` and `images/` go below it).
    pub data_dir: PathBuf,
    /// Label the node as control plane (the server's own node).
    pub control_plane: bool,
    /// OCI runtime binary (`runc`, `crun` or a path): the default handler.
    pub runtime: String,
    /// RuntimeClass handlers: handler name → OCI runtime binary. Handlers
    /// `runc` and `crun` are added for the binaries found on the host
    /// (as k3s does); the default runtime always answers to its own name.
    pub runtime_handlers: Vec<(String, String)>,
    /// Parent cgroup of the QoS cgroups.
    pub cgroup_root: String,
    /// How to start container shims (default: this executable with the
    /// hidden `shim` subcommand).
    pub shim: Option<ShimCommand>,
    pub lease_interval: Duration,
    /// How often conditions are re-read; status is posted when they
    /// change and at least every `status_report_interval`.
    pub status_check_interval: Duration,
    pub status_report_interval: Duration,
    /// Port of the agent's HTTPS API (logs, exec, port-forward); taken:
    /// a free one; 0: always a free one. Published in the Node status.
    pub kubelet_port: u16,
    /// The cluster CA (PEM) that signs the API server's client
    /// certificate; `None`: the agent API is not served.
    pub kubelet_ca_pem: Option<String>,
    /// The pod network (CNI) and host-gw routes.
    pub network: network::Settings,
    /// The cluster DNS written into pods' resolv.conf.
    pub dns: dns::ClusterDns,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            node_name: None,
            data_dir: data_dir.into(),
            control_plane: false,
            runtime: "runc".into(),
            runtime_handlers: Vec::new(),
            cgroup_root: "/kubepods".into(),
            shim: None,
            lease_interval: Duration::from_secs(10),
            status_check_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            kubelet_port: server::DEFAULT_PORT,
            kubelet_ca_pem: None,
            network: network::Settings::default(),
            dns: dns::ClusterDns::default(),
        }
    }
}

/// Handler name → runtime binary for every handler this node offers: the
/// configured ones, then `runc`/`crun` when installed, then the default.
fn handler_binaries(cfg: &Config) -> Vec<(String, std::path::PathBuf)> {
    let mut out: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut add = |name: &str, bin: &str| {
        if out.iter().any(|(n, _)| n == name) {
            return;
        }
        match host::find_binary(bin) {
            Some(b) => out.push((name.to_string(), b)),
            None => tracing::warn!(
                handler = name,
                binary = bin,
                "runtime handler binary not found"
            ),
        }
    };
    for (name, bin) in &cfg.runtime_handlers {
        add(name, bin);
    }
    add(&cfg.runtime_name(), &cfg.runtime);
    for known in ["runc", "crun"] {
        if host::find_binary(known).is_some() {
            add(known, known);
        }
    }
    out
}

fn build_runtime(cfg: &Config, agent_dir: &std::path::Path) -> anyhow::Result<ContainerRuntime> {
    let binary = host::find_binary(&cfg.runtime)
        .with_context(|| format!("OCI runtime {:?} not found", cfg.runtime))?;
    let shim = match &cfg.shim {
        Some(s) => s.clone(),
        None => ShimCommand::current_exe("shim")?,
    };
    if cfg.runtime_name() == "crun" {
        // crun refuses a hybrid cgroup host whose v2 tree still holds a
        // controller: move those to v1 (idempotent node set-up).
        let moved = bosun_runtime::cgroups::move_hybrid_controllers_to_v1()
            .context("moving hybrid cgroup controllers to v1 for crun")?;
        if !moved.is_empty() {
            tracing::info!(?moved, "mounted cgroup v1 hierarchies for crun");
        }
    }
    let cgroups: Arc<dyn bosun_runtime::Cgroups> =
        Arc::from(bosun_runtime::cgroups::detect().context("detecting cgroups")?);
    let config = RuntimeConfig {
        state_dir: agent_dir.join("runtime"),
        runtime: RuncCli::new(binary, agent_dir.join(cfg.runtime_name_for_root())),
        shim,
        cgroup_root: cfg.cgroup_root.clone(),
        log_max_size: 10 << 20,
        log_max_files: 5,
    };
    std::fs::create_dir_all(&config.state_dir)?;
    Ok(ContainerRuntime::new(
        config,
        Arc::new(LinuxMounter),
        cgroups,
    ))
}

impl Config {
    fn runtime_name(&self) -> String {
        std::path::Path::new(&self.runtime)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runc".into())
    }

    fn runtime_name_for_root(&self) -> String {
        self.runtime_name()
    }
}

/// Run the agent until the future is dropped (or the pod watch ends).
pub async fn run(client: Client, cfg: Config) -> anyhow::Result<()> {
    let node_name = cfg.node_name.clone().unwrap_or_else(host::hostname);
    let agent_dir = cfg.data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .with_context(|| format!("creating {}", agent_dir.display()))?;
    let runtime_name = cfg.runtime_name();
    let mut problems = host::runtime_problems(&cfg.runtime);
    let runtime_version = host::find_binary(&cfg.runtime)
        .and_then(|b| host::runtime_version(&b))
        .unwrap_or_else(|| "unknown".into());
    let mut parts = None;
    if problems.is_empty() {
        match build_runtime(&cfg, &agent_dir) {
            Ok(rt) => match bosun_images::ImageStore::open(cfg.data_dir.join("images")) {
                Ok(store) => parts = Some((rt, Arc::new(store))),
                Err(e) => problems.push(format!("the image store can't be opened: {e}")),
            },
            Err(e) => problems.push(format!("the container runtime can't be set up: {e:#}")),
        }
    }
    if !problems.is_empty() {
        tracing::error!(
            node = %node_name,
            "node agent can't run containers, the node stays NotReady: {}",
            problems.join("; ")
        );
    }
    // Bound before registering so the Node publishes the real port.
    let mut listener = None;
    if let (Some(ca), true) = (&cfg.kubelet_ca_pem, parts.is_some()) {
        match server::bind(cfg.kubelet_port, ca).await {
            Ok(l) => listener = Some(l),
            Err(e) => tracing::error!(error = %e, "node agent API not served"),
        }
    }
    let info = Arc::new(node::NodeInfo {
        kubelet_port: listener.as_ref().map_or(0, |l| l.port),
        name: node_name.clone(),
        control_plane: cfg.control_plane,
        data_dir: cfg.data_dir.clone(),
        runtime_name: runtime_name.clone(),
        runtime_version,
        problems,
        // Never an address of our own bridge (in the cluster CIDR).
        internal_ip: network::node_ip(&cfg.network.cluster_cidrs).or_else(host::internal_ip),
    });
    let node = loop {
        match node::register(&client, &info).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, node = %node_name, "registering node; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(node = %node_name, ready = info.problems.is_empty(), "node registered");
    let lease = tokio::spawn(node::lease_loop(client.clone(), node, cfg.lease_interval));
    let status = tokio::spawn(node::status_loop(
        client.clone(),
        info.clone(),
        cfg.status_check_interval,
        cfg.status_report_interval,
    ));
    let net = Arc::new(network::Network::new(cfg.network.clone(), &agent_dir));
    let net_loop = tokio::spawn(network::node_loop(
        client.clone(),
        node_name.clone(),
        info.internal_ip.clone().unwrap_or_default(),
        net.clone(),
    ));
    let _guard = AbortOnDrop(vec![lease, status, net_loop]);
    let Some((rt, images)) = parts else {
        std::future::pending::<()>().await;
        return Ok(());
    };
    // Orphaned shims are re-parented to us and reaped by their handles.
    if let Err(e) = bosun_runtime::set_child_subreaper() {
        tracing::warn!(error = %e, "PR_SET_CHILD_SUBREAPER");
    }
    match images
        .import_dir_at_start(cfg.data_dir.join("images").join("import"))
        .await
    {
        Ok(imported) if !imported.is_empty() => {
            tracing::info!(count = imported.len(), "imported image archives")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "importing image archives"),
    }
    let handlers = handler_binaries(&cfg)
        .into_iter()
        .map(|(name, bin)| {
            let scheme = bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.clone());
            // Each binary keeps its own state root (runc and crun state
            // formats differ); bundles and sandboxes are shared.
            let oci = RuncCli::new(bin, agent_dir.join(&scheme));
            (
                name,
                agent::Handler {
                    rt: rt.with_oci(oci),
                    scheme,
                },
            )
        })
        .collect();
    tracing::info!(handlers = ?handler_names(&handlers), "runtime handlers");
    let agent = Arc::new(agent::Agent {
        handlers,
        recorder: bosun_events::Recorder::new(client.clone(), "kubelet", &node_name),
        client,
        node_name,
        host_ip: info.internal_ip.clone().unwrap_or_default(),
        rt,
        images,
        dirs: agent::Dirs { root: agent_dir },
        runtime_name,
        network: net,
        dns: cfg.dns.clone(),
    });
    let _api = AbortOnDrop(
        listener
            .map(|l| vec![server::serve(l, agent.clone())])
            .unwrap_or_default(),
    );
    agent::pods_loop(agent).await
}

fn handler_names(h: &std::collections::BTreeMap<String, agent::Handler>) -> Vec<&str> {
    h.keys().map(String::as_str).collect()
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
