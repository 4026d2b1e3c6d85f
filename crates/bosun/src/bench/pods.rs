//! `bosun bench pods`: pod create → Running, seen on a watch, on a real node
//! (a `bosun agent` child process running real containers through the OCI
//! runtime), side by side with the same container started by bare
//! `runc create` + `runc start`; then the agent's idle RSS with pods
//! running. Needs root and runc; the busybox test image is imported into
//! the agent's store first, so no pull is measured.

use super::{percentile, rss_mib};
use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BENCH_CLUSTER_CIDR: &str = "10.199.0.0/16";
const BENCH_POD_CIDR: &str = "10.199.0.0/24";
const BENCH_BRIDGE: &str = "bsnbench";

#[derive(clap::Args)]
pub struct PodsBenchArgs {
    /// Pods measured one after another (each one Running before the next).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods left running while the agent's idle RSS is read.
    #[arg(long, default_value_t = 20)]
    idle_pods: usize,
    /// OCI runtime for both the agent and the bare runs.
    #[arg(long, default_value = "runc")]
    container_runtime: String,
}

fn pod_object(name: &str, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": "docker.io/library/busybox:1",
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// Proportional set size of a process in MiB: shared pages (the one
/// binary all shims map) are split among the processes sharing them.
fn pss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// VmRSS of a process in MiB.
fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// PIDs whose command line contains `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn summary(label: &str, ms: &mut [u64]) {
    ms.sort_unstable();
    let mean = ms.iter().sum::<u64>() as f64 / ms.len().max(1) as f64;
    println!(
        "bench: {label}: n={} p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, mean {mean:.1} ms",
        ms.len(),
        percentile(ms, 0.50),
        percentile(ms, 0.90),
        percentile(ms, 0.99),
        ms.last().copied().unwrap_or(0),
    );
}

/// A `bosun agent` child, killed (and its node cleaned) when dropped.
struct AgentProc {
    child: std::process::Child,
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_running(pods: &Api<Pod>, name: &str, limit: Duration) -> anyhow::Result<Instant> {
    let wp = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(limit.as_secs().min(290) as u32);
    let mut stream = pods.watch(&wp, "0").await?.boxed();
    while let Some(ev) = tokio::time::timeout(limit, stream.next())
        .await
        .context("timed out waiting for Running")?
    {
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev? {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                return Ok(Instant::now());
            }
        }
    }
    bail!("watch on pod {name} ended before Running")
}

