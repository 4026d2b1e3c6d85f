//! Pulls from an in-process fake registry (axum): bearer-token auth with
//! credentials, index platform selection, Accept headers, digest
//! verification of blobs (nothing left behind on mismatch).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use bosun_images::oci::{self, sha256_digest};
use bosun_images::testimage::{self, LayerCompression, TestImage, TestLayer};
use bosun_images::{Credentials, ImageError, ImageStore};

#[derive(Default)]
struct Fake {
    port: u16,
    /// name → (tag or digest → (media type, bytes))
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    /// Basic credentials the token server wants.
    user: Option<(String, String)>,
    token: String,
    requests: Vec<String>,
}

type St = Arc<Mutex<Fake>>;

fn unauthorized(st: &Fake, scope: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"fake\",scope=\"{scope}\"",
                st.port
            ),
        )],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

async fn token(
    State(st): State<St>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    let st = st.lock().unwrap();
    if let Some((u, p)) = &st.user {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        );
        if h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
    }
    assert_eq!(q.get("service").map(String::as_str), Some("fake"));
    assert!(q.get("scope").is_some_and(|s| s.ends_with(":pull")));
    axum::Json(serde_json::json!({"token": st.token})).into_response()
}

async fn v2(State(st): State<St>, h: HeaderMap) -> Response {
    let st = st.lock().unwrap();
    if !authorized(&st, &h) {
        return unauthorized(&st, "");
    }
    StatusCode::OK.into_response()
}

fn authorized(st: &Fake, h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", st.token))
}

