//! `exec`: runs `runc exec` in the container and streams its stdio over
//! the websocket `v5.channel.k8s.io`/`v4.channel.k8s.io` protocols
//! (channel byte per message; 255 = close) or SPDY/3.1 `v4.channel.k8s.io`
//! (one stream per stdio plus error and resize). The final Status goes on
//! the error channel; a non-zero exit is `NonZeroExitCode` with the code
//! as cause so kubectl exits with it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::exec_stream::{self, ExecOptions};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Request;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, Session};
use super::{text, ws, Body};
use crate::agent::Agent;
use http::Response;

/// Output of the process.
#[derive(Debug)]
pub enum Out {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// The process's side of a stream protocol.
pub struct Io {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
    pub out: mpsc::Sender<Out>,
    /// Fires when the client went away.
    pub gone: oneshot::Receiver<()>,
}

/// What a stream session runs: a new process, or the container's own
/// output (attach).
pub enum Job {
    Exec(exec_stream::ExecCommand),
    Attach(AttachSource),
}

/// The live log of a running container instance.
pub struct AttachSource {
    pub log: PathBuf,
    /// The next instance's log: its appearance means this one stopped.
    pub next: PathBuf,
    pub shim: bosun_runtime::ShimHandle,
}

const WS_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const SPDY_PROTOCOLS: [&str; 1] = ["v4.channel.k8s.io"];

fn opts_from_query(q: &[(String, String)]) -> (Vec<String>, ExecOptions) {
    let flag = |k: &str| q.iter().any(|(kk, v)| kk == k && (v == "true" || v == "1"));
    let argv = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let tty = flag("tty");
    (
        argv,
        ExecOptions {
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            // A terminal merges stderr into stdout.
            stderr: flag("stderr") && !tty,
            tty,
        },
    )
}

pub async fn exec(
    agent: Arc<Agent>,
    req: Request<Incoming>,
    pod: &Value,
    container: &str,
) -> Response<Body> {
    let (argv, opts) = opts_from_query(&super::query_pairs(req.uri().query()));
    if argv.is_empty() {
        return text(
            400,
            "you must specify at least one command for the container",
        );
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return text(
            400,
            "you must specify at least one of stdin, stdout, stderr",
        );
    }
    let Some(id) = super::running_container_id(pod, container) else {
        return not_running(pod, container);
    };
    let cmd = match exec_stream::exec_command(
        &agent.rt_for_container(&id).config.runtime,
        &id,
        &argv,
        &opts,
    ) {
        Ok(c) => c,
        Err(e) => return text(500, e.to_string()),
    };
    upgrade(req, Job::Exec(cmd), argv, opts)
}

fn not_running(pod: &Value, container: &str) -> Response<Body> {
    text(
        400,
        format!(
            "container {container} is not valid for pod {} or is not running",
            pod["metadata"]["name"].as_str().unwrap_or("")
        ),
    )
}

/// `attach`: the container's output from now until it stops, and the
/// client's input into its stdin when the container has `stdin: true`
/// (through the shim's FIFO); with `tty: true` the terminal's output and
/// window size (resize messages go to the shim's resize FIFO).
pub async fn attach(
    agent: Arc<Agent>,
    req: Request<Incoming>,
    pod: &Value,
    container: &str,
) -> Response<Body> {
    let (_, mut opts) = opts_from_query(&super::query_pairs(req.uri().query()));
    let has_tty = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == container && c["tty"] == true);
    // Without a terminal of its own the container's output is plain.
    if opts.tty && !has_tty {
        opts.tty = false;
        opts.stderr = true;
    }
    let Some(id) = super::running_container_id(pod, container) else {
        return not_running(pod, container);
    };
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let dir = agent
        .dirs
        .logs(ns, name, super::pod_uid(pod))
        .join(container);
    let Some(n) = super::logs::instances(&dir).last().copied() else {
        return not_running(pod, container);
    };
    let src = AttachSource {
        log: dir.join(format!("{n}.log")),
        next: dir.join(format!("{}.log", n + 1)),
        shim: bosun_runtime::ShimHandle {
            bundle: agent.rt_for_container(&id).bundle_dir(&id),
            id,
        },
    };
    upgrade(req, Job::Attach(src), vec![], opts)
}

