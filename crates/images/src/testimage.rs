//! Deterministic test images built offline: tar layers with fixed mtimes,
//! owners and sorted entries, written as an OCI image layout. Used by this
//! crate's tests and by end-to-end tests (push to a local registry, or import).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{ImageError, Result};
use crate::oci::{self, sha256_digest};
use crate::store::ImageConfig;

/// Where Debian's `busybox-static` puts the binary.
pub const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

#[derive(Debug, Clone)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(String),
    Whiteout,
    Opaque,
}

/// A layer's content, kept sorted by path. Parent directories are added automatically.
#[derive(Debug, Clone, Default)]
pub struct TestLayer {
    entries: BTreeMap<String, Entry>,
}

impl TestLayer {
    pub fn new() -> Self {
        Self::default()
    }

    fn add_parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            self.entries.entry(acc.clone()).or_insert(Entry::Dir(0o755));
        }
    }

    fn put(mut self, path: &str, e: Entry) -> Self {
        let path = path.trim_matches('/').to_string();
        self.add_parents(&path);
        self.entries.insert(path, e);
        self
    }

    /// A directory with a mode.
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.put(path, Entry::Dir(mode))
    }
    /// A regular file.
    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.put(path, Entry::File(mode, data.to_vec()))
    }
    /// A symbolic link.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.put(path, Entry::Symlink(target.to_string()))
    }
    /// A whiteout deleting `path` of lower layers (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let path = path.trim_matches('/');
        let wh = match path.rsplit_once('/') {
            Some((d, n)) => format!("{d}/.wh.{n}"),
            None => format!(".wh.{path}"),
        };
        self.put(&wh, Entry::Whiteout)
    }
    /// Marks `dir` opaque (`dir/.wh..wh..opq`): lower layers' content of it is hidden.
    pub fn opaque(self, dir: &str) -> Self {
        let dir = dir.trim_matches('/');
        let p = format!("{dir}/.wh..wh..opq");
        self.put(&p, Entry::Opaque)
    }

    /// The uncompressed tar: sorted entries, mtime 0, uid/gid 0.
    pub fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, e) in &self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            let (mode, kind, data): (u32, tar::EntryType, &[u8]) = match e {
                Entry::Dir(m) => (*m, tar::EntryType::Directory, &[]),
                Entry::File(m, d) => (*m, tar::EntryType::Regular, d),
                Entry::Symlink(_) => (0o777, tar::EntryType::Symlink, &[]),
                Entry::Whiteout | Entry::Opaque => (0o644, tar::EntryType::Regular, &[]),
            };
            h.set_mode(mode);
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            let name = if matches!(e, Entry::Dir(_)) {
                format!("{path}/")
            } else {
                path.clone()
            };
            if let Entry::Symlink(t) = e {
                b.append_link(&mut h, &name, t).expect("tar symlink");
            } else {
                b.append_data(&mut h, &name, data).expect("tar entry");
            }
        }
        b.into_inner().expect("tar finish")
    }

    /// The tar, gzip-compressed deterministically (no name, mtime 0).
    pub fn gzip(&self) -> Vec<u8> {
        gzip(&self.tar())
    }

    /// The tar, zstd-compressed.
    pub fn zstd(&self) -> Vec<u8> {
        zstd::encode_all(&self.tar()[..], 3).expect("zstd")
    }
}

/// Deterministic gzip of some bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// How a test layer is stored in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// An image to write: layers bottom first, and the runtime config.
#[derive(Debug, Clone, Default)]
pub struct TestImage {
    pub layers: Vec<(TestLayer, LayerCompression)>,
    pub config: ImageConfig,
}

/// Digests of an image written by [`write_oci_layout`].
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The OCI layout directory.
    pub dir: PathBuf,
    /// The tag it is recorded under in `index.json` (`org.opencontainers.image.ref.name`).
    pub tag: String,
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    /// Layer blob digests, bottom first.
    pub layer_digests: Vec<String>,
    /// Layer diff-ids, bottom first.
    pub diff_ids: Vec<String>,
}

impl BuiltImage {
    /// Path of a blob in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(&digest[7..])
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let d = sha256_digest(bytes);
    let p = blob_path(dir, &d);
    fs::create_dir_all(p.parent().expect("parent"))?;
    fs::write(&p, bytes)?;
    Ok((d, bytes.len() as u64))
}

