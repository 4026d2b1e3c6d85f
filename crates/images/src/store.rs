//! The content-addressed image store.
//!
//! Layout under the store directory:
//! - `blobs/sha256/<hex>`: manifests, configs and layer blobs, by digest;
//! - `layers/sha256/<hex>`: each layer unpacked once, by diff-id, shared
//!   between images; a directory is usable as an overlayfs lower dir as is;
//! - `index.json`: the images and their names;
//! - `tmp/`: downloads and unpacks in progress (emptied on open);
//! - `registries.yaml`: optional registry configuration (see [`RegistryConfig`]);
//! - `import/*.tar`: archives for [`ImageStore::import_dir_at_start`].
//!
//! Every blob is verified against its digest and every layer against its
//! diff-id before it is renamed into place, and an image is recorded in the
//! index only once all its content is in place, so a crash, a wrong digest
//! or a truncated blob never leaves a corrupt image behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::client::{Endpoint, RegistryClient};
use crate::error::{ImageError, Result};
use crate::oci::{self, ConfigFile, Descriptor, Manifest, ManifestDoc, Platform};
use crate::reference::{as_image_id, Reference};
use crate::registries::{Credentials, RegistryConfig};
use crate::unpack;

/// The runtime configuration of an image (from its config blob).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// `"80/tcp"`-style keys.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerInfo {
    /// Digest of the (compressed) blob.
    pub digest: String,
    /// Digest of the uncompressed tar; names the unpacked directory.
    pub diff_id: String,
    pub media_type: String,
    /// Size of the blob.
    pub size: u64,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// The image ID: the config digest (what `crictl images` shows).
    pub id: String,
    /// Digest of the platform manifest.
    pub manifest_digest: String,
    /// Its media type (OCI or Docker v2).
    pub media_type: String,
    /// Normalized `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@digest` references (the digest pulled: an index's or a manifest's).
    pub repo_digests: Vec<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    pub config: ImageConfig,
    pub os: String,
    pub architecture: String,
    pub created: Option<String>,
    /// Config plus compressed layer sizes.
    pub size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageInfo>,
}

/// Paths of the store layout, usable from blocking tasks.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn blob(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("blobs/sha256")
            .join(oci::digest_hex(digest)?))
    }
    pub fn layer(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("layers/sha256")
            .join(oci::digest_hex(diff_id)?))
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Stores verified bytes under their digest (temp file + rename).
    pub fn put_blob_bytes(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        oci::verify_bytes(&format!("blob {digest}"), bytes, digest)?;
        let dest = self.blob(digest)?;
        if dest.exists() {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(self.tmp())?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(())
    }

    /// Moves (or copies) a local file into the blob store after hashing it.
    pub fn put_blob_file(&self, digest: &str, src: &Path) -> Result<()> {
        let dest = self.blob(digest)?;
        if dest.exists() {
            return Ok(());
        }
        let mut r = oci::HashingReader::new(fs::File::open(src)?);
        std::io::copy(&mut r, &mut std::io::sink())?;
        let actual = r.digest();
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {digest} ({})", src.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.tmp())?
            .into_temp_path();
        if fs::rename(src, &tmp).is_err() {
            fs::copy(src, &tmp)?;
        }
        fs::File::open(&tmp)?.sync_all()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(())
    }

    /// Unpacks the blob `digest` into the layer directory of `diff_id`, unless
    /// present; verifies the diff-id first.
    pub fn ensure_layer(&self, digest: &str, diff_id: &str) -> Result<()> {
        let dest = self.layer(diff_id)?;
        if dest.exists() {
            return Ok(());
        }
        let blob = self.blob(digest)?;
        let tmp = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(self.tmp())?;
        let unpacked = tmp.path().join("fs");
        let actual = unpack::unpack_layer(&blob, &unpacked)?;
        if actual != diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("layer {digest} (diff-id)"),
                expected: diff_id.to_string(),
                actual,
            });
        }
        sync_fs(&unpacked);
        match fs::rename(&unpacked, &dest) {
            Ok(()) => Ok(()),
            Err(_) if dest.exists() => Ok(()), // unpacked concurrently
            Err(e) => Err(e.into()),
        }
    }

    /// Ingests an image whose blobs are local files: verifies and stores the
    /// config, layers and manifest; returns the (uncommitted) image.
    pub fn ingest_local(
        &self,
        manifest_bytes: &[u8],
        manifest_digest: &str,
        media_type: &str,
        blob_file: &dyn Fn(&str) -> Result<PathBuf>,
        repo_tags: Vec<String>,
        repo_digests: Vec<String>,
    ) -> Result<ImageInfo> {
        oci::verify_bytes("manifest", manifest_bytes, manifest_digest)?;
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)?;
        let config_bytes = fs::read(blob_file(&manifest.config.digest)?)?;
        oci::verify_bytes("config", &config_bytes, &manifest.config.digest)?;
        let config: ConfigFile = serde_json::from_slice(&config_bytes)?;
        let diff_ids = check_layers(&manifest, &config)?;
        for (desc, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            if self.layer(diff_id)?.exists() && self.blob(&desc.digest)?.exists() {
                continue;
            }
            self.put_blob_file(&desc.digest, &blob_file(&desc.digest)?)?;
            self.ensure_layer(&desc.digest, diff_id)?;
        }
        self.put_blob_bytes(&manifest.config.digest, &config_bytes)?;
        self.put_blob_bytes(manifest_digest, manifest_bytes)?;
        Ok(build_info(
            manifest_digest,
            media_type,
            &manifest,
            &config,
            &diff_ids,
            repo_tags,
            repo_digests,
        ))
    }
}

