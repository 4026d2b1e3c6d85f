//! OCI runtime spec (`config.json`) generation, resolved the way the kubelet
//! and containerd's CRI plugin do it.
//!
//! Inputs are CRI-level: the image config ([`ImageConfig`]), the container
//! config ([`ContainerConfig`], already expanded by the kubelet: `$(VAR)`
//! references, env from ConfigMaps, volume host paths) and where the pod
//! sandbox keeps its namespaces ([`SandboxContext`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::error::{Error, Result};

/// Default `PATH` when neither the image nor the container sets one
/// (containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// CFS period the kubelet uses (100ms).
pub const CFS_PERIOD_US: u64 = 100_000;
/// Smallest cpu.shares value (kubelet `MinShares`).
pub const MIN_SHARES: u64 = 2;
/// Largest cpu.shares value (kubelet `MaxShares`).
pub const MAX_SHARES: u64 = 262_144;
/// Smallest CFS quota (kubelet `MinQuotaPeriod`, 1ms).
pub const MIN_QUOTA_US: i64 = 1000;

/// containerd's default capability set for unprivileged containers.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows (for `privileged` and `add: [ALL]`).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The parts of an OCI image config that decide how a container runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, `user`, `user:group` (names are looked up in the rootfs).
    pub user: Option<String>,
}

/// Resources of one container, in Kubernetes units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `requests.cpu` in millicores.
    pub cpu_request_milli: Option<u64>,
    /// `limits.cpu` in millicores.
    pub cpu_limit_milli: Option<u64>,
    /// `limits.memory` in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// Pod pids limit (kubelet `podPidsLimit`).
    pub pids_limit: Option<i64>,
    /// `oom_score_adj` chosen by the kubelet from the QoS class.
    pub oom_score_adj: Option<i32>,
}

/// The container's `securityContext` (merged with the pod's by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    pub privileged: bool,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: bool,
    /// Pod `supplementalGroups` plus `fsGroup`.
    pub supplemental_groups: Vec<u32>,
    pub read_only_root_filesystem: bool,
    pub allow_privilege_escalation: Option<bool>,
    /// Capability names with or without `CAP_`, or `ALL`.
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    /// `procMount: Unmasked`: /proc without masked or read-only paths.
    pub proc_mount_unmasked: bool,
}

/// A bind mount given by the caller (volumes, /etc/hosts, resolv.conf, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// What the container is to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Container name (for messages).
    pub name: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Container env, already resolved by the kubelet, in order.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub resources: Resources,
    pub security: SecurityContext,
    pub mounts: Vec<BindMount>,
    /// Keep a stdin open for attach (`stdin: true`); with `stdin_once`
    /// it closes when the first attach session ends.
    pub stdin: bool,
    pub stdin_once: bool,
    /// A terminal (`tty: true`): the runtime hands the pty master to the
    /// shim through a console socket.
    pub tty: bool,
}

/// Where the pod sandbox keeps the namespaces the container joins.
/// `None` means the host's namespace (hostNetwork / hostIPC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxContext {
    /// Pod name: the container's hostname.
    pub hostname: String,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// A tmpfs shared by the pod's containers as `/dev/shm`; `None` gives
    /// each container its own.
    pub shm: Option<PathBuf>,
    /// The container's cgroup (`linux.cgroupsPath`), e.g.
    /// `/kubepods/burstable/pod<uid>/<container-id>`.
    pub cgroups_path: String,
}

/// The process args the container runs, resolved as containerd does.
pub fn resolve_args(image: &ImageConfig, container: &ContainerConfig) -> Result<Vec<String>> {
    let mut command = container.command.clone();
    let mut args = container.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone();
        }
        command = image.entrypoint.clone();
    }
    command.extend(args);
    if command.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "container {:?}: no command specified",
            container.name
        )));
    }
    Ok(command)
}

/// Image env then container env; a later key replaces an earlier one in
/// place. Adds a default `PATH` if none is set and `HOSTNAME`.
pub fn resolve_env(
    image: &ImageConfig,
    container: &ContainerConfig,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        if let Some(slot) = env
            .iter_mut()
            .find(|e| e.split('=').next().unwrap_or("") == key)
        {
            *slot = entry;
        } else {
            env.push(entry);
        }
    };
    set(DEFAULT_PATH.to_string());
    if !hostname.is_empty() {
        set(format!("HOSTNAME={hostname}"));
    }
    for e in &image.env {
        set(e.clone());
    }
    for (k, v) in &container.env {
        set(format!("{k}={v}"));
    }
    env
}

