//! Root integration tests: real namespaces, overlayfs, cgroups, shims and
//! runc/crun, with a rootfs built from the host's static busybox.
//!
//! They run when we are root and runc (or crun) and busybox are present.
//! Otherwise they fail when `CI` is set and print a loud SKIP elsewhere.
//! After each test nothing may be left: mounts, cgroups, runtime
//! containers, processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bosun_runtime::cgroups::{self, pod_resources, CgroupV1};
use bosun_runtime::logs::{parse_record, Stream};
use bosun_runtime::mount::mounts_under;
use bosun_runtime::{
    set_child_subreaper, Cgroups, ContainerConfig, ContainerRequest, ContainerRuntime, ImageConfig,
    LinuxMounter, PodSandbox, QosClass, Resources, RuncCli, RuntimeConfig, SandboxOptions,
    SandboxRequest, ShimCommand, ShimHandle, ShimState,
};

fn find_binary(name: &str) -> Option<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.exists())
}

/// The runtime binary and busybox, or None (SKIP) / panic (CI).
fn prerequisites(runtime: &str) -> Option<(PathBuf, PathBuf)> {
    let root = nix::unistd::geteuid().is_root();
    let rt = find_binary(runtime);
    let busybox = find_binary("busybox");
    if let (true, Some(rt), Some(busybox)) = (root, &rt, &busybox) {
        return Some((rt.clone(), busybox.clone()));
    }
    let why = format!(
        "root={root} {runtime}={:?} busybox={:?} (apt-get install -y runc crun busybox-static)",
        rt, busybox
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but the container tests can't run: {why}");
    }
    eprintln!("\n*** SKIP: container integration test needs {why} ***\n");
    None
}

static SETUP: Once = Once::new();

fn global_setup() {
    SETUP.call_once(|| {
        // Orphaned shims come back to us so they can be reaped (PID 1
        // here does not reap).
        set_child_subreaper().unwrap();
        // crun refuses a hybrid host with controllers left on the v2
        // tree; move them to v1 once, before any test discovers the
        // hierarchies.
        if find_binary("crun").is_some() {
            let moved = cgroups::move_hybrid_controllers_to_v1().unwrap();
            if !moved.is_empty() {
                eprintln!("mounted as cgroup v1 for crun: {moved:?}");
            }
        }
    });
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct Env {
    tmp: tempfile::TempDir,
    rt: ContainerRuntime,
    layer: PathBuf,
    test_cgroup: String,
}

impl Env {
    fn new(runtime: &str) -> Option<Env> {
        let (rt_bin, busybox) = prerequisites(runtime)?;
        global_setup();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tmp = tempfile::Builder::new()
            .prefix("bosun-rt-")
            .tempdir()
            .unwrap();
        let layer = tmp.path().join("layer");
        build_busybox_layer(&busybox, &layer);
        let test_cgroup = format!("/bosun-test-{}-{n}", std::process::id());
        let config = RuntimeConfig {
            state_dir: tmp.path().join("state"),
            runtime: RuncCli::new(rt_bin, tmp.path().join("runtime-root")),
            shim: ShimCommand {
                program: env!("CARGO_BIN_EXE_bosun-runtime-shim").into(),
                args: vec![],
            },
            cgroup_root: format!("{test_cgroup}/kubepods"),
            log_max_size: 10 << 20,
            log_max_files: 3,
        };
        let cg: Arc<dyn Cgroups> = Arc::new(CgroupV1::discover().unwrap());
        let rt = ContainerRuntime::new(config, Arc::new(LinuxMounter), cg);
        Some(Env {
            tmp,
            rt,
            layer,
            test_cgroup,
        })
    }

    fn sandbox(&self, name: &str, qos: QosClass, res: &[Resources]) -> PodSandbox {
        self.rt
            .run_pod_sandbox(&SandboxRequest {
                id: format!("sb-{name}"),
                pod_uid: format!("uid-{name}"),
                hostname: name.to_string(),
                qos,
                resources: pod_resources(res, qos),
                options: SandboxOptions::default(),
            })
            .unwrap()
    }

    fn request(&self, id: &str, command: &[&str], resources: Resources) -> ContainerRequest {
        ContainerRequest {
            id: id.to_string(),
            image: ImageConfig {
                env: vec!["FROM_IMAGE=yes".into()],
                ..Default::default()
            },
            layers: vec![self.layer.clone()],
            config: ContainerConfig {
                name: id.to_string(),
                command: command.iter().map(|s| s.to_string()).collect(),
                resources,
                ..Default::default()
            },
            log_path: self.tmp.path().join("logs").join(id).join("container.log"),
        }
    }

    /// Everything gone: call after removing containers and sandboxes.
    fn assert_clean(&self, handles: &[(ShimHandle, i32)]) {
        let cg = CgroupV1::discover().unwrap();
        cg.remove(&self.test_cgroup).unwrap();
        let state = self.tmp.path();
        let mounts = mounts_under(state).unwrap();
        assert!(mounts.is_empty(), "leftover mounts: {mounts:?}");
        assert!(
            !cg.exists(&self.test_cgroup),
            "leftover cgroup {}",
            self.test_cgroup
        );
        let listed = self.rt.oci.list().unwrap();
        assert!(listed.is_empty(), "leftover runtime containers: {listed:?}");
        for (h, pid) in handles {
            assert!(!h.shim_alive(), "shim of {} still alive", h.id);
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "container init {pid} of {} still exists",
                h.id
            );
        }
        // No process (zombie or not) refers to our state dir.
        let needle = state.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_err() {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !cmdline.contains(&needle),
                "leftover process {name}: {cmdline}"
            );
        }
    }
}