/// One bare `runc create` + `runc start` of the busybox rootfs running
/// `sleep 3600`; returns its wall time. The container is deleted after.
fn bare_run(runtime: &str, state: &Path, bundle: &Path, id: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let st = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(["create", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()?;
    if !st.success() {
        bail!("{runtime} create failed: {st}");
    }
    let st = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(["start", id])
        .status()?;
    let took = t.elapsed();
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(["delete", "-f", id])
        .status();
    if !st.success() {
        bail!("{runtime} start failed: {st}");
    }
    Ok(took)
}

/// A bundle for the bare runs: the image's merged rootfs and the runtime's
/// default spec with `sleep 3600` and a writable root.
fn bare_bundle(runtime: &str, dir: &Path, rootfs_from: &Path) -> anyhow::Result<PathBuf> {
    let bundle = dir.join("bare-bundle");
    std::fs::create_dir_all(&bundle)?;
    let st = Command::new(runtime)
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .with_context(|| format!("{runtime} spec"))?;
    if !st.success() {
        bail!("{runtime} spec failed");
    }
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["root"] = serde_json::json!({"path": rootfs_from, "readonly": false});
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(bundle)
}

pub async fn run(args: PodsBenchArgs) -> anyhow::Result<()> {
    if !nix_is_root() {
        bail!("bosun bench pods runs real containers: run it as root");
    }
    let dir = tempfile::Builder::new()
        .prefix("bosun-bench-pods-")
        .tempdir()
        .context("temp dir")?;
    let server_dir = dir.path().join("server");
    let agent_dir = dir.path().join("agent-data");
    std::fs::create_dir_all(agent_dir.join("images/import"))?;
    std::fs::create_dir_all(&server_dir)?;

    // The image, as an OCI archive the agent imports at start.
    let layout = dir.path().join("busybox-oci");
    bosun_images::testimage::build_busybox_image(&layout)
        .context("building the busybox test image (apt-get install busybox-static)")?;
    bosun_images::testimage::tar_dir(&layout, &agent_dir.join("images/import/busybox.tar"))?;

    let store =
        Arc::new(bosun_store::SqliteStore::open(&server_dir.join("state.db")).context("store")?);
    let running = bosun_apiserver::start(
        bosun_apiserver::Config {
            data_dir: server_dir.clone(),
            bind_address: "127.0.0.1".into(),
            port: 0,
            watch_cache_size: 1000,
            service_cidr: Default::default(),
        },
        store,
    )
    .await
    .context("API server")?;
    let client = crate::client(Some(running.kubeconfig.clone())).await?;
    let node = format!("bench-pods-{}", std::process::id());
    println!(
        "bench: API server {} in this process; node agent `bosun agent` as a child process (node {node}, runtime {}); image present, pods bound by spec.nodeName (no scheduler), measured one at a time",
        running.addr, args.container_runtime
    );
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let child = Command::new(&exe)
        .arg("agent")
        .arg("--server-kubeconfig")
        .arg(&running.kubeconfig)
        .arg("--data-dir")
        .arg(&agent_dir)
        .arg("--node-name")
        .arg(&node)
        .arg("--container-runtime")
        .arg(&args.container_runtime)
        // No controller manager here: the agent takes its podCIDR itself,
        // on a bridge of its own (removed at the end).
        .args(["--cluster-cidr", BENCH_CLUSTER_CIDR])
        .args(["--pod-cidr", BENCH_POD_CIDR])
        .args(["--cni-bridge", BENCH_BRIDGE])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting bosun agent")?;
    let agent = AgentProc { child };
    let agent_pid = agent.child.id();

    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = nodes.get_opt(&node).await?.is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "node {node} not Ready after 60 s; agent log: {}",
                dir.path().join("agent.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "bench: agent idle RSS with no pods: {:.1} MiB",
        rss_of(agent_pid)
    );

    // Warm-up: one pod, not measured (first overlay/cgroup set-up).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let limit = Duration::from_secs(60);
    pods.create(&PostParams::default(), &pod_object("warmup", &node)?)
        .await?;
    wait_running(&pods, "warmup", limit).await?;

    let mut lat = Vec::with_capacity(args.pods);
    for i in 0..args.pods {
        let name = format!("p{i}");
        let obj = pod_object(&name, &node)?;
        let t = Instant::now();
        pods.create(&PostParams::default(), &obj).await?;
        let at = wait_running(&pods, &name, limit).await?;
        lat.push(at.duration_since(t).as_millis() as u64);
        // Keep `idle_pods` running; delete the rest as we go so the node
        // does not fill up (deletion is not measured).
        if i >= args.idle_pods {
            pods.delete(&name, &DeleteParams::default().grace_period(0))
                .await?;
        }
    }
    summary("pod create → Running (watch)", &mut lat.clone());

    // Idle RSS with `idle_pods` + warm-up running: wait for deletions.
    pods.delete("warmup", &DeleteParams::default().grace_period(0))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = pods
            .list(&ListParams::default().labels("bench=pods"))
            .await?
            .items
            .len();
        if n <= args.idle_pods.min(args.pods) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let shims = pids_mentioning(&agent_dir.join("agent").to_string_lossy())
        .into_iter()
        .filter(|p| *p != agent_pid)
        .collect::<Vec<_>>();
    let shim_rss: f64 = shims.iter().map(|p| rss_of(*p)).sum();
    let shim_pss: f64 = shims.iter().map(|p| pss_of(*p)).sum();
    println!(
        "bench: {} pods running, after 10 s idle: agent RSS {:.1} MiB (PSS {:.1} MiB); {} shims: RSS {:.1} MiB summed, PSS {:.1} MiB in all ({:.2} MiB each)",
        args.idle_pods.min(args.pods),
        rss_of(agent_pid),
        pss_of(agent_pid),
        shims.len(),
        shim_rss,
        shim_pss,
        shim_pss / shims.len().max(1) as f64
    );
    let (rss, _) = rss_mib();
    println!("bench: (API server + store in the bench process: RSS {rss:.0} MiB)");

    // Bare runtime, same rootfs content, same command.
    let store = bosun_images::ImageStore::open(agent_dir.join("images"))?;
    let image = store
        .get("docker.io/library/busybox:1")
        .context("busybox image not in the agent's store")?;
    let rootfs = dir.path().join("bare-rootfs");
    store.materialize(&image, &rootfs)?;
    let bundle = bare_bundle(&args.container_runtime, dir.path(), &rootfs)?;
    let state = dir.path().join("bare-state");
    let mut bare = Vec::with_capacity(args.pods);
    let runtime = args.container_runtime.clone();
    let n = args.pods;
    let bare_res = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u64>> {
        bare_run(&runtime, &state, &bundle, "bench-warmup")?;
        for i in 0..n {
            bare.push(
                bare_run(&runtime, &state, &bundle, &format!("bench-{i}"))?.as_millis() as u64,
            );
        }
        Ok(bare)
    })
    .await??;
    let mut bare = bare_res;
    summary(
        &format!("bare `{} create` + `start`", args.container_runtime),
        &mut bare,
    );
    let (mut a, mut b) = (lat.clone(), bare.clone());
    a.sort_unstable();
    b.sort_unstable();
    println!(
        "bench: overhead over bare runtime: p50 {} ms, p99 {} ms",
        percentile(&a, 0.50) as i64 - percentile(&b, 0.50) as i64,
        percentile(&a, 0.99) as i64 - percentile(&b, 0.99) as i64,
    );

    // Clean up: delete the pods, stop the agent (it leaves the containers
    // to a restart, so remove what is left through the agent first).
    let _ = pods
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default().labels("bench=pods"),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let left = pids_mentioning(&agent_dir.join("agent").to_string_lossy())
            .into_iter()
            .filter(|p| *p != agent_pid)
            .count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(agent);
    // The bridge CNI made for the bench (pods are gone, so are their veths).
    let _ = Command::new("ip")
        .args(["link", "del", BENCH_BRIDGE])
        .stderr(Stdio::null())
        .status();
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        .unwrap_or(false)
}
