//! Pod cgroups under QoS parents, laid out like the kubelet's cgroupfs
//! driver: `/kubepods/pod<uid>` (Guaranteed),
//! `/kubepods/burstable/pod<uid>`, `/kubepods/besteffort/pod<uid>`; a
//! container's cgroup is `<pod cgroup>/<container id>` (created by the OCI
//! runtime from `linux.cgroupsPath`).
//!
//! [`CgroupV1`] drives every mounted v1 hierarchy (this machine, hybrid);
//! [`CgroupV2`] the unified hierarchy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mount::mountinfo;
use crate::spec::{milli_cpu_to_quota, milli_cpu_to_shares, Resources, CFS_PERIOD_US};

/// Pod QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The cgroup of a QoS class under `root` (e.g. `/kubepods`).
pub fn qos_cgroup_path(root: &str, qos: QosClass) -> String {
    let root = normalize(root);
    match qos {
        QosClass::Guaranteed => root,
        QosClass::Burstable => join(&root, "burstable"),
        QosClass::BestEffort => join(&root, "besteffort"),
    }
}

/// The cgroup of a pod.
pub fn pod_cgroup_path(root: &str, qos: QosClass, pod_uid: &str) -> String {
    join(&qos_cgroup_path(root, qos), &format!("pod{pod_uid}"))
}

/// The cgroup of a container of a pod.
pub fn container_cgroup_path(pod_cgroup: &str, container_id: &str) -> String {
    join(pod_cgroup, container_id)
}

fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

fn join(a: &str, b: &str) -> String {
    normalize(&format!("{a}/{b}"))
}

/// Limits written to a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupResources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Pod-level limits from its containers' resources (kubelet
/// `ResourceConfigForPod`): shares from the sum of CPU requests; a CPU
/// quota and a memory limit only when every container has that limit.
pub fn pod_resources(containers: &[Resources], qos: QosClass) -> CgroupResources {
    if qos == QosClass::BestEffort {
        return CgroupResources {
            cpu_shares: Some(milli_cpu_to_shares(0)),
            pids_limit: containers.iter().find_map(|c| c.pids_limit),
            ..Default::default()
        };
    }
    let requests: u64 = containers.iter().filter_map(|c| c.cpu_request_milli).sum();
    let all_cpu = !containers.is_empty() && containers.iter().all(|c| c.cpu_limit_milli.is_some());
    let all_mem =
        !containers.is_empty() && containers.iter().all(|c| c.memory_limit_bytes.is_some());
    let mut r = CgroupResources {
        cpu_shares: Some(milli_cpu_to_shares(requests)),
        pids_limit: containers.iter().find_map(|c| c.pids_limit),
        ..Default::default()
    };
    if all_cpu {
        let limits: u64 = containers.iter().filter_map(|c| c.cpu_limit_milli).sum();
        r.cpu_quota = Some(milli_cpu_to_quota(limits, CFS_PERIOD_US));
        r.cpu_period = Some(CFS_PERIOD_US);
    }
    if all_mem {
        r.memory_limit = Some(containers.iter().filter_map(|c| c.memory_limit_bytes).sum());
    }
    r
}

/// cgroup v2 `cpu.weight` from v1 `cpu.shares` (the runc/kubelet formula).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.max(2) - 2) * 9999) / 262_142
}

/// Which cgroup version a driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// cgroup operations the driver needs, on logical paths like
/// `/kubepods/burstable/pod<uid>`.
pub trait Cgroups: Send + Sync + std::fmt::Debug {
    fn version(&self) -> CgroupVersion;
    /// Create `path` (and missing parents) and write `res`.
    fn create(&self, path: &str, res: &CgroupResources) -> Result<()>;
    /// Write `res` to an existing cgroup.
    fn update(&self, path: &str, res: &CgroupResources) -> Result<()>;
    /// Kill what is left in `path` and its children, then remove them all.
    /// A missing cgroup is not an error.
    fn remove(&self, path: &str) -> Result<()>;
    /// Does `path` exist (in any hierarchy)?
    fn exists(&self, path: &str) -> bool;
    /// Processes in `path` itself.
    fn procs(&self, path: &str) -> Result<Vec<i32>>;
    /// How many times the OOM killer fired in `path`.
    fn oom_kills(&self, path: &str) -> Result<u64>;
}

