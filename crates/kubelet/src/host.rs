//! Readings of the host the agent runs on: identity, capacity, pressure,
//! addresses, and whether the container runtime can work here.

use std::path::{Path, PathBuf};

/// The node name for this host: the hostname, lower-cased (like the
/// kubelet's `--hostname-override` default).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Number of online CPUs.
pub fn cpu_count() -> u64 {
    // SAFETY: sysconf with a constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u64
    } else {
        1
    }
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo(key: &str) -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

pub fn parse_meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        Some(match it.next() {
            Some("kB") => n * 1024,
            _ => n,
        })
    })
}

/// (total bytes, available bytes) of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; c is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// (threads in use, pid_max).
pub fn pid_usage() -> Option<(u64, u64)> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let used: u64 = loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()?;
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((used, max))
}

/// The first non-loopback local IPv4 address in `/proc/net/fib_trie`.
pub fn internal_ip() -> Option<String> {
    parse_fib_trie(&std::fs::read_to_string("/proc/net/fib_trie").ok()?)
}

/// Local addresses are the `|-- A.B.C.D` lines followed by `/32 host LOCAL`.
pub fn parse_fib_trie(text: &str) -> Option<String> {
    let mut last: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = Some(addr.trim());
        } else if t.contains("/32 host LOCAL") {
            if let Some(a) = last {
                if let Ok(ip) = a.parse::<std::net::Ipv4Addr>() {
                    if !ip.is_loopback() && !ip.is_unspecified() {
                        return Some(ip.to_string());
                    }
                }
            }
        }
    }
    None
}

/// `uname -r`.
pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    parse_os_release(&text).unwrap_or_else(|| "Linux".to_string())
}

pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Kubernetes' name of this machine's architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Find an executable by name in $PATH and the usual sbin directories
/// (or accept a path).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .iter()
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `runc --version` → `1.1.5+ds1`.
pub fn runtime_version(binary: &Path) -> Option<String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    parse_runtime_version(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_runtime_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    first
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

/// What keeps this host from running containers, each with how to fix it.
/// Empty: ready.
pub fn runtime_problems(runtime: &str) -> Vec<String> {
    let mut problems = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        problems.push(
            "the node agent is not running as root (containers need root: run bosun as root)"
                .to_string(),
        );
    }
    if find_binary(runtime).is_none() {
        let hint = match runtime {
            "runc" | "crun" => format!("install it: apt-get install -y {runtime}"),
            _ => "install it, or choose another with --container-runtime".to_string(),
        };
        problems.push(format!(
            "the OCI runtime {runtime:?} was not found in PATH ({hint})"
        ));
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        problems.push("the kernel has no overlayfs (load it: modprobe overlay)".to_string());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie() {
        let t = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n     |-- 10.0.2.15\n        /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(t).as_deref(), Some("10.0.2.15"));
        assert_eq!(parse_fib_trie("|-- 127.0.0.1\n /32 host LOCAL\n"), None);
    }

    #[test]
    fn meminfo_and_os_release() {
        let m = "MemTotal:        8000000 kB\nMemAvailable:    4000 kB\n";
        assert_eq!(parse_meminfo(m, "MemTotal"), Some(8_000_000 * 1024));
        assert_eq!(parse_meminfo(m, "Nope"), None);
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_runtime_version("runc version 1.1.5+ds1\ncommit: x\n").as_deref(),
            Some("1.1.5+ds1")
        );
        assert_eq!(
            parse_runtime_version("crun version 1.8.1\n").as_deref(),
            Some("1.8.1")
        );
    }

    #[test]
    fn readings_work_here() {
        assert!(cpu_count() >= 1);
        assert!(meminfo("MemTotal").unwrap() > 0);
        assert!(fs_space(Path::new("/")).unwrap().0 > 0);
        assert!(!hostname().is_empty());
    }
}
