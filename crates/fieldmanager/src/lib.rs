//! Server-side field management for the Bosun API server: the pure half of
//! upstream's structured-merge-diff and `fieldmanager` packages.
//!
//! * [`path`] — field paths, path sets and their `FieldsV1` encoding.
//! * [`schema`] — list/map types read from OpenAPI v3 component schemas.
//! * [`walk`] — field set of an applied configuration, merge, compare, prune.
//! * [`managed`] — `metadata.managedFields` entries, Update and Apply with
//!   conflict detection.
//!
//! Nothing here panics on client input; every failure is a [`FieldError`].

pub mod managed;
pub mod path;
pub mod schema;
pub mod walk;

pub use managed::{
    apply, conflict_message, decode, encode, update, Applied, Conflict, Entry, Operation, Writer,
};
pub use path::{Path, PathElement, Set};
pub use schema::{Schema, Ty};
pub use walk::{compare, create_skeleton, merge, prune, to_set, Comparison};

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// `metadata.managedFields` cannot be decoded.
    #[error("invalid managedFields: {0}")]
    InvalidFieldsV1(String),
    /// The object does not fit its schema (duplicate or missing list keys,
    /// ...).
    #[error("{0}")]
    Invalid(String),
    /// An apply would change fields other managers own.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

#[cfg(test)]
mod tests;
