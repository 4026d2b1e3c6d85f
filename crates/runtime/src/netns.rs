//! TCP connections from inside a pod's network namespace, for probes and
//! HTTP hooks: a pod has its own (loopback-only for now) netns, so its
//! servers are reached at 127.0.0.1 there.
//!
//! The network namespace is per thread: a dedicated short-lived thread
//! `setns`es into the sandbox's pinned netns file, creates and connects
//! the socket, and ends. A socket belongs to the namespace it was created
//! in, so the returned stream keeps talking inside the pod while the rest
//! of the process (and the caller's thread pool) never changes namespace.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::CloneFlags;

use crate::error::{Error, IoContext, Result};

/// Connect to `addr` from the network namespace pinned at `netns` (`None`:
/// this process's namespace), within `timeout`. Blocking; the stream is in
/// blocking mode (for tokio: `set_nonblocking(true)` then
/// `tokio::net::TcpStream::from_std`).
pub fn connect_tcp(netns: Option<&Path>, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let Some(netns) = netns else {
        return TcpStream::connect_timeout(&addr, timeout).ctx(|| format!("dial tcp {addr}"));
    };
    let path: PathBuf = netns.to_path_buf();
    // Not a pool thread: it must never run anything else after setns.
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || -> Result<TcpStream> {
            let f = std::fs::File::open(&path).ctx(|| format!("open {}", path.display()))?;
            nix::sched::setns(&f, CloneFlags::CLONE_NEWNET)
                .ctx(|| format!("setns {}", path.display()))?;
            TcpStream::connect_timeout(&addr, timeout).ctx(|| format!("dial tcp {addr}"))
        })
        .ctx(|| "spawn netns thread".into())?
        .join()
        .map_err(|_| Error::Shim("netns thread panicked".into()))?
}

/// Bring up the loopback interface of the calling thread's network
/// namespace (a new namespace starts with `lo` down; the CNI loopback
/// plug-in's job).
pub fn set_loopback_up() -> Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed, NUL-terminated ifreq;
    // the fd is closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Error::Io {
                context: "socket for lo".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(Error::Io {
                context: "bring up lo".into(),
                source: err,
            });
        }
    }
    Ok(())
}

/// The OS error of a failed [`connect_tcp`], for kubelet-like messages
/// (`connect: connection refused`, `i/o timeout`).
pub fn describe_connect_error(e: &Error) -> String {
    match e {
        Error::Io { context, source } => {
            let what = match source.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    "i/o timeout".to_string()
                }
                std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
                _ => format!("connect: {source}"),
            };
            format!("{context}: {what}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn host_namespace_connects() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"hi").unwrap();
        });
        let mut s = connect_tcp(None, addr, Duration::from_secs(2)).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "hi");
        t.join().unwrap();
    }

    #[test]
    fn refused_and_missing_netns() {
        // Bind then drop: nothing listens on that port any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = connect_tcp(None, addr, Duration::from_secs(2)).unwrap_err();
        assert_eq!(
            describe_connect_error(&e),
            format!("dial tcp {addr}: connect: connection refused")
        );
        let e = connect_tcp(
            Some(Path::new("/nonexistent/netns")),
            addr,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/netns"), "{e}");
    }

    /// Root only: a fresh netns has its own (down) loopback, so a host
    /// listener is not reachable from inside it.
    #[test]
    fn own_namespace_is_isolated() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("netns");
        std::fs::File::create(&pin).unwrap();
        let pinned = std::thread::scope(|s| {
            s.spawn(|| -> bool {
                if nix::sched::unshare(CloneFlags::CLONE_NEWNET).is_err() {
                    return false;
                }
                nix::mount::mount(
                    Some(Path::new("/proc/thread-self/ns/net")),
                    &pin,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .is_ok()
            })
            .join()
            .unwrap()
        });
        if !pinned {
            eprintln!("SKIP: cannot create a network namespace here");
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let r = connect_tcp(Some(&pin), addr, Duration::from_secs(1));
        // A listener inside the namespace (lo brought up) is reachable.
        let pin2 = pin.clone();
        let inner = std::thread::spawn(move || {
            let f = std::fs::File::open(&pin2).unwrap();
            nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
            set_loopback_up().unwrap();
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap();
        let inner_addr = inner.local_addr().unwrap();
        let r2 = connect_tcp(Some(&pin), inner_addr, Duration::from_secs(1));
        let r3 = connect_tcp(None, inner_addr, Duration::from_secs(1));
        drop(inner);
        let _ = nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH);
        assert!(r.is_err(), "host listener reached from a fresh netns");
        assert!(r2.is_ok(), "{r2:?}");
        assert!(r3.is_err(), "pod listener reached from the host");
        // The calling thread is still in the host namespace.
        assert!(connect_tcp(None, addr, Duration::from_secs(1)).is_ok());
    }
}
