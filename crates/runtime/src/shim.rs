//! The per-container shim: a small subreaper process that owns a
//! container's stdio and outlives the agent.
//!
//! The agent runs the shim executable (the bosun binary re-executed with a
//! hidden subcommand, which calls [`shim_main`]) with the bundle directory.
//! The shim forks and the first process exits, so the shim is detached
//! (own session, re-parented away from the agent). The shim becomes a child
//! subreaper, runs `<runtime> create` with the container's stdout/stderr on
//! pipes it reads, writes the CRI log, and reports `ok` (or the error) on
//! its stdout, which the agent reads to the end. The agent then runs
//! `<runtime> start`. When the container's init exits the shim reaps it
//! (it is re-parented to the shim), drains the pipes, checks the cgroup for
//! OOM kills, writes `status.json` atomically and exits.
//!
//! Files in the bundle directory: `shim.json` (config), `shim.pid`,
//! `init.pid`, `status.json`, `shim.log` (the shim's own stderr).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroups;
use crate::error::{Error, IoContext, Result};
use crate::logs::{CriLogWriter, Stream};
use crate::oci::{ContainerStdio, OciRuntime, RuncCli};
use crate::sandbox::write_atomic;

pub const CONFIG_FILE: &str = "shim.json";
pub const STATUS_FILE: &str = "status.json";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const INIT_PID_FILE: &str = "init.pid";
pub const SHIM_LOG_FILE: &str = "shim.log";

/// How long the shim waits for the stdio pipes to close after the
/// container's init exited (a daemonized grandchild may hold them).
pub const IO_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the shim is to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    /// Bundle directory (config.json, rootfs); also the shim's state dir.
    pub bundle: PathBuf,
    pub runtime: RuncCli,
    /// CRI log file (`.../container.log`).
    pub log_path: PathBuf,
    /// Rotate past this size (0: never).
    pub log_max_size: u64,
    /// Files kept, the live one included.
    pub log_max_files: usize,
    /// Give the container a stdin pipe fed from the FIFO
    /// [`STDIN_FIFO`] in the bundle (attach); closed after the first
    /// writer leaves with `stdin_once`.
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    /// The container has a terminal: its output is the pty master's (all
    /// stdout), input goes to the master, and [`RESIZE_FIFO`] takes
    /// `"<cols> <rows>\n"` window sizes.
    #[serde(default)]
    pub tty: bool,
}

/// The FIFO in the bundle that takes a tty container's window sizes.
pub const RESIZE_FIFO: &str = "resize.fifo";

/// The FIFO in the bundle that feeds a `stdin: true` container's stdin.
pub const STDIN_FIFO: &str = "stdin.fifo";

/// Lifecycle state recorded by the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShimState {
    /// `create` succeeded; the container runs once started.
    Created,
    /// The container's init exited.
    Exited,
    /// `create` failed.
    Failed,
}

/// `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub state: ShimState,
    pub shim_pid: i32,
    /// The container's init process (host PID).
    pub pid: i32,
    pub created_at: DateTime<Utc>,
    /// Exit code; 128+N when killed by signal N.
    pub exit_code: Option<i32>,
    /// The signal that killed init, if any.
    pub signal: Option<i32>,
    pub finished_at: Option<DateTime<Utc>>,
    pub oom_killed: bool,
    /// Error from `create`, or other trouble.
    pub message: Option<String>,
}

impl ContainerStatus {
    /// Kubernetes' terminated reason.
    pub fn reason(&self) -> Option<&'static str> {
        match self.state {
            ShimState::Created => None,
            ShimState::Failed => Some("StartError"),
            ShimState::Exited if self.oom_killed => Some("OOMKilled"),
            ShimState::Exited if self.exit_code == Some(0) => Some("Completed"),
            ShimState::Exited => Some("Error"),
        }
    }
}

/// How to run the shim executable: `program args... <bundle>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    /// Arguments before the bundle (e.g. the hidden subcommand).
    pub args: Vec<OsString>,
}

impl ShimCommand {
    /// The running binary re-executed with `subcommand`.
    pub fn current_exe(subcommand: &str) -> Result<ShimCommand> {
        Ok(ShimCommand {
            program: std::env::current_exe().ctx(|| "current_exe".into())?,
            args: vec![subcommand.into()],
        })
    }
}

