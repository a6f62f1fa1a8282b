//! Ignite's operations, shared by the `ignite` CLI and the `ignited` daemon. Nothing here
//! knows about command-line parsing or output formats.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod doctor;
pub mod guest;
pub mod guest_init;
pub mod image_lookup;
pub mod images;
pub mod kernels;
pub mod policy;
pub mod reconcile;
pub mod removal;
mod root_disk;
pub mod vms;
