//! `bosun bench scheduler`: upstream scheduler_perf's SchedulingBasic
//! workload through the real API server and store, with simulated nodes.

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
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
