//! Bosun's node image service: pulls images over the OCI distribution
//! protocol (bearer and basic auth, mirrors, plain HTTP for loopback and
//! insecure registries), imports OCI and `docker save` archives, and keeps a
//! content-addressed store of verified blobs and unpacked layers usable as
//! overlayfs lower directories.
//!
//! ```no_run
//! # async fn f() -> bosun_images::Result<()> {
//! let store = bosun_images::ImageStore::open("/var/lib/bosun/images")?;
//! let image = store.pull("busybox", None).await?;
//! let lowerdirs = store.layer_dirs(&image); // top first
//! # Ok(()) }
//! ```

mod archive;
pub mod client;
pub mod error;
pub mod oci;
pub mod reference;
pub mod registries;
pub mod store;
pub mod testimage;
pub mod unpack;

pub use client::RegistryClient;
pub use error::{ImageError, Result};
pub use reference::Reference;
pub use registries::{Credentials, RegistryConfig};
pub use store::{ImageConfig, ImageInfo, ImageLease, ImageStore, LayerInfo};
