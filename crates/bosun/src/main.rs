//! `bosun`: one binary that is the whole cluster. This crate only wires the
//! component crates together.

mod bench;

// The API server allocates heavily (JSON per request); glibc malloc showed up
// as ~25% of CPU in the scheduler benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "bosun",
    version,
    about = "A Kubernetes-compatible cluster in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cluster: API server, store and (as they exist) the other components.
    Server(ServerArgs),
    /// Run only the scheduler, against any API server.
    Scheduler(SchedulerArgs),
    /// Benchmarks (figures, not pass/fail).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Simulated cluster members, for capacity planning and benchmarks.
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// Run only the node agent (kubelet), against any API server.
    Agent(AgentArgs),
    /// The node's image store.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Kubeconfig of the API server to join.
    #[arg(long)]
    server_kubeconfig: PathBuf,
    /// Node name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Where images, pod files, logs and runtime state live.
    #[arg(long, default_value = "/var/lib/bosun")]
    data_dir: PathBuf,
    /// OCI runtime binary (runc or crun).
    #[arg(long, default_value = "runc")]
    container_runtime: String,
    /// Extra RuntimeClass handler, NAME=BINARY (repeatable); `runc` and
    /// `crun` are offered when installed.
    #[arg(long = "runtime-handler", value_parser = parse_handler)]
    runtime_handlers: Vec<(String, String)>,
    /// Port of the agent's HTTPS API (logs, exec, port-forward); if taken,
    /// a free port is used (published in the Node status).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Pod network: the cluster's pod CIDRs, comma-separated (one per IP
    /// family); each node gets a subnet of them.
    #[arg(long, default_value = "10.42.0.0/16", value_delimiter = ',')]
    cluster_cidr: Vec<String>,
    /// Bridge of the default pod network (at most 15 characters).
    #[arg(long, default_value = "bosun0", value_parser = parse_bridge)]
    cni_bridge: String,
    /// This node's pod subnet while its Node has no podCIDR (a cluster
    /// without node IPAM).
    #[arg(long)]
    pod_cidr: Option<String>,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Cluster DNS servers written into pods' resolv.conf (ClusterFirst),
    /// comma-separated; empty: pods get the host's resolvers.
    #[arg(long, default_value = "10.43.0.10", value_delimiter = ',')]
    cluster_dns: Vec<String>,
    /// The cluster domain (pods' DNS search path).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// The service proxy (kube-proxy, nftables) run next to a node agent.
#[derive(clap::Args)]
struct ProxyArgs {
    /// nftables table of the service proxy (family ip); default `bosun`,
    /// or the CNI bridge's name when that is not the default `bosun0`.
    #[arg(long)]
    proxy_table: Option<String>,
    /// Do not run the service proxy on this node.
    #[arg(long)]
    disable_proxy: bool,
}