fn sync_fs(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = fs::File::open(path) {
        // SAFETY: f is an open descriptor for the duration of the call.
        unsafe { libc::syncfs(f.as_raw_fd()) };
    }
}

/// Checks the layers are unpackable and match the config's diff-ids.
pub(crate) fn check_layers(manifest: &Manifest, config: &ConfigFile) -> Result<Vec<String>> {
    for l in &manifest.layers {
        if !oci::is_layer_media_type(&l.media_type) {
            return Err(ImageError::Unsupported(format!(
                "layer media type {:?}",
                l.media_type
            )));
        }
        oci::digest_hex(&l.digest)?;
    }
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::invalid(format!(
            "{} layers but {} diff-ids in the config",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    for d in &diff_ids {
        oci::digest_hex(d)?;
    }
    Ok(diff_ids)
}

pub(crate) fn build_info(
    manifest_digest: &str,
    media_type: &str,
    manifest: &Manifest,
    config: &ConfigFile,
    diff_ids: &[String],
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
) -> ImageInfo {
    let c = config.config.clone().unwrap_or_default();
    let layers: Vec<LayerInfo> = manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(d, diff)| LayerInfo {
            digest: d.digest.clone(),
            diff_id: diff.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
        })
        .collect();
    ImageInfo {
        id: manifest.config.digest.clone(),
        manifest_digest: manifest_digest.to_string(),
        media_type: media_type.to_string(),
        repo_tags,
        repo_digests,
        size: manifest.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        config: ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            exposed_ports: c
                .exposed_ports
                .map(|p| p.into_keys().collect())
                .unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            stop_signal: c.stop_signal,
        },
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        created: config.created.clone(),
    }
}

type Leases = Arc<Mutex<HashMap<String, usize>>>;

/// Keeps an image from being removed while alive (e.g. while a container uses it).
#[derive(Debug)]
pub struct ImageLease {
    leases: Leases,
    key: String,
}

impl Drop for ImageLease {
    fn drop(&mut self) {
        let mut l = self.leases.lock().expect("leases");
        if let Some(n) = l.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                l.remove(&self.key);
            }
        }
    }
}

/// The node's image store.
pub struct ImageStore {
    layout: Layout,
    client: RegistryClient,
    platform: Platform,
    images: Mutex<Vec<ImageInfo>>,
    /// Pulls and imports hold it shared, removal (garbage collection) exclusively.
    gc: tokio::sync::RwLock<()>,
    leases: Leases,
}

