//! Pod volumes as host directories that the runtime bind-mounts into
//! containers: emptyDir (disk or tmpfs), hostPath, configMap, secret,
//! downwardAPI and projected (the last four written atomically through
//! upstream's `..data` symlink swap).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIVolumeFile, KeyToPath, Pod, SecretProjection, Volume,
};

use crate::sources::{field_value, resource_value, Sources};

/// A volume ready to be mounted.
#[derive(Debug, Clone)]
pub struct VolumeDir {
    pub host_path: PathBuf,
    /// configMap/secret/downwardAPI/projected are always read-only.
    pub force_read_only: bool,
}

/// A file of a projected volume: content and mode.
type Files = BTreeMap<String, (Vec<u8>, u32)>;

fn sanitize(name: &str) -> String {
    name.replace(['/', '\0'], "_")
}

/// Set up every volume of the pod under `<pod_dir>/volumes`. Errors are
/// upstream's FailedMount messages.
pub async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    sources: &mut Sources,
    host_ip: &str,
    mounter: Option<&dyn bosun_runtime::Mounter>,
) -> Result<HashMap<String, VolumeDir>, String> {
    let mut out = HashMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    for v in spec.volumes.iter().flatten() {
        let d = setup_one(pod, v, pod_dir, sources, host_ip, mounter)
            .await
            .map_err(|e| format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name))?;
        out.insert(v.name.clone(), d);
    }
    Ok(out)
}

async fn setup_one(
    pod: &Pod,
    v: &Volume,
    pod_dir: &Path,
    sources: &mut Sources,
    host_ip: &str,
    mounter: Option<&dyn bosun_runtime::Mounter>,
) -> Result<VolumeDir, String> {
    let base = pod_dir.join("volumes");
    let dir_for = |kind: &str| base.join(kind).join(sanitize(&v.name));
    let mkdir =
        |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()));
    if let Some(ed) = &v.empty_dir {
        let d = dir_for("empty-dir");
        mkdir(&d)?;
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777));
        if ed.medium.as_deref() == Some("Memory") {
            if let Some(m) = mounter {
                if !m.is_mounted(&d).unwrap_or(false) {
                    let size = ed
                        .size_limit
                        .as_ref()
                        .and_then(|q| crate::util::whole(&q.0))
                        .filter(|s| *s > 0)
                        .map(|s| format!("size={s}"))
                        .unwrap_or_else(|| "size=50%".into());
                    m.mount_tmpfs(&d, &format!("{size},mode=1777"))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        return Ok(VolumeDir {
            host_path: d,
            force_read_only: false,
        });
    }
    if let Some(hp) = &v.host_path {
        let p = PathBuf::from(&hp.path);
        let t = hp.type_.as_deref().unwrap_or("");
        let meta = std::fs::metadata(&p);
        use std::os::unix::fs::FileTypeExt;
        match t {
            "DirectoryOrCreate" => {
                if meta.is_err() {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| format!("mkdir {}: {e}", p.display()))?;
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
                } else if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                    return Err(format!(
                        "hostPath type check failed: {} is not a directory",
                        hp.path
                    ));
                }
            }
            "FileOrCreate" => {
                if meta.is_err() {
                    if let Some(parent) = p.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(|e| format!("create {}: {e}", p.display()))?;
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644));
                } else if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                    return Err(format!(
                        "hostPath type check failed: {} is not a file",
                        hp.path
                    ));
                }
            }
            "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
                return Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    hp.path
                ))
            }
            "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => {
                return Err(format!(
                    "hostPath type check failed: {} is not a file",
                    hp.path
                ))
            }
            "Socket" if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => {
                return Err(format!(
                    "hostPath type check failed: {} is not a socket file",
                    hp.path
                ))
            }
            "CharDevice" if !meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()) => {
                return Err(format!(
                    "hostPath type check failed: {} is not a character device",
                    hp.path
                ))
            }
            "BlockDevice" if !meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()) => {
                return Err(format!(
                    "hostPath type check failed: {} is not a block device",
                    hp.path
                ))
            }
            _ => {}
        }
        return Ok(VolumeDir {
            host_path: p,
            force_read_only: false,
        });
    }
    let mut files = Files::new();
    let kind;
    if let Some(cm) = &v.config_map {
        kind = "configmap";
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        let name = cm.name.clone();
        if let Some(data) = sources
            .configmap_data(&name, cm.optional.unwrap_or(false))
            .await?
        {
            project_keys(
                &mut files,
                &data,
                cm.items.as_deref(),
                mode,
                "ConfigMap",
                &name,
            )?;
        }
    } else if let Some(s) = &v.secret {
        kind = "secret";
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        let name = s.secret_name.clone().unwrap_or_default();
        if let Some(data) = sources
            .secret_data(&name, s.optional.unwrap_or(false))
            .await?
        {
            project_keys(&mut files, &data, s.items.as_deref(), mode, "Secret", &name)?;
        }
    } else if let Some(da) = &v.downward_api {
        kind = "downward-api";
        let mode = da.default_mode.unwrap_or(0o644) as u32;
        project_downward(
            &mut files,
            pod,
            da.items.as_deref().unwrap_or(&[]),
            mode,
            host_ip,
        )?;
    } else if let Some(p) = &v.projected {
        kind = "projected";
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        for src in p.sources.iter().flatten() {
            if let Some(ConfigMapProjection {
                name,
                items,
                optional,
            }) = &src.config_map
            {
                if let Some(data) = sources
                    .configmap_data(name, optional.unwrap_or(false))
                    .await?
                {
                    project_keys(&mut files, &data, items.as_deref(), mode, "ConfigMap", name)?;
                }
            }
            if let Some(SecretProjection {
                name,
                items,
                optional,
            }) = &src.secret
            {
                if let Some(data) = sources.secret_data(name, optional.unwrap_or(false)).await? {
                    project_keys(&mut files, &data, items.as_deref(), mode, "Secret", name)?;
                }
            }
            if let Some(da) = &src.downward_api {
                project_downward(
                    &mut files,
                    pod,
                    da.items.as_deref().unwrap_or(&[]),
                    mode,
                    host_ip,
                )?;
            }
            if src.service_account_token.is_some() {
                return Err("serviceAccountToken projections are not supported yet".into());
            }
        }
    } else {
        return Err("volume type not supported by this node agent yet".into());
    }
    let d = dir_for(kind);
    write_atomic_dir(&d, &files).map_err(|e| format!("writing {}: {e}", d.display()))?;
    Ok(VolumeDir {
        host_path: d,
        force_read_only: true,
    })
}

