//! The OCI runtime CLI (runc, crun: same command line).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// `runc state` output (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeState {
    pub id: String,
    #[serde(default)]
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused`, `stopped`.
    pub status: String,
    #[serde(default)]
    pub bundle: PathBuf,
}

/// File descriptors a created container gets as stdin/stdout/stderr
/// (`None`: /dev/null).
#[derive(Debug, Default)]
pub struct ContainerStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// With `terminal: true`: where the runtime sends the pty master.
    pub console_socket: Option<PathBuf>,
}

/// The calls the driver makes into an OCI runtime.
pub trait OciRuntime: Send + Sync + std::fmt::Debug {
    /// Create the container from `bundle`, writing its init PID to
    /// `pid_file`. With `terminal: false` the container's stdio is the
    /// runtime's, i.e. `stdio`.
    fn create(&self, id: &str, bundle: &Path, pid_file: &Path, stdio: ContainerStdio)
        -> Result<()>;
    /// Start the user process of a created container.
    fn start(&self, id: &str) -> Result<()>;
    /// Send `signal` to the init process (all processes with `all`).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Delete the container (`force`: kill it first if running).
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// State of the container, `None` if the runtime doesn't know it.
    fn state(&self, id: &str) -> Result<Option<RuntimeState>>;
    /// Every container under this runtime's root.
    fn list(&self) -> Result<Vec<RuntimeState>>;
}

/// runc or crun, driven through its command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuncCli {
    /// `runc`, `crun`, or a path.
    pub binary: PathBuf,
    /// The runtime's state directory (`--root`).
    pub root: PathBuf,
}

impl RuncCli {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        RuncCli {
            binary: binary.into(),
            root: root.into(),
        }
    }

    fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.binary.display().to_string())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    fn err(&self, op: &str, message: impl Into<String>) -> Error {
        Error::Runtime {
            binary: self.name(),
            op: op.to_string(),
            message: message.into(),
        }
    }

    /// Run to completion, stdin null, capturing stdout and stderr.
    fn run(&self, op: &str, mut cmd: Command) -> Result<String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.err(op, format!("exec: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if msg.is_empty() {
                msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            Err(self.err(op, format!("{}: {msg}", out.status)))
        }
    }
}

/// Does a runtime error message say the container doesn't exist?
pub fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not exist") || m.contains("no such file")
}

/// The last error message in a runtime's log file (`--log`, JSON lines
/// of logrus (runc) or text (crun)).
fn last_log_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|l| {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            let level = v["level"].as_str().unwrap_or("");
            if level == "error" || level == "fatal" {
                return v["msg"].as_str().map(str::to_string);
            }
            None
        } else if !l.trim().is_empty() {
            Some(l.trim().to_string())
        } else {
            None
        }
    })
}

impl OciRuntime for RuncCli {
    fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: ContainerStdio,
    ) -> Result<()> {
        let log = bundle.join(format!("{}.log", self.name()));
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(sock) = &stdio.console_socket {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.arg(id);
        let to_stdio = |fd: Option<OwnedFd>| fd.map(Stdio::from).unwrap_or_else(Stdio::null);
        cmd.stdin(to_stdio(stdio.stdin))
            .stdout(to_stdio(stdio.stdout))
            .stderr(to_stdio(stdio.stderr));
        let status = cmd
            .status()
            .map_err(|e| self.err("create", format!("exec: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let msg = last_log_error(&log).unwrap_or_else(|| "no error logged".to_string());
        Err(self.err("create", format!("{status}: {msg}")))
    }

    fn start(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("start").arg(id);
        self.run("start", cmd).map(|_| ())
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run("kill", cmd).map(|_| ())
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        match self.run("delete", cmd) {
            Ok(_) => Ok(()),
            Err(Error::Runtime { message, .. }) if is_not_found(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn state(&self, id: &str) -> Result<Option<RuntimeState>> {
        let mut cmd = self.command();
        cmd.arg("state").arg(id);
        match self.run("state", cmd) {
            Ok(out) => Ok(Some(serde_json::from_str(&out)?)),
            Err(Error::Runtime { message, .. }) if is_not_found(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> Result<Vec<RuntimeState>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let mut cmd = self.command();
        cmd.arg("list").arg("--format").arg("json");
        let out = self.run("list", cmd)?;
        let out = out.trim();
        if out.is_empty() || out == "null" {
            return Ok(Vec::new());
        }
        Ok(serde_json::from_str(out)?)
    }
}

/// Create `dir` (and parents) for a runtime root.
pub fn ensure_root(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).ctx(|| format!("create {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_messages() {
        assert!(is_not_found("container does not exist"));
        assert!(is_not_found(
            "exit status: 1: time=... msg=\"container \\\"x\\\" does not exist\""
        ));
        assert!(is_not_found(
            "error opening file `/run/crun/x/status`: No such file or directory"
        ));
        assert!(!is_not_found("permission denied"));
    }

    #[test]
    fn log_error_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runc.log");
        std::fs::write(
            &p,
            "{\"level\":\"info\",\"msg\":\"hi\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": not found\"}\n{\"level\":\"debug\",\"msg\":\"x\"}\n",
        )
        .unwrap();
        assert_eq!(last_log_error(&p).unwrap(), "exec: \"nope\": not found");
        assert!(last_log_error(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn state_json_parses() {
        let s: RuntimeState = serde_json::from_str(
            r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-01T00:00:00Z","owner":""}"#,
        )
        .unwrap();
        assert_eq!(s.pid, 42);
        assert_eq!(s.status, "running");
    }

    #[test]
    fn missing_binary_is_an_error() {
        let r = RuncCli::new("/nonexistent/runc", "/tmp/x");
        assert!(matches!(r.start("c"), Err(Error::Runtime { .. })));
    }
}
