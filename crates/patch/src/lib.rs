//! PATCH semantics for the Bosun API server, matching upstream Kubernetes.
//!
//! * [`json_patch`] — RFC 6902 (`application/json-patch+json`), with the
//!   behaviour of `gopkg.in/evanphx/json-patch.v4` that kube-apiserver uses
//!   (negative array indices, `replace` of a missing object key acting like
//!   `add`, ...).
//! * [`merge_patch`] — RFC 7386 (`application/merge-patch+json`), as
//!   evanphx `MergePatch`.
//! * [`strategic_merge_patch`] — Kubernetes strategic merge patch
//!   (`application/strategic-merge-patch+json`), a port of the apply half of
//!   `k8s.io/apimachinery/pkg/util/strategicpatch`, driven by a built-in table
//!   of `patchStrategy`/`patchMergeKey` struct tags (see [`schema`]).
//!
//! Every function takes its inputs by reference and never panics on malformed
//! input; failures are reported as [`PatchError`], whose
//! [`PatchError::status_code`] gives the HTTP status kube-apiserver answers
//! with for the same failure.

mod json_patch;
mod merge_patch;
pub mod schema;
mod strategic;

pub use schema::{field_patch_meta, is_known_kind, list_strategy, FieldPatchMeta, Strategy};

/// Maximum number of operations in one JSON patch (kube-apiserver's
/// `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Errors of the patch functions.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The patch document itself is malformed (not decodable as the patch
    /// type, or a directive with a bad format). Upstream: 400 Bad Request.
    #[error("{0}")]
    InvalidPatch(String),
    /// The document to patch is not something the patch type can apply to
    /// (e.g. not a JSON object). Upstream: 400 Bad Request.
    #[error("{0}")]
    InvalidDocument(String),
    /// A JSON patch `test` operation failed. Upstream: 422.
    #[error("{0}")]
    TestFailed(String),
    /// A JSON patch operation referenced a path that does not exist.
    /// Upstream: 422.
    #[error("{0}")]
    PathNotFound(String),
    /// A JSON patch operation could not be applied for another reason
    /// (bad array index, unknown op, ...). Upstream: 422.
    #[error("{0}")]
    InvalidOperation(String),
    /// A strategic merge patch the server cannot process (list of lists,
    /// content not matching `$retainKeys`). Upstream: 422.
    #[error("{0}")]
    Unprocessable(String),
    /// A strategic merge patch failed while merging (missing merge key,
    /// mismatched types, unknown `$patch` value, ...). Upstream returns the
    /// bare error, which kube-apiserver reports as 500 Internal Server Error.
    #[error("{0}")]
    MergeFailed(String),
    /// More than [`MAX_JSON_PATCH_OPERATIONS`] operations. Upstream: 413.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations { max: usize, got: usize },
}

impl PatchError {
    /// The HTTP status code kube-apiserver uses for the equivalent error.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::InvalidPatch(_) | PatchError::InvalidDocument(_) => 400,
            PatchError::TestFailed(_)
            | PatchError::PathNotFound(_)
            | PatchError::InvalidOperation(_)
            | PatchError::Unprocessable(_) => 422,
            PatchError::MergeFailed(_) => 500,
            PatchError::TooManyOperations { .. } => 413,
        }
    }
}

/// RFC 6902 (application/json-patch+json).
///
/// `patch` must be a JSON array of operation objects.
pub fn json_patch(
    doc: &serde_json::Value,
    patch: &serde_json::Value,
) -> Result<serde_json::Value, PatchError> {
    json_patch::apply(doc, patch)
}

/// RFC 7386 (application/merge-patch+json).
pub fn merge_patch(
    doc: &serde_json::Value,
    patch: &serde_json::Value,
) -> Result<serde_json::Value, PatchError> {
    merge_patch::apply(doc, patch)
}

/// Kubernetes strategic merge patch (application/strategic-merge-patch+json)
/// for a built-in kind.
///
/// `group`, `kind` identify the object type (e.g. `"apps"`, `"Deployment"`;
/// `""` for core). Kinds without a schema in the built-in table are patched
/// with an empty schema: maps merge, lists are replaced, directives still
/// apply. (Upstream kube-apiserver refuses strategic merge patches for custom
/// resources with 415; use [`is_known_kind`] to reproduce that.)
pub fn strategic_merge_patch(
    doc: &serde_json::Value,
    patch: &serde_json::Value,
    group: &str,
    kind: &str,
) -> Result<serde_json::Value, PatchError> {
    strategic::apply(doc, patch, schema::root_schema(group, kind))
}

#[cfg(test)]
mod tests;
