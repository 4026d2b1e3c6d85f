//! Harness for end-to-end tests on a real node: a local registry
//! (Debian's docker-registry) serving the busybox test image, `bosun server`
//! with its agent, and the real kubectl. Included with
//! `#[path = "common/node.rs"] mod node;` by the suites that run real
//! containers (root + runc; a loud SKIP elsewhere, a failure in CI).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

pub fn find_binary(name: &str) -> Option<PathBuf> {
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

/// Everything this test needs, or None after a loud SKIP (panic in CI).
pub fn prerequisites() -> Option<PathBuf> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        .unwrap_or(false);
    let runc = find_binary("runc");
    let registry = find_binary("docker-registry");
    let busybox = bosun_images::testimage::busybox_binary();
    let kubectl = Path::new(KUBECTL).exists();
    if let (true, Some(_), Some(reg), Some(_), true) = (root, &runc, &registry, &busybox, kubectl) {
        return Some(reg.clone());
    }
    let why = format!(
        "root={root} runc={runc:?} docker-registry={registry:?} static busybox={busybox:?} kubectl={kubectl} \
         (run as root; apt-get install -y runc docker-registry busybox-static kubectl)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but the node agent end-to-end test can't run: {why}");
    }
    eprintln!("\n********************************************************************");
    eprintln!("*** SKIP: node agent end-to-end test needs {why} ***");
    eprintln!("********************************************************************\n");
    None
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut cmd: Command, what: &str) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// A child process killed by PID when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub name: &'static str,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, wait up to 20 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not exit on SIGTERM; killing", self.name);
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    pub registry: Proc,
    pub server: Option<Proc>,
    pub server_port: u16,
    pub reg_port: u16,
    pub node: String,
}

impl Env {
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("admin.kubeconfig")
    }

    pub fn image(&self) -> String {
        format!("127.0.0.1:{}/busybox:1", self.reg_port)
    }

    pub fn kubectl(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.root.path())
            .current_dir(self.root.path());
        run(cmd, &format!("kubectl {}", args.join(" ")))
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.code == 0,
            "kubectl {} failed ({}): {}\n{}\n--- server log ---\n{}",
            args.join(" "),
            o.code,
            o.stdout,
            o.stderr,
            self.server_log_tail(40)
        );
        o.stdout
    }

    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let o = self.kubectl(&a);
        if o.code != 0 {
            return None;
        }
        serde_json::from_str(&o.stdout).ok()
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.get_json(&["pod", name])
    }

    pub fn server_log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Poll `f` until it returns Some, or panic with `what`.
    #[track_caller]
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- server log ---\n{}",
                    self.server_log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> Value {
        self.wait_for(timeout, &format!("pod {name} phase {phase}"), || {
            self.pod(name).filter(|p| p["status"]["phase"] == phase)
        })
    }

    pub fn status_column(&self, name: &str) -> String {
        let out = self.ok(&["get", "pod", name, "--no-headers"]);
        out.split_whitespace().nth(2).unwrap_or("").to_string()
    }
}

impl Drop for Env {
    /// After a failure, leave nothing behind: stop the server first (so
    /// no agent restarts anything), then remove containers, shims, mounts
    /// and pod cgroups of every agent data dir under the test's root. A
    /// no-op after a passing run.
    fn drop(&mut self) {
        drop(self.server.take());
        cleanup_node(self.root.path());
    }
}

/// The pod network of a test's server: its own cluster CIDR
/// `10.<x>.0.0/16` and bridge `bsn<x>`, so concurrent suites on this host
/// never share addresses. `x` (100..200) is reserved with an flock held
/// for the life of the test process and kept in `<root>/podnet`, so a
/// restarted server of the same test gets the same network.
pub struct PodNetwork {
    pub x: u8,
}

impl PodNetwork {
    pub fn cluster_cidr(&self) -> String {
        format!("10.{}.0.0/16", self.x)
    }
    pub fn bridge(&self) -> String {
        format!("bsn{}", self.x)
    }
    /// The server's ClusterIP range: its own, so concurrent test
    /// clusters never DNAT each other's service addresses.
    pub fn service_cidr(&self) -> String {
        format!("172.16.{}.0/24", self.x)
    }
    /// The service proxy's nftables table (the agent derives it from
    /// the bridge name).
    pub fn proxy_table(&self) -> String {
        self.bridge()
    }
    /// Flags of an extra `bosun agent` (n in 1..=3) of the same test: its
    /// own bridge, and a subnet of its own while its Node has no podCIDR.
    pub fn agent_flags(&self, n: u8) -> Vec<String> {
        vec![
            "--cluster-cidr".into(),
            self.cluster_cidr(),
            "--cni-bridge".into(),
            format!("bsn{}n{n}", self.x),
            "--pod-cidr".into(),
            format!("10.{}.{}.0/24", self.x, 250 + n),
        ]
    }
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--cluster-cidr".into(),
            self.cluster_cidr(),
            "--cni-bridge".into(),
            self.bridge(),
            "--service-cidr".into(),
            self.service_cidr(),
        ]
    }
}

