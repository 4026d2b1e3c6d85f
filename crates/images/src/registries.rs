//! Registry settings (a k3s-like `registries.yaml`) and credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{ImageError, Result};

/// k3s-style registry configuration:
///
/// ```yaml
/// mirrors:
///   docker.io:
///     endpoint: ["http://127.0.0.1:5000"]
/// configs:
///   "registry.local:5000":
///     tls:
///       insecure_skip_verify: true
///     auth:
///       username: user
///       password: secret
/// ```
///
/// A host is *insecure* (TLS certificate not verified, plain HTTP allowed as a
/// fallback) when it is on loopback or has `tls.insecure_skip_verify`. Mirror
/// endpoints with an explicit `http://` scheme use plain HTTP.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// Mirror endpoints of one registry (or `"*"` for all).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// Per-host settings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// TLS settings of a host.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials of a host (`username`/`password`, or `auth` = base64 `user:pass`).
#[derive(Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RegistryConfig {
    /// Parses YAML.
    pub fn from_yaml(s: &str) -> Result<Self> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(s).map_err(|e| ImageError::invalid(format!("registries.yaml: {e}")))
    }

    /// Loads a file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(s) => Self::from_yaml(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `host` (host[:port]) may be reached without TLS verification
    /// and over plain HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        is_loopback(host)
            || self
                .configs
                .get(host)
                .and_then(|c| c.tls.as_ref())
                .is_some_and(|t| t.insecure_skip_verify)
    }

    /// Credentials configured for `host`.
    pub fn credentials(&self, host: &str) -> Option<Credentials> {
        let a = self.configs.get(host)?.auth.as_ref()?;
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            return Some(Credentials::new(u, p));
        }
        a.auth.as_deref().and_then(Credentials::from_base64)
    }
}

/// Whether `host[:port]` names the local machine (`localhost`, 127.0.0.0/8, ::1).
pub fn is_loopback(host: &str) -> bool {
    let h = split_host(host);
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]` (also `[v6]:port`).
pub fn split_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Registry credentials for basic auth or a token server.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// From base64 `user:password` (the `auth` field of a docker config).
    pub fn from_base64(b64: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some(Credentials::new(u, p))
    }

    /// The `Authorization: Basic …` header value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Finds the credentials for `registry` (an image reference's domain, e.g.
    /// `docker.io` or `127.0.0.1:5000`) in a `.dockerconfigjson` (`{"auths": …}`)
    /// or legacy `.dockercfg` document, as kubelet does for imagePullSecrets.
    pub fn from_docker_config_json(json: &[u8], registry: &str) -> Result<Option<Credentials>> {
        let v: serde_json::Value = serde_json::from_slice(json)?;
        let auths = v.get("auths").unwrap_or(&v);
        let Some(map) = auths.as_object() else {
            return Ok(None);
        };
        let want = normalize_registry_key(registry);
        for (key, entry) in map {
            if normalize_registry_key(key) != want {
                continue;
            }
            let field = |n: &str| {
                entry
                    .get(n)
                    .and_then(|x| x.as_str())
                    .filter(|s| !s.is_empty())
            };
            if let (Some(u), Some(p)) = (field("username"), field("password")) {
                return Ok(Some(Credentials::new(u, p)));
            }
            if let Some(c) = field("auth").and_then(Credentials::from_base64) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

fn normalize_registry_key(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k3s_registries_yaml() {
        let c = RegistryConfig::from_yaml(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
configs:
  "reg.example:5000":
    tls:
      insecure_skip_verify: true
    auth:
      username: u
      password: p
  "other.example":
    auth:
      auth: dTI6cDI=
"#,
        )
        .unwrap();
        assert_eq!(
            c.mirrors["docker.io"].endpoint,
            vec!["http://127.0.0.1:5000"]
        );
        assert!(c.is_insecure("reg.example:5000"));
        assert!(!c.is_insecure("reg.example"));
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(c.is_insecure("127.3.4.5"));
        assert!(c.is_insecure("localhost:80"));
        assert!(c.is_insecure("[::1]:5000"));
        assert!(!c.is_insecure("quay.io"));
        assert_eq!(
            c.credentials("reg.example:5000"),
            Some(Credentials::new("u", "p"))
        );
        assert_eq!(
            c.credentials("other.example"),
            Some(Credentials::new("u2", "p2"))
        );
        assert!(RegistryConfig::from_yaml("").unwrap().mirrors.is_empty());
    }

    #[test]
    fn docker_config_json() {
        let j = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#;
        assert_eq!(
            Credentials::from_docker_config_json(j, "docker.io").unwrap(),
            Some(Credentials::new("u", "p"))
        );
        assert_eq!(
            Credentials::from_docker_config_json(j, "127.0.0.1:5000").unwrap(),
            Some(Credentials::new("a", "b"))
        );
        assert_eq!(
            Credentials::from_docker_config_json(j, "quay.io").unwrap(),
            None
        );
        assert!(!format!("{:?}", Credentials::new("a", "secret")).contains("secret"));
    }
}
