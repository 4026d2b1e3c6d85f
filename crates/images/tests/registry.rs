//! Integration tests against Debian's `docker-registry` (distribution 2.8) run
//! as a child process on 127.0.0.1: push the deterministic busybox image with
//! this crate's client, pull it back, run it, basic auth, mirrors.
//! Needs the apt packages `docker-registry` and `busybox-static`.

mod common;

use std::path::Path;
use std::process::Command;

use bosun_images::testimage::{self, BuiltImage};
use bosun_images::{Credentials, ImageError, ImageStore, RegistryClient, RegistryConfig};
use common::Registry;

fn prerequisites(test: &str) -> bool {
    common::require(
        Path::new(common::REGISTRY_BIN).exists(),
        test,
        "apt-get install docker-registry",
    ) && common::require(
        testimage::busybox_binary().is_some(),
        test,
        "apt-get install busybox-static",
    )
}

fn busybox(dir: &Path) -> BuiltImage {
    testimage::build_busybox_image(&dir.join("busybox-layout")).unwrap()
}

fn check_busybox(store: &ImageStore, info: &bosun_images::ImageInfo, built: &BuiltImage) {
    assert_eq!(info.manifest_digest, built.manifest_digest);
    assert_eq!(info.id, built.config_digest);
    assert_eq!(info.layers.len(), 1);
    assert_eq!(info.layers[0].digest, built.layer_digests[0]);
    assert_eq!(info.layers[0].diff_id, built.diff_ids[0]);
    assert_eq!(info.config.cmd, vec!["sh"]);
    assert!(info.config.env.iter().any(|e| e.starts_with("PATH=")));
    let dirs = store.layer_dirs(info);
    assert_eq!(dirs.len(), 1);
    let root = &dirs[0];
    assert!(root.join("bin/busybox").is_file());
    for applet in [
        "sh", "echo", "sleep", "cat", "ls", "env", "id", "hostname", "wget", "nc",
    ] {
        assert_eq!(
            std::fs::read_link(root.join("bin").join(applet)).unwrap(),
            Path::new("busybox"),
            "{applet}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(root.join("var/www/index.html")).unwrap(),
        testimage::BUSYBOX_INDEX_HTML
    );
    if common::is_root() {
        let out = Command::new("chroot")
            .arg(root)
            .args(["/bin/sh", "-c", "echo hello from $(id -u)"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from 0\n");
    }
}

#[tokio::test]
async fn push_and_pull_busybox() {
    if !prerequisites("push_and_pull_busybox") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let built = busybox(tmp.path());
    let reg = Registry::start(None);
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    for target in ["busybox:1", "library/busybox:1"] {
        let d = client
            .push_oci_layout(
                &built.dir,
                Some("1"),
                &format!("{}/{target}", reg.host()),
                None,
            )
            .await
            .unwrap();
        assert_eq!(d, built.manifest_digest);
    }

    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let reference = format!("{}/busybox:1", reg.host());
    assert!(store.get(&reference).is_none());
    let info = store.pull(&reference, None).await.unwrap();
    check_busybox(&store, &info, &built);
    assert_eq!(info.repo_tags, vec![reference.clone()]);
    assert_eq!(
        info.repo_digests,
        vec![format!("{}/busybox@{}", reg.host(), built.manifest_digest)]
    );
    assert_eq!(store.get(&reference).unwrap(), info);
    // Pull again (already present) and by digest.
    store.pull(&reference, None).await.unwrap();
    let by_digest = format!("{}/busybox@{}", reg.host(), built.manifest_digest);
    store.pull(&by_digest, None).await.unwrap();
    assert_eq!(store.list().len(), 1);
    // Unknown tag and repository.
    let err = store
        .pull(&format!("{}/busybox:2", reg.host()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    let err = store
        .pull(&format!("{}/nothing:1", reg.host()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");

    // Mirrors: a registry that is not running, mirrored to the running one.
    let down = format!("127.0.0.1:{}", common::free_port());
    let config = RegistryConfig::from_yaml(&format!(
        "mirrors:\n  \"{down}\":\n    endpoint:\n      - \"http://{}\"\n",
        reg.host()
    ))
    .unwrap();
    let store2 = ImageStore::open_with_config(tmp.path().join("store2"), config).unwrap();
    let info = store2
        .pull(&format!("{down}/library/busybox:1"), None)
        .await
        .unwrap();
    check_busybox(&store2, &info, &built);
    // Without the mirror the registry is unreachable: a network error.
    let err = store
        .pull(&format!("{down}/library/busybox:1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Network(_)), "{err}");
    assert_eq!(err.reason(), "RegistryUnavailable");

    drop(reg);
    // Still served from the store after the registry is gone.
    assert!(store.get(&reference).is_some());
}

#[tokio::test]
async fn basic_auth_registry() {
    if !prerequisites("basic_auth_registry") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let built = busybox(tmp.path());
    let reg = Registry::start(Some(("bob", "hunter2")));
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let target = format!("{}/private/busybox:1", reg.host());
    let err = client
        .push_oci_layout(&built.dir, Some("1"), &target, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized(_)), "{err}");
    client
        .push_oci_layout(
            &built.dir,
            Some("1"),
            &target,
            Some(Credentials::new("bob", "hunter2")),
        )
        .await
        .unwrap();

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let err = store.pull(&target, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized(_)), "{err}");
    let err = store
        .pull(&target, Some(Credentials::new("bob", "wrong")))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized(_)), "{err}");
    assert!(store.list().is_empty());
    // Credentials as a kubelet would get them from a dockerconfigjson secret.
    let secret = format!(
        r#"{{"auths":{{"{}":{{"username":"bob","password":"hunter2"}}}}}}"#,
        reg.host()
    );
    let creds = Credentials::from_docker_config_json(secret.as_bytes(), &reg.host()).unwrap();
    let info = store.pull(&target, creds).await.unwrap();
    check_busybox(&store, &info, &built);

    // Credentials from registries.yaml in the store directory.
    let dir = tmp.path().join("store-cfg");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("registries.yaml"),
        format!(
            "configs:\n  \"{}\":\n    auth:\n      username: bob\n      password: hunter2\n",
            reg.host()
        ),
    )
    .unwrap();
    let store = ImageStore::open(&dir).unwrap();
    store.pull(&target, None).await.unwrap();
}