#[derive(clap::Args)]
struct ImageArgs {
    /// Data directory of the node (images are in <data-dir>/images).
    #[arg(long, default_value = "/var/lib/bosun")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI layout tar or `docker save` tar.
    Import {
        file: PathBuf,
        #[command(flatten)]
        args: ImageArgs,
    },
    /// List images.
    Ls {
        #[command(flatten)]
        args: ImageArgs,
    },
    /// Pull an image from its registry.
    Pull {
        reference: String,
        #[command(flatten)]
        args: ImageArgs,
    },
    /// Remove an image (refused while a container uses it).
    Rm {
        reference: String,
        #[command(flatten)]
        args: ImageArgs,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// scheduler_perf SchedulingBasic: simulated nodes, init pods, measured pods.
    Scheduler(bench::SchedulerBenchArgs),
    /// A Deployment's creation and rolling update: scheduler, controller
    /// manager and simulated nodes that run pods, all in this process.
    Deployment(bench::DeploymentBenchArgs),
    /// Pod create → Running on a real node (root, runc), against bare runc,
    /// and the agent's idle RSS with pods running.
    Pods(bench::pods::PodsBenchArgs),
}

#[derive(clap::Args)]
struct SchedulerArgs {
    /// Kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Pods whose spec.schedulerName is this are ours.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Skip leader election (only one scheduler may then run).
    #[arg(long)]
    no_leader_elect: bool,
}

#[derive(Subcommand)]
enum SimulateCommand {
    /// Register N simulated nodes that heartbeat, report Ready and run pods
    /// bound to them (without containers), until interrupted.
    Nodes(SimNodesArgs),
}

#[derive(clap::Args)]
struct SimNodesArgs {
    /// Kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    count: usize,
    #[arg(long, default_value = "sim-node-")]
    prefix: String,
    #[arg(long, default_value = "4")]
    cpu: String,
    #[arg(long, default_value = "32Gi")]
    memory: String,
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// Seconds between lease renewals of each node.
    #[arg(long, default_value_t = 10)]
    lease_interval: u64,
    /// Leave bound pods Pending instead of marking them Running.
    #[arg(long)]
    no_run_pods: bool,
    /// Extra node label, KEY=VALUE (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the store, certificates and admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/bosun")]
    data_dir: PathBuf,
    /// HTTPS port of the API server (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    https_port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: String,
    /// Do not run the node agent here.
    #[arg(long)]
    disable_agent: bool,
    /// Name of this server's node (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// OCI runtime binary of the node agent (runc or crun).
    #[arg(long, default_value = "runc")]
    container_runtime: String,
    /// Extra RuntimeClass handler, NAME=BINARY (repeatable); `runc` and
    /// `crun` are offered when installed.
    #[arg(long = "runtime-handler", value_parser = parse_handler)]
    runtime_handlers: Vec<(String, String)>,
    /// Port of the local node agent's HTTPS API (logs, exec,
    /// port-forward); if taken, a free port is used.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Pod network: the cluster's pod CIDRs, comma-separated (one per IP
    /// family); each node gets a subnet of them.
    #[arg(long, default_value = "10.42.0.0/16", value_delimiter = ',')]
    cluster_cidr: Vec<String>,
    /// Bridge of the default pod network (at most 15 characters).
    #[arg(long, default_value = "bosun0", value_parser = parse_bridge)]
    cni_bridge: String,
    /// This node's pod subnet while its Node has no podCIDR (a cluster
    /// without node IPAM).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// ClusterIP range of Services (IPv4); the `kubernetes` service gets
    /// its first address.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: bosun_apiserver::registry::ServiceCidr,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// The cluster DNS address: the `kube-system/kube-dns` ClusterIP, in
    /// pods' resolv.conf (default: the .10 of the service CIDR).
    #[arg(long)]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// The cluster domain served by the cluster DNS.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Do not run the cluster DNS here (pods get the host's resolvers).
    #[arg(long)]
    disable_dns: bool,
    /// Port of the cluster DNS on this node (UDP and TCP; the kube-dns
    /// Service's targetPort); if taken, a free one is used.
    #[arg(long, default_value_t = 10053)]
    dns_port: u16,
    /// Do not run the scheduler here.
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controller manager here.
    #[arg(long)]
    disable_controllers: bool,
    /// Events kept per resource for watch resumption (older versions get 410 Gone).
    #[arg(long, default_value_t = 1000, hide = true)]
    watch_cache_size: usize,
    /// Store revisions kept by compaction.
    #[arg(long, default_value_t = 10_000, hide = true)]
    compact_keep: i64,
    /// Seconds between compactions.
    #[arg(long, default_value_t = 300, hide = true)]
    compact_interval: u64,
}

fn main() -> anyhow::Result<()> {
    // The container shim (re-executed by the node agent) forks: it must
    // run before any thread exists, so before the async runtime.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "shim") {
        bosun_runtime::shim_main(argv[2..].to_vec());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOSUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Server(args) => rt.block_on(server(args)),
        Command::Simulate(SimulateCommand::Nodes(args)) => rt.block_on(simulate_nodes(args)),
        Command::Scheduler(args) => rt.block_on(scheduler(args)),
        Command::Bench(BenchCommand::Scheduler(args)) => rt.block_on(bench::scheduler(args)),
        Command::Bench(BenchCommand::Deployment(args)) => rt.block_on(bench::deployment(args)),
        Command::Bench(BenchCommand::Pods(args)) => rt.block_on(bench::pods::run(args)),
        Command::Agent(args) => rt.block_on(agent(args)),
        Command::Image(cmd) => rt.block_on(image(cmd)),
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let db = args.data_dir.join("state.db");
    let store = Arc::new(
        bosun_store::SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?,
    );
    bosun_store::spawn_compactor(
        store.clone(),
        std::time::Duration::from_secs(args.compact_interval),
        args.compact_keep,
    );
    let config = bosun_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address.clone(),
        port: args.https_port,
        watch_cache_size: args.watch_cache_size,
        service_cidr: args.service_cidr,
    };
    let running = bosun_apiserver::start(config, store)
        .await
        .context("starting the API server")?;
    if !args.disable_scheduler {
        let client = client(Some(running.kubeconfig.clone())).await?;
        let cfg = bosun_scheduler::runtime::Config::default();
        tokio::spawn(async move {
            if let Err(e) = bosun_scheduler::runtime::run(client, cfg).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        });
    }
    let mut proxy_table = None;
    if !args.disable_agent && !args.proxy.disable_proxy {
        let client = client(Some(running.kubeconfig.clone())).await?;
        proxy_table = Some(start_proxy(
            client,
            &args.proxy,
            args.node_name.clone(),
            &args.cni_bridge,
            &args.cluster_cidr,
        )?);
    }
    let cluster_dns = args
        .cluster_dns
        .unwrap_or_else(|| args.service_cidr.nth(10));
    if !args.disable_dns {
        let client = client(Some(running.kubeconfig.clone())).await?;
        start_dns(client, &args, cluster_dns.into()).await?;
    }
    if !args.disable_agent {
        let client = client(Some(running.kubeconfig.clone())).await?;
        let mut cfg = bosun_kubelet::Config::new(&args.data_dir);
        cfg.dns = bosun_kubelet::dns::ClusterDns {
            servers: if args.disable_dns {
                vec![]
            } else {
                vec![cluster_dns.to_string()]
            },
            domain: args.cluster_domain.clone(),
        };
        cfg.node_name = args.node_name.clone();
        cfg.control_plane = true;
        cfg.runtime = args.container_runtime.clone();
        cfg.runtime_handlers = args.runtime_handlers.clone();
        cfg.kubelet_port = args.kubelet_port;
        cfg.network.cluster_cidrs = args.cluster_cidr.clone();
        cfg.network.bridge = args.cni_bridge.clone();
        cfg.network.pod_cidr = args.pod_cidr.clone();
        if args.disable_controllers && cfg.network.pod_cidr.is_none() {
            // No node IPAM here: this node takes the first subnet.
            cfg.network.pod_cidr = first_node_subnet(&args.cluster_cidr);
        }
        let ca = args.data_dir.join("tls").join("ca.crt");
        cfg.kubelet_ca_pem = Some(
            std::fs::read_to_string(&ca).with_context(|| format!("reading {}", ca.display()))?,
        );
        tokio::spawn(async move {
            if let Err(e) = bosun_kubelet::run(client, cfg).await {
                tracing::error!(error = %e, "node agent stopped");
            }
        });
    }
    // Components that do not exist yet are simply not started.
    if !args.disable_controllers {
        let client = client(Some(running.kubeconfig.clone())).await?;
        let ca_path = args.data_dir.join("tls").join("ca.crt");
        let root_ca = std::fs::read_to_string(&ca_path)
            .with_context(|| format!("reading the cluster CA {}", ca_path.display()))?;
        tokio::spawn(bosun_controllers::run(
            client,
            bosun_controllers::Config {
                root_ca: Some(root_ca),
                cluster_cidrs: args.cluster_cidr.clone(),
                ..Default::default()
            },
        ));
    }
    tracing::info!(addr = %running.addr, "API server listening");
    println!("bosun: API server on https://{}", running.addr);
    println!(
        "bosun: admin kubeconfig at {}",
        running.kubeconfig.display()
    );
    println!(
        "bosun: try: kubectl --kubeconfig {} get namespaces",
        running.kubeconfig.display()
    );
    tokio::select! {
        r = running.task => r.context("API server task")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    stop_proxy(proxy_table);
    Ok(())
}

/// Starts the service proxy of this node; returns its nftables table.
fn start_proxy(
    client: kube::Client,
    args: &ProxyArgs,
    node_name: Option<String>,
    bridge: &str,
    cluster_cidrs: &[String],
) -> anyhow::Result<String> {
    // Agents with their own bridge on one host (tests) get their own table.
    let table = args.proxy_table.clone().unwrap_or_else(|| {
        if bridge == "bosun0" {
            bosun_proxy::DEFAULT_TABLE.to_string()
        } else {
            bridge.to_string()
        }
    });
    bosun_proxy::validate_table(&table).context("--proxy-table")?;
    let mut cfg = bosun_proxy::Config::new(node_name.unwrap_or_else(bosun_kubelet::host::hostname));
    cfg.table = table.clone();
    cfg.cluster_cidrs = cluster_cidrs.to_vec();
    tokio::spawn(async move {
        if let Err(e) = bosun_proxy::run(client, cfg).await {
            tracing::error!(error = %e, "service proxy stopped");
        }
    });
    Ok(table)
}

/// A clean stop leaves no rules behind.
fn stop_proxy(table: Option<String>) {
    if let Some(t) = table {
        match bosun_proxy::remove_table(&t) {
            Ok(()) => tracing::info!(table = %t, "removed the service proxy's nftables table"),
            Err(e) => tracing::warn!(table = %t, error = %e, "removing the proxy's table"),
        }
    }
}

/// Starts the cluster DNS on loopback and the node's address and
/// publishes it as the `kube-dns` Service (endpoint: the node's address).
async fn start_dns(
    client: kube::Client,
    args: &ServerArgs,
    cluster_ip: std::net::IpAddr,
) -> anyhow::Result<()> {
    let node_ip = bosun_kubelet::network::node_ip(&args.cluster_cidr)
        .or_else(bosun_kubelet::host::internal_ip)
        .and_then(|s| s.parse::<std::net::IpAddr>().ok());
    let listen = std::iter::once(std::net::Ipv4Addr::LOCALHOST.into())
        .chain(node_ip)
        .collect();
    let mut cfg = bosun_dns::Config::new(listen, args.dns_port);
    cfg.domain = args.cluster_domain.clone();
    cfg.cluster_ip = Some(cluster_ip);
    cfg.upstreams = bosun_dns::forward::host_upstreams(&[cluster_ip]);
    // Pods and this node may have other names resolved through us.
    cfg.recursion_from = args
        .cluster_cidr
        .iter()
        .filter_map(|c| c.parse().ok())
        .chain(node_ip.map(Into::into))
        .collect();
    let running = bosun_dns::start(client.clone(), cfg)
        .await
        .context("starting the cluster DNS")?;
    println!("bosun: cluster DNS on port {}", running.port);
    let Some(endpoint_ip) = node_ip else {
        tracing::warn!("no node address: the kube-dns Service gets no endpoints");
        return Ok(());
    };
    let reg = bosun_dns::Registration {
        cluster_ip,
        endpoint_ip,
        port: running.port,
        node_name: Some(
            args.node_name
                .clone()
                .unwrap_or_else(bosun_kubelet::host::hostname),
        ),
    };
    tokio::spawn(async move {
        // Kept up to date: a deleted Service comes back, like an addon.
        loop {
            let wait = match bosun_dns::register(&client, &reg).await {
                Ok(()) => 30,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing the kube-dns Service");
                    2
                }
            };
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    });
    Ok(())
}

/// A kube-rs client from a kubeconfig path or the usual defaults.
async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .context("loading kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig")?,
    };
    kube::Client::try_from(config).context("building the API client")
}