/// Make this process a child subreaper, so orphaned shims are re-parented
/// to it and [`ShimHandle::reap`] can collect them (matters where PID 1
/// does not reap orphans). Call once at agent start-up.
pub fn set_child_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(Error::Io {
            context: "prctl(PR_SET_CHILD_SUBREAPER)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The agent's handle on a container's shim (state lives in files, so a
/// handle can be re-made after an agent restart with [`ShimHandle::open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimHandle {
    pub id: String,
    pub bundle: PathBuf,
}

/// Start a shim for `cfg` (whose bundle holds config.json and the mounted
/// rootfs); returns once the container is created (or creation failed).
pub fn spawn_shim(cmd: &ShimCommand, cfg: &ShimConfig) -> Result<ShimHandle> {
    write_atomic(
        &cfg.bundle.join(CONFIG_FILE),
        &serde_json::to_vec_pretty(cfg)?,
    )?;
    let _ = std::fs::remove_file(cfg.bundle.join(STATUS_FILE));
    let out = Command::new(&cmd.program)
        .args(&cmd.args)
        .arg(&cfg.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Shim(format!("exec {}: {e}", cmd.program.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let handle = ShimHandle {
        id: cfg.id.clone(),
        bundle: cfg.bundle.clone(),
    };
    match stdout.lines().next() {
        Some(l) if l.starts_with("ok") => Ok(handle),
        Some(l) => Err(Error::Shim(l.trim_start_matches("error: ").to_string())),
        None => Err(Error::Shim(format!(
            "shim exited ({}) without a report: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised command name.
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl ShimHandle {
    /// Re-attach to the shim of the container whose bundle is `bundle`.
    pub fn open(bundle: &Path) -> Result<ShimHandle> {
        let cfg: ShimConfig = serde_json::from_slice(
            &std::fs::read(bundle.join(CONFIG_FILE))
                .ctx(|| format!("read {}", bundle.join(CONFIG_FILE).display()))?,
        )?;
        Ok(ShimHandle {
            id: cfg.id,
            bundle: bundle.to_path_buf(),
        })
    }

    /// The status the shim recorded.
    pub fn status(&self) -> Result<ContainerStatus> {
        let p = self.bundle.join(STATUS_FILE);
        Ok(serde_json::from_slice(
            &std::fs::read(&p).ctx(|| format!("read {}", p.display()))?,
        )?)
    }

    /// The shim's PID (from `shim.pid`).
    pub fn shim_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.bundle.join(SHIM_PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Is the shim process still running?
    pub fn shim_alive(&self) -> bool {
        self.shim_pid().map(pid_alive).unwrap_or(false)
    }

    /// Collect the shim's exit status if it is our child (directly or as
    /// subreaper); harmless otherwise.
    pub fn reap(&self) {
        if let Some(pid) = self.shim_pid() {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }

    /// Wait up to `timeout` for the container to exit. `Ok(None)` if it is
    /// still running then; an error if the shim died without recording an
    /// exit.
    pub fn wait(&self, timeout: Duration) -> Result<Option<ContainerStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(st) = self.status() {
                if st.state != ShimState::Created {
                    self.reap();
                    return Ok(Some(st));
                }
            }
            if !self.shim_alive() {
                self.reap();
                // It may have written the status just before exiting.
                if let Ok(st) = self.status() {
                    if st.state != ShimState::Created {
                        return Ok(Some(st));
                    }
                }
                return Err(Error::Shim(format!("shim of {} is gone", self.id)));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kill the shim process (cleanup; the container should be dead).
    pub fn kill_shim(&self) {
        if let Some(pid) = self.shim_pid() {
            if pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let deadline = Instant::now() + Duration::from_secs(2);
                while pid_alive(pid) && Instant::now() < deadline {
                    self.reap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            self.reap();
        }
    }
}

/// Graceful stop as the kubelet does it: SIGTERM, wait up to `grace`, then
/// SIGKILL. Returns the final status.
pub fn stop_container(
    runtime: &dyn OciRuntime,
    handle: &ShimHandle,
    grace: Duration,
) -> Result<ContainerStatus> {
    if let Some(st) = handle.wait(Duration::ZERO)? {
        return Ok(st);
    }
    if grace > Duration::ZERO {
        if let Err(e) = runtime.kill(&handle.id, libc::SIGTERM, false) {
            tracing::debug!(id = %handle.id, "SIGTERM: {e}");
        }
        if let Some(st) = handle.wait(grace)? {
            return Ok(st);
        }
    }
    if let Err(e) = runtime.kill(&handle.id, libc::SIGKILL, false) {
        tracing::debug!(id = %handle.id, "SIGKILL: {e}");
    }
    handle
        .wait(Duration::from_secs(10))?
        .ok_or_else(|| Error::Timeout(format!("container {} did not die after SIGKILL", handle.id)))
}

// ---------------------------------------------------------------------------
// The shim process.

/// Entry point of the shim process: `args` are the arguments after the
/// hidden subcommand, i.e. `[<bundle dir>]`. Must be called before the
/// process starts any thread (it forks). Never returns.
pub fn shim_main(args: Vec<OsString>) -> ! {
    let Some(bundle) = args.last().map(PathBuf::from) else {
        eprintln!("usage: shim <bundle>");
        std::process::exit(2);
    };
    let cfg: ShimConfig = match std::fs::read(bundle.join(CONFIG_FILE))
        .map_err(|e| e.to_string())
        .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            println!("error: read shim config: {e}");
            std::process::exit(1);
        }
    };
    // Detach: the first process exits, the child carries on in its own
    // session.
    // SAFETY: single-threaded at this point (documented requirement).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            // SAFETY: plain exit without running atexit handlers twice.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            println!("error: fork: {e}");
            std::process::exit(1);
        }
    }
    let _ = nix::unistd::setsid();
    // Our stderr goes to shim.log from now on.
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(bundle.join(SHIM_LOG_FILE))
    {
        dup_onto(f.as_raw_fd(), 2);
    }
    let code = match run_shim(&cfg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shim {}: {e}", cfg.id);
            1
        }
    };
    std::process::exit(code)
}

fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    // Close our end of the agent's pipe: it reads to EOF.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        dup_onto(null.as_raw_fd(), 1);
    }
}

fn dup_onto(fd: i32, target: i32) {
    // SAFETY: dup2 on descriptors we own; `target` is a standard stream.
    unsafe {
        libc::dup2(fd, target);
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())
}

fn run_shim(cfg: &ShimConfig) -> Result<()> {
    set_child_subreaper()?;
    let shim_pid = std::process::id() as i32;
    write_atomic(
        &cfg.bundle.join(SHIM_PID_FILE),
        shim_pid.to_string().as_bytes(),
    )?;
    let created_at = Utc::now();
    let mut status = ContainerStatus {
        id: cfg.id.clone(),
        state: ShimState::Created,
        shim_pid,
        pid: 0,
        created_at,
        exit_code: None,
        signal: None,
        finished_at: None,
        oom_killed: false,
        message: None,
    };
    let save = |st: &ContainerStatus| -> Result<()> {
        write_atomic(
            &cfg.bundle.join(STATUS_FILE),
            &serde_json::to_vec_pretty(st)?,
        )
    };

    let writer = match CriLogWriter::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files) {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            fail(cfg, &mut status, &e.to_string(), &save);
            return Err(e);
        }
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let pid_file = cfg.bundle.join(INIT_PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    // A tty: the runtime sends the pty master over a console socket (a
    // short path: sun_path holds 108 bytes, bundle paths can be longer).
    let console = if cfg.tty {
        let path = std::env::temp_dir().join(format!("bosun-console-{shim_pid}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .ctx(|| format!("bind {}", path.display()))?;
        Some((path, listener))
    } else {
        None
    };
    let stdin = if cfg.stdin && !cfg.tty {
        let (r, w) = pipe()?;
        let fifo = cfg.bundle.join(STDIN_FIFO);
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .ctx(|| format!("mkfifo {}", fifo.display()))?;
        let once = cfg.stdin_once;
        std::thread::spawn(move || pump_stdin(&fifo, w, once));
        Some(r)
    } else {
        None
    };
    let stdio = ContainerStdio {
        stdin,
        stdout: Some(out_w),
        stderr: Some(err_w),
        console_socket: console.as_ref().map(|(p, _)| p.clone()),
    };
    let created = cfg.runtime.create(&cfg.id, &cfg.bundle, &pid_file, stdio);
    let master = match (&created, console) {
        (Ok(()), Some((path, listener))) => {
            let m = receive_console(&listener);
            let _ = std::fs::remove_file(&path);
            match m {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = cfg.runtime.delete(&cfg.id, true);
                    fail(cfg, &mut status, &e.to_string(), &save);
                    return Err(e);
                }
            }
        }
        (_, Some((path, _))) => {
            let _ = std::fs::remove_file(&path);
            None
        }
        _ => None,
    };
    if let Err(e) = created {
        let _ = cfg.runtime.delete(&cfg.id, true);
        fail(cfg, &mut status, &e.to_string(), &save);
        return Err(e);
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    status.pid = pid;

    // Pump the pipes into the CRI log.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
        let writer = writer.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(fd);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut w) = writer.lock() {
                            if let Err(e) = w.write(stream, &buf[..n]) {
                                eprintln!("log write: {e}");
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if let Ok(mut w) = writer.lock() {
                let _ = w.finish(stream);
            }
            let _ = done.send(());
        });
    }
    let mut streams = 2;
    if let Some(master) = master {
        streams += 1;
        if let Err(e) = start_tty(cfg, master, writer.clone(), done_tx.clone()) {
            eprintln!("tty set-up: {e}");
        }
    }
    drop(done_tx);

    save(&status)?;
    report(&format!("ok {pid}"));

    // Reap everything re-parented to us until the container's init exits.
    let (exit_code, signal) = wait_for_init(pid);
    let finished_at = Utc::now();

    // Drain the pipes (bounded).
    let deadline = Instant::now() + IO_DRAIN_TIMEOUT;
    for _ in 0..streams {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            eprintln!("stdio still open {IO_DRAIN_TIMEOUT:?} after exit; not waiting");
            break;
        }
    }
    if let Ok(mut w) = writer.lock() {
        let _ = w.finish(Stream::Stdout);
        let _ = w.finish(Stream::Stderr);
    }

    status.oom_killed = container_oom_killed(&cfg.bundle);
    status.state = ShimState::Exited;
    status.exit_code = Some(exit_code);
    status.signal = signal;
    status.finished_at = Some(finished_at);
    save(&status)
}

/// The pty master the runtime sends over the console socket (it has
/// connected and sent it before `create` returned).
fn receive_console(listener: &std::os::unix::net::UnixListener) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{FromRawFd, RawFd};
    listener
        .set_nonblocking(true)
        .ctx(|| "console socket".into())?;
    let (conn, _) = listener
        .accept()
        .ctx(|| "no console from the runtime".into())?;
    let mut buf = [0u8; 1024];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .ctx(|| "receive the console".into())?;
    for c in msg.cmsgs().ctx(|| "console message".into())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave us a new descriptor we now own.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Shim("the runtime sent no console descriptor".into()))
}

/// Pump the pty master into the log (each chunk flushed at once, partial
/// lines as `P` records, so prompts show), the stdin FIFO into the master,
/// and the resize FIFO into TIOCSWINSZ.
fn start_tty(
    cfg: &ShimConfig,
    master: OwnedFd,
    writer: Arc<Mutex<CriLogWriter>>,
    done: mpsc::Sender<()>,
) -> Result<()> {
    let dup = |m: &OwnedFd| m.try_clone().ctx(|| "dup console".into());
    if cfg.stdin {
        let fifo = cfg.bundle.join(STDIN_FIFO);
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .ctx(|| format!("mkfifo {}", fifo.display()))?;
        let w = dup(&master)?;
        let once = cfg.stdin_once;
        std::thread::spawn(move || pump_stdin(&fifo, w, once));
    }
    let fifo = cfg.bundle.join(RESIZE_FIFO);
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .ctx(|| format!("mkfifo {}", fifo.display()))?;
    let m = dup(&master)?;
    std::thread::spawn(move || loop {
        let Ok(f) = std::fs::File::open(&fifo) else {
            return;
        };
        for line in std::io::BufRead::lines(std::io::BufReader::new(f)).map_while(|l| l.ok()) {
            let mut it = line.split_whitespace().map(|v| v.parse::<u16>());
            if let (Some(Ok(cols)), Some(Ok(rows))) = (it.next(), it.next()) {
                let ws = libc::winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
                unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) };
            }
        }
    });
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Ok(mut w) = writer.lock() {
                        let _ = w.write(Stream::Stdout, &buf[..n]);
                        let _ = w.flush_partial(Stream::Stdout);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: the container closed its terminal (it exited).
                Err(_) => break,
            }
        }
        if let Ok(mut w) = writer.lock() {
            let _ = w.finish(Stream::Stdout);
        }
        let _ = done.send(());
    });
    Ok(())
}