impl ImageStore {
    /// Opens (creating if needed) a store in `dir`, with the registry
    /// configuration of `dir/registries.yaml` if that exists.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = RegistryConfig::load(&dir.join("registries.yaml"))?;
        Self::open_with_config(dir, config)
    }

    /// Opens a store with an explicit registry configuration.
    pub fn open_with_config(dir: impl AsRef<Path>, config: RegistryConfig) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        for sub in ["blobs/sha256", "layers/sha256"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let layout = Layout { root };
        // Leftovers of interrupted pulls.
        let _ = fs::remove_dir_all(layout.tmp());
        fs::create_dir_all(layout.tmp())?;
        let index: IndexFile = match fs::read(layout.root.join("index.json")) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IndexFile::default(),
            Err(e) => return Err(e.into()),
        };
        let images: Vec<ImageInfo> = index
            .images
            .into_iter()
            .filter(|i| {
                let ok = i
                    .layers
                    .iter()
                    .all(|l| layout.layer(&l.diff_id).is_ok_and(|p| p.is_dir()));
                if !ok {
                    tracing::warn!(image = %i.id, "dropping image with missing layers");
                }
                ok
            })
            .collect();
        // Content of interrupted or failed pulls that no image references.
        collect_garbage(&layout, &images)?;
        Ok(ImageStore {
            layout,
            client: RegistryClient::new(config)?,
            platform: oci::host_platform(),
            images: Mutex::new(images),
            gc: tokio::sync::RwLock::new(()),
            leases: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// The registry client (for pushing test images, for instance).
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Pulls `reference` (normalized like Docker: `busybox` →
    /// `docker.io/library/busybox:latest`) from its registry or a configured
    /// mirror, with optional credentials (e.g. from an imagePullSecret).
    pub async fn pull(&self, reference: &str, auth: Option<Credentials>) -> Result<ImageInfo> {
        let r = Reference::parse(reference)?;
        let _gc = self.gc.read().await;
        let mut first_specific: Option<ImageError> = None;
        let mut last: Option<ImageError> = None;
        for ep in self.client.endpoints(&r.domain) {
            match self.pull_from(&r, &ep, auth.clone()).await {
                Ok(info) => return Ok(info),
                Err(e) => {
                    tracing::warn!(reference = %r, endpoint = %ep.host, error = %e, "pull failed");
                    if first_specific.is_none() && !matches!(e, ImageError::Network(_)) {
                        first_specific = Some(e);
                    } else {
                        last = Some(e);
                    }
                }
            }
        }
        Err(first_specific
            .or(last)
            .unwrap_or_else(|| ImageError::NotFound(r.to_string())))
    }

    async fn pull_from(
        &self,
        r: &Reference,
        ep: &Endpoint,
        auth: Option<Credentials>,
    ) -> Result<ImageInfo> {
        let s = self.client.open(ep, &r.repository, auth, false).await?;
        let (bytes, ct, top_digest) = s.get_manifest(r.manifest_ref()).await?;
        let (doc, mt) = ManifestDoc::parse(&bytes, ct.as_deref())?;
        let (manifest_bytes, manifest_digest, media_type) = match doc {
            ManifestDoc::Image(_) => (bytes, top_digest.clone(), mt),
            ManifestDoc::Index(idx) => {
                let d = oci::select_manifest(&idx, &self.platform).ok_or_else(|| {
                    ImageError::Unsupported(format!(
                        "{r} has no manifest for {}/{}",
                        self.platform.os, self.platform.architecture
                    ))
                })?;
                let (b, ct, dg) = s.get_manifest(&d.digest).await?;
                let (doc, mt) = ManifestDoc::parse(&b, ct.as_deref().or(Some(&d.media_type)))?;
                if !matches!(doc, ManifestDoc::Image(_)) {
                    return Err(ImageError::Unsupported("nested image index".into()));
                }
                (b, dg, mt)
            }
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)?;
        let config_path = self.layout.blob(&manifest.config.digest)?;
        let config_bytes = match fs::read(&config_path) {
            Ok(b) => b,
            Err(_) => s.get_blob_bytes(&manifest.config).await?,
        };
        oci::verify_bytes("config", &config_bytes, &manifest.config.digest)?;
        let config: ConfigFile = serde_json::from_slice(&config_bytes)?;
        let diff_ids = check_layers(&manifest, &config)?;

        let jobs: Vec<(Descriptor, String)> = manifest
            .layers
            .iter()
            .cloned()
            .zip(diff_ids.iter().cloned())
            .collect();
        futures::stream::iter(jobs.into_iter().map(|(desc, diff_id)| {
            let s = &s;
            async move { self.fetch_layer(s, &desc, &diff_id).await }
        }))
        .buffer_unordered(3)
        // Wait for every job (no short-circuit): an unpack running on a
        // blocking thread must be finished before the pull reports.
        .collect::<Vec<Result<()>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;

        self.layout
            .put_blob_bytes(&manifest.config.digest, &config_bytes)?;
        self.layout
            .put_blob_bytes(&manifest_digest, &manifest_bytes)?;
        let info = build_info(
            &manifest_digest,
            &media_type,
            &manifest,
            &config,
            &diff_ids,
            r.tagged().into_iter().collect(),
            vec![r.with_digest(&top_digest)],
        );
        self.commit(info)
    }

    async fn fetch_layer(
        &self,
        s: &crate::client::RepoSession,
        desc: &Descriptor,
        diff_id: &str,
    ) -> Result<()> {
        let blob = self.layout.blob(&desc.digest)?;
        if self.layout.layer(diff_id)?.exists() && blob.exists() {
            return Ok(());
        }
        if !blob.exists() {
            let tmp = tempfile::Builder::new()
                .prefix("download-")
                .tempfile_in(self.layout.tmp())?
                .into_temp_path();
            s.download_blob(desc, &tmp).await?;
            tmp.persist(&blob).map_err(|e| e.error)?;
        }
        let layout = self.layout.clone();
        let (digest, diff) = (desc.digest.clone(), diff_id.to_string());
        tokio::task::spawn_blocking(move || layout.ensure_layer(&digest, &diff))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))?
    }

    /// Records an image whose content is in place: tags move from other images,
    /// names of an already known manifest are merged.
    fn commit(&self, mut info: ImageInfo) -> Result<ImageInfo> {
        let mut images = self.images.lock().expect("images");
        for other in images.iter_mut() {
            if other.manifest_digest == info.manifest_digest {
                continue;
            }
            other.repo_tags.retain(|t| !info.repo_tags.contains(t));
        }
        if let Some(existing) = images
            .iter_mut()
            .find(|i| i.manifest_digest == info.manifest_digest)
        {
            for t in &existing.repo_tags {
                if !info.repo_tags.contains(t) {
                    info.repo_tags.push(t.clone());
                }
            }
            for d in &existing.repo_digests {
                if !info.repo_digests.contains(d) {
                    info.repo_digests.push(d.clone());
                }
            }
            info.repo_tags.sort();
            info.repo_digests.sort();
            *existing = info.clone();
        } else {
            images.push(info.clone());
        }
        self.write_index(&images)?;
        Ok(info)
    }

    fn write_index(&self, images: &[ImageInfo]) -> Result<()> {
        let file = IndexFile {
            version: 1,
            images: images.to_vec(),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(self.layout.tmp())?;
        serde_json::to_writer_pretty(&mut tmp, &file)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.layout.root.join("index.json"))
            .map_err(|e| e.error)?;
        if let Ok(d) = fs::File::open(&self.layout.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Finds an image by reference (`busybox`, `name:tag`, `name@sha256:…`) or
    /// by ID (`sha256:<config digest>`, bare hex, or a manifest digest).
    pub fn get(&self, reference: &str) -> Option<ImageInfo> {
        let images = self.images.lock().expect("images");
        if let Some(id) = as_image_id(reference) {
            return images
                .iter()
                .find(|i| i.id == id || i.manifest_digest == id)
                .cloned();
        }
        let r = Reference::parse(reference).ok()?;
        if let Some(d) = &r.digest {
            let want = r.with_digest(d);
            return images
                .iter()
                .find(|i| i.repo_digests.contains(&want))
                .or_else(|| images.iter().find(|i| &i.manifest_digest == d))
                .cloned();
        }
        let want = r.tagged()?;
        images.iter().find(|i| i.repo_tags.contains(&want)).cloned()
    }

    /// All images.
    pub fn list(&self) -> Vec<ImageInfo> {
        self.images.lock().expect("images").clone()
    }

    /// Marks an image in use until the lease is dropped; [`ImageStore::remove`]
    /// refuses leased images.
    pub fn lease(&self, image: &ImageInfo) -> ImageLease {
        *self
            .leases
            .lock()
            .expect("leases")
            .entry(image.manifest_digest.clone())
            .or_default() += 1;
        ImageLease {
            leases: self.leases.clone(),
            key: image.manifest_digest.clone(),
        }
    }

    /// Whether an image is leased.
    pub fn in_use(&self, image: &ImageInfo) -> bool {
        self.leases
            .lock()
            .expect("leases")
            .contains_key(&image.manifest_digest)
    }

    /// Removes an image (all its names) and deletes blobs and layer
    /// directories no other image uses. Fails with [`ImageError::InUse`] for a
    /// leased image and [`ImageError::NotFound`] for an unknown one.
    pub async fn remove(&self, reference: &str) -> Result<ImageInfo> {
        let _gc = self.gc.write().await;
        let info = self
            .get(reference)
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        if self.in_use(&info) {
            return Err(ImageError::InUse(reference.to_string()));
        }
        let remaining = {
            let mut images = self.images.lock().expect("images");
            images.retain(|i| i.manifest_digest != info.manifest_digest);
            self.write_index(&images)?;
            images.clone()
        };
        let layout = self.layout.clone();
        tokio::task::spawn_blocking(move || collect_garbage(&layout, &remaining))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))??;
        Ok(info)
    }

    /// Overlayfs lower directories of an image, top layer first.
    pub fn layer_dirs(&self, image: &ImageInfo) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .rev()
            .filter_map(|l| self.layout.layer(&l.diff_id).ok())
            .collect()
    }

    /// The raw config blob of an image.
    pub fn config_blob(&self, image: &ImageInfo) -> Result<Vec<u8>> {
        Ok(fs::read(self.layout.blob(&image.id)?)?)
    }

    /// Copies the merged filesystem of an image into `dest` (whiteouts applied),
    /// for runtimes without overlayfs.
    pub fn materialize(&self, image: &ImageInfo, dest: &Path) -> Result<()> {
        let mut dirs = self.layer_dirs(image);
        dirs.reverse();
        unpack::merge_layers(&dirs, dest)
    }

    /// Imports an OCI image layout tar (`skopeo copy … oci-archive:`,
    /// containerd export) or a `docker save` tar, possibly gzip/zstd compressed.
    /// Returns the images imported.
    pub async fn import_archive(&self, path: impl AsRef<Path>) -> Result<Vec<ImageInfo>> {
        let _gc = self.gc.read().await;
        let layout = self.layout.clone();
        let platform = self.platform.clone();
        let path = path.as_ref().to_path_buf();
        let infos =
            tokio::task::spawn_blocking(move || crate::archive::import(&layout, &path, &platform))
                .await
                .map_err(|e| ImageError::Io(std::io::Error::other(e)))??;
        infos.into_iter().map(|i| self.commit(i)).collect()
    }

    /// Imports every `*.tar` (and `*.tar.gz`, `*.tar.zst`) in `dir` (e.g.
    /// `<data-dir>/images/import`), in name order. A broken archive is logged
    /// and skipped. Returns the images imported.
    pub async fn import_dir_at_start(&self, dir: impl AsRef<Path>) -> Result<Vec<ImageInfo>> {
        let mut files: Vec<PathBuf> = match fs::read_dir(dir.as_ref()) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    n.ends_with(".tar")
                        || n.ends_with(".tar.gz")
                        || n.ends_with(".tgz")
                        || n.ends_with(".tar.zst")
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        files.sort();
        let mut out = Vec::new();
        for f in files {
            match self.import_archive(&f).await {
                Ok(mut infos) => {
                    tracing::info!(archive = %f.display(), images = infos.len(), "imported images");
                    out.append(&mut infos);
                }
                Err(e) => tracing::warn!(archive = %f.display(), error = %e, "image import failed"),
            }
        }
        Ok(out)
    }
}