/// workingDir, else the image's WorkingDir, else `/`.
pub fn resolve_cwd(image: &ImageConfig, container: &ContainerConfig) -> String {
    container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_string())
}

/// Resolved process user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

fn lookup_file(rootfs: Option<&Path>, file: &str) -> Vec<Vec<String>> {
    let Some(rootfs) = rootfs else {
        return Vec::new();
    };
    std::fs::read_to_string(rootfs.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Resolve the process user: the image's `User` (numeric, or names looked
/// up in the rootfs's /etc/passwd and /etc/group), overridden by
/// runAsUser/runAsGroup; runAsNonRoot with uid 0 is an error.
pub fn resolve_user(
    image: &ImageConfig,
    security: &SecurityContext,
    rootfs: Option<&Path>,
) -> Result<ResolvedUser> {
    let passwd = lookup_file(rootfs, "etc/passwd");
    let group = lookup_file(rootfs, "etc/group");
    let passwd_gid = |uid: u32| {
        passwd
            .iter()
            .find(|f| f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid))
            .and_then(|f| f[3].parse::<u32>().ok())
    };
    let image_user = image.user.clone().unwrap_or_default();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (image_user.clone(), None),
    };
    let mut image_uid = None;
    let mut image_gid = None;
    if !user_part.is_empty() {
        match user_part.parse::<u32>() {
            Ok(uid) => image_uid = Some(uid),
            Err(_) => {
                let entry = passwd.iter().find(|f| f.len() > 3 && f[0] == user_part);
                match entry {
                    Some(f) => {
                        image_uid = f[2].parse().ok();
                        image_gid = f[3].parse().ok();
                    }
                    None if security.run_as_user.is_some() => {}
                    None => {
                        return Err(Error::InvalidConfig(format!(
                            "image user {user_part:?} is not numeric and not in /etc/passwd"
                        )))
                    }
                }
            }
        }
    }
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        match g.parse::<u32>() {
            Ok(gid) => image_gid = Some(gid),
            Err(_) => {
                let entry = group.iter().find(|f| f.len() > 2 && f[0] == g);
                match entry.and_then(|f| f[2].parse().ok()) {
                    Some(gid) => image_gid = Some(gid),
                    None => {
                        return Err(Error::InvalidConfig(format!(
                            "image group {g:?} is not numeric and not in /etc/group"
                        )))
                    }
                }
            }
        }
    }
    let uid = security.run_as_user.or(image_uid).unwrap_or(0);
    let gid = match (security.run_as_group, security.run_as_user) {
        (Some(gid), _) => gid,
        (None, Some(uid)) => passwd_gid(uid).unwrap_or(0),
        (None, None) => image_gid.or_else(|| passwd_gid(uid)).unwrap_or(0),
    };
    if security.run_as_non_root && uid == 0 {
        return Err(Error::InvalidConfig(
            "container has runAsNonRoot and image will run as root".to_string(),
        ));
    }
    let mut additional_gids = Vec::new();
    for g in &security.supplemental_groups {
        if !additional_gids.contains(g) {
            additional_gids.push(*g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// cpu.shares from a CPU request in millicores (kubelet `MilliCPUToShares`).
pub fn milli_cpu_to_shares(milli: u64) -> u64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota from a CPU limit in millicores (kubelet `MilliCPUToQuota`).
pub fn milli_cpu_to_quota(milli: u64, period: u64) -> i64 {
    if milli == 0 {
        return 0;
    }
    ((milli * period / 1000) as i64).max(MIN_QUOTA_US)
}

fn normalize_cap(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The capability names the container gets: containerd's default set (or
/// all for privileged), then drops, then adds (`ALL` in either honoured).
pub fn resolve_capabilities(security: &SecurityContext) -> Vec<String> {
    if security.privileged {
        return ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    }
    let add: Vec<String> = security
        .capabilities_add
        .iter()
        .map(|c| normalize_cap(c))
        .collect();
    let drop: Vec<String> = security
        .capabilities_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect();
    if add.iter().any(|c| c == "ALL") {
        return ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    }
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps
}

fn parse_caps(names: &[String]) -> Result<HashSet<Capability>> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| Error::InvalidConfig(format!("unknown capability {n:?}")))
        })
        .collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The standard container mounts (containerd's defaults), then the
/// caller's bind mounts, ordered so that parents come before children.
pub fn build_mounts(container: &ContainerConfig, sandbox: &SandboxContext) -> Result<Vec<Mount>> {
    let privileged = container.security.privileged;
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
    ];
    match &sandbox.shm {
        Some(shm) => mounts.push(
            MountBuilder::default()
                .destination("/dev/shm")
                .typ("bind")
                .source(shm.clone())
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    "rw".to_string(),
                ])
                .build()?,
        ),
        None => mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?),
    }
    let mut binds = Vec::new();
    for m in &container.mounts {
        if !m.container_path.is_absolute() {
            return Err(Error::InvalidConfig(format!(
                "mount path {:?} must be absolute",
                m.container_path
            )));
        }
        // A caller's mount replaces a default one at the same place.
        mounts.retain(|d| d.destination() != &m.container_path);
        binds.push(
            MountBuilder::default()
                .destination(m.container_path.clone())
                .typ("bind")
                .source(m.host_path.clone())
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    if m.read_only { "ro" } else { "rw" }.to_string(),
                ])
                .build()?,
        );
    }
    mounts.extend(binds);
    // Stable sort by depth: parents are mounted before their children.
    mounts.sort_by_key(|m| m.destination().components().count());
    Ok(mounts)
}