/// Answer the upgrade (websocket or SPDY) and serve `job` on it.
fn upgrade(
    mut req: Request<Incoming>,
    job: Job,
    argv: Vec<String>,
    opts: ExecOptions,
) -> Response<Body> {
    let on = hyper::upgrade::on(&mut req);
    if ws::is_websocket(&req) {
        let offered = ws::ws_protocols(&req);
        let Some(proto) = WS_PROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
        else {
            return text(
                400,
                format!("unsupported websocket subprotocols {offered:?}"),
            );
        };
        let Some(resp) = ws::ws_accept(&req, proto) else {
            return text(400, "bad websocket handshake");
        };
        tokio::spawn(async move {
            if let Some(w) = ws::websocket(on).await {
                serve_ws(w, job, argv, opts).await;
            }
        });
        return resp;
    }
    if ws::is_spdy(&req) {
        let offered = ws::spdy_protocols(&req);
        let Some(proto) = SPDY_PROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
        else {
            return text(403, format!("unsupported stream protocols {offered:?}"));
        };
        tokio::spawn(async move {
            match on.await {
                Ok(u) => serve_spdy(hyper_util::rt::TokioIo::new(u), job, argv, opts).await,
                Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
            }
        });
        return ws::spdy_accept(proto);
    }
    text(400, "upgrade request required")
}

async fn run_job(job: Job, opts: &ExecOptions, io: Io) -> Result<i32, String> {
    match job {
        Job::Exec(cmd) => run(cmd, opts, io).await,
        Job::Attach(src) => run_attach(src, io).await,
    }
}

async fn run_attach(src: AttachSource, io: Io) -> Result<i32, String> {
    let Io {
        stdin,
        resize,
        out,
        mut gone,
    } = io;
    if let Some(mut rx) = resize {
        let fifo = src.shim.bundle.join(bosun_runtime::shim::RESIZE_FIFO);
        tokio::spawn(async move {
            // Only tty containers have the FIFO; otherwise sizes are dropped.
            let mut tx = tokio::net::unix::pipe::OpenOptions::new()
                .open_sender(&fifo)
                .ok();
            while let Some((w, h)) = rx.recv().await {
                if let Some(t) = tx.as_mut() {
                    if t.write_all(format!("{w} {h}\n").as_bytes()).await.is_err() {
                        tx = None;
                    }
                }
            }
        });
    }
    if let Some(mut rx) = stdin {
        let fifo = src.shim.bundle.join(bosun_runtime::shim::STDIN_FIFO);
        tokio::spawn(async move {
            // No reader (no `stdin: true`, or a stdinOnce stdin already
            // used and closed): input goes nowhere, as with the kubelet.
            let mut tx = tokio::net::unix::pipe::OpenOptions::new()
                .open_sender(&fifo)
                .ok();
            while let Some(b) = rx.recv().await {
                if let Some(t) = tx.as_mut() {
                    if t.write_all(&b).await.is_err() {
                        tx = None;
                    }
                }
            }
            // The client's stdin ended: closing our end lets the shim
            // see EOF (and close the container's stdin with stdinOnce).
        });
    }
    let start = std::fs::metadata(&src.log).map(|m| m.len()).unwrap_or(0);
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    let mut follower = tokio::task::spawn_blocking(move || {
        let stopped = || {
            q.load(Ordering::Relaxed)
                || src.next.exists()
                || !src.shim.bundle.exists()
                || !src.shim.shim_alive()
        };
        super::logs::follow_lines(&src.log, start, &stopped, &mut |lines| {
            for l in lines {
                let Some(rec) = bosun_runtime::logs::parse_record(l) else {
                    continue;
                };
                let mut b = rec.content.into_bytes();
                if !rec.partial {
                    b.push(b'\n');
                }
                let o = match rec.stream {
                    bosun_runtime::logs::Stream::Stdout => Out::Stdout(Bytes::from(b)),
                    bosun_runtime::logs::Stream::Stderr => Out::Stderr(Bytes::from(b)),
                };
                if out.blocking_send(o).is_err() {
                    return false;
                }
            }
            !out.is_closed()
        });
    });
    tokio::select! {
        _ = &mut follower => {}
        _ = &mut gone => {
            quit.store(true, Ordering::Relaxed);
            let _ = follower.await;
        }
    }
    Ok(0)
}

