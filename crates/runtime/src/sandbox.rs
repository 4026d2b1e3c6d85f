//! Pod sandboxes: the network, IPC and UTS namespaces a pod's containers
//! share, with no pause process and no image.
//!
//! A short-lived thread `unshare`s new network/IPC/UTS namespaces (these
//! are per-thread), sets the hostname to the pod name, and bind-mounts
//! `/proc/thread-self/ns/{net,ipc,uts}` onto files in the sandbox
//! directory; the bind mounts keep the namespaces alive after the thread
//! exits (as `ip netns add` and CRI-O's pinns do). Containers join them by
//! path; a CNI plug-in gets [`PodSandbox::netns`] as `CNI_NETNS`. A tmpfs at
//! `<dir>/shm` is the pod's shared `/dev/shm`.

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::mount::Mounter;
use crate::spec::SandboxContext;

/// Size of the pod's shared /dev/shm (containerd's default, 64 MiB).
pub const SHM_SIZE: &str = "size=65536k,mode=1777";

/// Which namespaces the pod shares with the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxOptions {
    pub host_network: bool,
    pub host_ipc: bool,
}

/// A pod sandbox on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandbox {
    pub id: String,
    pub dir: PathBuf,
    pub hostname: String,
    /// `None`: the host's namespace.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    /// The pod's cgroup (set by the caller that created it).
    #[serde(default)]
    pub cgroup_parent: String,
}

const META: &str = "sandbox.json";

impl PodSandbox {
    /// Create the sandbox's namespaces under `dir` (created if missing).
    pub fn create(
        mounter: &dyn Mounter,
        id: &str,
        dir: &Path,
        hostname: &str,
        opts: SandboxOptions,
    ) -> Result<PodSandbox> {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        let mut sb = PodSandbox {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            hostname: hostname.to_string(),
            netns: (!opts.host_network).then(|| dir.join("netns")),
            ipcns: (!opts.host_ipc).then(|| dir.join("ipcns")),
            // Like the kubelet: hostNetwork pods use the host's UTS.
            utsns: (!opts.host_network).then(|| dir.join("utsns")),
            shm: None,
            cgroup_parent: String::new(),
        };
        // Record first so a failed create can be cleaned up by destroy().
        sb.save()?;
        let result = sb.pin_namespaces(mounter).and_then(|_| {
            if !opts.host_ipc {
                let shm = dir.join("shm");
                std::fs::create_dir_all(&shm).ctx(|| format!("create {}", shm.display()))?;
                mounter.mount_tmpfs(&shm, SHM_SIZE)?;
                sb.shm = Some(shm);
            }
            sb.save()
        });
        if let Err(e) = result {
            let _ = sb.destroy(mounter);
            return Err(e);
        }
        Ok(sb)
    }

    fn pin_namespaces(&self, mounter: &dyn Mounter) -> Result<()> {
        let mut flags = CloneFlags::empty();
        let mut pins: Vec<(&str, PathBuf)> = Vec::new();
        if let Some(p) = &self.netns {
            flags |= CloneFlags::CLONE_NEWNET;
            pins.push(("net", p.clone()));
        }
        if let Some(p) = &self.ipcns {
            flags |= CloneFlags::CLONE_NEWIPC;
            pins.push(("ipc", p.clone()));
        }
        if let Some(p) = &self.utsns {
            flags |= CloneFlags::CLONE_NEWUTS;
            pins.push(("uts", p.clone()));
        }
        if pins.is_empty() {
            return Ok(());
        }
        for (_, target) in &pins {
            std::fs::File::create(target).ctx(|| format!("create {}", target.display()))?;
        }
        let hostname = self.hostname.clone();
        let set_hostname = self.utsns.is_some();
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                // This thread alone moves to the new namespaces and ends
                // right after: the rest of the process is untouched.
                nix::sched::unshare(flags).ctx(|| "unshare".into())?;
                if flags.contains(CloneFlags::CLONE_NEWNET) {
                    crate::netns::set_loopback_up()?;
                }
                if set_hostname && !hostname.is_empty() {
                    nix::unistd::sethostname(&hostname)
                        .ctx(|| format!("sethostname {hostname}"))?;
                }
                for (ns, target) in &pins {
                    mounter.bind(&Path::new("/proc/thread-self/ns").join(ns), target)?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| Error::Shim("namespace thread panicked".into()))?
        })
    }

    /// Persist the sandbox record (`sandbox.json`).
    pub fn save(&self) -> Result<()> {
        let p = self.dir.join(META);
        write_atomic(&p, &serde_json::to_vec_pretty(self)?)
    }

    /// Re-attach to a sandbox after an agent restart.
    pub fn load(dir: &Path) -> Result<PodSandbox> {
        let p = dir.join(META);
        let data = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
        Ok(serde_json::from_slice(&data)?)
    }

    /// The sandbox half of a container's [`SandboxContext`].
    pub fn context(&self, cgroups_path: &str) -> SandboxContext {
        SandboxContext {
            hostname: self.hostname.clone(),
            netns: self.netns.clone(),
            ipcns: self.ipcns.clone(),
            utsns: self.utsns.clone(),
            shm: self.shm.clone(),
            cgroups_path: cgroups_path.to_string(),
        }
    }

    /// Unmount the namespace files and shm, remove the directory. Safe to
    /// call again, and on a half-created sandbox.
    pub fn destroy(&self, mounter: &dyn Mounter) -> Result<()> {
        let mut first_err = None;
        let targets = [
            self.netns.clone(),
            self.ipcns.clone(),
            self.utsns.clone(),
            Some(self.dir.join("shm")),
        ];
        for t in targets.into_iter().flatten() {
            if let Err(e) = mounter.unmount(&t) {
                first_err.get_or_insert(e);
            }
        }
        if first_err.is_none() {
            match std::fs::remove_dir_all(&self.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(Error::Io {
                        context: format!("remove {}", self.dir.display()),
                        source: e,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Write `data` to `path` atomically (temp file in the same directory,
/// fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    f.write_all(data)
        .ctx(|| format!("write {}", tmp.display()))?;
    f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).ctx(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_from_sandbox() {
        let sb = PodSandbox {
            id: "s".into(),
            dir: "/run/sb".into(),
            hostname: "pod".into(),
            netns: Some("/run/sb/netns".into()),
            ipcns: None,
            utsns: Some("/run/sb/utsns".into()),
            shm: None,
            cgroup_parent: String::new(),
        };
        let c = sb.context("/kubepods/podx/c");
        assert_eq!(c.netns, sb.netns);
        assert_eq!(c.ipcns, None);
        assert_eq!(c.cgroups_path, "/kubepods/podx/c");
    }

    #[test]
    fn atomic_write_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let sb = PodSandbox {
            id: "s".into(),
            dir: dir.path().to_path_buf(),
            hostname: "pod".into(),
            netns: None,
            ipcns: None,
            utsns: None,
            shm: None,
            cgroup_parent: String::new(),
        };
        sb.save().unwrap();
        assert_eq!(PodSandbox::load(dir.path()).unwrap(), sb);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp files left: {names:?}");
    }
}