/// Writes `image` as an OCI image layout in `dir` (created if needed; an
/// existing `index.json` is replaced). `tag` goes into
/// `org.opencontainers.image.ref.name` (what `skopeo copy oci:DIR:TAG` wants),
/// `full_name` (e.g. `docker.io/library/busybox:1`) into `io.containerd.image.name`.
pub fn write_oci_layout(
    dir: &Path,
    tag: &str,
    full_name: Option<&str>,
    image: &TestImage,
) -> Result<BuiltImage> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut layer_descs = Vec::new();
    let mut layer_digests = Vec::new();
    let mut diff_ids = Vec::new();
    for (layer, comp) in &image.layers {
        let tar = layer.tar();
        diff_ids.push(sha256_digest(&tar));
        let (bytes, mt) = match comp {
            LayerCompression::None => (tar, oci::OCI_LAYER_TAR),
            LayerCompression::Gzip => (gzip(&tar), oci::OCI_LAYER_GZIP),
            LayerCompression::Zstd => (layer.zstd(), oci::OCI_LAYER_ZSTD),
        };
        let (d, size) = write_blob(dir, &bytes)?;
        layer_descs.push(json!({"mediaType": mt, "digest": d, "size": size}));
        layer_digests.push(d);
    }
    let c = &image.config;
    let mut cfg = serde_json::Map::new();
    if !c.user.is_empty() {
        cfg.insert("User".into(), json!(c.user));
    }
    if !c.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, serde_json::Value> = c
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        cfg.insert("ExposedPorts".into(), ports.into());
    }
    if !c.env.is_empty() {
        cfg.insert("Env".into(), json!(c.env));
    }
    if !c.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(c.entrypoint));
    }
    if !c.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(c.cmd));
    }
    if !c.working_dir.is_empty() {
        cfg.insert("WorkingDir".into(), json!(c.working_dir));
    }
    if !c.labels.is_empty() {
        cfg.insert("Labels".into(), json!(c.labels));
    }
    let platform = oci::host_platform();
    let config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": platform.architecture,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| json!({"created": "1970-01-01T00:00:00Z", "created_by": "bosun-images testimage"})).collect::<Vec<_>>(),
    });
    let (config_digest, config_size) = write_blob(dir, &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let (manifest_digest, manifest_size) = write_blob(dir, &manifest_bytes)?;
    let mut annotations = serde_json::Map::new();
    if let Some(n) = full_name {
        annotations.insert(oci::ANNOTATION_CONTAINERD_NAME.into(), json!(n));
    }
    annotations.insert(oci::ANNOTATION_REF_NAME.into(), json!(tag));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": [{
            "mediaType": oci::OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": annotations,
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(BuiltImage {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        manifest_digest,
        manifest: manifest_bytes,
        config_digest,
        layer_digests,
        diff_ids,
    })
}

/// The static busybox binary of Debian's `busybox-static`, if installed
/// (a dynamically linked busybox would not run inside an empty image).
pub fn busybox_binary() -> Option<PathBuf> {
    BUSYBOX_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| fs::read(p).map(|b| is_static_elf(&b)).unwrap_or(false))
}

/// An ELF executable without a program interpreter (`PT_INTERP`).
fn is_static_elf(b: &[u8]) -> bool {
    if !b.starts_with(b"\x7fELF") || b.len() < 64 {
        return false;
    }
    if b[4] != 2 || b[5] != 1 {
        return true; // not 64-bit little-endian: trust the package
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        b.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != 3)
    })
}

/// The content served by the image's `/var/www/index.html`.
pub const BUSYBOX_INDEX_HTML: &str = "hello from bosun busybox\n";

/// The one-layer busybox image: `/bin/busybox` with a symlink per applet
/// (`sh`, `echo`, `sleep`, `cat`, `ls`, `env`, `id`, `hostname`, `wget`,
/// `nc`, `httpd`, …), `/etc/passwd`, `/etc/group`, `/tmp`, `/root` and
/// `/var/www/index.html`; `Cmd ["sh"]`, `PATH` set. Deterministic: the same
/// busybox binary always gives the same digests.
pub fn busybox_test_image() -> Result<TestImage> {
    let bin = busybox_binary().ok_or_else(|| {
        ImageError::NotFound("static busybox (apt-get install busybox-static)".into())
    })?;
    let data = fs::read(&bin)?;
    let out = std::process::Command::new(&bin).arg("--list").output()?;
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|a| {
            *a != "busybox"
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.[".contains(c))
        })
        .map(String::from)
        .collect();
    applets.sort();
    applets.dedup();
    if !applets.iter().any(|a| a == "sh") {
        return Err(ImageError::invalid(format!("{bin:?} --list has no sh")));
    }
    let mut layer = TestLayer::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &data)
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        .dir("root", 0o700)
        .dir("tmp", 0o1777)
        .dir("usr/bin", 0o755)
        .dir("var/www", 0o755)
        .file("var/www/index.html", 0o644, BUSYBOX_INDEX_HTML.as_bytes());
    for a in &applets {
        layer = layer.symlink(&format!("bin/{a}"), "busybox");
    }
    Ok(TestImage {
        layers: vec![(layer, LayerCompression::Gzip)],
        config: ImageConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    })
}

/// Writes the busybox test image as an OCI layout in `out_dir`, tagged `1`
/// and named `docker.io/library/busybox:1`.
pub fn build_busybox_image(out_dir: &Path) -> Result<BuiltImage> {
    write_oci_layout(
        out_dir,
        "1",
        Some("docker.io/library/busybox:1"),
        &busybox_test_image()?,
    )
}

/// Tars a directory (sorted, mtime 0, owner 0) into `out`, e.g. an OCI layout
/// into an OCI archive that [`crate::ImageStore::import_archive`] takes.
pub fn tar_dir(dir: &Path, out: &Path) -> Result<()> {
    fn walk(b: &mut tar::Builder<fs::File>, root: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = root.join(&r);
            let meta = fs::symlink_metadata(&p)?;
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            if meta.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, &r, std::io::empty())?;
                walk(b, root, &r)?;
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(meta.len());
                b.append_data(&mut h, &r, fs::File::open(&p)?)?;
            }
        }
        Ok(())
    }
    let mut b = tar::Builder::new(fs::File::create(out)?);
    walk(&mut b, dir, Path::new(""))?;
    b.into_inner()?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_dynamic_executables() {
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        // The test binary itself is dynamically linked against libc.
        assert!(!is_static_elf(&exe));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn layers_are_deterministic_and_sorted() {
        let l = TestLayer::new()
            .file("b/x", 0o644, b"1")
            .file("a", 0o600, b"2");
        assert_eq!(l.gzip(), l.clone().gzip());
        let tar = l.tar();
        let mut ar = tar::Archive::new(&tar[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a", "b/", "b/x"]);
    }
}
