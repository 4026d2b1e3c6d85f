//! A small OCI distribution client: endpoint selection (mirrors, plain HTTP
//! for loopback/insecure hosts), bearer-token and basic auth, manifest and
//! blob GETs with digest verification, and a minimal push (for tests and
//! end-to-end setups).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{ImageError, Result};
use crate::oci::{self, Descriptor, MANIFEST_ACCEPT};
use crate::reference::Reference;
use crate::registries::{Credentials, RegistryConfig};

const MAX_MANIFEST: usize = 4 << 20;
const MAX_CONFIG: usize = 16 << 20;

/// One place to ask for an image: a mirror or the upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` of the server.
    pub host: String,
    /// `http`/`https` when the configuration said so, else probed.
    pub scheme: Option<String>,
    /// Path prefix of a mirror endpoint URL (usually empty).
    pub prefix: String,
    /// Skip TLS verification and allow a plain-HTTP fallback.
    pub insecure: bool,
}

/// Distribution-protocol client shared by all pulls.
pub struct RegistryClient {
    config: RegistryConfig,
    verified: reqwest::Client,
    unverified: reqwest::Client,
    /// Endpoint host → base URL (`scheme://host`) that answered before.
    bases: Mutex<HashMap<String, String>>,
}

fn net_err(url: &str, e: reqwest::Error) -> ImageError {
    use std::error::Error as _;
    let mut msg = format!("{url}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    ImageError::Network(msg)
}

impl RegistryClient {
    /// A client with the given registry configuration.
    pub fn new(config: RegistryConfig) -> Result<Self> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("bosun-images/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(120))
                .danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| ImageError::Network(format!("building HTTP client: {e}")))
        };
        Ok(RegistryClient {
            config,
            verified: build(false)?,
            unverified: build(true)?,
            bases: Mutex::new(HashMap::new()),
        })
    }

    /// The registry configuration in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Where to look for images of `domain`: mirror endpoints in order, then
    /// the registry itself (`registry-1.docker.io` for `docker.io`).
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirror = self
            .config
            .mirrors
            .get(domain)
            .or_else(|| self.config.mirrors.get("*"));
        for url in mirror.map(|m| m.endpoint.as_slice()).unwrap_or_default() {
            let (scheme, rest) = match url.split_once("://") {
                Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
                None => (None, url.as_str()),
            };
            let (host, path) = match rest.split_once('/') {
                Some((h, p)) => (h, p.trim_end_matches('/')),
                None => (rest, ""),
            };
            let path = path
                .strip_suffix("v2")
                .unwrap_or(path)
                .trim_end_matches('/');
            out.push(Endpoint {
                host: host.to_string(),
                scheme,
                prefix: if path.is_empty() {
                    String::new()
                } else {
                    format!("/{path}")
                },
                insecure: self.config.is_insecure(host),
            });
        }
        let upstream = if domain == crate::reference::DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            domain
        };
        let up = Endpoint {
            host: upstream.to_string(),
            scheme: None,
            prefix: String::new(),
            insecure: self.config.is_insecure(domain) || self.config.is_insecure(upstream),
        };
        if !out.contains(&up) {
            out.push(up);
        }
        out
    }

    /// Opens a session on one repository of one endpoint: finds the scheme
    /// that answers (probing `/v2/`) and authenticates if challenged.
    pub async fn open(
        &self,
        ep: &Endpoint,
        repository: &str,
        creds: Option<Credentials>,
        push: bool,
    ) -> Result<RepoSession> {
        let http = if ep.insecure {
            self.unverified.clone()
        } else {
            self.verified.clone()
        };
        let creds = creds.or_else(|| self.config.credentials(&ep.host));
        let action = if push { "pull,push" } else { "pull" };
        let session = |base: String| RepoSession {
            http: http.clone(),
            base,
            repository: repository.to_string(),
            creds: creds.clone(),
            auth: Mutex::new(None),
            scope: format!("repository:{repository}:{action}"),
        };
        let cached = self.bases.lock().expect("bases").get(&ep.host).cloned();
        let candidates: Vec<String> = match (&ep.scheme, cached) {
            (Some(s), _) => vec![format!("{s}://{}{}", ep.host, ep.prefix)],
            (None, Some(base)) => vec![base],
            (None, None) if ep.insecure => vec![
                format!("https://{}{}", ep.host, ep.prefix),
                format!("http://{}{}", ep.host, ep.prefix),
            ],
            (None, None) => vec![format!("https://{}{}", ep.host, ep.prefix)],
        };
        let mut last = None;
        for base in candidates {
            let url = format!("{base}/v2/");
            match http.get(&url).send().await {
                Ok(resp) => {
                    let s = session(base.clone());
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        if let Some(ch) = resp.headers().get(WWW_AUTHENTICATE) {
                            let ch = ch.to_str().unwrap_or_default().to_string();
                            s.authenticate(&ch).await?;
                        }
                    }
                    if ep.scheme.is_none() {
                        self.bases
                            .lock()
                            .expect("bases")
                            .insert(ep.host.clone(), base);
                    }
                    return Ok(s);
                }
                Err(e) => {
                    tracing::debug!(url, error = %e, "registry probe failed");
                    last = Some(net_err(&url, e));
                }
            }
        }
        self.bases.lock().expect("bases").remove(&ep.host);
        Err(last.unwrap_or_else(|| ImageError::Network(format!("no endpoint for {}", ep.host))))
    }

    /// Pushes the image tagged `tag` (or the only image) of the OCI layout at
    /// `layout_dir` to `target` (e.g. `127.0.0.1:5000/busybox:1`). Returns the
    /// manifest digest. Only single-platform images are supported.
    pub async fn push_oci_layout(
        &self,
        layout_dir: &Path,
        tag: Option<&str>,
        target: &str,
        creds: Option<Credentials>,
    ) -> Result<String> {
        let r = Reference::parse(target)?;
        let index: oci::Index =
            serde_json::from_slice(&std::fs::read(layout_dir.join("index.json"))?)?;
        let desc = index
            .manifests
            .iter()
            .find(|d| match tag {
                Some(t) => d
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(oci::ANNOTATION_REF_NAME))
                    .is_some_and(|n| n == t),
                None => true,
            })
            .ok_or_else(|| ImageError::NotFound(format!("{tag:?} in {layout_dir:?}")))?;
        let blob = |d: &str| -> Result<Bytes> {
            Ok(Bytes::from(std::fs::read(
                layout_dir.join("blobs/sha256").join(oci::digest_hex(d)?),
            )?))
        };
        let manifest_bytes = blob(&desc.digest)?;
        oci::verify_bytes("manifest", &manifest_bytes, &desc.digest)?;
        let (doc, media_type) = oci::ManifestDoc::parse(&manifest_bytes, Some(&desc.media_type))?;
        let oci::ManifestDoc::Image(manifest) = doc else {
            return Err(ImageError::Unsupported("pushing an index".into()));
        };
        let ep = self
            .endpoints(&r.domain)
            .pop()
            .expect("upstream endpoint always present");
        let s = self.open(&ep, &r.repository, creds, true).await?;
        for d in manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config))
        {
            s.push_blob(&d.digest, blob(&d.digest)?).await?;
        }
        s.put_manifest(r.manifest_ref(), &media_type, manifest_bytes)
            .await?;
        Ok(desc.digest.clone())
    }
}

