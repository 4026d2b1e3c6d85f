//! Mounts: overlayfs container root filesystems and bind mounts of
//! namespace files.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

/// The mount operations the driver needs.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Mount an overlay at `target`: `lower` is top layer first.
    fn mount_overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<()>;
    /// Bind-mount `source` on `target` (which must exist).
    fn bind(&self, source: &Path, target: &Path) -> Result<()>;
    /// Mount a tmpfs at `target` with `options` (e.g. `size=64m`).
    fn mount_tmpfs(&self, target: &Path, options: &str) -> Result<()>;
    /// Unmount everything mounted at `target` (stacked mounts too);
    /// nothing mounted is not an error.
    fn unmount(&self, target: &Path) -> Result<()>;
    /// Is anything mounted at `target`?
    fn is_mounted(&self, target: &Path) -> Result<bool>;
}

/// The overlay mount options for `lower` (top first), `upper` and `work`.
pub fn overlay_options(lower: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    if lower.is_empty() {
        return Err(Error::InvalidConfig(
            "overlay needs at least one lower dir".into(),
        ));
    }
    for p in lower.iter().map(PathBuf::as_path).chain([upper, work]) {
        let s = p.to_string_lossy();
        if s.contains(',') || s.contains(':') {
            return Err(Error::InvalidConfig(format!(
                "overlay path {s:?} contains ',' or ':'"
            )));
        }
    }
    let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    ))
}

/// One entry of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                fs_type: post.first()?.to_string(),
                source: post.get(1).map(|s| unescape(s)).unwrap_or_default(),
                super_options: post.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The current process's mounts.
pub fn mountinfo() -> Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Io {
        context: "read /proc/self/mountinfo".into(),
        source: e,
    })?;
    Ok(parse_mountinfo(&text))
}

/// Mount points at or below `dir` (for leak checks and cleanup), deepest
/// first.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = mountinfo()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

/// Real mounts through mount(2).
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxMounter;

fn mount_err(target: &Path, what: &str, e: nix::Error) -> Error {
    Error::Mount {
        target: target.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

impl Mounter for LinuxMounter {
    fn mount_overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<()> {
        let options = overlay_options(lower, upper, work)?;
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| mount_err(target, "mount overlay", e))
    }

    fn bind(&self, source: &Path, target: &Path) -> Result<()> {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| mount_err(target, &format!("bind {}", source.display()), e))
    }

    fn mount_tmpfs(&self, target: &Path, options: &str) -> Result<()> {
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options),
        )
        .map_err(|e| mount_err(target, "mount tmpfs", e))
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        // Stacked mounts: unmount until nothing is left (bounded).
        for _ in 0..16 {
            if !self.is_mounted(target)? {
                return Ok(());
            }
            match nix::mount::umount2(target, MntFlags::empty()) {
                Ok(()) => {}
                Err(nix::Error::EBUSY) => {
                    // Something still uses it: detach lazily so it goes
                    // away with its last user.
                    nix::mount::umount2(target, MntFlags::MNT_DETACH)
                        .map_err(|e| mount_err(target, "umount (detach)", e))?;
                }
                Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
                Err(e) => return Err(mount_err(target, "umount", e)),
            }
        }
        Err(mount_err(target, "umount", nix::Error::EBUSY))
    }

    fn is_mounted(&self, target: &Path) -> Result<bool> {
        let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
        Ok(mountinfo()?.iter().any(|m| m.mount_point == target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_option_string() {
        let o = overlay_options(
            &["/l/top".into(), "/l/base".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        )
        .unwrap();
        assert_eq!(
            o,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(&["/a:b".into()], Path::new("/u"), Path::new("/w")).is_err());
    }

    #[test]
    fn mountinfo_parsing() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    35 22 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    40 22 0:40 / /tmp/with\\040space rw - overlay overlay rw,lowerdir=/a\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert_eq!(m[1].fs_type, "cgroup");
        assert_eq!(m[1].super_options, "rw,memory");
        assert_eq!(m[2].mount_point, PathBuf::from("/tmp/with space"));
    }

    #[test]
    fn own_mountinfo_readable() {
        assert!(mountinfo()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == Path::new("/")));
        assert!(!LinuxMounter
            .is_mounted(Path::new("/nonexistent/dir"))
            .unwrap());
        // Unmounting something not mounted is fine.
        LinuxMounter.unmount(Path::new("/nonexistent/dir")).unwrap();
    }
}
