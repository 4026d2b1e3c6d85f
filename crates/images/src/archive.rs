//! Importing image archives: OCI image layout tars and `docker save` tars.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::error::{ImageError, Result};
use crate::oci::{self, ManifestDoc, Platform};
use crate::reference::Reference;
use crate::store::{ImageInfo, Layout};
use crate::unpack;

/// Extracts the archive in the store's tmp dir and ingests its images.
pub(crate) fn import(layout: &Layout, path: &Path, platform: &Platform) -> Result<Vec<ImageInfo>> {
    let work = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(layout.tmp())?;
    let dir = work.path().join("x");
    fs::create_dir(&dir)?;
    let reader = unpack::open_decompressed(path)?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(false);
    ar.set_preserve_ownerships(false);
    ar.unpack(&dir)
        .map_err(|e| ImageError::invalid(format!("archive {}: {e}", path.display())))?;
    if dir.join("manifest.json").is_file() {
        import_docker(layout, &dir)
    } else if dir.join("index.json").is_file() {
        import_oci(layout, &dir, platform)
    } else {
        Err(ImageError::Unsupported(format!(
            "{}: neither an OCI layout nor a docker save archive",
            path.display()
        )))
    }
}

fn layout_blob(dir: &Path, digest: &str) -> Result<PathBuf> {
    let p = dir.join("blobs/sha256").join(oci::digest_hex(digest)?);
    if !p.is_file() {
        return Err(ImageError::NotFound(format!("blob {digest} in archive")));
    }
    Ok(p)
}

/// The name of an image in an OCI layout index entry: containerd's full name
/// annotation, else `ref.name` when it is a full reference (a bare tag names nothing).
fn oci_names(desc: &oci::Descriptor) -> Vec<String> {
    let Some(a) = &desc.annotations else {
        return Vec::new();
    };
    let full = a.get(oci::ANNOTATION_CONTAINERD_NAME).cloned().or_else(|| {
        a.get(oci::ANNOTATION_REF_NAME)
            .filter(|n| n.contains('/') || n.contains(':'))
            .cloned()
    });
    full.and_then(|n| Reference::parse(&n).ok())
        .and_then(|r| r.tagged())
        .into_iter()
        .collect()
}

fn import_oci(layout: &Layout, dir: &Path, platform: &Platform) -> Result<Vec<ImageInfo>> {
    let index: oci::Index = serde_json::from_slice(&fs::read(dir.join("index.json"))?)?;
    let blob_file = |d: &str| layout_blob(dir, d);
    let mut out = Vec::new();
    for desc in &index.manifests {
        let bytes = fs::read(blob_file(&desc.digest)?)?;
        oci::verify_bytes("manifest", &bytes, &desc.digest)?;
        let (doc, mt) = ManifestDoc::parse(&bytes, Some(&desc.media_type))?;
        let names = oci_names(desc);
        let (mbytes, mdigest, mt) = match doc {
            ManifestDoc::Image(_) => (bytes, desc.digest.clone(), mt),
            ManifestDoc::Index(idx) => {
                let Some(d) = oci::select_manifest(&idx, platform) else {
                    tracing::warn!(digest = %desc.digest, "no manifest for this platform in archive index");
                    continue;
                };
                let b = fs::read(blob_file(&d.digest)?)?;
                let (_, mt) = ManifestDoc::parse(&b, Some(&d.media_type))?;
                (b, d.digest.clone(), mt)
            }
        };
        let repo_digests = names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .map(|r| r.with_digest(&desc.digest))
            .collect();
        out.push(layout.ingest_local(&mbytes, &mdigest, &mt, &blob_file, names, repo_digests)?);
    }
    if out.is_empty() {
        return Err(ImageError::NotFound(
            "no importable image in archive".into(),
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn inside(dir: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ImageError::invalid(format!("archive path {rel:?}")));
    }
    let full = dir.join(p);
    if !full.is_file() {
        return Err(ImageError::NotFound(format!("{rel} in archive")));
    }
    Ok(full)
}

fn file_digest(p: &Path) -> Result<(String, u64)> {
    let mut r = oci::HashingReader::new(fs::File::open(p)?);
    std::io::copy(&mut r, &mut std::io::sink())?;
    let n = r.count();
    Ok((r.digest(), n))
}

fn import_docker(layout: &Layout, dir: &Path) -> Result<Vec<ImageInfo>> {
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(&fs::read(dir.join("manifest.json"))?)?;
    let mut out = Vec::new();
    for e in entries {
        let mut files: HashMap<String, PathBuf> = HashMap::new();
        let config_path = inside(dir, &e.config)?;
        let (config_digest, config_size) = file_digest(&config_path)?;
        files.insert(config_digest.clone(), config_path);
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = inside(dir, l)?;
            let (digest, size) = file_digest(&p)?;
            let head = {
                use std::io::Read;
                let mut b = [0u8; 4];
                let n = fs::File::open(&p)?.read(&mut b)?;
                b[..n].to_vec()
            };
            let mt = match unpack::sniff(&head) {
                unpack::Compression::Gzip => oci::DOCKER_LAYER_GZIP,
                unpack::Compression::Zstd => oci::OCI_LAYER_ZSTD,
                unpack::Compression::None => oci::DOCKER_LAYER_TAR,
            };
            layers.push(json!({"mediaType": mt, "size": size, "digest": digest}));
            files.insert(digest, p);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci::DOCKER_MANIFEST,
            "config": {"mediaType": oci::DOCKER_CONFIG, "size": config_size, "digest": config_digest},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest)?;
        let digest = oci::sha256_digest(&bytes);
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Reference::parse(t).ok().and_then(|r| r.tagged()))
            .collect();
        let blob_file = |d: &str| {
            files
                .get(d)
                .cloned()
                .ok_or_else(|| ImageError::NotFound(format!("blob {d} in archive")))
        };
        out.push(layout.ingest_local(
            &bytes,
            &digest,
            oci::DOCKER_MANIFEST,
            &blob_file,
            names,
            Vec::new(),
        )?);
    }
    Ok(out)
}