fn build_busybox_layer(busybox: &Path, layer: &Path) {
    let bin = layer.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::create_dir_all(layer.join("tmp")).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(layer.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
}

fn read_log(path: &Path) -> Vec<(Stream, bool, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let r = parse_record(l).unwrap_or_else(|| panic!("not a CRI log line: {l:?}"));
            (r.stream, r.partial, r.content)
        })
        .collect()
}

fn echo_and_exit(runtime: &str) {
    let Some(env) = Env::new(runtime) else {
        return;
    };
    let sb = env.sandbox("echo-pod", QosClass::BestEffort, &[Resources::default()]);
    let req = env.request(
        "echo",
        &[
            "sh",
            "-c",
            "echo out1; echo err1 >&2; hostname; readlink /proc/self/ns/net; \
             echo \"env=$FROM_IMAGE\"; printf partial; exit 3",
        ],
        Resources::default(),
    );
    let h = env.rt.create_container(&sb, &req).unwrap();
    let st = h.status().unwrap();
    assert_eq!(st.state, ShimState::Created);
    assert!(st.pid > 0);
    env.rt.start_container(&h).unwrap();
    let done = h
        .wait(Duration::from_secs(20))
        .unwrap()
        .expect("container exited");
    assert_eq!(done.state, ShimState::Exited);
    assert_eq!(done.exit_code, Some(3), "{done:?}");
    assert!(!done.oom_killed);
    assert_eq!(done.reason(), Some("Error"));
    assert!(done.finished_at.unwrap() >= done.created_at);

    // The netns the container saw is the sandbox's.
    let ino = std::fs::metadata(sb.netns.as_ref().unwrap()).unwrap();
    let expected_ns = format!("net:[{}]", std::os::unix::fs::MetadataExt::ino(&ino));
    let log = read_log(&req.log_path);
    let stdout: Vec<&str> = log
        .iter()
        .filter(|(s, _, _)| *s == Stream::Stdout)
        .map(|(_, _, c)| c.as_str())
        .collect();
    let stderr: Vec<&str> = log
        .iter()
        .filter(|(s, _, _)| *s == Stream::Stderr)
        .map(|(_, _, c)| c.as_str())
        .collect();
    assert_eq!(
        stdout,
        [
            "out1",
            "echo-pod",
            expected_ns.as_str(),
            "env=yes",
            "partial"
        ],
        "{log:?}"
    );
    assert_eq!(stderr, ["err1"]);
    assert!(log.iter().all(|(_, partial, _)| !partial));

    let pid = st.pid;
    env.rt.remove_container("echo").unwrap();
    env.rt.remove_pod_sandbox(&sb).unwrap();
    env.assert_clean(&[(h, pid)]);
}

