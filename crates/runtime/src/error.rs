//! Error type of the runtime driver.

use std::path::PathBuf;

/// Everything that can go wrong between "run this container" and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container configuration can't be turned into a runnable spec
    /// (kubelet's `CreateContainerConfigError`).
    #[error("invalid container config: {0}")]
    InvalidConfig(String),
    /// An OCI runtime CLI (runc/crun) call failed.
    #[error("{binary} {op} failed: {message}")]
    Runtime {
        binary: String,
        op: String,
        message: String,
    },
    /// A mount or unmount failed.
    #[error("mount {target}: {message}")]
    Mount { target: PathBuf, message: String },
    /// A cgroup operation failed.
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
    /// The shim failed to start or reported an error.
    #[error("shim: {0}")]
    Shim(String),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Any other I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("oci spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach context to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io {
            context: context(),
            source: std::io::Error::from_raw_os_error(errno as i32),
        })
    }
}
