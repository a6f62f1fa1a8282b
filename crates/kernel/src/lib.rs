//! Kernels: getting an ELF `vmlinux` out of a `bzImage`, reading the kernel's release,
//! finding the modules a guest needs (with their dependencies, from `.modinfo`), and
//! writing initramfs archives (cpio newc).

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bzimage;
pub mod cpio;
pub mod deb;
mod error;
pub mod modules;
pub mod pvh;
pub mod version;

pub use error::KernelError;