/// Copy what attach sessions write into the FIFO to the container's
/// stdin. Opening the FIFO for reading blocks until a writer comes, and a
/// read returns EOF once every writer left: then the next session is
/// awaited, or with `once` the container's stdin is closed (upstream's
/// stdinOnce). Holding `w` otherwise keeps the container's stdin open
/// with nobody attached, as with the kubelet.
fn pump_stdin(fifo: &Path, w: OwnedFd, once: bool) {
    let mut w = std::fs::File::from(w);
    loop {
        let Ok(mut r) = std::fs::File::open(fifo) else {
            return;
        };
        if std::io::copy(&mut r, &mut w).is_err() {
            // The container closed its stdin (or exited).
            return;
        }
        if once {
            return;
        }
    }
}

fn fail(
    cfg: &ShimConfig,
    status: &mut ContainerStatus,
    msg: &str,
    save: &dyn Fn(&ContainerStatus) -> Result<()>,
) {
    status.state = ShimState::Failed;
    status.message = Some(msg.to_string());
    status.finished_at = Some(Utc::now());
    status.exit_code = Some(128);
    let _ = save(status);
    eprintln!("create {}: {msg}", cfg.id);
    report(&format!("error: {msg}"));
}

/// Reap children until `pid` exits; returns (exit code, signal).
fn wait_for_init(pid: i32) -> (i32, Option<i32>) {
    if pid <= 0 {
        return (255, None);
    }
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return (128 + sig as i32, Some(sig as i32))
            }
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(nix::Error::ECHILD) => {
                // Not our child (no subreaper re-parenting): poll.
                while pid_alive(pid) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return (255, None);
            }
            Err(_) => return (255, None),
        }
    }
}