#[test]
fn runc_echo_logs_and_exit_code() {
    echo_and_exit("runc");
}

#[test]
fn crun_echo_logs_and_exit_code() {
    echo_and_exit("crun");
}

fn oom(runtime: &str) {
    let Some(env) = Env::new(runtime) else {
        return;
    };
    let res = Resources {
        cpu_request_milli: Some(100),
        cpu_limit_milli: Some(500),
        memory_limit_bytes: Some(16 << 20),
        pids_limit: Some(64),
        oom_score_adj: None,
    };
    let sb = env.sandbox("oom-pod", QosClass::Guaranteed, std::slice::from_ref(&res));
    let req = env.request("oom", &["tail", "/dev/zero"], res);
    let h = env.rt.create_container(&sb, &req).unwrap();
    let pid = h.status().unwrap().pid;
    env.rt.start_container(&h).unwrap();
    let done = h
        .wait(Duration::from_secs(30))
        .unwrap()
        .expect("container exited");
    assert_eq!(done.exit_code, Some(137), "{done:?}");
    assert_eq!(done.signal, Some(9));
    assert!(done.oom_killed, "{done:?}");
    assert_eq!(done.reason(), Some("OOMKilled"));
    env.rt.remove_container("oom").unwrap();
    env.rt.remove_pod_sandbox(&sb).unwrap();
    env.assert_clean(&[(h, pid)]);
}

#[test]
fn runc_memory_limit_oom_detected() {
    oom("runc");
}

#[test]
fn crun_memory_limit_oom_detected() {
    oom("crun");
}

fn graceful_stop(runtime: &str) {
    let Some(env) = Env::new(runtime) else {
        return;
    };
    let sb = env.sandbox("stop-pod", QosClass::Burstable, &[Resources::default()]);
    // Handles SIGTERM: stops well within the grace period.
    let req = env.request(
        "polite",
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ],
        Resources::default(),
    );
    let polite = env.rt.create_container(&sb, &req).unwrap();
    let polite_pid = polite.status().unwrap().pid;
    env.rt.start_container(&polite).unwrap();
    // A PID 1 without a handler ignores SIGTERM: killed after the grace.
    let req2 = env.request("stubborn", &["sleep", "1000"], Resources::default());
    let stubborn = env.rt.create_container(&sb, &req2).unwrap();
    let stubborn_pid = stubborn.status().unwrap().pid;
    env.rt.start_container(&stubborn).unwrap();

    // Let the trap be installed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&req.log_path)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "container never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        polite.wait(Duration::ZERO).unwrap().is_none(),
        "still running"
    );

    let t0 = Instant::now();
    let st = env
        .rt
        .stop_container(&polite, Duration::from_secs(20))
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(st.exit_code, Some(0), "{st:?}");
    assert_eq!(st.signal, None);
    let log = read_log(&req.log_path);
    assert!(log.iter().any(|(_, _, c)| c == "got TERM"), "{log:?}");

    let t0 = Instant::now();
    let st = env
        .rt
        .stop_container(&stubborn, Duration::from_millis(500))
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(st.exit_code, Some(137), "{st:?}");
    assert_eq!(st.signal, Some(9));
    assert!(!st.oom_killed);

    // Stopping again is a no-op returning the same status.
    assert_eq!(
        env.rt
            .stop_container(&stubborn, Duration::from_secs(1))
            .unwrap()
            .exit_code,
        Some(137)
    );

    env.rt.remove_container("polite").unwrap();
    env.rt.remove_container("stubborn").unwrap();
    env.rt.remove_pod_sandbox(&sb).unwrap();
    env.assert_clean(&[(polite, polite_pid), (stubborn, stubborn_pid)]);
}

#[test]
fn runc_graceful_stop() {
    graceful_stop("runc");
}

#[test]
fn crun_graceful_stop() {
    graceful_stop("crun");
}

