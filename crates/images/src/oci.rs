//! OCI and Docker v2 manifest, index and config documents.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{ImageError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Annotation naming an image inside an OCI layout (often just the tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The Accept header value for manifest GETs: all four manifest/index types.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// A platform of an index entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The parts of an image config blob this crate reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `rootfs` of a config blob.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The `config` object of an image config blob (Docker's capitalized keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// A parsed manifest document: either a single-image manifest or an index.
#[derive(Debug, Clone)]
pub enum ManifestDoc {
    Image(Manifest),
    Index(Index),
}

impl ManifestDoc {
    /// Parses manifest bytes; the media type comes from the body, else from the
    /// HTTP Content-Type, else from the document's shape.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(ManifestDoc, String)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            #[serde(default)]
            schema_version: Option<u32>,
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
            #[serde(default)]
            layers: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        if probe.schema_version == Some(1) {
            return Err(ImageError::Unsupported("Docker schema 1 manifests".into()));
        }
        let ct = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
        let media_type = probe.media_type.clone().or(ct).unwrap_or_else(|| {
            if probe.manifests.is_some() {
                OCI_INDEX.to_string()
            } else if probe.layers.is_some() {
                OCI_MANIFEST.to_string()
            } else {
                String::new()
            }
        });
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Ok((
                ManifestDoc::Image(serde_json::from_slice(bytes)?),
                media_type,
            )),
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok((
                ManifestDoc::Index(serde_json::from_slice(bytes)?),
                media_type,
            )),
            DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => {
                Err(ImageError::Unsupported("Docker schema 1 manifests".into()))
            }
            other => Err(ImageError::Unsupported(format!(
                "manifest media type {other:?}"
            ))),
        }
    }
}

/// Whether a layer media type is one this crate can unpack.
pub fn is_layer_media_type(mt: &str) -> bool {
    matches!(
        mt,
        OCI_LAYER_TAR
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_TAR
            | DOCKER_FOREIGN_LAYER
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    )
}

/// The platform this node runs: `linux` and the Go name of the host architecture.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    Platform {
        architecture: arch.to_string(),
        os: "linux".to_string(),
        variant: (arch == "arm64").then(|| "v8".to_string()),
    }
}

/// Picks the manifest for `want` from an index: os and architecture must match;
/// a matching variant is preferred. An index with exactly one entry and no
/// platform at all is taken as is.
pub fn select_manifest<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | ""))
        .collect();
    let matching: Vec<&Descriptor> = candidates
        .iter()
        .copied()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    if let Some(exact) = matching
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == want.variant.as_deref())
    {
        return Some(exact);
    }
    if let Some(first) = matching.first() {
        return Some(first);
    }
    if candidates.len() == 1 && candidates[0].platform.is_none() {
        return Some(candidates[0]);
    }
    None
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Hex part of a `sha256:` digest (validated).
pub fn digest_hex(digest: &str) -> Result<&str> {
    crate::reference::validate_digest(digest)?;
    Ok(&digest[7..])
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// `sha256:<hex>` of everything read so far.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Verifies `bytes` hash to `expected`.
pub fn verify_bytes(what: &str, bytes: &[u8], expected: &str) -> Result<()> {
    digest_hex(expected)?;
    let actual = sha256_digest(bytes);
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(mt: &str, os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: mt.to_string(),
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn selects_linux_amd64() {
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                desc(OCI_MANIFEST, "linux", "arm64", Some("v8"), 1),
                desc(OCI_MANIFEST, "windows", "amd64", None, 2),
                desc(OCI_MANIFEST, "linux", "amd64", None, 3),
                desc(OCI_MANIFEST, "unknown", "unknown", None, 4),
            ],
            annotations: None,
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            select_manifest(&idx, &amd64).unwrap().digest,
            idx.manifests[2].digest
        );
        let arm = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select_manifest(&idx, &arm).unwrap().digest,
            idx.manifests[0].digest
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        assert!(select_manifest(&idx, &s390).is_none());
    }

    #[test]
    fn parses_manifest_kinds() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        let (doc, mt) = ManifestDoc::parse(m, None).unwrap();
        assert!(matches!(doc, ManifestDoc::Image(_)));
        assert_eq!(mt, DOCKER_MANIFEST);
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        let (doc, mt) = ManifestDoc::parse(i, Some(DOCKER_MANIFEST_LIST)).unwrap();
        assert!(matches!(doc, ManifestDoc::Index(_)));
        assert_eq!(mt, DOCKER_MANIFEST_LIST);
        let (doc, _) = ManifestDoc::parse(i, Some("application/json")).unwrap();
        assert!(matches!(doc, ManifestDoc::Index(_)));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(
            ManifestDoc::parse(v1, None),
            Err(ImageError::Unsupported(_))
        ));
        let art = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(matches!(
            ManifestDoc::parse(art, None),
            Err(ImageError::Unsupported(_))
        ));
    }
}
