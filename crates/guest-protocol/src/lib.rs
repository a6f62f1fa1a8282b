//! The contract between the host and `ignite-init` inside a VM. Both sides link this crate,
//! so the two can never disagree on a field name or a frame layout.
//!
//! - [`config`]: the per-VM boot configuration, handed over as a small cpio archive
//!   appended to the kernel's initramfs (`/etc/ignite/vm.json` plus copied files).
//! - [`status`]: how the end of a VM (the workload's exit status or a boot failure) is
//!   reported on the console.
//! - [`agent`]: the guest agent's versioned, length-framed protocol, spoken over a
//!   virtio-serial port (QEMU) or vsock (Firecracker), multiplexing concurrent sessions.
//! - [`client`]: the host side of that protocol.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod agent;
pub mod client;
pub mod config;
pub mod status;