static HELD_LOCKS: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

pub fn pod_network(root: &Path) -> PodNetwork {
    let file = root.join("podnet");
    if let Some(x) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return PodNetwork { x };
    }
    let dir = std::env::temp_dir().join("bosun-test-podnet");
    std::fs::create_dir_all(&dir).unwrap();
    let start = (std::process::id() as usize + free_port() as usize) % 100;
    for k in 0..100 {
        let x = (100 + (start + k) % 100) as u8;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{x}.lock")))
            .unwrap();
        if lock.try_lock().is_err() {
            continue;
        }
        HELD_LOCKS.lock().unwrap().push(lock);
        std::fs::write(&file, x.to_string()).unwrap();
        return PodNetwork { x };
    }
    panic!("no free test pod network (10.100-199.0.0/16)");
}

/// Remove what the pod network of the test in `root` left on the host:
/// CNI iptables rules and chains of the pods `uids` (their comments name
/// the sandbox ID, the pod UID), host-gw routes inside its cluster CIDR,
/// and its bridge. Only names of this test are touched.
pub fn cleanup_pod_network(root: &Path, uids: &[String]) {
    let Some(x) = std::fs::read_to_string(root.join("podnet"))
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
    else {
        return;
    };
    let net = PodNetwork { x };
    if !uids.is_empty() {
        let rules = Command::new("iptables")
            .args(["-t", "nat", "-S"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut chains = Vec::new();
        for line in rules.lines() {
            let Some(rule) = line.strip_prefix("-A ") else {
                continue;
            };
            if !uids
                .iter()
                .any(|u| u.len() >= 36 && line.contains(u.as_str()))
            {
                continue;
            }
            // iptables -S quotes for a shell.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -t nat -D {rule}"))
                .status();
            if let Some(t) = rule.split(" -j ").nth(1) {
                let t = t.split_whitespace().next().unwrap_or("");
                if t.starts_with("CNI-") && !t.starts_with("CNI-HOSTPORT") {
                    chains.push(t.to_string());
                }
            }
        }
        for c in chains {
            let _ = Command::new("iptables")
                .args(["-t", "nat", "-F", &c])
                .status();
            let _ = Command::new("iptables")
                .args(["-t", "nat", "-X", &c])
                .status();
        }
    }
    let routes = Command::new("ip")
        .args([
            "-4",
            "route",
            "show",
            "root",
            &net.cluster_cidr(),
            "proto",
            "66",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for r in routes.lines() {
        if let Some(dst) = r.split_whitespace().next() {
            let _ = Command::new("ip")
                .args(["route", "del", dst, "proto", "66"])
                .status();
        }
    }
    let extra = (1..=3).map(|n| format!("bsn{}n{n}", net.x));
    for bridge in std::iter::once(net.bridge()).chain(extra) {
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
        // The service proxy's table is named after the bridge.
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &bridge])
            .stderr(Stdio::null())
            .status();
    }
}

pub fn cleanup_node(root: &Path) {
    let agents: Vec<PathBuf> = ["data", "crun-node"]
        .iter()
        .map(|d| root.join(d).join("agent"))
        .filter(|d| d.exists())
        .collect();
    let mut uids = Vec::new();
    for agent in &agents {
        for (bin, state) in [("runc", "runc"), ("crun", "crun")] {
            let state = agent.join(state);
            if !state.exists() {
                continue;
            }
            let out = Command::new(bin)
                .arg("--root")
                .arg(&state)
                .args(["list", "-q"])
                .output();
            for id in out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .lines()
            {
                let _ = Command::new(bin)
                    .arg("--root")
                    .arg(&state)
                    .args(["delete", "-f", id.trim()])
                    .output();
            }
        }
        for sub in ["runtime/sandboxes", "pods"] {
            if let Ok(rd) = std::fs::read_dir(agent.join(sub)) {
                uids.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
        }
    }
    for p in processes_mentioning(&root.to_string_lossy()) {
        if let Some(pid) = p.split(':').next() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    cleanup_pod_network(root, &uids);
    let mut mounts = mounts_under(root);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
    for uid in uids {
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            for qos in ["", "burstable/", "besteffort/"] {
                let pod = h.join(format!("kubepods/{qos}pod{uid}"));
                if !pod.is_dir() {
                    continue;
                }
                let mut dirs = vec![pod.clone()];
                if let Ok(rd) = std::fs::read_dir(&pod) {
                    dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
                for d in dirs.iter().rev() {
                    for pid in std::fs::read_to_string(d.join("cgroup.procs"))
                        .unwrap_or_default()
                        .lines()
                    {
                        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                    }
                    for _ in 0..50 {
                        if std::fs::remove_dir(d).is_ok() || !d.exists() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }
}

pub fn start_registry(root: &Path, bin: &Path) -> (Proc, u16) {
    let port = free_port();
    let storage = root.join("registry-storage");
    std::fs::create_dir_all(&storage).unwrap();
    let config = root.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(root.join("registry.log")).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start docker-registry");
    let p = Proc {
        child: Some(child),
        name: "docker-registry",
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, port)
}

pub fn push_busybox(root: &Path, port: u16) {
    let layout = root.join("busybox-oci");
    bosun_images::testimage::build_busybox_image(&layout).expect("build busybox image");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = bosun_images::ImageStore::open(root.join("push-store")).unwrap();
        store
            .client()
            .push_oci_layout(
                &layout,
                Some("1"),
                &format!("127.0.0.1:{port}/busybox:1"),
                None,
            )
            .await
            .expect("push busybox");
    });
}

impl Env {
    /// Registry with the busybox image pushed, plus `bosun server`
    /// (controllers off unless `extra` says otherwise) with its agent on a
    /// node named `<prefix>-<pid>`. None after a loud SKIP.
    pub fn start(prefix: &str, extra: &[&str]) -> Option<Env> {
        let registry_bin = prerequisites()?;
        let root = tempfile::Builder::new()
            .prefix(&format!("bosun-{prefix}-"))
            .tempdir()
            .unwrap();
        let data = root.path().join("data");
        let (registry, reg_port) = start_registry(root.path(), &registry_bin);
        push_busybox(root.path(), reg_port);
        let node = format!("{prefix}-{}", std::process::id());
        let server_port = free_port();
        let server = start_server(root.path(), &data, &node, server_port, extra);
        let env = Env {
            root,
            data,
            registry,
            server: Some(server),
            server_port,
            reg_port,
            node,
        };
        env.wait_for(Duration::from_secs(30), "node Ready", || {
            env.get_json(&["node", &env.node]).filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
        });
        Some(env)
    }
}

/// Start `bosun server` with its agent; `extra` args go last (e.g.
/// `--enable-controllers`-style switches are not needed: pass nothing to
/// keep `--disable-controllers`, or `"controllers"` as the first extra
/// to run them).
pub fn start_server(root: &Path, data: &Path, node: &str, port: u16, extra: &[&str]) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("server.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("server")
        .arg("--data-dir")
        .arg(data)
        .arg("--https-port")
        .arg(port.to_string())
        .arg("--bind-address")
        .arg("127.0.0.1")
        .args(if extra.first() == Some(&"controllers") {
            &[][..]
        } else {
            &["--disable-controllers"][..]
        })
        .arg("--node-name")
        .arg(node)
        .args(pod_network(root).flags())
        .args(extra.iter().filter(|a| **a != "controllers"))
        .env("BOSUN_LOG", "info,bosun_kubelet=debug")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start bosun server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
            if l.starts_with("bosun: admin kubeconfig at") {
                break;
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("server exited early: {st}");
        }
        assert!(Instant::now() < deadline, "server did not start");
    }
    Proc {
        child: Some(child),
        name: "bosun server",
    }
}

pub fn cri_lines(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap_or("").to_string();
            let stream = it.next().unwrap_or("").to_string();
            let tag = it.next().unwrap_or("").to_string();
            let content = it.next().unwrap_or("").to_string();
            assert!(
                ts.len() > 20
                    && ts.as_bytes()[10] == b'T'
                    && ts.ends_with('Z')
                    && (stream == "stdout" || stream == "stderr")
                    && (tag == "F" || tag == "P"),
                "not a CRI log line: {l:?}"
            );
            (stream, tag, content)
        })
        .collect()
}

pub fn container_state<'a>(pod: &'a Value, which: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"][0]["state"].get(which)
}

pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Push the busybox test image (built by [`push_busybox`]) again under
/// another tag, e.g. for `kubectl set image`.
pub fn push_busybox_tag(root: &Path, port: u16, tag: &str) {
    let layout = root.join("busybox-oci");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = bosun_images::ImageStore::open(root.join("push-store")).unwrap();
        store
            .client()
            .push_oci_layout(
                &layout,
                Some("1"),
                &format!("127.0.0.1:{port}/busybox:{tag}"),
                None,
            )
            .await
            .expect("push busybox tag");
    });
}
