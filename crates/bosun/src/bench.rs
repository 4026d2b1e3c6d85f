//! `bosun bench scheduler`: upstream scheduler_perf's SchedulingBasic
//! workload through the real API server and store, with simulated nodes.
//! `bosun bench deployment`: a Deployment's creation and rolling update with
//! the scheduler, the controller manager and pod-running simulated nodes.
//! `bosun bench pods`: pod start latency on a real node (see [`pods`]).

pub mod pods;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SchedulerBenchArgs {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 1000)]
    init_pods: usize,
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Add required pod anti-affinity (hostname) and zone topology spread to
    /// the measured pods; nodes get 10 zones.
    #[arg(long)]
    affinity: bool,
    /// Skip the Scheduled event per pod (to see what events cost).
    #[arg(long)]
    no_events: bool,
    /// Watch cache window per resource.
    #[arg(long, default_value_t = 1000)]
    watch_cache_size: usize,
    /// Concurrent pod creations.
    #[arg(long, default_value_t = 64)]
    create_concurrency: usize,
}

fn pod(name: &str, affinity: bool) -> anyhow::Result<Pod> {
    let mut v = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "group": if affinity { name } else { "all" }}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]},
    });
    if affinity {
        v["metadata"]["labels"]["color"] = serde_json::json!("blue");
        v["spec"]["affinity"] = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"group": name}}, "topologyKey": "kubernetes.io/hostname"}]}});
        v["spec"]["topologySpreadConstraints"] = serde_json::json!([{"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"color": "blue"}}}]);
    }
    Ok(serde_json::from_value(v)?)
}

async fn create_pods(
    api: &Api<Pod>,
    prefix: &str,
    n: usize,
    affinity: bool,
    conc: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let p = pod(&name, affinity)?;
                api.create(&PostParams::default(), &p)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                Ok(())
            }
        })
        .buffer_unordered(conc.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

async fn wait_scheduled(
    metrics: &bosun_scheduler::runtime::Metrics,
    target: u64,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while metrics.scheduled.load(Ordering::Relaxed) < target {
        if start.elapsed() > limit {
            anyhow::bail!(
                "only {} of {} pods scheduled after {:?}",
                metrics.scheduled.load(Ordering::Relaxed),
                target,
                limit
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn scheduler(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let store =
        Arc::new(bosun_store::SqliteStore::open(&dir.path().join("state.db")).context("store")?);
    let config = bosun_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        bind_address: "127.0.0.1".into(),
        port: 0,
        watch_cache_size: args.watch_cache_size,
        service_cidr: Default::default(),
    };
    let running = bosun_apiserver::start(config, store)
        .await
        .context("API server")?;
    let client = crate::client(Some(running.kubeconfig.clone())).await?;
    println!(
        "bench: API server {} ({} nodes, {} init pods, {} measured pods{})",
        running.addr,
        args.nodes,
        args.init_pods,
        args.pods,
        if args.affinity {
            ", anti-affinity + spread"
        } else {
            ""
        }
    );

    let t = Instant::now();
    let mut spec = bosun_simulator::NodeSpec {
        count: args.nodes,
        prefix: "node-".into(),
        run_pods: false,
        ..Default::default()
    };
    if args.affinity {
        // Zones via a label per node would need per-node specs; use 10 prefixes.
        spec.count = 0;
        for z in 0..10 {
            let zs = bosun_simulator::NodeSpec {
                count: args.nodes / 10,
                prefix: format!("node-z{z}-"),
                run_pods: false,
                labels: vec![("topology.kubernetes.io/zone".into(), format!("zone-{z}"))],
                ..Default::default()
            };
            bosun_simulator::register(&client, &zs)
                .await
                .context("registering nodes")?;
        }
    } else {
        bosun_simulator::register(&client, &spec)
            .await
            .context("registering nodes")?;
    }
    println!(
        "bench: registered {} nodes in {:.1}s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );

    let metrics = Arc::new(bosun_scheduler::runtime::Metrics::default());
    let cfg = bosun_scheduler::runtime::Config {
        leader_elect: false,
        scheduled_events: !args.no_events,
        ..Default::default()
    };
    let profile = bosun_scheduler::Profile::default();
    let sc = client.clone();
    let m2 = metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = bosun_scheduler::runtime::run_with_profile(sc, cfg, profile, m2).await {
            tracing::error!(error = %e, "scheduler stopped");
        }
    });
    // Let the informers sync the nodes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    create_pods(&api, "init", args.init_pods, false, args.create_concurrency).await?;
    wait_scheduled(&metrics, args.init_pods as u64, Duration::from_secs(600)).await?;
    println!(
        "bench: {} init pods created and scheduled in {:.1}s",
        args.init_pods,
        t.elapsed().as_secs_f64()
    );
    if let Ok(mut l) = metrics.latencies_us.lock() {
        l.clear();
    }

    let t = Instant::now();
    let creator = {
        let api = api.clone();
        let n = args.pods;
        let aff = args.affinity;
        let conc = args.create_concurrency;
        tokio::spawn(async move {
            let t = Instant::now();
            let r = create_pods(&api, "pod", n, aff, conc).await;
            (r, t.elapsed())
        })
    };
    let target = (args.init_pods + args.pods) as u64;
    wait_scheduled(&metrics, target, Duration::from_secs(1800)).await?;
    let elapsed = t.elapsed();
    let (create_result, created_in) = creator.await.context("creator task")?;
    create_result?;
    println!(
        "bench: the {} measured pods were created in {:.2}s ({:.0} creates/s)",
        args.pods,
        created_in.as_secs_f64(),
        args.pods as f64 / created_in.as_secs_f64()
    );
    let mut lat = metrics
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    println!(
        "bench: scheduled {} pods in {:.2}s: {:.0} pods/s; latency p50 {:.1} ms, p99 {:.1} ms (queue entry to bind ack); unschedulable attempts {}",
        args.pods,
        elapsed.as_secs_f64(),
        args.pods as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0,
        metrics.failed.load(Ordering::Relaxed),
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct DeploymentBenchArgs {
    /// Simulated nodes (they mark bound pods Running and finish deletions).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the measured Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Give up on a phase after this many seconds (and print the statuses).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Watch cache window per resource.
    #[arg(long, default_value_t = 1000)]
    watch_cache_size: usize,
}

/// CPU time (user + system) of this whole process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    // USER_HZ; 100 on every mainstream Linux, asked of getconf to be sure.
    let hz = *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(100.0)
    });
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces: count fields after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime + stime) / hz
}

/// (current RSS, peak RSS) in MiB, from /proc/self/status.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn print_resources(phase: &str, wall: Duration, cpu_before: f64) {
    let cpu = cpu_seconds() - cpu_before;
    let (rss, hwm) = rss_mib();
    println!(
        "bench: {phase}: process CPU {cpu:.2}s over {:.2}s wall ({:.2} cores); RSS {rss:.0} MiB, peak {hwm:.0} MiB",
        wall.as_secs_f64(),
        cpu / wall.as_secs_f64().max(1e-9),
    );
}