/// The final Status of an exec.
pub fn exit_status(argv: &[String], code: Result<i32, String>) -> Value {
    match code {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(c) => super::status_failure(
            &format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {c}",
                argv.join(" ")
            ),
            "NonZeroExitCode",
            Some(c),
        ),
        Err(e) => super::status_failure(&e, "InternalError", None),
    }
}

/// Parse the resize messages (JSON objects, possibly several back to back).
pub fn parse_resizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    while let Some(Ok(v)) = it.next() {
        consumed = it.byte_offset();
        let w = v["Width"].as_u64().unwrap_or(0).min(u16::MAX as u64) as u16;
        let h = v["Height"].as_u64().unwrap_or(0).min(u16::MAX as u64) as u16;
        if w > 0 && h > 0 {
            out.push((w, h));
        }
    }
    buf.drain(..consumed);
    out
}

async fn serve_ws(w: ws::Ws, job: Job, argv: Vec<String>, opts: ExecOptions) {
    let (mut sink, mut stream) = w.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(4);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(16);
    let (gone_tx, gone_rx) = oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        let mut resize_buf = Vec::new();
        while let Some(Ok(m)) = stream.next().await {
            let data = match m {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, payload)) = data.split_first() else {
                continue;
            };
            match ch {
                0 => {
                    if let Some(tx) = &stdin_tx {
                        if !payload.is_empty() {
                            let _ = tx.send(Bytes::copy_from_slice(payload)).await;
                        }
                    }
                }
                4 => {
                    resize_buf.extend_from_slice(payload);
                    for r in parse_resizes(&mut resize_buf) {
                        let _ = resize_tx.try_send(r);
                    }
                }
                // v5: close of a channel; [255, 0] is stdin EOF.
                255 if payload.first() == Some(&0) => stdin_tx = None,
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let io = Io {
        stdin: opts.stdin.then_some(stdin_rx),
        resize: opts.tty.then_some(resize_rx),
        out: out_tx,
        gone: gone_rx,
    };
    let run = run_job(job, &opts, io);
    let write = async {
        while let Some(o) = out_rx.recv().await {
            let (ch, b) = match o {
                Out::Stdout(b) => (1u8, b),
                Out::Stderr(b) => (2u8, b),
            };
            let mut m = Vec::with_capacity(b.len() + 1);
            m.push(ch);
            m.extend_from_slice(&b);
            if sink.send(Message::Binary(m.into())).await.is_err() {
                // Keep draining so the process never blocks on output.
                while out_rx.recv().await.is_some() {}
                break;
            }
        }
    };
    let (code, ()) = tokio::join!(run, write);
    let status = exit_status(&argv, code);
    let mut m = vec![3u8];
    m.extend(serde_json::to_vec(&status).unwrap_or_default());
    let _ = sink.send(Message::Binary(m.into())).await;
    let _ = sink
        .send(Message::Close(Some(super::ws::normal_close())))
        .await;
    // Let the client read everything and close first, so no reset races
    // the last messages.
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
}

async fn serve_spdy<IO>(io: IO, job: Job, argv: Vec<String>, opts: ExecOptions)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut sess = Session::start(io);
    let w = sess.writer.clone();
    let mut error_id = None;
    let mut stdout_id = None;
    let mut stderr_id = None;
    let mut stdin = None;
    let mut resize = None;
    let complete = |e: &Option<u32>,
                    o: &Option<u32>,
                    er: &Option<u32>,
                    i: &Option<spdy::Stream>,
                    r: &Option<spdy::Stream>| {
        e.is_some()
            && (o.is_some() || !opts.stdout)
            && (er.is_some() || !opts.stderr)
            && (i.is_some() || !opts.stdin)
            && (r.is_some() || !opts.tty)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !complete(&error_id, &stdout_id, &stderr_id, &stdin, &resize) {
        let s = match tokio::time::timeout_at(deadline, sess.streams.recv()).await {
            Ok(Some(s)) => s,
            _ => {
                tracing::debug!("SPDY exec: streams not all opened; giving up");
                w.close().await;
                return;
            }
        };
        if w.reply(s.id).await.is_err() {
            return;
        }
        match spdy::header(&s.headers, "streamtype").unwrap_or("") {
            "error" => error_id = Some(s.id),
            "stdout" => stdout_id = Some(s.id),
            "stderr" => stderr_id = Some(s.id),
            "stdin" => stdin = Some(s),
            "resize" => resize = Some(s),
            other => tracing::debug!(streamtype = other, "SPDY exec: unexpected stream"),
        }
    }
    let Some(error_id) = error_id else { return };
    let (gone_tx, gone_rx) = oneshot::channel();
    let mut streams = std::mem::replace(&mut sess.streams, mpsc::channel(1).1);
    let watcher = tokio::spawn(async move {
        // More streams are not expected; the channel ends with the connection.
        while streams.recv().await.is_some() {}
        let _ = gone_tx.send(());
    });
    let resize_rx = resize.map(|mut s| {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(b) = s.data.recv().await {
                buf.extend_from_slice(&b);
                for r in parse_resizes(&mut buf) {
                    let _ = tx.try_send(r);
                }
            }
        });
        rx
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(16);
    let io = Io {
        stdin: stdin.map(|s| s.data),
        resize: resize_rx,
        out: out_tx,
        gone: gone_rx,
    };
    let run = run_job(job, &opts, io);
    let write = async {
        let mut ok = true;
        while let Some(o) = out_rx.recv().await {
            let (id, b) = match o {
                Out::Stdout(b) => (stdout_id, b),
                Out::Stderr(b) => (stderr_id, b),
            };
            if let (true, Some(id)) = (ok, id) {
                ok = w.data(id, b, false).await.is_ok();
            }
        }
    };
    let (code, ()) = tokio::join!(run, write);
    let status = exit_status(&argv, code);
    let _ = w
        .data(
            error_id,
            Bytes::from(serde_json::to_vec(&status).unwrap_or_default()),
            true,
        )
        .await;
    for id in [stdout_id, stderr_id].into_iter().flatten() {
        let _ = w.data(id, Bytes::new(), true).await;
    }
    w.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), watcher).await;
    drop(sess);
}

