//! End-to-end tests of the PodGC, disruption (PodDisruptionBudget) and
//! resource quota controllers: a real `bosun server` (controllers and
//! scheduler on, no node agent) plus `bosun simulate nodes` where pods must
//! run, driven by the real kubectl.

mod common;

use common::{free_port, kubectl_available, run_command, Out, KUBECTL};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

struct Cluster {
    root: tempfile::TempDir,
    data: PathBuf,
    home: PathBuf,
    server: Option<Child>,
    log: PathBuf,
    sims: Vec<Child>,
}

impl Cluster {
    fn start(env: &[(&str, &str)]) -> Option<Cluster> {
        if !kubectl_available() {
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("bosun-ctrl-e2e-")
            .tempdir()
            .expect("tempdir");
        let data = root.path().join("data");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let log = root.path().join("server.log");
        let mut c = Cluster {
            data,
            home,
            server: None,
            log,
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
            .open(&self.log)
            .expect("open server log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosun"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--https-port")
            .arg(port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
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

    fn tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let l: Vec<&str> = s.lines().collect();
        l[l.len().saturating_sub(n)..].join("\n")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data.join("admin.kubeconfig")
    }

    /// `bosun simulate nodes` with `count` nodes; waits until they are Ready.
    fn simulate(&mut self, prefix: &str, count: usize, lease_interval: u64) -> Vec<String> {
        let log = self.root.path().join(format!("sim-{prefix}.log"));
        let logf = std::fs::File::create(&log).expect("sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["simulate", "nodes", "--kubeconfig"])
            .arg(self.kubeconfig())
            .args(["--count", &count.to_string(), "--prefix", prefix])
            .args(["--lease-interval", &lease_interval.to_string()])
            .env("BOSUN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .expect("spawning bosun simulate nodes");
        self.sims.push(child);
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

    fn kubectl(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .current_dir(self.root.path());
        run_command(cmd, &format!("kubectl {}", args.join(" ")))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
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

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("JSON")
    }

    #[track_caller]
    fn apply(&self, yaml: &str) {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = self.root.path().join(format!("manifest-{n}.yaml"));
        std::fs::write(&p, yaml).expect("write manifest");
        self.ok(&["create", "-f", p.to_str().expect("utf-8 path")]);
    }

    fn exists(&self, args: &[&str]) -> bool {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        let o = self.kubectl(&a);
        if !o.ok() {
            assert!(o.stderr.contains("NotFound"), "kubectl get: {}", o.stderr);
        }
        o.ok()
    }

    #[track_caller]
    fn eventually<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n--- pods,nodes ---\n{}\n--- server log ---\n{}",
                    self.kubectl(&["get", "pods,nodes", "-A", "-o", "wide"]).stdout,
                    self.tail(30)
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for mut s in self.sims.drain(..) {
            let _ = s.kill();
            let _ = s.wait();
        }
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.tail(60));
        }
    }
}

/// The cells of `kubectl get <kind> <name>` (header and one row).
fn row(c: &Cluster, args: &[&str]) -> Option<(Vec<String>, Vec<String>)> {
    let o = c.kubectl(args);
    if !o.ok() {
        return None;
    }
    let mut lines = o.stdout.lines();
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let head = split(lines.next()?);
    let row = split(lines.next()?);
    Some((head, row))
}

#[test]
fn pdb_status_counts_ready_pods() {
    let Some(mut c) = Cluster::start(&[]) else {
        return;
    };
    c.simulate("pdb-", 1, 2);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    c.eventually("3 ready pods", || {
        let pods = c.json(&["pods", "-l", "app=web"]);
        let ready = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x["type"] == "Ready" && x["status"] == "True")
                })
            })
            .count();
        (ready == 3).then_some(())
    });
    c.ok(&[
        "create",
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    let (head, cells) = c.eventually("ALLOWED DISRUPTIONS 1", || {
        let (h, r) = row(&c, &["get", "pdb", "web"])?;
        let i = h.iter().position(|x| x == "ALLOWED DISRUPTIONS")?;
        (r.get(i).map(String::as_str) == Some("1")).then_some((h, r))
    });
    assert_eq!(
        head[..4],
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS"
        ]
    );
    assert_eq!(cells[..4], ["web", "2", "N/A", "1"]);
    let pdb = c.json(&["pdb", "web"]);
    let st = &pdb["status"];
    assert_eq!(st["expectedPods"], 3);
    assert_eq!(st["currentHealthy"], 3);
    assert_eq!(st["desiredHealthy"], 2);
    assert_eq!(st["disruptionsAllowed"], 1);
    assert_eq!(st["observedGeneration"], pdb["metadata"]["generation"]);
    let cond = &st["conditions"][0];
    assert_eq!(cond["type"], "DisruptionAllowed");
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "SufficientPods");
    // Scaling down to 2 leaves no disruption allowed.
    c.ok(&["scale", "deployment", "web", "--replicas=2"]);
    c.eventually("InsufficientPods", || {
        let st = c.json(&["pdb", "web"])["status"].clone();
        (st["disruptionsAllowed"] == 0
            && st["currentHealthy"] == 2
            && st["conditions"][0]["reason"] == "InsufficientPods")
            .then_some(())
    });
}