async fn v2_rest(State(st): State<St>, Path(rest): Path<String>, h: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    st.requests.push(rest.clone());
    let (name, kind, reference) = if let Some((n, r)) = rest.rsplit_once("/manifests/") {
        (n, "manifests", r)
    } else if let Some((n, r)) = rest.rsplit_once("/blobs/") {
        (n, "blobs", r)
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !authorized(&st, &h) {
        return unauthorized(&st, &format!("repository:{name}:pull"));
    }
    if kind == "manifests" {
        let Some((mt, bytes)) = st.manifests.get(&format!("{name}/{reference}")) else {
            return (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
                .into_response();
        };
        // Like Debian's registry: OCI content only for clients that accept it.
        let accept = h
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !accept.contains(mt.as_str()) {
            return (
                StatusCode::NOT_FOUND,
                "OCI manifest found, but accept header does not support OCI manifests",
            )
                .into_response();
        }
        return (
            [
                (header::CONTENT_TYPE, mt.clone()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    sha256_digest(bytes),
                ),
            ],
            Bytes::from(bytes.clone()),
        )
            .into_response();
    }
    match st.blobs.get(reference) {
        Some(b) => Bytes::from(b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start(fake: Fake) -> St {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let st = Arc::new(Mutex::new(Fake { port, ..fake }));
    let app = Router::new()
        .route("/token", get(token))
        .route("/v2/", get(v2))
        .route("/v2/{*rest}", get(v2_rest))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    st
}

fn load_layout(built: &testimage::BuiltImage) -> HashMap<String, Vec<u8>> {
    let mut blobs = HashMap::new();
    for e in std::fs::read_dir(built.dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        blobs.insert(
            format!("sha256:{}", e.file_name().to_string_lossy()),
            std::fs::read(e.path()).unwrap(),
        );
    }
    blobs
}

fn small_image() -> TestImage {
    TestImage {
        layers: vec![
            (
                TestLayer::new().file("hello.txt", 0o644, b"hello\n"),
                LayerCompression::Gzip,
            ),
            (
                TestLayer::new().file("etc/x", 0o600, b"x"),
                LayerCompression::Zstd,
            ),
        ],
        config: bosun_images::ImageConfig {
            cmd: vec!["/hello".into()],
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn bearer_auth_and_index_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let built =
        testimage::write_oci_layout(&tmp.path().join("l"), "1", None, &small_image()).unwrap();
    let mut blobs = load_layout(&built);
    let host = oci::host_platform();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": [
            {"mediaType": oci::OCI_MANIFEST, "digest": format!("sha256:{}", "1".repeat(64)), "size": 10,
             "platform": {"os": "linux", "architecture": "some-other-arch"}},
            {"mediaType": oci::OCI_MANIFEST, "digest": built.manifest_digest, "size": built.manifest.len(),
             "platform": {"os": "linux", "architecture": host.architecture, "variant": host.variant}},
        ],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = sha256_digest(&index_bytes);
    let mut manifests = HashMap::new();
    manifests.insert(
        "ns/img/multi".to_string(),
        (oci::OCI_INDEX.to_string(), index_bytes.clone()),
    );
    manifests.insert(
        format!("ns/img/{}", built.manifest_digest),
        (oci::OCI_MANIFEST.to_string(), built.manifest.clone()),
    );
    manifests.insert(
        format!("ns/img/{index_digest}"),
        (oci::OCI_INDEX.to_string(), index_bytes),
    );
    blobs.retain(|d, _| *d != built.manifest_digest);
    let st = start(Fake {
        manifests,
        blobs,
        user: Some(("alice".into(), "s3cret".into())),
        token: "tok123".into(),
        ..Default::default()
    })
    .await;
    let port = st.lock().unwrap().port;
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let reference = format!("127.0.0.1:{port}/ns/img:multi");

    let err = store.pull(&reference, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized(_)), "{err}");
    let err = store
        .pull(&reference, Some(Credentials::new("alice", "wrong")))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized(_)), "{err}");
    let err = store
        .pull(
            &format!("127.0.0.1:{port}/ns/img:nope"),
            Some(Credentials::new("alice", "s3cret")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");

    let info = store
        .pull(&reference, Some(Credentials::new("alice", "s3cret")))
        .await
        .unwrap();
    assert_eq!(info.manifest_digest, built.manifest_digest);
    assert_eq!(info.id, built.config_digest);
    assert_eq!(info.repo_tags, vec![reference.clone()]);
    assert_eq!(
        info.repo_digests,
        vec![format!("127.0.0.1:{port}/ns/img@{index_digest}")]
    );
    assert_eq!(info.config.cmd, vec!["/hello"]);
    let dirs = store.layer_dirs(&info);
    assert_eq!(
        std::fs::read(dirs[1].join("hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(std::fs::read(dirs[0].join("etc/x")).unwrap(), b"x");
    assert!(store
        .get(&format!("127.0.0.1:{port}/ns/img@{index_digest}"))
        .is_some());

    // Pull by digest; layers are not fetched again.
    let before = st
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.contains("/blobs/"))
        .count();
    let by_digest = format!("127.0.0.1:{port}/ns/img@{index_digest}");
    let again = store
        .pull(&by_digest, Some(Credentials::new("alice", "s3cret")))
        .await
        .unwrap();
    assert_eq!(again.manifest_digest, info.manifest_digest);
    let after = st
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.contains("/blobs/"))
        .count();
    assert_eq!(before, after, "no blob re-downloaded");
    assert_eq!(store.list().len(), 1);
}

#[tokio::test]
async fn corrupted_blob_is_rejected_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let built =
        testimage::write_oci_layout(&tmp.path().join("l"), "1", None, &small_image()).unwrap();
    let mut blobs = load_layout(&built);
    // Same length, different content.
    let bad = blobs.get_mut(&built.layer_digests[1]).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut manifests = HashMap::new();
    manifests.insert(
        "bad/1".to_string(),
        (oci::OCI_MANIFEST.to_string(), built.manifest.clone()),
    );
    let st = start(Fake {
        manifests,
        blobs,
        token: "t".into(),
        ..Default::default()
    })
    .await;
    let port = st.lock().unwrap().port;
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let err = store
        .pull(&format!("127.0.0.1:{port}/bad:1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().is_empty());
    assert!(common::files_under(&store_dir.join("tmp")).is_empty());
    assert!(!store_dir
        .join("blobs/sha256")
        .join(&built.layer_digests[1][7..])
        .exists());
    drop(store);
    // Reopening collects what the failed pull verified but no image references.
    let store = ImageStore::open(&store_dir).unwrap();
    assert!(store.list().is_empty());
    assert!(common::files_under(&store_dir.join("blobs")).is_empty());
    assert!(common::files_under(&store_dir.join("layers")).is_empty());
}