#[test]
fn runc_cleanup_of_running_and_failed_containers() {
    let Some(env) = Env::new("runc") else {
        return;
    };
    let sb = env.sandbox("clean-pod", QosClass::BestEffort, &[Resources::default()]);
    // A running container removed without a stop.
    let req = env.request("running", &["sleep", "1000"], Resources::default());
    let h = env.rt.create_container(&sb, &req).unwrap();
    let pid = h.status().unwrap().pid;
    env.rt.start_container(&h).unwrap();
    // Re-attach as a restarted agent would.
    let again = ShimHandle::open(&env.rt.bundle_dir("running")).unwrap();
    assert_eq!(again, h);
    assert!(again.shim_alive());
    assert_eq!(
        env.rt.oci.state("running").unwrap().unwrap().status,
        "running"
    );

    // A container whose binary doesn't exist fails at create/start and
    // leaves nothing behind.
    let bad = env.request("bad", &["/no/such/binary"], Resources::default());
    let err = env
        .rt
        .create_container(&sb, &bad)
        .and_then(|h| env.rt.start_container(&h));
    assert!(err.is_err(), "bad container started");
    env.rt.remove_container("bad").unwrap();

    env.rt.remove_container("running").unwrap();
    assert!(env.rt.oci.state("running").unwrap().is_none());
    // Removing twice is fine.
    env.rt.remove_container("running").unwrap();
    env.rt.remove_pod_sandbox(&sb).unwrap();
    env.rt.remove_pod_sandbox(&sb).unwrap();
    env.assert_clean(&[(h, pid)]);
}

#[test]
fn runc_log_rotation_and_partial_lines() {
    let Some(mut env) = Env::new("runc") else {
        return;
    };
    env.rt.config.log_max_size = 8192;
    env.rt.config.log_max_files = 3;
    let sb = env.sandbox("log-pod", QosClass::BestEffort, &[Resources::default()]);
    let req = env.request(
        "logs",
        &[
            "sh",
            "-c",
            "head -c 20000 /dev/zero | tr '\\0' x; echo; seq 1 2000 | sed 's/^/line-/'",
        ],
        Resources::default(),
    );
    let h = env.rt.create_container(&sb, &req).unwrap();
    let pid = h.status().unwrap().pid;
    env.rt.start_container(&h).unwrap();
    let done = h.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(done.exit_code, Some(0));
    let path = |n: usize| {
        let mut s = req.log_path.clone().into_os_string();
        if n > 0 {
            s.push(format!(".{n}"));
        }
        PathBuf::from(s)
    };
    assert!(
        path(1).exists() && path(2).exists(),
        "rotated files missing"
    );
    assert!(!path(3).exists(), "more than 3 files kept");
    for n in 0..3 {
        let len = std::fs::metadata(path(n)).unwrap().len();
        assert!(
            len <= 8192 || n > 0 && len <= 8192 + 16 * 1024 + 64,
            "file {n}: {len}"
        );
    }
    let last = read_log(&path(0));
    assert_eq!(last.last().unwrap().2, "line-2000");
    // Every record in every kept file is well-formed; lines are in order.
    let mut all = Vec::new();
    for n in (0..3).rev() {
        all.extend(read_log(&path(n)));
    }
    let nums: Vec<u32> = all
        .iter()
        .filter_map(|(_, _, c)| c.strip_prefix("line-").map(|n| n.parse().unwrap()))
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "gaps in kept lines"
    );
    env.rt.remove_container("logs").unwrap();

    // A long line split into partial records (no rotation this time).
    env.rt.config.log_max_size = 0;
    let req = env.request(
        "long",
        &[
            "sh",
            "-c",
            "head -c 40000 /dev/zero | tr '\\0' y; echo; echo end",
        ],
        Resources::default(),
    );
    let h2 = env.rt.create_container(&sb, &req).unwrap();
    let pid2 = h2.status().unwrap().pid;
    env.rt.start_container(&h2).unwrap();
    assert_eq!(
        h2.wait(Duration::from_secs(20)).unwrap().unwrap().exit_code,
        Some(0)
    );
    let log = read_log(&req.log_path);
    let shape: Vec<(bool, usize)> = log.iter().map(|(_, p, c)| (*p, c.len())).collect();
    assert_eq!(
        shape,
        [
            (true, 16384),
            (true, 16384),
            (false, 40000 - 32768),
            (false, 3)
        ]
    );
    env.rt.remove_container("long").unwrap();
    env.rt.remove_pod_sandbox(&sb).unwrap();
    env.assert_clean(&[(h, pid), (h2, pid2)]);
}
