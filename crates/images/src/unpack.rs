//! Layer unpacking: decompression (gzip, zstd, plain), diff-id hashing and
//! whiteouts, which become overlayfs whiteouts so a layer's directory can be
//! used directly as an overlay lower dir (character device 0:0 for a
//! `.wh.NAME` file, `trusted.overlay.opaque=y` for `.wh..wh..opq`).

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::oci::HashingReader;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Compression of a layer blob, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Sniffs the compression from magic bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Opens a (possibly compressed) layer blob as a reader of the uncompressed tar.
pub fn open_decompressed(path: &Path) -> Result<Box<dyn Read + Send>> {
    let mut br = BufReader::new(fs::File::open(path)?);
    let head = br.fill_buf()?.to_vec();
    Ok(match sniff(&head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        Compression::None => Box::new(br),
    })
}

/// Unpacks the layer blob at `blob` into the (new, empty) directory `dest`
/// and returns the diff-id (`sha256:` of the uncompressed tar stream).
pub fn unpack_layer(blob: &Path, dest: &Path) -> Result<String> {
    let mut reader = HashingReader::new(open_decompressed(blob)?);
    unpack_tar(&mut reader, dest)?;
    // Hash the rest of the stream (end-of-archive blocks, padding).
    io::copy(&mut reader, &mut io::sink()).map_err(tar_err)?;
    Ok(reader.digest())
}

fn tar_err(e: io::Error) -> ImageError {
    if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::PermissionDenied {
        ImageError::Io(e)
    } else {
        ImageError::invalid(format!("layer: {e}"))
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Unpacks an uncompressed layer tar into `dest`, converting whiteouts.
pub fn unpack_tar<R: Read>(reader: R, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_preserve_ownerships(is_root());
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let Some(rel) = sanitize(&raw)? else {
            continue; // the root directory itself
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_MARKER {
            let dir = safe_dir(dest, parent_rel)?;
            set_opaque(&dir)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(ImageError::invalid(format!("bad whiteout {raw:?}")));
            }
            let dir = safe_dir(dest, parent_rel)?;
            let target = dir.join(hidden);
            remove_any(&target)?;
            make_whiteout(&target)?;
            continue;
        }
        let parent = safe_dir(dest, parent_rel)?;
        let target = parent.join(&name);
        let is_dir = entry.header().entry_type().is_dir();
        if let Ok(meta) = fs::symlink_metadata(&target) {
            // A later entry replaces an earlier one (or a directory is re-declared).
            if !(is_dir && meta.is_dir()) {
                remove_any(&target)?;
            }
        }
        if !entry.unpack_in(dest).map_err(tar_err)? {
            return Err(ImageError::invalid(format!(
                "layer entry escapes root: {raw:?}"
            )));
        }
    }
    Ok(())
}

/// Turns a tar path into a clean relative path; `None` for the root itself.
fn sanitize(p: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::invalid(format!(
                    "layer entry escapes root: {p:?}"
                )))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Returns `dest/rel`, creating missing directories, refusing to go through
/// symlinks or non-directories (so no entry can write outside `dest`).
fn safe_dir(dest: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ImageError::invalid(format!(
                    "layer path goes through a non-directory: {rel:?}"
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cur)
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p)?,
        Ok(_) => fs::remove_file(p)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| ImageError::invalid("NUL in path"))
}

/// Creates an overlayfs whiteout (character device 0:0).
fn make_whiteout(p: &Path) -> Result<()> {
    let c = cpath(p)?;
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Err(ImageError::Unsupported(format!(
                "creating whiteout {p:?} needs CAP_MKNOD (run as root): {e}"
            )));
        }
        return Err(e.into());
    }
    Ok(())
}

/// Marks a directory opaque for overlayfs.
fn set_opaque(dir: &Path) -> Result<()> {
    let c = cpath(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: valid NUL-terminated strings and a 1-byte value buffer.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Err(ImageError::Unsupported(format!(
                "marking {dir:?} opaque needs CAP_SYS_ADMIN (run as root): {e}"
            )));
        }
        return Err(e.into());
    }
    Ok(())
}

