//! `bosun`: one binary that is the whole cluster. This crate only wires the
//! component crates together.

mod bench;

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
}

#[derive(Subcommand)]
enum BenchCommand {
    /// scheduler_perf SchedulingBasic: simulated nodes, init pods, measured pods.
    Scheduler(bench::SchedulerBenchArgs),
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
    // Components that do not exist yet are simply not started.
    let _ = (args.disable_agent, args.disable_controllers);
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