fn deployment_object(name: &str, replicas: i32, image: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                    "resources": {"requests": {"cpu": "10m"}}}]},
            },
        },
    }))?)
}

/// One line per Deployment and ReplicaSet status, for a phase that timed out.
async fn describe_rollout(client: &kube::Client, name: &str) -> String {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut out = String::new();
    match deps.get(name).await {
        Ok(d) => {
            out += &format!(
                "deployment generation {:?} status {}\n",
                d.metadata.generation,
                serde_json::to_string(&d.status).unwrap_or_default()
            );
        }
        Err(e) => out += &format!("deployment: {e}\n"),
    }
    if let Ok(list) = rss.list(&ListParams::default()).await {
        for rs in list {
            out += &format!(
                "replicaset {} spec.replicas {:?} generation {:?} status {}\n",
                rs.metadata.name.unwrap_or_default(),
                rs.spec.as_ref().and_then(|s| s.replicas),
                rs.metadata.generation,
                serde_json::to_string(&rs.status).unwrap_or_default()
            );
        }
    }
    if let Ok(list) = pods.list(&ListParams::default()).await {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for p in list {
            let hash = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash").cloned())
                .unwrap_or_default();
            let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
            let node = if p.spec.and_then(|s| s.node_name).is_some() {
                "bound"
            } else {
                "unbound"
            };
            let del = if p.metadata.deletion_timestamp.is_some() {
                " terminating"
            } else {
                ""
            };
            *counts
                .entry(format!("hash={hash} phase={phase} {node}{del}"))
                .or_default() += 1;
        }
        for (k, v) in counts {
            out += &format!("pods {k}: {v}\n");
        }
    }
    out
}

