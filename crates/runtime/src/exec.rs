//! Running a command inside a running container and waiting for it (CRI
//! `ExecSync`): what exec probes and exec lifecycle hooks use.
//!
//! `<runtime> --root <state> exec --pid-file <f> <id> cmd...` inherits the
//! container's process settings (env, user, capabilities, cwd) from its
//! `config.json`. stdout and stderr go to one pipe (probes report the
//! combined output), read up to a size limit. On timeout the exec'd
//! process itself is killed through the PID file: killing only the runtime
//! CLI would leave the command running in the container.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::oci::RuncCli;

/// What a finished exec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code (128+N when killed by signal N). The
    /// runtime CLI exits non-zero too when it could not run the command;
    /// its error message is then in `output`.
    pub exit_code: i32,
    /// stdout and stderr interleaved, at most the requested limit.
    pub output: Vec<u8>,
    /// More output was produced than was kept.
    pub truncated: bool,
}

/// Run `cmd` in container `id` and wait up to `timeout` (`None`: no
/// limit). `pid_file` is a scratch path for the exec'd process's host PID
/// (it is removed afterwards). Output past `limit` bytes is dropped.
/// Blocking. A timeout is `Err(Error::Timeout)` after the command was
/// killed.
pub fn exec_sync(
    runtime: &RuncCli,
    id: &str,
    cmd: &[String],
    timeout: Option<Duration>,
    limit: usize,
    pid_file: &Path,
) -> Result<ExecOutput> {
    if cmd.is_empty() {
        return Err(Error::InvalidConfig("exec: empty command".into()));
    }
    let _ = std::fs::remove_file(pid_file);
    // Close-on-exec: other commands spawned meanwhile must not hold the
    // write end (the reader would wait for them).
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let wr2: OwnedFd = wr.try_clone().ctx(|| "dup pipe".into())?;
    let mut child = Command::new(&runtime.binary)
        .arg("--root")
        .arg(&runtime.root)
        .arg("exec")
        .arg("--pid-file")
        .arg(pid_file)
        .arg(id)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2))
        .spawn()
        .map_err(|e| Error::Runtime {
            binary: runtime.binary.display().to_string(),
            op: "exec".into(),
            message: format!("exec: {e}"),
        })?;
    // The reader runs on its own thread: a background process started by
    // the command may keep the pipe open after the command exits, so the
    // reader is never joined, only waited on briefly below.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(rd);
        let mut out = Vec::new();
        let mut truncated = false;
        let mut buf = [0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(out.len());
                    if n > room {
                        truncated = true;
                    }
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send((out, truncated));
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => {
                return Err(Error::Io {
                    context: "wait for exec".into(),
                    source: e,
                })
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            kill_exec(pid_file);
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(pid_file);
            return Err(Error::Timeout(format!(
                "command {:?} timed out",
                cmd.join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(pid_file);
    let (output, truncated) = rx
        .recv_timeout(Duration::from_millis(500))
        .unwrap_or_default();
    let exit_code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    Ok(ExecOutput {
        exit_code,
        output,
        truncated,
    })
}

/// SIGKILL the exec'd process named in `pid_file` (if it got that far).
fn kill_exec(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|p| *p > 0) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in runtime: a script that drops the runtime arguments and
    /// runs the command itself, writing its PID file like runc.
    fn fake_runtime(dir: &Path) -> RuncCli {
        let script = dir.join("fake-runc");
        std::fs::write(
            &script,
            "#!/bin/sh\n# --root R exec --pid-file F ID cmd...\nshift 2; shift; shift; pf=$1; shift; shift\necho $$ > \"$pf\"\nexec \"$@\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        RuncCli::new(script, dir.join("root"))
    }

    fn cmd(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(dir.path());
        let pf = dir.path().join("exec.pid");
        let out = exec_sync(
            &rt,
            "c",
            &cmd(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Some(Duration::from_secs(10)),
            1024,
            &pf,
        )
        .unwrap();
        assert_eq!(out.exit_code, 3);
        let text = String::from_utf8_lossy(&out.output);
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
        assert!(!out.truncated);
        assert!(!pf.exists());
    }

    #[test]
    fn output_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(dir.path());
        let out = exec_sync(
            &rt,
            "c",
            &cmd(&["sh", "-c", "yes | head -c 100000"]),
            Some(Duration::from_secs(10)),
            100,
            &dir.path().join("p"),
        )
        .unwrap();
        assert_eq!(out.exit_code, 0);
        assert_eq!(out.output.len(), 100);
        assert!(out.truncated);
    }

    #[test]
    fn timeout_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(dir.path());
        let t0 = Instant::now();
        let r = exec_sync(
            &rt,
            "c",
            &cmd(&["sleep", "30"]),
            Some(Duration::from_millis(300)),
            100,
            &dir.path().join("p"),
        );
        assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_runtime_and_empty_command() {
        let dir = tempfile::tempdir().unwrap();
        let rt = RuncCli::new("/nonexistent/runc", dir.path());
        let p = dir.path().join("p");
        assert!(matches!(
            exec_sync(&rt, "c", &cmd(&["true"]), None, 10, &p),
            Err(Error::Runtime { .. })
        ));
        assert!(matches!(
            exec_sync(&rt, "c", &[], None, 10, &p),
            Err(Error::InvalidConfig(_))
        ));
    }
}
