//! Image references and Docker's name normalization
//! (`busybox` → `docker.io/library/busybox:latest`).

use std::fmt;

use crate::error::{ImageError, Result};

/// The registry that short names resolve to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified image reference: `domain/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// The manifest digest (`sha256:…`).
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes a reference the way Docker does.
    pub fn parse(input: &str) -> Result<Reference> {
        let bad = || ImageError::InvalidReference(input.to_string());
        let s = input.trim();
        if s.is_empty() || s.len() > 4096 {
            return Err(bad());
        }
        let (rest, digest) = match s.rsplit_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|_| bad())?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(i) if last_slash.is_none_or(|j| i > j) => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad());
            }
        }
        let (mut domain, mut repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if domain == "index.docker.io" || domain == "registry-1.docker.io" {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if !valid_domain(&domain) || !valid_repository(&repository) {
            return Err(bad());
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            domain,
            repository,
            tag,
            digest,
        })
    }

    /// `domain/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// `domain/repository:tag`, if the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `domain/repository@digest` for the given digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What to ask the registry's manifest endpoint for: the digest if any, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

/// Checks `sha256:<64 lowercase hex>`; other algorithms are unsupported.
pub fn validate_digest(d: &str) -> Result<()> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        Some((alg, _)) if alg != "sha256" && !alg.is_empty() => {
            Err(ImageError::Unsupported(format!("digest algorithm {alg:?}")))
        }
        _ => Err(ImageError::invalid(format!("bad digest {d:?}"))),
    }
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':').unwrap_or(p)),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (d, ""),
        }
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':')
        && port.chars().all(|c| c.is_ascii_digit())
}

fn valid_repository(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|comp| {
            let b = comp.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
                && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
                && comp
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && !comp.contains("..")
                && !comp.contains("___")
        })
}

/// Whether the input names an image by ID (config digest) rather than by name:
/// `sha256:<hex>` or a bare 64-char hex string.
pub(crate) fn as_image_id(s: &str) -> Option<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("index.docker.io/foo/bar:x"), "docker.io/foo/bar:x");
        assert_eq!(norm("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(norm("quay.io/a/b/c:v1"), "quay.io/a/b/c:v1");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox:1");
        assert_eq!(
            norm("localhost:5000/busybox"),
            "localhost:5000/busybox:latest"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        let r = Reference::parse("127.0.0.1:5000/a/b:t").unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.manifest_ref(), "t");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "busybox@sha256:abc",
            "foo/Bar",
            "foo/bar/",
            "-foo",
            "busy box",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(ImageError::InvalidReference(_))),
                "{bad:?} should be invalid"
            );
        }
        assert_eq!(Reference::parse("a:b").unwrap().tag.as_deref(), Some("b"));
    }

    #[test]
    fn image_ids() {
        let hex = "b".repeat(64);
        assert_eq!(as_image_id(&hex), Some(format!("sha256:{hex}")));
        assert_eq!(
            as_image_id(&format!("sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(as_image_id("busybox"), None);
    }
}