/// Build the OCI runtime spec of a container.
///
/// `rootfs` is the bundle-relative or absolute path of the mounted root
/// filesystem; `rootfs_for_lookup` (usually the same directory, absolute)
/// is where /etc/passwd and /etc/group are read for user names.
pub fn build_spec(
    image: &ImageConfig,
    container: &ContainerConfig,
    sandbox: &SandboxContext,
    rootfs: &Path,
    rootfs_for_lookup: Option<&Path>,
) -> Result<Spec> {
    let sec = &container.security;
    let args = resolve_args(image, container)?;
    let env = resolve_env(image, container, &sandbox.hostname);
    let cwd = resolve_cwd(image, container);
    let user = resolve_user(image, sec, rootfs_for_lookup)?;
    let caps = parse_caps(&resolve_capabilities(sec))?;

    let mut user_builder = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        user_builder = user_builder.additional_gids(user.additional_gids.clone());
    }
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let mut process = ProcessBuilder::default()
        .terminal(container.tty)
        .user(user_builder.build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(sec.allow_privilege_escalation == Some(false) && !sec.privileged);
    if let Some(adj) = container.resources.oom_score_adj {
        process = process.oom_score_adj(adj);
    }
    let mut process = process.build()?;
    // No rlimits: inherited from the shim, as with containerd.
    process.set_rlimits(None);

    // Namespaces: own pid and mount; net/ipc/uts from the sandbox.
    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
    ];
    for (typ, path) in [
        (LinuxNamespaceType::Network, &sandbox.netns),
        (LinuxNamespaceType::Ipc, &sandbox.ipcns),
        (LinuxNamespaceType::Uts, &sandbox.utsns),
    ] {
        if let Some(path) = path {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(path.clone())
                    .build()?,
            );
        }
    }

    // Resources.
    let r = &container.resources;
    let mut cpu =
        LinuxCpuBuilder::default().shares(milli_cpu_to_shares(r.cpu_request_milli.unwrap_or(0)));
    if let Some(limit) = r.cpu_limit_milli.filter(|l| *l > 0) {
        cpu = cpu
            .quota(milli_cpu_to_quota(limit, CFS_PERIOD_US))
            .period(CFS_PERIOD_US);
    }
    let devices = vec![LinuxDeviceCgroupBuilder::default()
        .allow(sec.privileged)
        .access("rwm")
        .build()?];
    let mut resources = LinuxResourcesBuilder::default()
        .cpu(cpu.build()?)
        .devices(devices);
    if let Some(mem) = r.memory_limit_bytes.filter(|m| *m > 0) {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(mem).build()?);
    }
    if let Some(pids) = r.pids_limit.filter(|p| *p > 0) {
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build()?);
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(&sandbox.cgroups_path));
    let mut linux = linux.build()?;
    // Builders start from oci-spec's defaults: set every field we decide.
    if sec.privileged || sec.proc_mount_unmasked {
        linux.set_masked_paths(None).set_readonly_paths(None);
    } else {
        linux
            .set_masked_paths(Some(
                DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            ))
            .set_readonly_paths(Some(
                DEFAULT_READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ));
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs.to_path_buf())
                .readonly(sec.read_only_root_filesystem)
                .build()?,
        )
        .process(process)
        .mounts(build_mounts(container, sandbox)?)
        .linux(linux)
        .build()?;
    // A hostname needs a UTS namespace of the pod's own.
    let hostname =
        (sandbox.utsns.is_some() && !sandbox.hostname.is_empty()).then(|| sandbox.hostname.clone());
    spec.set_hostname(hostname);
    spec.set_annotations(None);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["cmd1".into(), "cmd2".into()],
            env: vec!["PATH=/image/bin".into(), "A=image".into(), "B=image".into()],
            working_dir: Some("/app".into()),
            user: Some("1000:1001".into()),
        }
    }

    fn sandbox() -> SandboxContext {
        SandboxContext {
            hostname: "mypod".into(),
            netns: Some("/run/sb/net".into()),
            ipcns: Some("/run/sb/ipc".into()),
            utsns: Some("/run/sb/uts".into()),
            shm: None,
            cgroups_path: "/kubepods/besteffort/podX/ctr".into(),
        }
    }

    fn ctr() -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            ..Default::default()
        }
    }

    #[test]
    fn args_resolution_follows_kubernetes() {
        let img = image();
        // Nothing set: entrypoint + cmd.
        assert_eq!(
            resolve_args(&img, &ctr()).unwrap(),
            ["/entry", "cmd1", "cmd2"]
        );
        // Command set: replaces entrypoint, cmd dropped.
        let c = ContainerConfig {
            command: vec!["/bin/sh".into()],
            ..ctr()
        };
        assert_eq!(resolve_args(&img, &c).unwrap(), ["/bin/sh"]);
        // Command and args.
        let c = ContainerConfig {
            command: vec!["/bin/sh".into()],
            args: vec!["-c".into(), "x".into()],
            ..ctr()
        };
        assert_eq!(resolve_args(&img, &c).unwrap(), ["/bin/sh", "-c", "x"]);
        // Only args: image entrypoint + args.
        let c = ContainerConfig {
            args: vec!["a".into()],
            ..ctr()
        };
        assert_eq!(resolve_args(&img, &c).unwrap(), ["/entry", "a"]);
        // Only args, no entrypoint.
        let img2 = ImageConfig {
            entrypoint: vec![],
            ..image()
        };
        assert_eq!(resolve_args(&img2, &c).unwrap(), ["a"]);
        // Nothing anywhere: error.
        assert!(matches!(
            resolve_args(&ImageConfig::default(), &ctr()),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn env_image_then_container_in_place() {
        let c = ContainerConfig {
            env: vec![("B".into(), "ctr".into()), ("C".into(), "ctr".into())],
            ..ctr()
        };
        let env = resolve_env(&image(), &c, "mypod");
        assert_eq!(
            env,
            [
                "PATH=/image/bin",
                "HOSTNAME=mypod",
                "A=image",
                "B=ctr",
                "C=ctr"
            ]
        );
        let env = resolve_env(&ImageConfig::default(), &ctr(), "");
        assert_eq!(env, [DEFAULT_PATH]);
    }

    #[test]
    fn cwd_resolution() {
        assert_eq!(resolve_cwd(&image(), &ctr()), "/app");
        let c = ContainerConfig {
            working_dir: Some("/w".into()),
            ..ctr()
        };
        assert_eq!(resolve_cwd(&image(), &c), "/w");
        assert_eq!(resolve_cwd(&ImageConfig::default(), &ctr()), "/");
    }

    #[test]
    fn user_resolution() {
        let sec = SecurityContext::default();
        let u = resolve_user(&image(), &sec, None).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001));
        let u = resolve_user(&ImageConfig::default(), &sec, None).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let img = ImageConfig {
            user: Some("7".into()),
            ..Default::default()
        };
        assert_eq!(resolve_user(&img, &sec, None).unwrap().gid, 0);
        // runAsUser / runAsGroup override.
        let sec = SecurityContext {
            run_as_user: Some(5),
            run_as_group: Some(6),
            supplemental_groups: vec![10, 11, 10],
            ..Default::default()
        };
        let u = resolve_user(&image(), &sec, None).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (5, 6, vec![10, 11]));
        // runAsNonRoot with root -> error; with non-root -> ok.
        let sec = SecurityContext {
            run_as_non_root: true,
            ..Default::default()
        };
        assert!(resolve_user(&ImageConfig::default(), &sec, None).is_err());
        assert!(resolve_user(&image(), &sec, None).is_ok());
        let sec = SecurityContext {
            run_as_non_root: true,
            run_as_user: Some(0),
            ..Default::default()
        };
        assert!(resolve_user(&image(), &sec, None).is_err());
    }

    #[test]
    fn user_names_from_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65533::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
        let sec = SecurityContext::default();
        let img = ImageConfig {
            user: Some("nobody".into()),
            ..Default::default()
        };
        let u = resolve_user(&img, &sec, Some(dir.path())).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65533));
        let img = ImageConfig {
            user: Some("nobody:wheel".into()),
            ..Default::default()
        };
        let u = resolve_user(&img, &sec, Some(dir.path())).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 10));
        let img = ImageConfig {
            user: Some("ghost".into()),
            ..Default::default()
        };
        assert!(resolve_user(&img, &sec, Some(dir.path())).is_err());
        // runAsUser without runAsGroup takes the passwd gid of that uid.
        let sec = SecurityContext {
            run_as_user: Some(65534),
            ..Default::default()
        };
        let u = resolve_user(&ImageConfig::default(), &sec, Some(dir.path())).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65533));
    }

    #[test]
    fn cpu_conversions() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(10_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(0, CFS_PERIOD_US), 0);
        assert_eq!(milli_cpu_to_quota(1, CFS_PERIOD_US), 1000);
        assert_eq!(milli_cpu_to_quota(250, CFS_PERIOD_US), 25_000);
        assert_eq!(milli_cpu_to_quota(2000, CFS_PERIOD_US), 200_000);
    }

    #[test]
    fn capabilities_add_drop() {
        let default = resolve_capabilities(&SecurityContext::default());
        assert_eq!(default.len(), DEFAULT_CAPABILITIES.len());
        let sec = SecurityContext {
            capabilities_add: vec!["NET_ADMIN".into(), "CAP_CHOWN".into()],
            capabilities_drop: vec!["chown".into(), "CAP_KILL".into()],
            ..Default::default()
        };
        let caps = resolve_capabilities(&sec);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_CHOWN".to_string())); // add wins over drop
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        let sec = SecurityContext {
            capabilities_add: vec!["NET_BIND_SERVICE".into()],
            capabilities_drop: vec!["ALL".into()],
            ..Default::default()
        };
        assert_eq!(resolve_capabilities(&sec), ["CAP_NET_BIND_SERVICE"]);
        let sec = SecurityContext {
            capabilities_add: vec!["all".into()],
            ..Default::default()
        };
        assert_eq!(resolve_capabilities(&sec).len(), ALL_CAPABILITIES.len());
        // Every name we know parses as an oci-spec capability.
        let all: Vec<String> = ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_caps(&all).unwrap().len(), ALL_CAPABILITIES.len());
        assert!(parse_caps(&["CAP_BOGUS".to_string()]).is_err());
    }

    #[test]
    fn full_spec() {
        let c = ContainerConfig {
            name: "web".into(),
            resources: Resources {
                cpu_request_milli: Some(250),
                cpu_limit_milli: Some(500),
                memory_limit_bytes: Some(64 << 20),
                pids_limit: Some(100),
                oom_score_adj: Some(-997),
            },
            security: SecurityContext {
                read_only_root_filesystem: true,
                allow_privilege_escalation: Some(false),
                ..Default::default()
            },
            mounts: vec![
                BindMount {
                    host_path: "/var/lib/pod/hosts".into(),
                    container_path: "/etc/hosts".into(),
                    read_only: true,
                },
                BindMount {
                    host_path: "/data".into(),
                    container_path: "/data".into(),
                    read_only: false,
                },
            ],
            ..Default::default()
        };
        let spec = build_spec(&image(), &c, &sandbox(), Path::new("rootfs"), None).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hostname"], "mypod");
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["oomScoreAdj"], -997);
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["process"]["cwd"], "/app");
        let res = &v["linux"]["resources"];
        assert_eq!(res["cpu"]["shares"], 256);
        assert_eq!(res["cpu"]["quota"], 50_000);
        assert_eq!(res["cpu"]["period"], 100_000);
        assert_eq!(res["memory"]["limit"], 64 << 20);
        assert_eq!(res["pids"]["limit"], 100);
        assert_eq!(res["devices"][0]["allow"], false);
        assert_eq!(v["linux"]["cgroupsPath"], "/kubepods/besteffort/podX/ctr");
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        let find = |t: &str| ns.iter().find(|n| n["type"] == t).cloned();
        assert!(find("pid").unwrap().get("path").is_none());
        assert!(find("mount").unwrap().get("path").is_none());
        assert_eq!(find("network").unwrap()["path"], "/run/sb/net");
        assert_eq!(find("ipc").unwrap()["path"], "/run/sb/ipc");
        assert_eq!(find("uts").unwrap()["path"], "/run/sb/uts");
        assert!(find("cgroup").is_none());
        let masked = v["linux"]["maskedPaths"].as_array().unwrap();
        assert!(masked.iter().any(|p| p == "/proc/kcore"));
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hosts",
            "/data",
        ] {
            assert!(dests.contains(&d), "{d} missing in {dests:?}");
        }
        let pos = |d: &str| dests.iter().position(|x| *x == d).unwrap();
        assert!(pos("/dev") < pos("/dev/pts"));
        assert!(pos("/sys") < pos("/sys/fs/cgroup"));
        let hosts = &v["mounts"][pos("/etc/hosts")];
        assert_eq!(hosts["type"], "bind");
        assert!(hosts["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "ro"));
        let cgroup = &v["mounts"][pos("/sys/fs/cgroup")];
        assert!(cgroup["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "ro"));
    }

    #[test]
    fn privileged_and_host_namespaces() {
        let c = ContainerConfig {
            command: vec!["x".into()],
            security: SecurityContext {
                privileged: true,
                allow_privilege_escalation: Some(false),
                ..Default::default()
            },
            ..Default::default()
        };
        let sb = SandboxContext {
            hostname: "p".into(),
            cgroups_path: "/x".into(),
            ..Default::default()
        };
        let spec = build_spec(&ImageConfig::default(), &c, &sb, Path::new("/r"), None).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert!(
            v.get("hostname").is_none(),
            "no hostname without own UTS ns"
        );
        assert!(v["linux"].get("maskedPaths").is_none());
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            ALL_CAPABILITIES.len()
        );
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], true);
        assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 2);
        assert!(v["linux"]["resources"]["cpu"].get("quota").is_none());
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert_eq!(ns.len(), 2);
    }

    #[test]
    fn proc_mount_unmasked_drops_masks_only() {
        let mut c = ContainerConfig {
            name: "c".into(),
            command: vec!["sh".into()],
            ..Default::default()
        };
        let sb = SandboxContext {
            hostname: "p".into(),
            cgroups_path: "/x".into(),
            ..Default::default()
        };
        let masked = |c: &ContainerConfig| {
            let spec = build_spec(&ImageConfig::default(), c, &sb, Path::new("/r"), None).unwrap();
            serde_json::to_value(&spec).unwrap()
        };
        let v = masked(&c);
        assert!(v["linux"]["readonlyPaths"]
            .as_array()
            .is_some_and(|a| !a.is_empty()));
        c.security.proc_mount_unmasked = true;
        let v = masked(&c);
        assert!(v["linux"].get("maskedPaths").is_none());
        assert!(v["linux"].get("readonlyPaths").is_none());
        // Still not privileged: the default capability set.
        assert!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len()
                < ALL_CAPABILITIES.len()
        );
    }

    #[test]
    fn relative_mount_path_rejected() {
        let c = ContainerConfig {
            command: vec!["x".into()],
            mounts: vec![BindMount {
                host_path: "/a".into(),
                container_path: "rel".into(),
                read_only: false,
            }],
            ..Default::default()
        };
        assert!(build_spec(
            &ImageConfig::default(),
            &c,
            &sandbox(),
            Path::new("r"),
            None
        )
        .is_err());
    }
}
