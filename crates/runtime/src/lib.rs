//! Bosun's container runtime driver: everything between "run this
//! container with this config" and the kernel, through an OCI runtime CLI
//! (runc by default; crun works the same).
//!
//! - [`spec`]: OCI `config.json` from image + container config, resolved
//!   like the kubelet and containerd (args, env, cwd, user, resources,
//!   capabilities, mounts, namespaces).
//! - [`oci`]: the [`OciRuntime`] trait and [`RuncCli`].
//! - [`mount`]: the [`Mounter`] trait (overlayfs rootfs, bind mounts).
//! - [`cgroups`]: pod cgroups under kubelet-style QoS parents, v1 and v2.
//! - [`sandbox`]: pod sandboxes (pinned net/ipc/uts namespaces, shm).
//! - [`shim`]: the per-container subreaper shim ([`shim_main`]) and the
//!   agent's handle on it; CRI logs in [`logs`].
//! - [`runtime`]: [`ContainerRuntime`], the CRI-like surface tying it all
//!   together.

pub mod cgroups;
pub mod error;
pub mod exec;
pub mod exec_stream;
pub mod logs;
pub mod mount;
pub mod netns;
pub mod oci;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod spec;

pub use cgroups::{CgroupResources, CgroupV1, CgroupV2, Cgroups, QosClass};
pub use error::{Error, Result};
pub use mount::{LinuxMounter, Mounter};
pub use oci::{OciRuntime, RuncCli, RuntimeState};
pub use runtime::{ContainerRequest, ContainerRuntime, RuntimeConfig, SandboxRequest};
pub use sandbox::{PodSandbox, SandboxOptions};
pub use shim::{
    set_child_subreaper, shim_main, ContainerStatus, ShimCommand, ShimConfig, ShimHandle, ShimState,
};
pub use spec::{
    BindMount, ContainerConfig, ImageConfig, Resources, SandboxContext, SecurityContext,
};