/// Polls the Deployment until `done` holds for it (and for its pods).
async fn wait_deployment(
    client: &kube::Client,
    name: &str,
    limit: Duration,
    mut done: impl FnMut(&Deployment) -> bool,
    image: &str,
) -> anyhow::Result<()> {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    loop {
        let d = deps.get(name).await.context("reading the Deployment")?;
        if done(&d) {
            // No pod of another template may remain (terminating or not).
            let list = pods
                .list(&ListParams::default().labels(&format!("app={name}")))
                .await
                .context("listing pods")?;
            let old = list
                .items
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        != Some(image)
                })
                .count();
            if old == 0 {
                return Ok(());
            }
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "deployment {name} not done after {limit:?}:\n{}",
                describe_rollout(client, name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rollout_complete(d: &Deployment, n: i32) -> bool {
    let st = d.status.clone().unwrap_or_default();
    st.observed_generation.is_some()
        && st.observed_generation >= d.metadata.generation
        && st.updated_replicas.unwrap_or(0) == n
        && st.available_replicas.unwrap_or(0) == n
        && st.replicas.unwrap_or(0) == n
}

pub async fn deployment(args: DeploymentBenchArgs) -> anyhow::Result<()> {
    let cpu_start = cpu_seconds();
    let dir = tempfile::tempdir().context("temp dir")?;
    let store =
        Arc::new(bosun_store::SqliteStore::open(&dir.path().join("state.db")).context("store")?);
    let config = bosun_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        bind_address: "127.0.0.1".into(),
        port: 0,
        watch_cache_size: args.watch_cache_size,
        service_cidr: Default::default(),
    };
    let running = bosun_apiserver::start(config, store)
        .await
        .context("API server")?;
    let client = crate::client(Some(running.kubeconfig.clone())).await?;
    println!(
        "bench: API server {} ({} simulated nodes running pods, Deployment of {} replicas requesting 10m CPU)",
        running.addr, args.nodes, args.replicas
    );
    println!(
        "bench: one process holds everything: API server, SQLite store, watch cache, scheduler, controller manager, simulated nodes and this driver; CPU and RSS figures are for all of it"
    );

    let t = Instant::now();
    let spec = bosun_simulator::NodeSpec {
        count: args.nodes,
        prefix: "node-".into(),
        run_pods: true,
        ..Default::default()
    };
    bosun_simulator::register(&client, &spec)
        .await
        .context("registering nodes")?;
    println!(
        "bench: registered {} nodes in {:.1}s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    // `run` registers again (idempotent), then heartbeats and drives pods.
    let sim_client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = bosun_simulator::run(sim_client, spec).await {
            tracing::error!(error = %e, "simulated nodes stopped");
        }
    });

    let sc = client.clone();
    let cfg = bosun_scheduler::runtime::Config {
        leader_elect: false,
        ..Default::default()
    };
    tokio::spawn(async move {
        let metrics = Arc::new(bosun_scheduler::runtime::Metrics::default());
        let profile = bosun_scheduler::Profile::default();
        if let Err(e) = bosun_scheduler::runtime::run_with_profile(sc, cfg, profile, metrics).await
        {
            tracing::error!(error = %e, "scheduler stopped");
        }
    });
    tokio::spawn(bosun_controllers::run(
        client.clone(),
        bosun_controllers::Config {
            leader_elect: false,
            // Simulated nodes need no pod network.
            cluster_cidrs: vec![],
            ..Default::default()
        },
    ));
    // Let the informers sync and the simulator's second registration finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, hwm) = rss_mib();
    println!(
        "bench: idle cluster: process CPU {:.2}s so far; RSS {rss:.0} MiB, peak {hwm:.0} MiB",
        cpu_seconds() - cpu_start
    );

    let n = args.replicas;
    let name = "bench";
    let limit = Duration::from_secs(args.timeout);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let image1 = "registry.k8s.io/pause:3.10";
    let image2 = "registry.k8s.io/pause:3.9";

    // Phase 1: create until all replicas are available.
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    deps.create(&PostParams::default(), &deployment_object(name, n, image1)?)
        .await
        .context("creating the Deployment")?;
    wait_deployment(&client, name, limit, |d| rollout_complete(d, n), image1).await?;
    let wall = t.elapsed();
    println!(
        "bench: created Deployment of {n} replicas, all available in {:.2}s ({:.0} pods/s)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    print_resources("create phase", wall, cpu0);

    // Phase 2: rolling update (new image, default 25% surge/unavailable).
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image2}]}}}});
    let d = deps
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .context("updating the image")?;
    let generation = d.metadata.generation;
    wait_deployment(
        &client,
        name,
        limit,
        |d| d.metadata.generation == generation && rollout_complete(d, n),
        image2,
    )
    .await?;
    let wall = t.elapsed();
    println!(
        "bench: rolling update of {n} replicas (image change) complete, no old pods left, in {:.2}s ({:.0} pods replaced/s)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    print_resources("rolling update phase", wall, cpu0);
    let (rss, hwm) = rss_mib();
    println!(
        "bench: total process CPU {:.2}s; RSS now {rss:.0} MiB, peak {hwm:.0} MiB",
        cpu_seconds() - cpu_start
    );
    Ok(())
}