async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig).await?;
    let cfg = bosun_scheduler::runtime::Config {
        scheduler_name: args.scheduler_name,
        leader_elect: !args.no_leader_elect,
        ..Default::default()
    };
    tokio::select! {
        r = bosun_scheduler::runtime::run(client, cfg) => r.context("scheduler")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn simulate_nodes(args: SimNodesArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig).await?;
    let mut labels = Vec::new();
    for l in args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l}: expected KEY=VALUE"))?;
        labels.push((k.to_string(), v.to_string()));
    }
    let spec = bosun_simulator::NodeSpec {
        count: args.count,
        prefix: args.prefix,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        lease_interval: std::time::Duration::from_secs(args.lease_interval.max(1)),
        run_pods: !args.no_run_pods,
        labels,
    };
    tokio::select! {
        r = bosun_simulator::run(client, spec) => r.context("simulated nodes")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

/// A network interface name: 1 to 15 characters, no `/` or space.
fn parse_bridge(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', ':']) {
        return Err(format!(
            "{s:?} is not a valid interface name (1-15 characters)"
        ));
    }
    Ok(s.to_string())
}

/// The first node-sized subnet of the first cluster CIDR.
fn first_node_subnet(cluster: &[String]) -> Option<String> {
    use bosun_controllers::nodeipam::{self, Cidr, CidrAllocator};
    let c: Cidr = cluster.first()?.parse().ok()?;
    let mask = if c.is_v6() {
        nodeipam::DEFAULT_NODE_MASK_V6
    } else {
        nodeipam::DEFAULT_NODE_MASK_V4
    };
    Some(CidrAllocator::new(c, mask).ok()?.allocate()?.to_string())
}