#[test]
fn quota_usage_shows_in_kubectl() {
    let Some(c) = Cluster::start(&[]) else {
        return;
    };
    c.ok(&[
        "create",
        "quota",
        "q",
        "--hard=pods=10,requests.cpu=1,configmaps=5,count/deployments.apps=3",
    ]);
    for name in ["a", "b"] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources:\n      requests:\n        cpu: 100m\n        memory: 64Mi\n"
        ));
    }
    let (head, cells) = c.eventually("quota usage pods 2/10, cpu 200m/1", || {
        let (h, r) = row(&c, &["get", "quota", "q"])?;
        let i = h.iter().position(|x| x == "REQUEST")?;
        let req = r.get(i)?;
        (req.contains("pods: 2/10") && req.contains("requests.cpu: 200m/1")).then_some((h, r))
    });
    assert_eq!(head, ["NAME", "REQUEST", "LIMIT", "AGE"]);
    assert!(
        cells[1].contains("pods: 2/10, requests.cpu: 200m/1"),
        "{cells:?}"
    );
    // Object counts: configmaps (kube-root-ca.crt, published by the
    // controller manager, and ours) and count/<resource>.<group>.
    c.ok(&["create", "configmap", "one", "--from-literal=k=v"]);
    c.ok(&["create", "deployment", "d", "--image=nginx", "--replicas=0"]);
    c.eventually("configmaps and deployments counted", || {
        let q = c.json(&["quota", "q"]);
        let used = &q["status"]["used"];
        (used["configmaps"] == "2" && used["count/deployments.apps"] == "1").then_some(())
    });
    let q = c.json(&["quota", "q"]);
    assert_eq!(q["status"]["hard"]["requests.cpu"], "1");
    let d = c.ok(&["describe", "quota", "q"]);
    assert!(d.contains("requests.cpu"), "{d}");
    assert!(d.contains("200m"), "{d}");
    // Deleting a pod releases its usage.
    c.ok(&["delete", "pod", "a", "--grace-period=0", "--force"]);
    c.eventually("usage after delete", || {
        let used = c.json(&["quota", "q"])["status"]["used"].clone();
        (used["pods"] == "1" && used["requests.cpu"] == "100m").then_some(())
    });
}

#[test]
fn podgc_removes_pods_of_deleted_nodes() {
    // A short quarantine so the test does not wait upstream's 40 s (the
    // node lifecycle controller's own orphan sweep also waits 40 s).
    let Some(c) = Cluster::start(&[("BOSUN_PODGC_QUARANTINE_SECONDS", "2")]) else {
        return;
    };
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: doomed-node\n");
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: done\nspec:\n  nodeName: doomed-node\n  containers:\n  - name: c\n    image: nginx\n");
    c.ok(&[
        "patch",
        "pod",
        "done",
        "--subresource=status",
        "--type=merge",
        "-p",
        "{\"status\":{\"phase\":\"Succeeded\"}}",
    ]);
    assert_eq!(
        c.ok(&["get", "pod", "done", "-o", "jsonpath={.status.phase}"]),
        "Succeeded"
    );
    // Not collected while the node exists.
    std::thread::sleep(Duration::from_secs(4));
    assert!(c.exists(&["pod", "done"]));
    c.ok(&["delete", "node", "doomed-node"]);
    c.eventually("pod of the deleted node collected", || {
        (!c.exists(&["pod", "done"])).then_some(())
    });
    assert!(
        std::fs::read_to_string(&c.log)
            .unwrap_or_default()
            .contains("podgc: deleting orphaned pod"),
        "{}",
        c.tail(30)
    );
}