/// Deletes blobs and layer directories that no image references.
fn collect_garbage(layout: &Layout, images: &[ImageInfo]) -> Result<()> {
    let mut blobs = BTreeSet::new();
    let mut layers = BTreeSet::new();
    for i in images {
        blobs.insert(i.manifest_digest.clone());
        blobs.insert(i.id.clone());
        for l in &i.layers {
            blobs.insert(l.digest.clone());
            layers.insert(l.diff_id.clone());
        }
    }
    for e in fs::read_dir(layout.root.join("blobs/sha256"))? {
        let e = e?;
        let d = format!("sha256:{}", e.file_name().to_string_lossy());
        if !blobs.contains(&d) {
            fs::remove_file(e.path())?;
        }
    }
    for e in fs::read_dir(layout.root.join("layers/sha256"))? {
        let e = e?;
        let d = format!("sha256:{}", e.file_name().to_string_lossy());
        if !layers.contains(&d) {
            // Rename first so a half-deleted directory is never taken for a layer.
            let trash = tempfile::Builder::new()
                .prefix("trash-")
                .tempdir_in(layout.tmp())?;
            let target = trash.path().join("fs");
            fs::rename(e.path(), &target)?;
            fs::remove_dir_all(&target)?;
        }
    }
    Ok(())
}
