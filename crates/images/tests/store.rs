//! Offline store tests: archive import, names, garbage collection, leases,
//! digest verification. Whiteouts need root (mknod, trusted xattrs).

mod common;

use std::fs;
use std::path::Path;

use bosun_images::testimage::{self, LayerCompression, TestImage, TestLayer};
use bosun_images::{ImageConfig, ImageError, ImageStore};

fn three_layer_image() -> TestImage {
    TestImage {
        layers: vec![
            (
                TestLayer::new()
                    .file("etc/os-release", 0o644, b"base\n")
                    .file("etc/remove-me", 0o644, b"x")
                    .file("data/old/a", 0o644, b"a")
                    .file("shared/file", 0o644, b"shared"),
                LayerCompression::Gzip,
            ),
            (
                TestLayer::new()
                    .whiteout("etc/remove-me")
                    .opaque("data/old")
                    .file("data/old/b", 0o644, b"b"),
                LayerCompression::Zstd,
            ),
            (
                TestLayer::new().file("app/run.sh", 0o755, b"#!/bin/sh\necho hi\n"),
                LayerCompression::None,
            ),
        ],
        config: ImageConfig {
            entrypoint: vec!["/app/run.sh".into()],
            cmd: vec!["--flag".into()],
            env: vec!["A=1".into(), "PATH=/bin".into()],
            working_dir: "/app".into(),
            user: "1000:1000".into(),
            exposed_ports: vec!["8080/tcp".into()],
            ..Default::default()
        },
    }
}

fn archive(
    image: &TestImage,
    tag: &str,
    name: Option<&str>,
    dir: &Path,
) -> (testimage::BuiltImage, std::path::PathBuf) {
    let layout = dir.join(format!("layout-{tag}"));
    let built = testimage::write_oci_layout(&layout, tag, name, image).unwrap();
    let tar = dir.join(format!("{tag}.tar"));
    testimage::tar_dir(&layout, &tar).unwrap();
    (built, tar)
}

fn needs_root(test: &str) -> bool {
    common::require(
        common::is_root(),
        test,
        "needs root for whiteouts (mknod, trusted.* xattrs)",
    )
}

