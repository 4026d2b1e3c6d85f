//! The CRI-like surface the node agent uses: pod sandboxes and containers,
//! tying together namespaces, cgroups, overlayfs, bundles, shims and the
//! OCI runtime. All state is on disk under `state_dir`, so a restarted
//! agent re-attaches with [`PodSandbox::load`] and [`ShimHandle::open`].
//!
//! Layout: `<state_dir>/sandboxes/<id>/` (namespace files, shm,
//! sandbox.json) and `<state_dir>/containers/<id>/` (the bundle:
//! config.json, rootfs, upper, work, shim files).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cgroups::{
    container_cgroup_path, create_pod_cgroup, CgroupResources, Cgroups, QosClass,
};
use crate::error::{Error, IoContext, Result};
use crate::mount::Mounter;
use crate::oci::{OciRuntime, RuncCli};
use crate::sandbox::{PodSandbox, SandboxOptions};
use crate::shim::{
    spawn_shim, stop_container, ContainerStatus, ShimCommand, ShimConfig, ShimHandle,
};
use crate::spec::{build_spec, ContainerConfig, ImageConfig};

/// Settings of the runtime driver.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where sandboxes and bundles live (overlay upper/work dirs too, so
    /// it must not itself be on overlayfs).
    pub state_dir: PathBuf,
    /// The OCI runtime CLI the shims run.
    pub runtime: RuncCli,
    /// How to start a shim.
    pub shim: ShimCommand,
    /// Parent of the QoS cgroups (kubelet `cgroupRoot` + `kubepods`).
    pub cgroup_root: String,
    pub log_max_size: u64,
    pub log_max_files: usize,
}

/// A pod sandbox request.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub id: String,
    pub pod_uid: String,
    /// The pod's name: its hostname.
    pub hostname: String,
    pub qos: QosClass,
    pub resources: CgroupResources,
    pub options: SandboxOptions,
}

/// A container request.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    pub id: String,
    pub image: ImageConfig,
    /// Unpacked image layers, top layer first.
    pub layers: Vec<PathBuf>,
    pub config: ContainerConfig,
    /// CRI log file.
    pub log_path: PathBuf,
}

/// The driver.
#[derive(Debug, Clone)]
pub struct ContainerRuntime {
    pub config: RuntimeConfig,
    pub oci: Arc<dyn OciRuntime>,
    pub mounter: Arc<dyn Mounter>,
    pub cgroups: Arc<dyn Cgroups>,
}

fn valid_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!("invalid id {id:?}")))
    }
}

impl ContainerRuntime {
    pub fn new(
        config: RuntimeConfig,
        mounter: Arc<dyn Mounter>,
        cgroups: Arc<dyn Cgroups>,
    ) -> ContainerRuntime {
        let oci: Arc<dyn OciRuntime> = Arc::new(config.runtime.clone());
        ContainerRuntime {
            config,
            oci,
            mounter,
            cgroups,
        }
    }

