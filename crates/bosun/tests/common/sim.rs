//! Shared end-to-end harness for the scheduler and controller tests: a real
//! `bosun server` (API server, scheduler, controller manager; no node agent)
//! on a free port with its own data directory, plus `bosun simulate nodes`
//! processes, driven by the real kubectl. Every child is killed by PID on
//! drop.
//!
//! Included with `#[path = "common/sim.rs"] mod sim;` next to `mod common;`
//! (for `free_port`, `run_command`, ...). The including test file defines
//! `WAIT` (deadline for `eventually`) and `POLL` (its polling interval).
#![allow(dead_code)]

use super::{POLL, WAIT};
use crate::common::{free_port, kubectl_available, run_command, Out, KUBECTL};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    pub home: PathBuf,
    pub server: Option<Child>,
    pub server_log: PathBuf,
    /// Simulator processes with their log files; killed by PID on drop.
    pub sims: Vec<(Child, PathBuf)>,
}

/// Shape of the nodes `bosun simulate nodes` registers; `None` leaves the
/// simulator's default.
#[derive(Debug, Clone, Default)]
pub struct SimNodes<'a> {
    pub cpu: Option<&'a str>,
    pub memory: Option<&'a str>,
    pub pods: Option<u32>,
    pub labels: &'a [&'a str],
    pub lease_interval: Option<u64>,
}

impl Cluster {
    /// Starts `bosun server` on a free port, or returns None after a loud
    /// SKIP when kubectl is missing (panics under CI).
    pub fn start() -> Option<Cluster> {
        Cluster::start_env(&[])
    }