/// Whether `p` is an overlayfs whiteout (character device 0:0).
pub fn is_whiteout(p: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::symlink_metadata(p)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

/// Whether the directory `p` carries `trusted.overlay.opaque=y`.
pub fn is_opaque(p: &Path) -> bool {
    let Ok(c) = cpath(p) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: valid strings; buf is 4 bytes long.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// Applies layer directories (bottom first) onto `dest` the way overlayfs would
/// show them merged: whiteouts delete, opaque directories replace. For nodes
/// without overlayfs and for tests.
pub fn merge_layers(layers_bottom_first: &[PathBuf], dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    for layer in layers_bottom_first {
        merge_dir(layer, dest)?;
    }
    Ok(())
}

fn merge_dir(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if is_opaque(src) {
        for e in fs::read_dir(dst)? {
            remove_any(&e?.path())?;
        }
    }
    let mut entries: Vec<_> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let s = e.path();
        let d = dst.join(e.file_name());
        let meta = fs::symlink_metadata(&s)?;
        if is_whiteout(&s) {
            remove_any(&d)?;
        } else if meta.is_dir() {
            match fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&d)?;
                    fs::create_dir(&d)?;
                }
                Err(_) => fs::create_dir(&d)?,
            }
            fs::set_permissions(&d, fs::Permissions::from_mode(meta.permissions().mode()))?;
            merge_dir(&s, &d)?;
        } else {
            remove_any(&d)?;
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            } else if meta.is_file() {
                fs::copy(&s, &d)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testimage::TestLayer;

    fn root_or_skip(name: &str) -> bool {
        if is_root() {
            return true;
        }
        assert!(std::env::var_os("CI").is_none(), "{name} needs root in CI");
        eprintln!("SKIP {name}: needs root (mknod, trusted xattrs)");
        false
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !root_or_skip("whiteouts_become_overlay_whiteouts") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let lower = TestLayer::new()
            .file("etc/keep", 0o644, b"keep")
            .file("etc/gone", 0o644, b"gone")
            .file("opt/a/old", 0o644, b"old")
            .symlink("bin/sh", "busybox");
        let upper =
            TestLayer::new()
                .whiteout("etc/gone")
                .opaque("opt/a")
                .file("opt/a/new", 0o600, b"new");
        let l1 = tmp.path().join("l1");
        let l2 = tmp.path().join("l2");
        let d1 = unpack_bytes(&lower.tar(), &l1);
        let d2 = unpack_bytes(&upper.gzip(), &l2);
        assert_eq!(d1, crate::oci::sha256_digest(&lower.tar()));
        assert_eq!(d2, crate::oci::sha256_digest(&upper.tar()));
        assert!(is_whiteout(&l2.join("etc/gone")));
        assert!(!l2.join(".wh.gone").exists() && !l2.join("etc/.wh.gone").exists());
        assert!(is_opaque(&l2.join("opt/a")));
        assert!(!is_opaque(&l1.join("opt/a")));
        assert_eq!(
            fs::read_link(l1.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );

        let merged = tmp.path().join("merged");
        merge_layers(&[l1, l2], &merged).unwrap();
        assert_eq!(fs::read(merged.join("etc/keep")).unwrap(), b"keep");
        assert!(!merged.join("etc/gone").exists());
        assert!(!merged.join("opt/a/old").exists());
        assert_eq!(fs::read(merged.join("opt/a/new")).unwrap(), b"new");
    }

    fn unpack_bytes(bytes: &[u8], dest: &Path) -> String {
        let f = tempfile::NamedTempFile::new().unwrap();
        fs::write(f.path(), bytes).unwrap();
        unpack_layer(f.path(), dest).unwrap()
    }

    #[test]
    fn zstd_layers_unpack() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = TestLayer::new().file("a/b", 0o644, b"hello");
        let d = unpack_bytes(&layer.zstd(), &tmp.path().join("x"));
        assert_eq!(d, crate::oci::sha256_digest(&layer.tar()));
        assert_eq!(fs::read(tmp.path().join("x/a/b")).unwrap(), b"hello");
    }

    #[test]
    fn refuses_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        // A symlink to outside, then a file through it.
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let layer = TestLayer::new()
            .symlink("evil", outside.to_str().unwrap())
            .file("evil/pwned", 0o644, b"x");
        let f = tempfile::NamedTempFile::new().unwrap();
        fs::write(f.path(), layer.tar()).unwrap();
        let err = unpack_layer(f.path(), &tmp.path().join("root")).unwrap_err();
        assert!(matches!(err, ImageError::Invalid(_)), "{err}");
        assert!(!outside.join("pwned").exists());
        assert!(sanitize(Path::new("../x")).is_err());
        assert_eq!(
            sanitize(Path::new("./a/./b")).unwrap().unwrap(),
            Path::new("a/b")
        );
        assert_eq!(sanitize(Path::new("./")).unwrap(), None);
    }
}
