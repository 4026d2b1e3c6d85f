//! Interactive exec for `kubectl exec`/`attach`: the `runc exec` command
//! line with pipes or a pseudo-terminal. The caller spawns it (usually
//! through tokio) and streams the pipes; the exit status of `runc exec` is
//! the process's.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::oci::RuncCli;

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A command ready to spawn. With a tty, `pty` is the master side and the
/// command's stdio is the slave (drop the command after spawning so the
/// slave closes and reads on the master end with EIO when it exits).
#[derive(Debug)]
pub struct ExecCommand {
    pub command: Command,
    pub pty: Option<OwnedFd>,
}

/// Build `<runtime> --root <state> exec [--tty] <id> <argv...>`.
pub fn exec_command(
    runtime: &RuncCli,
    id: &str,
    argv: &[String],
    opts: &ExecOptions,
) -> Result<ExecCommand> {
    if argv.is_empty() {
        return Err(Error::InvalidConfig("exec: empty command".into()));
    }
    let mut cmd = Command::new(&runtime.binary);
    cmd.arg("--root").arg(&runtime.root).arg("exec");
    if opts.tty {
        cmd.arg("--tty");
    }
    cmd.arg(id).args(argv);
    if !opts.tty {
        cmd.stdin(if opts.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(if opts.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stderr(if opts.stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        return Ok(ExecCommand {
            command: cmd,
            pty: None,
        });
    }
    // runc in the foreground with --tty copies between its own stdio and
    // the container's console, and follows its stdin's window size on
    // SIGWINCH: so its stdio is a pty we own and resize.
    let pty =
        nix::pty::openpty(None, None).map_err(|e| Error::InvalidConfig(format!("openpty: {e}")))?;
    if let Ok(mut t) = nix::sys::termios::tcgetattr(&pty.slave) {
        nix::sys::termios::cfmakeraw(&mut t);
        let _ = nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| Error::InvalidConfig(format!("dup pty: {e}")))
    };
    cmd.stdin(Stdio::from(dup(&pty.slave)?));
    cmd.stdout(Stdio::from(dup(&pty.slave)?));
    cmd.stderr(Stdio::from(pty.slave));
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A new session with the pty as controlling terminal, so the
            // kernel signals runc on resize.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(ExecCommand {
        command: cmd,
        pty: Some(pty.master),
    })
}

/// Set the window size of a pty master (the kernel then sends SIGWINCH to
/// the terminal's foreground process group).
pub fn resize(master: &OwnedFd, width: u16, height: u16) -> Result<()> {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) };
    if r < 0 {
        return Err(Error::InvalidConfig(format!(
            "TIOCSWINSZ: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let rt = RuncCli::new("/usr/bin/runc", "/state");
        let c = exec_command(
            &rt,
            "c1",
            &["ls".into(), "/".into()],
            &ExecOptions {
                stdout: true,
                ..Default::default()
            },
        )
        .unwrap();
        let args: Vec<_> = c.command.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(args, ["--root", "/state", "exec", "c1", "ls", "/"]);
        assert!(c.pty.is_none());
        assert!(exec_command(&rt, "c1", &[], &ExecOptions::default()).is_err());
    }

    #[test]
    fn tty_has_pty() {
        let rt = RuncCli::new("runc", "/state");
        let c = exec_command(
            &rt,
            "c1",
            &["sh".into()],
            &ExecOptions {
                tty: true,
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .unwrap();
        let args: Vec<_> = c.command.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(args, ["--root", "/state", "exec", "--tty", "c1", "sh"]);
        let m = c.pty.unwrap();
        resize(&m, 100, 40).unwrap();
    }
}