    /// Like `start`, with extra environment variables for the server.
    pub fn start_env(env: &[(&str, &str)]) -> Option<Cluster> {
        if !kubectl_available() {
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("bosun-sim-e2e-")
            .tempdir()
            .expect("tempdir");
        let data = root.path().join("data");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let server_log = root.path().join("server.log");
        let mut c = Cluster {
            data,
            home,
            server: None,
            server_log,
            sims: Vec::new(),
            root,
        };
        let mut last = String::new();
        for _ in 0..5 {
            match c.try_launch(free_port(), env) {
                Ok(child) => {
                    c.server = Some(child);
                    return Some(c);
                }
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        panic!("bosun server did not start: {last}");
    }

    fn try_launch(&self, port: u16, env: &[(&str, &str)]) -> Result<Child, String> {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.server_log)
            .expect("open server log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosun"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--https-port")
            .arg(port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
            // Only simulated nodes: no real node agent registering this host.
            .arg("--disable-agent")
            .env("BOSUN_LOG", "info")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf))
            .spawn()
            .map_err(|e| format!("spawning bosun server: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(line) if line.starts_with("bosun: admin kubeconfig at") => return Ok(child),
                Ok(_) | Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("server exited with {st}: {}", self.tail(20)));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("server printed no kubeconfig line within 30s".into());
            }
        }
    }

    /// The last `n` lines of the server log.
    pub fn tail(&self, n: usize) -> String {
        tail(&self.server_log, n)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("admin.kubeconfig")
    }

    /// Starts `bosun simulate nodes` (nodes `{prefix}0..{prefix}{count-1}`)
    /// and waits until all of them are Ready.
    pub fn simulate_with(&mut self, prefix: &str, count: usize, opts: &SimNodes) -> Vec<String> {
        let log = self.root.path().join(format!("sim-{prefix}.log"));
        let logf = std::fs::File::create(&log).expect("sim log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosun"));
        cmd.args(["simulate", "nodes", "--kubeconfig"])
            .arg(self.kubeconfig())
            .args(["--count", &count.to_string()])
            .args(["--prefix", prefix]);
        if let Some(cpu) = opts.cpu {
            cmd.args(["--cpu", cpu]);
        }
        if let Some(memory) = opts.memory {
            cmd.args(["--memory", memory]);
        }
        if let Some(pods) = opts.pods {
            cmd.args(["--pods", &pods.to_string()]);
        }
        if let Some(lease) = opts.lease_interval {
            cmd.args(["--lease-interval", &lease.to_string()]);
        }
        for l in opts.labels {
            cmd.args(["--label", l]);
        }
        let child = cmd
            .env("BOSUN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .expect("spawning bosun simulate nodes");
        self.sims.push((child, log));
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        for n in &names {
            self.eventually(&format!("node {n} Ready"), || {
                let o = self.kubectl(&[
                    "get",
                    "node",
                    n,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                (o.ok() && o.stdout.trim() == "True").then_some(())
            });
        }
        names
    }

    /// Nodes with `cpu` CPUs, 8Gi of memory, 110 pods and the given labels.
    pub fn simulate(
        &mut self,
        prefix: &str,
        count: usize,
        cpu: &str,
        labels: &[&str],
    ) -> Vec<String> {
        let opts = SimNodes {
            cpu: Some(cpu),
            memory: Some("8Gi"),
            pods: Some(110),
            labels,
            ..SimNodes::default()
        };
        self.simulate_with(prefix, count, &opts)
    }

    /// Nodes with 8 CPUs, 16Gi of memory and 110 pods.
    pub fn simulate_large(&mut self, prefix: &str, count: usize) -> Vec<String> {
        let opts = SimNodes {
            cpu: Some("8"),
            memory: Some("16Gi"),
            pods: Some(110),
            ..SimNodes::default()
        };
        self.simulate_with(prefix, count, &opts)
    }

    /// Default-sized nodes renewing their leases every `lease_interval` seconds.
    pub fn simulate_lease(
        &mut self,
        prefix: &str,
        count: usize,
        lease_interval: u64,
    ) -> Vec<String> {
        let opts = SimNodes {
            lease_interval: Some(lease_interval),
            ..SimNodes::default()
        };
        self.simulate_with(prefix, count, &opts)
    }

    pub fn kubectl(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .current_dir(self.root.path());
        run_command(cmd, &format!("kubectl {}", args.join(" ")))
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.ok(),
            "kubectl {} failed (exit {}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.code,
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    /// `kubectl get ARGS -o json`.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl JSON")
    }

    /// `kubectl create -f` of a YAML document (or several); returns stdout.
    #[track_caller]
    pub fn create(&self, yaml: &str) -> String {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = self.root.path().join(format!("manifest-{n}.yaml"));
        std::fs::write(&p, yaml).expect("write manifest");
        self.ok(&["create", "-f", p.to_str().expect("utf-8 path")])
    }

    /// `create`, discarding the output.
    #[track_caller]
    pub fn apply(&self, yaml: &str) {
        self.create(yaml);
    }

    /// `kubectl get ARGS -o jsonpath={.metadata.uid}`.
    pub fn uid(&self, args: &[&str]) -> String {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
        self.ok(&a)
    }

    /// Whether `kubectl get ARGS` finds the object (any error but NotFound panics).
    pub fn exists(&self, args: &[&str]) -> bool {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        let o = self.kubectl(&a);
        if !o.ok() {
            assert!(o.stderr.contains("NotFound"), "kubectl get: {}", o.stderr);
        }
        o.ok()
    }

    /// `kubectl get pod NAME -o jsonpath=EXPR` (in `default`).
    #[track_caller]
    pub fn pod_field(&self, name: &str, expr: &str) -> String {
        self.ok(&["get", "pod", name, "-o", &format!("jsonpath={expr}")])
    }

    pub fn pod_json(&self, ns: &str, name: &str) -> Value {
        let s = self.ok(&["get", "pod", "-n", ns, name, "-o", "json"]);
        serde_json::from_str(&s).expect("pod JSON")
    }

    /// Pods in `default` with the label selector, sorted by name.
    pub fn pods(&self, selector: &str) -> Vec<Value> {
        let v = self.json(&["pods", "-l", selector]);
        let mut items = v["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        items
    }

    /// Polls `f` every POLL until it returns Some; panics (with the cluster
    /// state and server log) after WAIT.
    #[track_caller]
    pub fn eventually<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n--- kubectl get all,nodes -A -o wide ---\n{}\n--- events ---\n{}\n--- server log ---\n{}",
                    self.kubectl(&["get", "all,nodes", "-A", "-o", "wide"]).stdout,
                    self.kubectl(&["get", "events", "-A"]).stdout,
                    self.tail(30)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the pod (in `default`) is bound and Running; returns its node.
    #[track_caller]
    pub fn wait_running(&self, name: &str) -> String {
        self.eventually(&format!("pod {name} Running"), || {
            let o = self.kubectl(&[
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase} {.spec.nodeName}",
            ]);
            let s = o.stdout.trim().to_string();
            let (phase, node) = s.split_once(' ').unwrap_or((&s, ""));
            (o.ok() && phase == "Running" && !node.is_empty()).then(|| node.to_string())
        })
    }

    /// Spawns a long-running kubectl whose stdout is a stream of JSON values.
    pub fn watch_json(&self, args: &[&str]) -> JsonWatch {
        let mut child = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for v in serde_json::Deserializer::from_reader(stdout).into_iter::<Value>() {
                let Ok(v) = v else { break };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        JsonWatch { child, rx }
    }

    /// Events about one object in `ns`, optionally of one reason, oldest first.
    pub fn events(&self, ns: &str, name: &str, reason: Option<&str>) -> Vec<Event> {
        let mut sel = format!("involvedObject.name={name}");
        if let Some(r) = reason {
            sel.push_str(&format!(",reason={r}"));
        }
        let s = self.ok(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &sel,
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&s).expect("event list JSON");
        let mut out: Vec<Event> = v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| Event {
                type_: e["type"].as_str().unwrap_or_default().into(),
                reason: e["reason"].as_str().unwrap_or_default().into(),
                message: e["message"].as_str().unwrap_or_default().into(),
                reporting: e["reportingComponent"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .or(e["source"]["component"].as_str())
                    .unwrap_or_default()
                    .into(),
                kind: e["involvedObject"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                name: e["involvedObject"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                rv: e["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
            })
            .collect();
        out.sort_by_key(|e| e.rv);
        out
    }

    /// (type, reason, message) of the events about `name` in `default`.
    pub fn events_of(&self, name: &str) -> Vec<(String, String, String)> {
        let v = self.json(&[
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ]);
        v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Waits for an event on `default/name` with this reason and message.
    #[track_caller]
    pub fn wait_event(&self, name: &str, reason: &str, message: &str) {
        self.eventually(&format!("event {reason} {message:?} on {name}"), || {
            self.events_of(name)
                .iter()
                .any(|(_, r, m)| r == reason && m == message)
                .then_some(())
        });
    }

    /// Ends a pod the way a kubelet reports it: phase plus a terminated
    /// container with `exit_code`.
    #[track_caller]
    pub fn finish_pod(&self, name: &str, exit_code: i32) {
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let patch = json!({"status": {"phase": phase, "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                "startedAt": "2024-01-01T00:00:00Z", "finishedAt": "2024-01-01T00:00:01Z"}}}]}});
        self.ok(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
    }
}

/// The last `n` lines of the file at `p`.
pub fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill only our own children, by PID.
        for (c, _) in &mut self.sims {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- bosun server log ---\n{}", tail(&self.server_log, 60));
            for (_, log) in &self.sims {
                eprintln!("--- {} ---\n{}", log.display(), tail(log, 20));
            }
        }
    }
}

/// A background kubectl (killed by PID on drop) printing JSON values.
pub struct JsonWatch {
    pub child: Child,
    pub rx: std::sync::mpsc::Receiver<Value>,
}

impl Drop for JsonWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub type_: String,
    pub reason: String,
    pub message: String,
    /// reportingComponent, else source.component (what describe's From shows).
    pub reporting: String,
    pub kind: String,
    pub name: String,
    pub rv: u64,
}