fn project_keys(
    files: &mut Files,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    return Err(if kind == "Secret" {
                        format!("secret references non-existent secret key: {}", it.key)
                    } else {
                        format!("configmap references non-existent config key: {}", it.key)
                    });
                };
                check_rel(&it.path)?;
                files.insert(
                    it.path.clone(),
                    (v.clone(), it.mode.map(|m| m as u32).unwrap_or(mode)),
                );
            }
        }
        _ => {
            for (k, v) in data {
                check_rel(k)?;
                files.insert(k.clone(), (v.clone(), mode));
            }
        }
    }
    let _ = name; // kept for messages of later checks
    Ok(())
}

fn project_downward(
    files: &mut Files,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    host_ip: &str,
) -> Result<(), String> {
    for it in items {
        check_rel(&it.path)?;
        let value = if let Some(f) = &it.field_ref {
            field_value(pod, &f.field_path, host_ip, true)?
        } else if let Some(r) = &it.resource_field_ref {
            let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
            let cname = r.container_name.clone().unwrap_or_default();
            let c = spec
                .containers
                .iter()
                .find(|c| c.name == cname)
                .or_else(|| spec.containers.first())
                .ok_or("no container")?;
            resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
        } else {
            String::new()
        };
        files.insert(
            it.path.clone(),
            (
                value.into_bytes(),
                it.mode.map(|m| m as u32).unwrap_or(mode),
            ),
        );
    }
    Ok(())
}

fn check_rel(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    if p.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || p.starts_with("..")
    {
        return Err(format!("invalid path {p:?}"));
    }
    Ok(())
}

/// Current content of an atomic-writer directory.
fn read_current(dir: &Path, files: &Files) -> Option<bool> {
    let data = dir.join("..data");
    std::fs::symlink_metadata(&data).ok()?;
    let mut n = 0;
    for (p, (content, mode)) in files {
        let f = data.join(p);
        let meta = std::fs::metadata(&f).ok()?;
        if meta.permissions().mode() & 0o7777 != *mode || std::fs::read(&f).ok()? != *content {
            return Some(false);
        }
        n += 1;
    }
    // Same file count?
    let mut count = 0;
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            if e.file_type().ok()?.is_dir() {
                stack.push(e.path());
            } else {
                count += 1;
            }
        }
    }
    Some(count == n)
}

/// Upstream's AtomicWriter: files go to a fresh `..<timestamp>` dir,
/// `..data` is switched to it by a rename of a symlink, and the user-visible
/// names are symlinks through `..data`.
pub fn write_atomic_dir(dir: &Path, files: &Files) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if read_current(dir, files) == Some(true) {
        return Ok(());
    }
    let ts = format!("..{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%f"));
    let ts_dir = dir.join(&ts);
    std::fs::create_dir_all(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (p, (content, mode)) in files {
        let f = ts_dir.join(p);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&f, content)?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&ts, &tmp_link)?;
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp_link, dir.join("..data"))?;
    // User-visible names.
    let mut tops: Vec<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    tops.dedup();
    for t in &tops {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(t), &link)?;
        }
    }
    // Names no longer projected.
    for e in std::fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("..") && !tops.contains(&n) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        if old != Path::new(&ts) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_dir_swap() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("v");
        let mut f = Files::new();
        f.insert("a".into(), (b"1".to_vec(), 0o644));
        f.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        write_atomic_dir(&d, &f).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        let first = std::fs::read_link(d.join("..data")).unwrap();
        // Unchanged content: no new generation.
        write_atomic_dir(&d, &f).unwrap();
        assert_eq!(std::fs::read_link(d.join("..data")).unwrap(), first);
        f.remove("sub/b");
        f.insert("a".into(), (b"3".to_vec(), 0o644));
        write_atomic_dir(&d, &f).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&first).exists(), "old generation removed");
    }

    #[test]
    fn relative_paths_only() {
        assert!(check_rel("a/b").is_ok());
        assert!(check_rel("/a").is_err());
        assert!(check_rel("../a").is_err());
        assert!(check_rel("..data").is_err());
    }
}