/// A pty master for async reads and writes.
struct Pty(AsyncFd<OwnedFd>);

impl Pty {
    fn new(fd: OwnedFd) -> std::io::Result<Pty> {
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        // SAFETY: we own the fd and it stays open as long as the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Pty(fd))
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut g = self.0.readable().await?;
            match g.try_io(|fd| {
                // SAFETY: read into a valid buffer.
                let n = unsafe {
                    libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let mut g = self.0.writable().await?;
            match g.try_io(|fd| {
                // SAFETY: write from a valid buffer.
                let n = unsafe {
                    libc::write(fd.get_ref().as_raw_fd(), buf.as_ptr().cast(), buf.len())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Signal the runtime process (it forwards signals to the exec'd process).
fn signal(child: &tokio::process::Child, sig: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// Run the command, wiring `io`; the exit code, or why it could not run.
pub async fn run(cmd: exec_stream::ExecCommand, opts: &ExecOptions, io: Io) -> Result<i32, String> {
    let exec_stream::ExecCommand { command, pty } = cmd;
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("starting exec: {e}"))?;
    // The slave side is in the child now; ours must close for EOF.
    drop(command);
    let Io {
        stdin,
        resize,
        out,
        mut gone,
    } = io;
    let mut pumps: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if let Some(master) = pty {
        let master = Arc::new(Pty::new(master).map_err(|e| format!("pty: {e}"))?);
        if let Some(mut rx) = resize {
            let m = master.clone();
            pumps.push(tokio::spawn(async move {
                while let Some((w, h)) = rx.recv().await {
                    let _ = exec_stream::resize(m.0.get_ref(), w, h);
                }
            }));
        }
        if let Some(mut rx) = stdin {
            let m = master.clone();
            tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if m.write_all(&b).await.is_err() {
                        break;
                    }
                }
                // End of input on a terminal is ^D.
                let _ = m.write_all(&[4]).await;
            });
        }
        let m = master.clone();
        let out2 = out.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            // EIO once every slave fd is closed.
            while let Ok(n) = m.read(&mut buf).await {
                if n == 0
                    || out2
                        .send(Out::Stdout(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        }));
    } else {
        if let (Some(mut w), Some(mut rx)) = (child.stdin.take(), stdin) {
            tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown().await;
            });
        }
        if let Some(mut r) = child.stdout.take() {
            let out2 = out.clone();
            pumps.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0
                        || out2
                            .send(Out::Stdout(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            }));
        }
        if let Some(mut r) = child.stderr.take() {
            let out2 = out.clone();
            pumps.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0
                        || out2
                            .send(Out::Stderr(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            }));
        }
    }
    drop(out);
    let _ = opts;
    let status = tokio::select! {
        s = child.wait() => s,
        _ = &mut gone => {
            // The client left: hang up, then terminate, then kill.
            signal(&child, libc::SIGHUP);
            signal(&child, libc::SIGTERM);
            match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    }
    .map_err(|e| format!("waiting for exec: {e}"))?;
    // Output still buffered in the pipes; a background process holding
    // them open must not hold the session forever.
    for p in pumps {
        let abort = p.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), p)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages() {
        let mut b = br#"{"Width":80,"Height":24}{"Width":100,"Height":4"#.to_vec();
        assert_eq!(parse_resizes(&mut b), vec![(80, 24)]);
        b.extend_from_slice(b"0}");
        assert_eq!(parse_resizes(&mut b), vec![(100, 40)]);
        assert!(b.is_empty());
    }

    #[test]
    fn query_to_options() {
        let q: Vec<(String, String)> = [
            ("command", "sh"),
            ("command", "-c"),
            ("stdin", "true"),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (argv, o) = opts_from_query(&q);
        assert_eq!(argv, ["sh", "-c"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
    }

    #[test]
    fn statuses() {
        let argv = vec!["false".to_string()];
        assert_eq!(exit_status(&argv, Ok(0))["status"], "Success");
        let s = exit_status(&argv, Ok(3));
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(
            exit_status(&argv, Err("x".into()))["reason"],
            "InternalError"
        );
    }

    #[tokio::test]
    async fn runs_a_process_with_stdin() {
        let cmd = exec_stream::ExecCommand {
            command: {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", "cat; echo err >&2; exit 3"]);
                c.stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                c
            },
            pty: None,
        };
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let (_gone_tx, gone_rx) = oneshot::channel();
        in_tx.send(Bytes::from_static(b"hello")).await.unwrap();
        drop(in_tx);
        let opts = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let io = Io {
            stdin: Some(in_rx),
            resize: None,
            out: out_tx,
            gone: gone_rx,
        };
        let collect = async {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            while let Some(x) = out_rx.recv().await {
                match x {
                    Out::Stdout(b) => o.extend_from_slice(&b),
                    Out::Stderr(b) => e.extend_from_slice(&b),
                }
            }
            (o, e)
        };
        let (code, (o, e)) = tokio::join!(run(cmd, &opts, io), collect);
        assert_eq!(code, Ok(3));
        assert_eq!(o, b"hello");
        assert_eq!(e, b"err\n");
    }
}