    /// The same driver with another OCI runtime (a RuntimeClass handler):
    /// sandboxes, bundles, mounts and cgroups are shared.
    pub fn with_oci(&self, runtime: crate::oci::RuncCli) -> ContainerRuntime {
        let mut config = self.config.clone();
        config.runtime = runtime;
        ContainerRuntime::new(config, self.mounter.clone(), self.cgroups.clone())
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("sandboxes").join(id)
    }

    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("containers").join(id)
    }

    /// Create the pod's namespaces and its cgroup under the QoS parent.
    pub fn run_pod_sandbox(&self, req: &SandboxRequest) -> Result<PodSandbox> {
        valid_id(&req.id)?;
        let dir = self.sandbox_dir(&req.id);
        let mut sb = PodSandbox::create(
            self.mounter.as_ref(),
            &req.id,
            &dir,
            &req.hostname,
            req.options,
        )?;
        match create_pod_cgroup(
            self.cgroups.as_ref(),
            &self.config.cgroup_root,
            req.qos,
            &req.pod_uid,
            &req.resources,
        ) {
            Ok(path) => {
                sb.cgroup_parent = path;
                if let Err(e) = sb.save() {
                    let _ = self.remove_pod_sandbox(&sb);
                    return Err(e);
                }
                Ok(sb)
            }
            Err(e) => {
                let _ = sb.destroy(self.mounter.as_ref());
                Err(e)
            }
        }
    }

    /// Tear down a sandbox whose containers are removed: namespace files,
    /// shm, pod cgroup (anything left in it is killed), directory.
    pub fn remove_pod_sandbox(&self, sb: &PodSandbox) -> Result<()> {
        let mut first_err = None;
        if !sb.cgroup_parent.is_empty() {
            if let Err(e) = self.cgroups.remove(&sb.cgroup_parent) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = sb.destroy(self.mounter.as_ref()) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Mount the rootfs, write the bundle and start a shim that creates
    /// the container. On error nothing is left behind.
    pub fn create_container(&self, sb: &PodSandbox, req: &ContainerRequest) -> Result<ShimHandle> {
        valid_id(&req.id)?;
        let bundle = self.bundle_dir(&req.id);
        if bundle.exists() {
            return Err(Error::InvalidConfig(format!("container {} exists", req.id)));
        }
        let result = self.create_inner(sb, req, &bundle);
        if result.is_err() {
            let _ = self.remove_container(&req.id);
        }
        result
    }

    fn create_inner(
        &self,
        sb: &PodSandbox,
        req: &ContainerRequest,
        bundle: &Path,
    ) -> Result<ShimHandle> {
        let rootfs = bundle.join("rootfs");
        let upper = bundle.join("upper");
        let work = bundle.join("work");
        for d in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
        }
        self.mounter
            .mount_overlay(&req.layers, &upper, &work, &rootfs)?;
        let cgroup = container_cgroup_path(&sb.cgroup_parent, &req.id);
        let spec = build_spec(
            &req.image,
            &req.config,
            &sb.context(&cgroup),
            Path::new("rootfs"),
            Some(&rootfs),
        )?;
        spec.save(bundle.join("config.json"))?;
        let shim_cfg = ShimConfig {
            id: req.id.clone(),
            bundle: bundle.to_path_buf(),
            runtime: self.config.runtime.clone(),
            log_path: req.log_path.clone(),
            log_max_size: self.config.log_max_size,
            log_max_files: self.config.log_max_files,
            stdin: req.config.stdin,
            stdin_once: req.config.stdin_once,
            tty: req.config.tty,
        };
        crate::oci::ensure_root(&self.config.runtime.root)?;
        spawn_shim(&self.config.shim, &shim_cfg)
    }

    /// Start a created container.
    pub fn start_container(&self, handle: &ShimHandle) -> Result<()> {
        self.oci.start(&handle.id)?;
        let _ = std::fs::write(
            handle.bundle.join("started_at"),
            chrono::Utc::now().to_rfc3339(),
        );
        Ok(())
    }

    /// SIGTERM, `grace`, SIGKILL.
    pub fn stop_container(&self, handle: &ShimHandle, grace: Duration) -> Result<ContainerStatus> {
        stop_container(self.oci.as_ref(), handle, grace)
    }

    /// Remove a container whatever its state: kill it, `delete --force`,
    /// kill the shim, unmount the rootfs, remove the bundle (the log
    /// file stays). Every step runs; the first error is returned.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        valid_id(id)?;
        let bundle = self.bundle_dir(id);
        let handle = ShimHandle {
            id: id.to_string(),
            bundle: bundle.clone(),
        };
        let mut first_err: Option<Error> = None;
        if handle.shim_alive() {
            let _ = self.oci.kill(id, libc::SIGKILL, false);
            let _ = handle.wait(Duration::from_secs(5));
        }
        if let Err(e) = self.oci.delete(id, true) {
            first_err.get_or_insert(e);
        }
        handle.kill_shim();
        if let Err(e) = self.mounter.unmount(&bundle.join("rootfs")) {
            first_err.get_or_insert(e);
        }
        if first_err.is_none() {
            match std::fs::remove_dir_all(&bundle) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(Error::Io {
                        context: format!("remove {}", bundle.display()),
                        source: e,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("abc-1_2.x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(valid_id(bad).is_err(), "{bad}");
        }
    }
}