/// Create a pod's cgroup under its QoS parent; returns its path.
pub fn create_pod_cgroup(
    cg: &dyn Cgroups,
    root: &str,
    qos: QosClass,
    pod_uid: &str,
    res: &CgroupResources,
) -> Result<String> {
    let path = pod_cgroup_path(root, qos, pod_uid);
    cg.create(&path, res)?;
    Ok(path)
}

fn cg_err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Cgroup {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|e| cg_err(&p, format!("write {value:?}: {e}")))
}

fn read_procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn read_key(file: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Kill every process of `dir` and its children, then rmdir them,
/// deepest first, retrying while killed processes exit.
fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut dirs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
        dirs.push(d);
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for pid in read_procs(&d) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(cg_err(&d, format!("rmdir: {e}"))),
            }
        }
    }
    Ok(())
}

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Controllers (and `name=...`) bound to it.
    pub controllers: Vec<String>,
    pub mount: PathBuf,
}

/// The cgroup v1 hierarchies mounted in this process's mount namespace.
pub fn v1_hierarchies() -> Result<Vec<V1Hierarchy>> {
    let mut out: Vec<V1Hierarchy> = Vec::new();
    for m in mountinfo()? {
        if m.fs_type != "cgroup" {
            continue;
        }
        let controllers: Vec<String> = m
            .super_options
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() || out.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        out.push(V1Hierarchy {
            controllers,
            mount: m.mount_point,
        });
    }
    Ok(out)
}

/// cgroup v1: a pod cgroup is a directory in every hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    pub hierarchies: Vec<V1Hierarchy>,
    /// The v2 tree of a hybrid host (runc also makes cgroups there);
    /// only cleaned up.
    pub unified: Option<PathBuf>,
}

impl CgroupV1 {
    pub fn discover() -> Result<Self> {
        let unified = mountinfo()?
            .into_iter()
            .find(|m| m.fs_type == "cgroup2")
            .map(|m| m.mount_point);
        Ok(CgroupV1 {
            hierarchies: v1_hierarchies()?,
            unified,
        })
    }