#[tokio::test]
async fn import_oci_archive_layers_config_and_gc() {
    if !needs_root("import_oci_archive_layers_config_and_gc") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (built, tar) = archive(
        &three_layer_image(),
        "v1",
        Some("example.com/app:v1"),
        tmp.path(),
    );
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let infos = store.import_archive(&tar).await.unwrap();
    assert_eq!(infos.len(), 1);
    let info = &infos[0];
    assert_eq!(info.id, built.config_digest);
    assert_eq!(info.manifest_digest, built.manifest_digest);
    assert_eq!(info.repo_tags, vec!["example.com/app:v1".to_string()]);
    assert_eq!(info.config.entrypoint, vec!["/app/run.sh"]);
    assert_eq!(info.config.cmd, vec!["--flag"]);
    assert_eq!(info.config.working_dir, "/app");
    assert_eq!(info.config.user, "1000:1000");
    assert_eq!(info.config.exposed_ports, vec!["8080/tcp"]);
    assert_eq!(info.layers.len(), 3);
    assert_eq!(
        info.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
        built.diff_ids
    );

    let dirs = store.layer_dirs(info);
    assert_eq!(dirs.len(), 3);
    assert!(dirs[0].join("app/run.sh").is_file(), "top layer first");
    assert!(bosun_images::unpack::is_whiteout(
        &dirs[1].join("etc/remove-me")
    ));
    assert!(bosun_images::unpack::is_opaque(&dirs[1].join("data/old")));
    assert!(dirs[2].join("etc/os-release").is_file());

    let merged = tmp.path().join("merged");
    store.materialize(info, &merged).unwrap();
    assert!(merged.join("etc/os-release").exists());
    assert!(!merged.join("etc/remove-me").exists());
    assert!(!merged.join("data/old/a").exists());
    assert!(merged.join("data/old/b").exists());

    // Lookup by name, ID, digest; persistence across reopen.
    assert!(store.get("example.com/app:v1").is_some());
    assert!(store.get(&built.config_digest).is_some());
    assert!(store.get(&built.config_digest[7..]).is_some());
    assert!(store
        .get(&format!("example.com/app@{}", built.manifest_digest))
        .is_some());
    assert!(store.get("example.com/app:v2").is_none());
    drop(store);
    let store = ImageStore::open(&store_dir).unwrap();
    assert_eq!(store.list().len(), 1);
    let info = store.get("example.com/app:v1").unwrap();

    // A second image sharing the bottom layer.
    let mut other = three_layer_image();
    other.layers.truncate(1);
    other.layers.push((
        TestLayer::new().file("other", 0o644, b"o"),
        LayerCompression::Gzip,
    ));
    let (_, tar2) = archive(&other, "v2", Some("example.com/other:v2"), tmp.path());
    let other_info = store.import_archive(&tar2).await.unwrap().remove(0);
    assert_eq!(other_info.layers[0].diff_id, info.layers[0].diff_id);
    assert_eq!(store.list().len(), 2);

    // Leased images are refused; then removal keeps the shared layer only.
    let lease = store.lease(&info);
    assert!(store.in_use(&info));
    assert!(matches!(
        store.remove("example.com/app:v1").await,
        Err(ImageError::InUse(_))
    ));
    drop(lease);
    assert!(!store.in_use(&info));
    store.remove("example.com/app:v1").await.unwrap();
    assert!(store.get("example.com/app:v1").is_none());
    let layers: Vec<_> = fs::read_dir(store_dir.join("layers/sha256"))
        .unwrap()
        .collect();
    assert_eq!(
        layers.len(),
        2,
        "shared bottom layer + other's top layer remain"
    );
    assert!(store.layer_dirs(&other_info).iter().all(|d| d.is_dir()));
    // blobs: other's manifest, config, 2 layers
    assert_eq!(
        fs::read_dir(store_dir.join("blobs/sha256"))
            .unwrap()
            .count(),
        4
    );
    store.remove("example.com/other:v2").await.unwrap();
    assert_eq!(
        fs::read_dir(store_dir.join("layers/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        fs::read_dir(store_dir.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(
        store.remove("example.com/other:v2").await,
        Err(ImageError::NotFound(_))
    ));
}

#[tokio::test]
async fn corrupt_archive_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let image = TestImage {
        layers: vec![(
            TestLayer::new().file("a", 0o644, b"hello"),
            LayerCompression::Gzip,
        )],
        config: Default::default(),
    };
    let layout = tmp.path().join("layout");
    let built = testimage::write_oci_layout(&layout, "1", Some("x.io/bad:1"), &image).unwrap();
    // Truncate the layer blob: its digest no longer matches.
    let p = built.blob_path(&built.layer_digests[0]);
    let mut bytes = fs::read(&p).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&p, bytes).unwrap();
    let tar = tmp.path().join("bad.tar");
    testimage::tar_dir(&layout, &tar).unwrap();
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let err = store.import_archive(&tar).await.unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(store.list().is_empty());
    assert!(common::files_under(&store_dir.join("blobs")).is_empty());
    assert!(common::files_under(&store_dir.join("layers")).is_empty());
    assert!(common::files_under(&store_dir.join("tmp")).is_empty());

    // Right blob digest, but the config's diff-id does not match the content.
    let layout2 = tmp.path().join("layout2");
    let built2 = testimage::write_oci_layout(&layout2, "1", Some("x.io/bad:2"), &image).unwrap();
    let cfg_path = built2.blob_path(&built2.config_digest);
    let cfg = fs::read_to_string(&cfg_path)
        .unwrap()
        .replace(&built2.diff_ids[0][7..], &"0".repeat(64));
    fs::remove_file(&cfg_path).unwrap();
    let new_cfg_digest = bosun_images::oci::sha256_digest(cfg.as_bytes());
    fs::write(built2.blob_path(&new_cfg_digest), &cfg).unwrap();
    let manifest = String::from_utf8(built2.manifest.clone())
        .unwrap()
        .replace(&built2.config_digest, &new_cfg_digest);
    fs::remove_file(built2.blob_path(&built2.manifest_digest)).unwrap();
    let md = bosun_images::oci::sha256_digest(manifest.as_bytes());
    fs::write(built2.blob_path(&md), &manifest).unwrap();
    let index = fs::read_to_string(layout2.join("index.json"))
        .unwrap()
        .replace(&built2.manifest_digest, &md);
    fs::write(layout2.join("index.json"), index).unwrap();
    let tar2 = tmp.path().join("bad2.tar");
    testimage::tar_dir(&layout2, &tar2).unwrap();
    let err = store.import_archive(&tar2).await.unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().is_empty());
    assert!(common::files_under(&store_dir.join("layers")).is_empty());
    assert!(common::files_under(&store_dir.join("tmp")).is_empty());
}

