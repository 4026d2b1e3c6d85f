//! End-to-end test harness: starts a real `bosun server` on a free port with
//! its own data directory, and drives it with the real kubectl (and curl for
//! raw HTTP).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// Default deadline for one kubectl/curl invocation.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns false (after printing a loud SKIP) when kubectl is not installed;
/// panics instead when `CI` is set.
pub fn kubectl_available() -> bool {
    if Path::new(KUBECTL).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{KUBECTL} is missing and CI is set: the end-to-end tests cannot run");
    }
    eprintln!("\n\n********************************************************************");
    eprintln!("*** SKIP: {KUBECTL} is missing; end-to-end kubectl test skipped ***");
    eprintln!("********************************************************************\n");
    false
}

/// Picks a free TCP port by binding 127.0.0.1:0 and dropping the listener.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs a command to completion with a deadline, capturing stdout/stderr.
pub fn run_command(mut cmd: Command, what: &str) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(3)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&t1.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t2.join().unwrap_or_default()).into_owned();
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A running bosun server plus the kubectl environment that talks to it.
pub struct Cluster {
    root: tempfile::TempDir,
    pub data: PathBuf,
    pub home: PathBuf,
    pub port: u16,
    extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    starts: usize,
}

impl Cluster {
    /// Starts a server, or returns None when kubectl is missing (see
    /// [`kubectl_available`]).
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(&[])
    }

    /// Starts a server with extra flags. The tests exercise the API server as
    /// upstream's would behave with no controllers, scheduler or node agent
    /// (deployments stay 0/N, pods stay unbound), so those are disabled.
    pub fn start_with(extra: &[&str]) -> Option<Cluster> {
        if !kubectl_available() {
            return None;
        }
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend_from_slice(&[
            "--disable-scheduler",
            "--disable-controllers",
            "--disable-agent",
        ]);
        let root = tempfile::Builder::new()
            .prefix("bosun-e2e-")
            .tempdir()
            .expect("tempdir");
        let data = root.path().join("data");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let log = root.path().join("server.log");
        let mut c = Cluster {
            data,
            home,
            port: 0,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log,
            root,
            starts: 0,
        };
        c.launch(None);
        Some(c)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("admin.kubeconfig")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Starts the server process on `port` (or a fresh free port), retrying
    /// on a fresh port when the chosen one turned out to be taken.
    fn launch(&mut self, port: Option<u16>) {
        assert!(self.child.is_none(), "server already running");
        let mut port = port.unwrap_or_else(free_port);
        let mut last_err = String::new();
        for _attempt in 0..5 {
            self.starts += 1;
            match self.try_launch(port) {
                Ok(child) => {
                    self.child = Some(child);
                    self.port = port;
                    return;
                }
                Err(e) => {
                    last_err = e;
                    if !last_err.contains("Address already in use") {
                        break;
                    }
                    port = free_port();
                }
            }
        }
        panic!(
            "bosun server did not start: {last_err}\n--- server log ---\n{}",
            self.log_tail(60)
        );
    }

    fn try_launch(&self, port: u16) -> Result<Child, String> {
        let mut logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let _ = writeln!(logf, "=== start #{} on port {port} ===", self.starts);
        let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--https-port")
            .arg(port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .args(&self.extra_args)
            .env("BOSUN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf))
            .spawn()
            .map_err(|e| format!("spawning bosun: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel::<String>();
        // Keeps draining stdout for the life of the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(line) if line.starts_with("bosun: admin kubeconfig at") => {
                    let want = self.kubeconfig();
                    assert!(
                        line.ends_with(&want.display().to_string()),
                        "unexpected kubeconfig line {line:?}, want it to name {}",
                        want.display()
                    );
                    return Ok(child);
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "server exited early with {st}: {}",
                    self.log_tail(20)
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("server did not print its kubeconfig line within 30s".into());
            }
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn stop_term(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("running kill -TERM");
        assert!(st.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not exit within 20s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the server (by PID) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        child.kill().expect("SIGKILL the server");
        let _ = child.wait();
    }

    /// Starts the server again on the same data dir, on the same port when
    /// that is still free.
    pub fn restart(&mut self) {
        let port = self.port;
        self.launch(Some(port));
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .env_remove("KUBECTL_EXPLAIN_OPENAPIV3")
            .current_dir(self.root.path());
        cmd
    }

    /// Runs kubectl to completion.
    pub fn kubectl(&self, args: &[&str]) -> Out {
        run_command(
            self.kubectl_command(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// Runs kubectl, asserts exit 0 and returns stdout.
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

    /// Runs kubectl, asserts a non-zero exit and returns the output.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> Out {
        let o = self.kubectl(args);
        assert!(
            !o.ok(),
            "kubectl {} unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.stdout,
            o.stderr
        );
        o
    }

    /// `kubectl get ... -o json` parsed.
    #[track_caller]
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let s = self.ok(&a);
        serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("kubectl {a:?} printed invalid JSON ({e}): {s}"))
    }

    /// Writes a file under the test's temp dir and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.root.path().join(name);
        std::fs::write(&p, contents).expect("write file");
        p
    }

    /// Spawns a long-running kubectl whose stdout is delivered line by line.
    pub fn spawn_kubectl_lines(&self, args: &[&str]) -> Spawned<String> {
        let mut cmd = self.kubectl_command(args);
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let errf = std::fs::File::create(self.root.path().join(format!("spawned-{n}.err")))
            .expect("stderr file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(errf));
        let mut child = cmd.spawn().expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            rx,
            what: format!("kubectl {}", args.join(" ")),
        }
    }

    /// Spawns a long-running kubectl whose stdout is a stream of JSON values
    /// (e.g. `get --raw '...?watch=true'`); newlines between values are optional.
    pub fn spawn_kubectl_json(&self, args: &[&str]) -> Spawned<Value> {
        let mut cmd = self.kubectl_command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let de = serde_json::Deserializer::from_reader(stdout).into_iter::<Value>();
            for v in de {
                let Ok(v) = v else { break };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            rx,
            what: format!("kubectl {}", args.join(" ")),
        }
    }

    /// Raw HTTPS request with curl using the admin client certificate
    /// (`creds = false` sends none). Returns (status code, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &Path)>,
        creds: bool,
        extra: &[&str],
    ) -> (u16, String) {
        let tls = self.data.join("tls");
        let mut cmd = Command::new("curl");
        cmd.arg("-sS")
            .arg("--max-time")
            .arg("30")
            .arg("--cacert")
            .arg(tls.join("ca.crt"))
            .arg("-X")
            .arg(method)
            .arg("-w")
            .arg("\n%{http_code}");
        if creds {
            cmd.arg("--cert")
                .arg(tls.join("admin.crt"))
                .arg("--key")
                .arg(tls.join("admin.key"));
        }
        if let Some((ctype, file)) = body {
            // HTTP/1.1: over h2, curl 7.88 reports "Stream error in the HTTP/2
            // framing layer" when the server answers before reading the body
            // and then sends RST_STREAM(NO_ERROR), which RFC 9113 8.1 allows.
            cmd.arg("--http1.1");
            cmd.arg("-H").arg(format!("Content-Type: {ctype}"));
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        cmd.args(extra);
        cmd.arg(format!("{}{}", self.server_url(), path));
        let o = run_command(cmd, &format!("curl {method} {path}"));
        assert!(
            o.ok(),
            "curl {method} {path} failed (exit {}): {}",
            o.code,
            o.stderr
        );
        let (body, code) = o.stdout.rsplit_once('\n').unwrap_or(("", &o.stdout));
        (
            code.trim()
                .parse()
                .unwrap_or_else(|_| panic!("curl printed no status: {:?}", o.stdout)),
            body.to_string(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- bosun server log ({}) ---\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}

/// A background process whose output arrives on a channel; killed (by PID)
/// when dropped.
pub struct Spawned<T> {
    pub child: Child,
    pub rx: Receiver<T>,
    what: String,
}

impl<T: std::fmt::Debug> Spawned<T> {
    /// Waits for the next item, panicking after `timeout`.
    #[track_caller]
    pub fn next(&self, timeout: Duration) -> T {
        match self.rx.recv_timeout(timeout) {
            Ok(v) => v,
            Err(e) => panic!("{}: no output within {timeout:?} ({e:?})", self.what),
        }
    }

    /// Collects items until `pred` matches one (returned with everything seen before it).
    #[track_caller]
    pub fn until(&self, timeout: Duration, pred: impl Fn(&T) -> bool) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    let done = pred(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!(
                    "{}: wanted output not seen within {timeout:?} ({e:?}); saw {seen:#?}",
                    self.what
                ),
            }
        }
    }

    /// Asserts nothing arrives during `quiet`.
    #[track_caller]
    pub fn assert_quiet(&self, quiet: Duration) {
        if let Ok(v) = self.rx.recv_timeout(quiet) {
            panic!("{}: unexpected output {v:?}", self.what);
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (bounded) for the process to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Drains whatever output is already available.
    pub fn drain(&self) -> Vec<T> {
        let mut v = Vec::new();
        while let Ok(x) = self.rx.try_recv() {
            v.push(x);
        }
        v
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits a table line into its whitespace-separated cells.
pub fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Table output as rows of cells, header first.
pub fn table(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The first cell of every row after the header.
pub fn names(s: &str) -> Vec<String> {
    table(s).into_iter().skip(1).map(|r| r[0].clone()).collect()
}

/// Polls `f` until it returns Some or the deadline passes.
#[track_caller]
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// metadata.resourceVersion as a number.
#[track_caller]
pub fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
        .parse()
        .unwrap_or_else(|_| panic!("non-numeric resourceVersion in {obj}"))
}