    fn all_mounts(&self) -> impl Iterator<Item = &PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| &h.mount)
            .chain(self.unified.iter())
    }

    fn dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount.join(path.trim_start_matches('/')))
    }

    fn mkdir_p(&self, h: &V1Hierarchy, path: &str) -> Result<()> {
        let mut cur = h.mount.clone();
        let cpuset = h.controllers.iter().any(|c| c == "cpuset");
        for part in path.split('/').filter(|s| !s.is_empty()) {
            let parent = cur.clone();
            cur.push(part);
            if cur.exists() {
                continue;
            }
            match std::fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(cg_err(&cur, format!("mkdir: {e}"))),
            }
            if cpuset {
                // A new v1 cpuset starts empty: inherit the parent's.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let cur_v = std::fs::read_to_string(cur.join(f)).unwrap_or_default();
                    if cur_v.trim().is_empty() {
                        let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                        write_file(&cur, f, v.trim())?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Cgroups for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, path: &str, res: &CgroupResources) -> Result<()> {
        for h in &self.hierarchies {
            self.mkdir_p(h, path)?;
        }
        self.update(path, res)
    }

    fn update(&self, path: &str, res: &CgroupResources) -> Result<()> {
        if let Some(cpu) = self.dir("cpu", path) {
            if let Some(s) = res.cpu_shares {
                write_file(&cpu, "cpu.shares", &s.to_string())?;
            }
            if let Some(p) = res.cpu_period {
                write_file(&cpu, "cpu.cfs_period_us", &p.to_string())?;
            }
            write_file(
                &cpu,
                "cpu.cfs_quota_us",
                &res.cpu_quota.unwrap_or(-1).to_string(),
            )?;
        }
        if let Some(mem) = self.dir("memory", path) {
            write_file(
                &mem,
                "memory.limit_in_bytes",
                &res.memory_limit.unwrap_or(-1).to_string(),
            )?;
        }
        if let Some(pids) = self.dir("pids", path) {
            let v = res
                .pids_limit
                .map(|p| p.to_string())
                .unwrap_or_else(|| "max".into());
            write_file(&pids, "pids.max", &v)?;
        }
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        let mut first_err = None;
        for m in self.all_mounts() {
            if let Err(e) = remove_tree(&m.join(path.trim_start_matches('/'))) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn exists(&self, path: &str) -> bool {
        self.all_mounts()
            .any(|m| m.join(path.trim_start_matches('/')).exists())
    }

    fn procs(&self, path: &str) -> Result<Vec<i32>> {
        let mut all = Vec::new();
        for h in &self.hierarchies {
            for p in read_procs(&h.mount.join(path.trim_start_matches('/'))) {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
        Ok(all)
    }

    fn oom_kills(&self, path: &str) -> Result<u64> {
        let dir = self
            .dir("memory", path)
            .ok_or_else(|| cg_err(Path::new(path), "no memory hierarchy"))?;
        Ok(read_key(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0))
    }
}

/// cgroup v2 (unified hierarchy).
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    pub mount: PathBuf,
}

impl CgroupV2 {
    fn dir(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }
}

impl Cgroups for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, path: &str, res: &CgroupResources) -> Result<()> {
        let mut cur = self.mount.clone();
        for part in path.split('/').filter(|s| !s.is_empty()) {
            // Delegate the controllers we use to the children.
            let available =
                std::fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
            for c in ["cpuset", "cpu", "io", "memory", "pids", "hugetlb"] {
                if available.split_whitespace().any(|a| a == c) {
                    let _ = std::fs::write(cur.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
            cur.push(part);
            match std::fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(cg_err(&cur, format!("mkdir: {e}"))),
            }
        }
        self.update(path, res)
    }

    fn update(&self, path: &str, res: &CgroupResources) -> Result<()> {
        let dir = self.dir(path);
        if let Some(s) = res.cpu_shares {
            write_file(&dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        let quota = res
            .cpu_quota
            .filter(|q| *q > 0)
            .map(|q| q.to_string())
            .unwrap_or_else(|| "max".into());
        let period = res.cpu_period.unwrap_or(CFS_PERIOD_US);
        write_file(&dir, "cpu.max", &format!("{quota} {period}"))?;
        let mem = res
            .memory_limit
            .map(|m| m.to_string())
            .unwrap_or_else(|| "max".into());
        write_file(&dir, "memory.max", &mem)?;
        let pids = res
            .pids_limit
            .map(|p| p.to_string())
            .unwrap_or_else(|| "max".into());
        write_file(&dir, "pids.max", &pids)?;
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        let dir = self.dir(path);
        if dir.join("cgroup.kill").exists() {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        remove_tree(&dir)
    }

    fn exists(&self, path: &str) -> bool {
        self.dir(path).exists()
    }

    fn procs(&self, path: &str) -> Result<Vec<i32>> {
        Ok(read_procs(&self.dir(path)))
    }

    fn oom_kills(&self, path: &str) -> Result<u64> {
        Ok(read_key(&self.dir(path).join("memory.events"), "oom_kill").unwrap_or(0))
    }
}

/// The cgroup driver for this host: v2 when `/sys/fs/cgroup` is the
/// unified hierarchy, else v1.
pub fn detect() -> Result<Box<dyn Cgroups>> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        Ok(Box::new(CgroupV2 {
            mount: root.to_path_buf(),
        }))
    } else {
        Ok(Box::new(CgroupV1::discover()?))
    }
}

/// Controllers still bound to the v2 tree of a hybrid host
/// (`/sys/fs/cgroup/unified`).
pub fn hybrid_v2_controllers() -> Vec<String> {
    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// crun refuses a hybrid host whose v2 tree still has controllers. Mount
/// each such controller as a v1 hierarchy under `/sys/fs/cgroup/<name>`
/// (which moves it off the v2 tree). Returns what was mounted. Node
/// setup, idempotent; meant for hosts that use crun.
pub fn move_hybrid_controllers_to_v1() -> Result<Vec<String>> {
    let mut mounted = Vec::new();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Ok(mounted); // pure v2
    }
    for c in hybrid_v2_controllers() {
        let target = Path::new("/sys/fs/cgroup").join(&c);
        std::fs::create_dir_all(&target).map_err(|e| cg_err(&target, format!("mkdir: {e}")))?;
        nix::mount::mount(
            Some("cgroup"),
            &target,
            Some("cgroup"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some(c.as_str()),
        )
        .map_err(|e| cg_err(&target, format!("mount -t cgroup -o {c}: {e}")))?;
        mounted.push(c);
    }
    Ok(mounted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_paths_like_kubelet() {
        assert_eq!(
            qos_cgroup_path("/kubepods", QosClass::Guaranteed),
            "/kubepods"
        );
        assert_eq!(
            qos_cgroup_path("kubepods", QosClass::Burstable),
            "/kubepods/burstable"
        );
        assert_eq!(
            qos_cgroup_path("/kubepods/", QosClass::BestEffort),
            "/kubepods/besteffort"
        );
        assert_eq!(
            pod_cgroup_path("/kubepods", QosClass::Guaranteed, "1234-ab"),
            "/kubepods/pod1234-ab"
        );
        assert_eq!(
            pod_cgroup_path("/kubepods", QosClass::Burstable, "u"),
            "/kubepods/burstable/podu"
        );
        assert_eq!(
            pod_cgroup_path("/a/kubepods", QosClass::BestEffort, "u"),
            "/a/kubepods/besteffort/podu"
        );
        assert_eq!(
            container_cgroup_path("/kubepods/besteffort/podu", "c1"),
            "/kubepods/besteffort/podu/c1"
        );
    }

    #[test]
    fn pod_level_resources() {
        let a = Resources {
            cpu_request_milli: Some(100),
            cpu_limit_milli: Some(200),
            memory_limit_bytes: Some(100),
            ..Default::default()
        };
        let b = Resources {
            cpu_request_milli: Some(400),
            cpu_limit_milli: Some(300),
            memory_limit_bytes: Some(50),
            ..Default::default()
        };
        let r = pod_resources(&[a.clone(), b.clone()], QosClass::Burstable);
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(150));
        // One container without limits: no pod-level quota or memory limit.
        let r = pod_resources(&[a, Resources::default()], QosClass::Burstable);
        assert_eq!(r.cpu_shares, Some(102));
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.memory_limit, None);
        let r = pod_resources(&[Resources::default()], QosClass::BestEffort);
        assert_eq!(r.cpu_shares, Some(2));
        assert_eq!(r.memory_limit, None);
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn read_keyed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(
            read_key(&dir.path().join("memory.oom_control"), "oom_kill"),
            Some(3)
        );
        assert_eq!(read_key(&dir.path().join("missing"), "oom_kill"), None);
    }

    #[test]
    fn fake_v2_tree() {
        // The v2 driver against a plain directory: files are just written.
        let dir = tempfile::tempdir().unwrap();
        let cg = CgroupV2 {
            mount: dir.path().to_path_buf(),
        };
        let res = CgroupResources {
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 20),
            pids_limit: None,
        };
        let path = create_pod_cgroup(&cg, "/kubepods", QosClass::Burstable, "u1", &res).unwrap();
        assert_eq!(path, "/kubepods/burstable/podu1");
        let d = dir.path().join("kubepods/burstable/podu1");
        let rd = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(rd("cpu.weight"), "39");
        assert_eq!(rd("cpu.max"), "50000 100000");
        assert_eq!(rd("memory.max"), "1048576");
        assert_eq!(rd("pids.max"), "max");
        assert!(cg.exists(&path));
        // Plain directories with files can't be rmdir'ed like cgroups; just
        // check the missing-path case.
        cg.remove("/nothing/here").unwrap();
    }

    #[test]
    fn v1_discovery_on_this_host() {
        // Works anywhere: on a v2-only host the list is just empty.
        let h = v1_hierarchies().unwrap();
        for x in &h {
            assert!(x.mount.is_absolute());
        }
    }
}
