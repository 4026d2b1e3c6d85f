//! The Bosun API server: the Kubernetes REST API over the store.
pub mod apply;
pub mod bootstrap;
pub mod cache;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod proxy;
pub mod registry;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod tls;
pub mod typed;
pub mod validation;

pub use server::{start, Config, Running, ServerError};
