//! Ignite's state on disk.
//!
//! ```text
//! <root>/                 /var/lib/ignite as root, $XDG_DATA_HOME/ignite otherwise
//!   vms/<uid>/metadata.json       a VM object (plus its disks, keys, sockets, logs)
//!   images/<uid>/metadata.json    an Image object (plus its root filesystem)
//!   kernels/<uid>/metadata.json   a Kernel object (plus its kernel and modules)
//!   locks/                        one lock file per object and per kind
//!   <kind>/.index, .generation    a summary index for fast listings, and its validity token
//! ```
//!
//! Objects are written atomically; the CLI, the daemon and supervisors serialise on file
//! locks; a damaged object is reported and never stops the others from being read.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod atomic;
mod error;
mod lock;
pub mod names;
mod objects;
mod root;

pub use atomic::write_atomic;
pub use error::{Result, StoreError};
pub use lock::LockGuard;
pub use objects::{Collection, Listing, METADATA_FILE, Store, StoredObject, Summaries, find_in};
pub use root::{ROOT_ENV, SYSTEM_ROOT, resolve_root};
