//! Applying a ruleset: the [`Apply`] trait (so the sync loop is tested
//! without root) and the real `nft -f -`; the sysctls the proxy needs.

use crate::ProxyError;
use std::io::Write;
use std::process::{Command, Stdio};

/// Hands a whole `nft -f` script to the kernel, atomically.
pub trait Apply: Send + Sync + 'static {
    fn apply(&self, script: &str) -> Result<(), ProxyError>;
}

/// The `nft` command line tool (`nft -f -`: one transaction).
#[derive(Debug, Clone)]
pub struct NftCli {
    pub binary: String,
}

impl Default for NftCli {
    fn default() -> Self {
        NftCli {
            binary: "nft".into(),
        }
    }
}

impl Apply for NftCli {
    fn apply(&self, script: &str) -> Result<(), ProxyError> {
        let mut child = Command::new(&self.binary)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ProxyError::Nft(format!("running {}: {e}", self.binary)))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| ProxyError::Nft(format!("writing to nft: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| ProxyError::Nft(format!("waiting for nft: {e}")))?;
        if !out.status.success() {
            return Err(ProxyError::Nft(format!(
                "nft -f failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

pub fn read_sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(sysctl_path(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Sets a sysctl unless it already has the value; returns whether it
/// changed.
pub fn ensure_sysctl(name: &str, value: &str) -> Result<bool, ProxyError> {
    if read_sysctl(name).as_deref() == Some(value) {
        return Ok(false);
    }
    std::fs::write(sysctl_path(name), value)
        .map_err(|e| ProxyError::Sysctl(name.to_string(), e))?;
    Ok(true)
}