fn parse_handler(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, b)) if !n.is_empty() && !b.is_empty() => Ok((n.to_string(), b.to_string())),
        _ => Err(format!("expected NAME=BINARY, got {s:?}")),
    }
}

/// The cluster CA of a kubeconfig's current cluster: it signs the API
/// server's client certificate for the agent's API.
fn kubeconfig_ca(path: &std::path::Path) -> anyhow::Result<String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let ctx_name = kc.current_context.clone().unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .or(kc.clusters.first())
        .and_then(|c| c.cluster.as_ref())
        .context("kubeconfig has no cluster")?;
    if let Some(data) = &cluster.certificate_authority_data {
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("certificate-authority-data is not base64")?;
        return String::from_utf8(pem).context("certificate-authority-data is not PEM");
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file).with_context(|| format!("reading {file}"));
    }
    anyhow::bail!("kubeconfig {} has no certificate authority", path.display())
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let client = client(Some(args.server_kubeconfig.clone())).await?;
    let mut cfg = bosun_kubelet::Config::new(&args.data_dir);
    cfg.node_name = args.node_name;
    cfg.runtime = args.container_runtime;
    cfg.runtime_handlers = args.runtime_handlers;
    cfg.kubelet_port = args.kubelet_port;
    cfg.network.cluster_cidrs = args.cluster_cidr;
    cfg.network.bridge = args.cni_bridge;
    cfg.network.pod_cidr = args.pod_cidr;
    cfg.kubelet_ca_pem = Some(kubeconfig_ca(&args.server_kubeconfig)?);
    cfg.dns = bosun_kubelet::dns::ClusterDns {
        servers: args
            .cluster_dns
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        domain: args.cluster_domain,
    };
    let mut proxy_table = None;
    if !args.proxy.disable_proxy {
        proxy_table = Some(start_proxy(
            client.clone(),
            &args.proxy,
            cfg.node_name.clone(),
            &cfg.network.bridge,
            &cfg.network.cluster_cidrs,
        )?);
    }
    let res = tokio::select! {
        r = bosun_kubelet::run(client, cfg) => r.context("node agent"),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    stop_proxy(proxy_table);
    res
}

