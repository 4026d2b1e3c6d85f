//! Errors of the image service, mapped to the kubelet's image pull reasons.

use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Everything that can go wrong while pulling, importing or managing images.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The reference is not a valid image name.
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
    /// The registry (or the local store) does not know the image, tag or blob.
    #[error("not found: {0}")]
    NotFound(String),
    /// The registry refused our (missing or wrong) credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The registry could not be reached, or answered with a server error.
    #[error("network error: {0}")]
    Network(String),
    /// Content did not hash to the digest it was requested by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being verified (a blob, manifest or layer diff).
        what: String,
        /// The expected digest.
        expected: String,
        /// The digest of the content actually received.
        actual: String,
    },
    /// A media type, manifest schema, platform or archive format this crate does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The image is in use (leased) and cannot be removed.
    #[error("image {0} is in use")]
    InUse(String),
    /// The registry answered with an unexpected HTTP status.
    #[error("registry error: HTTP {status}: {message}")]
    Registry {
        /// The HTTP status code.
        status: u16,
        /// The registry's error message, if it gave one.
        message: String,
    },
    /// Malformed JSON, tar or archive content.
    #[error("invalid content: {0}")]
    Invalid(String),
    /// A local I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ImageError {
    /// The kubelet's reason string for a container waiting on this error
    /// (`InvalidImageName`, `ErrImagePull`, `RegistryUnavailable`).
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidReference(_) => "InvalidImageName",
            ImageError::Network(_) => "RegistryUnavailable",
            _ => "ErrImagePull",
        }
    }

    /// Whether retrying later may succeed (network trouble, server errors).
    pub fn is_transient(&self) -> bool {
        match self {
            ImageError::Network(_) | ImageError::Io(_) => true,
            ImageError::Registry { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ImageError::Invalid(msg.into())
    }
}

impl From<serde_json::Error> for ImageError {
    fn from(e: serde_json::Error) -> Self {
        ImageError::Invalid(format!("json: {e}"))
    }
}
