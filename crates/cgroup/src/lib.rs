//! Per-VM control groups. Each running VM's supervisor and VMM live in a group of their own,
//! `ignite.slice/vm-<uid>`, with the VM's limits (memory, processes, CPU time), read back by
//! `ignite stats` and `/metrics`, and removed when the VM ends (or by the repair after a
//! crash).
//!
//! - [`hierarchy`]: the host's cgroup hierarchy from `/proc/self/mountinfo` (cgroup v2, or
//!   v1's mount per controller on hosts still on the legacy layout) and where VM groups go;
//! - [`group`]: one VM's group: created with its [`Limits`], joined, removed;
//! - [`usage`]: what a group used, from the files of either version.
//!
//! Root puts VM groups under `ignite.slice` at the top of the hierarchy; a normal user
//! under cgroup v2 in a subtree systemd delegated to them (`user@UID.service`), and
//! nowhere where nothing is delegated (the caller warns and runs the VM unconfined).

pub mod group;
pub mod hierarchy;
pub mod usage;

pub use group::{Group, Limits};
pub use hierarchy::{Hierarchy, Version};
pub use usage::Usage;

use std::path::PathBuf;

/// The parent of every VM's group, under the top of the hierarchy (or of the delegated
/// subtree).
pub const PARENT: &str = "ignite.slice";

/// What went wrong with a control group, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup hierarchy with the controllers VMs need is mounted.
    #[error(
        "no cgroup hierarchy with the memory, cpu and pids controllers is mounted \
         (/proc/self/mountinfo lists none): mount cgroup2 on /sys/fs/cgroup, or boot with \
         systemd.unified_cgroup_hierarchy=1"
    )]
    NotMounted,
    /// The caller may not create groups anywhere (no delegation).
    #[error("{0}")]
    NotDelegated(String),
    /// A file of the hierarchy could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The group still held processes after they were killed.
    #[error("the control group {} still holds processes {pids:?} after they were killed", path.display())]
    Busy { path: PathBuf, pids: Vec<u32> },
}

pub(crate) fn io_error(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> CgroupError + use<> {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}