/// An authenticated session on one repository of one endpoint.
pub struct RepoSession {
    http: reqwest::Client,
    base: String,
    repository: String,
    creds: Option<Credentials>,
    auth: Mutex<Option<String>>,
    scope: String,
}

/// Splits a `WWW-Authenticate` header into scheme and parameters.
pub(crate) fn parse_challenge(h: &str) -> Option<(String, HashMap<String, String>)> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ') | Some(',')) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    Some((scheme.to_ascii_lowercase(), params))
}

async fn error_for(resp: reqwest::Response, what: &str) -> ImageError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{} {}",
                e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                e.get("message").and_then(|c| c.as_str()).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    let msg = format!("{what}: {}", message.trim());
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ImageError::Unauthorized(msg),
        StatusCode::NOT_FOUND => ImageError::NotFound(msg),
        s => ImageError::Registry {
            status: s.as_u16(),
            message: msg,
        },
    }
}

impl RepoSession {
    /// The base URL in use (`http://127.0.0.1:5000`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Handles a 401 challenge. Returns whether the Authorization changed.
    async fn authenticate(&self, challenge: &str) -> Result<bool> {
        let Some((scheme, params)) = parse_challenge(challenge) else {
            return Ok(false);
        };
        let old = self.auth.lock().expect("auth").clone();
        let new = match scheme.as_str() {
            "basic" => match &self.creds {
                Some(c) => c.basic_header(),
                None => return Ok(false),
            },
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    ImageError::Unauthorized("bearer challenge without realm".into())
                })?;
                let scope = params
                    .get("scope")
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_else(|| self.scope.clone());
                let mut req = self.http.get(realm).query(&[("scope", scope.as_str())]);
                if let Some(svc) = params.get("service") {
                    req = req.query(&[("service", svc.as_str())]);
                }
                if let Some(c) = &self.creds {
                    req = req.basic_auth(&c.username, Some(&c.password));
                }
                let resp = req.send().await.map_err(|e| net_err(realm, e))?;
                if !resp.status().is_success() {
                    return Err(match error_for(resp, "token").await {
                        ImageError::NotFound(m) => ImageError::Unauthorized(m),
                        e => e,
                    });
                }
                let body = read_limited(resp, 1 << 20, realm).await?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| ImageError::Unauthorized("token server gave no token".into()))?;
                format!("Bearer {token}")
            }
            _ => return Ok(false),
        };
        if old.as_deref() == Some(new.as_str()) {
            return Ok(false);
        }
        *self.auth.lock().expect("auth") = Some(new);
        Ok(true)
    }

    /// Sends a request, answering one 401 challenge.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response> {
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(a) = self.auth.lock().expect("auth").clone() {
                req = req.header(AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(|e| net_err(url, e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                if let Some(ch) = resp.headers().get(WWW_AUTHENTICATE) {
                    let ch = ch.to_str().unwrap_or_default().to_string();
                    if self.authenticate(&ch).await? {
                        continue;
                    }
                }
            }
            return Ok(resp);
        }
        unreachable!("loop returns on the second attempt")
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.repository)
    }

    /// GETs a manifest by tag or digest with all manifest media types accepted.
    /// Returns the bytes, content type and verified digest.
    pub async fn get_manifest(&self, reference: &str) -> Result<(Vec<u8>, Option<String>, String)> {
        let url = self.url("manifests", reference);
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let resp = self.send(Method::GET, &url, h, None).await?;
        if !resp.status().is_success() {
            return Err(
                error_for(resp, &format!("manifest {}:{reference}", self.repository)).await,
            );
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let bytes = read_limited(resp, MAX_MANIFEST, &url).await?;
        let digest = oci::sha256_digest(&bytes);
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(exp) = expected {
            if exp != digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("manifest {}:{reference}", self.repository),
                    expected: exp,
                    actual: digest,
                });
            }
        }
        Ok((bytes, ct, digest))
    }

    async fn get_blob_response(&self, digest: &str) -> Result<reqwest::Response> {
        oci::digest_hex(digest)?;
        let url = self.url("blobs", digest);
        let resp = self.send(Method::GET, &url, HeaderMap::new(), None).await?;
        if !resp.status().is_success() {
            return Err(error_for(resp, &format!("blob {digest}")).await);
        }
        Ok(resp)
    }

    /// GETs a small blob (a config) into memory, verified.
    pub async fn get_blob_bytes(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let resp = self.get_blob_response(&desc.digest).await?;
        let bytes = read_limited(resp, MAX_CONFIG, &desc.digest).await?;
        oci::verify_bytes(&format!("blob {}", desc.digest), &bytes, &desc.digest)?;
        Ok(bytes)
    }

    /// Streams a blob into the new file `dest`, verifying size and digest.
    /// On any error `dest` is removed.
    pub async fn download_blob(&self, desc: &Descriptor, dest: &Path) -> Result<()> {
        let r = self.download_inner(desc, dest).await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        r
    }

    async fn download_inner(&self, desc: &Descriptor, dest: &Path) -> Result<()> {
        let mut resp = self.get_blob_response(&desc.digest).await?;
        let mut file = tokio::fs::File::create(dest).await?;
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let too_big = |total: u64| desc.size > 0 && total > desc.size;
        while let Some(chunk) = resp.chunk().await.map_err(|e| net_err(&desc.digest, e))? {
            total += chunk.len() as u64;
            if too_big(total) {
                return Err(ImageError::DigestMismatch {
                    what: format!("blob {} (size {} exceeded)", desc.digest, desc.size),
                    expected: desc.digest.clone(),
                    actual: "(oversized)".into(),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != desc.digest || (desc.size > 0 && total != desc.size) {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {} ({total} of {} bytes)", desc.digest, desc.size),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Uploads a blob (monolithic) unless the registry has it.
    pub async fn push_blob(&self, digest: &str, data: Bytes) -> Result<()> {
        let head = self
            .send(
                Method::HEAD,
                &self.url("blobs", digest),
                HeaderMap::new(),
                None,
            )
            .await?;
        if head.status().is_success() {
            return Ok(());
        }
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let resp = self
            .send(Method::POST, &start, HeaderMap::new(), None)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(error_for(resp, "start upload").await);
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ImageError::invalid("upload without Location"))?;
        let mut url = reqwest::Url::parse(&self.base)
            .and_then(|b| b.join(loc))
            .map_err(|e| ImageError::invalid(format!("upload location {loc:?}: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest);
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self.send(Method::PUT, url.as_str(), h, Some(data)).await?;
        if !resp.status().is_success() {
            return Err(error_for(resp, &format!("upload {digest}")).await);
        }
        Ok(())
    }

    /// PUTs a manifest under a tag or digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| ImageError::invalid("media type"))?,
        );
        let resp = self
            .send(
                Method::PUT,
                &self.url("manifests", reference),
                h,
                Some(bytes),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(error_for(resp, &format!("put manifest {reference}")).await);
        }
        Ok(())
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: usize, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| net_err(what, e))? {
        if out.len() + chunk.len() > limit {
            return Err(ImageError::invalid(format!(
                "{what}: larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "basic-realm");
    }

    #[test]
    fn endpoints_with_mirrors() {
        let cfg = RegistryConfig::from_yaml(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\", \"mirror.example/v2\"]\nconfigs:\n  insecure.example:\n    tls:\n      insecure_skip_verify: true\n",
        )
        .unwrap();
        let c = RegistryClient::new(cfg).unwrap();
        let eps = c.endpoints("docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].host, "127.0.0.1:5000");
        assert_eq!(eps[0].scheme.as_deref(), Some("http"));
        assert!(eps[0].insecure);
        assert_eq!(eps[1].host, "mirror.example");
        assert_eq!(eps[1].prefix, "");
        assert!(!eps[1].insecure);
        assert_eq!(eps[2].host, "registry-1.docker.io");
        let eps = c.endpoints("insecure.example");
        assert_eq!(eps.len(), 1);
        assert!(eps[0].insecure);
        assert!(c.endpoints("quay.io").iter().all(|e| !e.insecure));
    }
}