#[tokio::test]
async fn import_docker_save_archive_and_import_dir() {
    let tmp = tempfile::tempdir().unwrap();
    // A docker save archive: manifest.json, config and uncompressed layer tars.
    let l1 = TestLayer::new().file("bin/tool", 0o755, b"tool").tar();
    let l2 = TestLayer::new().file("etc/conf", 0o644, b"conf").tar();
    let d1 = bosun_images::oci::sha256_digest(&l1);
    let d2 = bosun_images::oci::sha256_digest(&l2);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/tool"], "Env": ["X=y"], "ExposedPorts": {"53/udp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [d1, d2]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = bosun_images::oci::sha256_digest(&config);
    let src = tmp.path().join("save");
    fs::create_dir_all(src.join("l1")).unwrap();
    fs::create_dir_all(src.join("l2")).unwrap();
    fs::write(src.join("l1/layer.tar"), &l1).unwrap();
    fs::write(src.join("l2/layer.tar"), &l2).unwrap();
    fs::write(src.join(format!("{}.json", &cd[7..])), &config).unwrap();
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", &cd[7..]),
        "RepoTags": ["tool:1.0", "localhost:5000/tool:latest"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"],
    }]);
    fs::write(
        src.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let import_dir = tmp.path().join("import");
    fs::create_dir_all(&import_dir).unwrap();
    testimage::tar_dir(&src, &import_dir.join("a-tool.tar")).unwrap();
    fs::write(import_dir.join("b-broken.tar"), b"not a tar").unwrap();
    fs::write(import_dir.join("ignored.txt"), b"x").unwrap();

    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let imported = store.import_dir_at_start(&import_dir).await.unwrap();
    assert_eq!(imported.len(), 1);
    let info = store.get("tool:1.0").unwrap();
    assert_eq!(info.id, cd);
    assert_eq!(
        info.repo_tags,
        vec![
            "docker.io/library/tool:1.0".to_string(),
            "localhost:5000/tool:latest".to_string()
        ]
    );
    assert!(store.get("localhost:5000/tool").is_some());
    assert_eq!(info.config.cmd, vec!["/bin/tool"]);
    assert_eq!(info.config.exposed_ports, vec!["53/udp"]);
    let dirs = store.layer_dirs(&info);
    assert!(dirs[0].join("etc/conf").is_file());
    assert!(dirs[1].join("bin/tool").is_file());
    // Importing again is idempotent.
    store.import_dir_at_start(&import_dir).await.unwrap();
    assert_eq!(store.list().len(), 1);
    // A missing import dir is fine.
    assert!(store
        .import_dir_at_start(tmp.path().join("nope"))
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn busybox_image_is_deterministic() {
    if !common::require(
        testimage::busybox_binary().is_some(),
        "busybox_image_is_deterministic",
        "apt-get install busybox-static",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = testimage::build_busybox_image(&tmp.path().join("a")).unwrap();
    let b = testimage::build_busybox_image(&tmp.path().join("b")).unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.layer_digests, b.layer_digests);
    assert_eq!(a.layer_digests.len(), 1);
}

#[tokio::test]
async fn layer_dirs_mount_as_overlay() {
    if !needs_root("layer_dirs_mount_as_overlay") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, tar) = archive(
        &three_layer_image(),
        "v1",
        Some("example.com/app:v1"),
        tmp.path(),
    );
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    let info = store.import_archive(&tar).await.unwrap().remove(0);
    let lower = store
        .layer_dirs(&info)
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let target = tmp.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    // Read-only overlay of lower dirs only (no upper dir needed).
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={lower}"))
        .arg(&target)
        .status()
        .unwrap();
    if !common::require(
        st.success(),
        "layer_dirs_mount_as_overlay",
        "mount -t overlay failed",
    ) {
        return;
    }
    let checks = || {
        assert_eq!(fs::read(target.join("etc/os-release")).unwrap(), b"base\n");
        assert!(
            !target.join("etc/remove-me").exists(),
            "whiteout hides the file"
        );
        assert!(
            !target.join("data/old/a").exists(),
            "opaque dir hides lower content"
        );
        assert_eq!(fs::read(target.join("data/old/b")).unwrap(), b"b");
        assert!(target.join("app/run.sh").is_file());
        assert!(target.join("shared/file").is_file());
    };
    let result = std::panic::catch_unwind(checks);
    let _ = std::process::Command::new("umount").arg(&target).status();
    result.unwrap();
}
