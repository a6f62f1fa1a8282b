//! OCI images: where they come from (registries, OCI layouts, `docker save` archives),
//! the shared blob store, and safe layer unpacking.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod archive;
pub mod blobs;
pub mod digest;
pub mod engine;
mod error;
pub mod fetch;
pub mod layout;
pub mod registry;
pub mod spec;
pub mod targuard;
pub mod unpack;

pub use error::{OciError, Result};

pub use fetch::FetchedImage;