/// Did the OOM killer fire in the container's cgroup (from config.json's
/// `linux.cgroupsPath`)?
fn container_oom_killed(bundle: &Path) -> bool {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        return false;
    };
    let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else {
        return false;
    };
    let path = path.to_string_lossy().into_owned();
    match cgroups::detect().and_then(|cg| cg.oom_kills(&path)) {
        Ok(n) => n > 0,
        Err(e) => {
            eprintln!("oom check {path}: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: ShimState, code: Option<i32>, oom: bool) -> ContainerStatus {
        ContainerStatus {
            id: "c".into(),
            state,
            shim_pid: 1,
            pid: 2,
            created_at: Utc::now(),
            exit_code: code,
            signal: None,
            finished_at: None,
            oom_killed: oom,
            message: None,
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(status(ShimState::Created, None, false).reason(), None);
        assert_eq!(
            status(ShimState::Exited, Some(0), false).reason(),
            Some("Completed")
        );
        assert_eq!(
            status(ShimState::Exited, Some(3), false).reason(),
            Some("Error")
        );
        assert_eq!(
            status(ShimState::Exited, Some(137), true).reason(),
            Some("OOMKilled")
        );
        assert_eq!(
            status(ShimState::Failed, Some(128), false).reason(),
            Some("StartError")
        );
    }

    #[test]
    fn status_json_roundtrip() {
        let s = status(ShimState::Exited, Some(3), false);
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.contains("\"state\":\"exited\""));
        assert_eq!(serde_json::from_str::<ContainerStatus>(&j).unwrap(), s);
    }

    #[test]
    fn liveness_of_pids() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
        assert!(!pid_alive(i32::MAX));
    }

    #[test]
    fn handle_without_shim() {
        let dir = tempfile::tempdir().unwrap();
        let h = ShimHandle {
            id: "x".into(),
            bundle: dir.path().to_path_buf(),
        };
        assert!(h.shim_pid().is_none());
        assert!(!h.shim_alive());
        assert!(matches!(
            h.wait(Duration::from_millis(10)),
            Err(Error::Shim(_))
        ));
        // A recorded exit is returned even with the shim gone.
        write_atomic(
            &dir.path().join(STATUS_FILE),
            &serde_json::to_vec(&status(ShimState::Exited, Some(1), false)).unwrap(),
        )
        .unwrap();
        assert_eq!(h.wait(Duration::ZERO).unwrap().unwrap().exit_code, Some(1));
        h.kill_shim();
    }

    #[test]
    fn missing_shim_binary() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ShimConfig {
            id: "x".into(),
            bundle: dir.path().to_path_buf(),
            runtime: RuncCli::new("runc", "/tmp/none"),
            log_path: dir.path().join("c.log"),
            log_max_size: 0,
            log_max_files: 1,
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        let cmd = ShimCommand {
            program: "/nonexistent/shim".into(),
            args: vec![],
        };
        assert!(matches!(spawn_shim(&cmd, &cfg), Err(Error::Shim(_))));
    }
}