async fn image(cmd: ImageCommand) -> anyhow::Result<()> {
    let open = |args: &ImageArgs| {
        let dir = args.data_dir.join("images");
        bosun_images::ImageStore::open(&dir)
            .with_context(|| format!("opening the image store in {}", dir.display()))
    };
    match cmd {
        ImageCommand::Import { file, args } => {
            let store = open(&args)?;
            let imported = store
                .import_archive(&file)
                .await
                .with_context(|| format!("importing {}", file.display()))?;
            for i in imported {
                println!("imported {} {}", i.repo_tags.join(","), i.id);
            }
        }
        ImageCommand::Ls { args } => {
            let store = open(&args)?;
            println!("{:<50} {:<20} {:>12}", "IMAGE", "IMAGE ID", "SIZE");
            for i in store.list() {
                let id = i.id.trim_start_matches("sha256:");
                let names = if i.repo_tags.is_empty() {
                    vec!["<none>".to_string()]
                } else {
                    i.repo_tags.clone()
                };
                for n in names {
                    println!("{:<50} {:<20} {:>12}", n, &id[..id.len().min(13)], i.size);
                }
            }
        }
        ImageCommand::Pull { reference, args } => {
            let store = open(&args)?;
            let i = store
                .pull(&reference, None)
                .await
                .with_context(|| format!("pulling {reference}"))?;
            println!("pulled {} {}", reference, i.id);
        }
        ImageCommand::Rm { reference, args } => {
            let store = open(&args)?;
            // Leases live in the agent's process: refuse an image whose
            // layers are the lower dirs of a mounted container rootfs.
            if let Some(info) = store.get(&reference) {
                let layers = store.layer_dirs(&info);
                let in_use = bosun_runtime::mount::mountinfo()
                    .unwrap_or_default()
                    .iter()
                    .filter(|m| m.fs_type == "overlay")
                    .any(|m| {
                        layers
                            .iter()
                            .any(|l| m.super_options.contains(&l.display().to_string()))
                    });
                if in_use {
                    anyhow::bail!("image {reference} is in use by a container");
                }
            }
            let i = store
                .remove(&reference)
                .await
                .with_context(|| format!("removing {reference}"))?;
            println!("removed {} {}", reference, i.id);
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
