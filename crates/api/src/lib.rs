//! Ignite's object model: the `VM`, `Image`, `Kernel` and `Configuration` kinds of
//! `ignite.weave.works/v1alpha4`, how they are read and written (JSON and YAML), validated,
//! layered (flags > `--config` > Configuration > built-in defaults) and queried with
//! Go-style templates and filters. Pure: nothing here touches the filesystem.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod configuration;
pub mod duration;
pub mod filter;
pub mod humanize;
mod image;
mod kernel;
mod kind_tag;
pub mod manifest;
mod meta;
pub mod ports;
mod reference;
mod size;
mod snapshot;
mod source;
mod subjects;
pub mod template;
pub mod validation;
pub mod version;
mod vm;

pub use configuration::{
    BridgeConfig, CniConfig, Configuration, ConfigurationSpec, HostAccess, IdRange,
};
pub use image::{Image, ImageRunConfig, ImageSpec, ImageStatus};
pub use kernel::{Kernel, KernelSpec, KernelStatus};
pub use meta::{API_GROUP, API_VERSION, Kind, ObjectMeta, Time, Uid, UidError};
pub use ports::{PortMapping, Protocol};
pub use reference::{ImageReference, ReferenceError};
pub use size::{Size, SizeError};
pub use snapshot::{
    Snapshot, SnapshotInterface, SnapshotMachine, SnapshotOf, SnapshotSpec, SnapshotStatus,
};
pub use source::{ImageSource, SourceError, is_image_id};
pub use vm::{
    Accel, BlockDeviceVolume, BootPhases, ExitReason, ExitRecord, FileMapping, GuestMode,
    NetworkMode, NetworkStatus, OciImageSource, ProcessRef, RuntimeStatus, Ssh, Vm, VmImageSpec,
    VmKernelSpec, VmMemoryStatus, VmNetworkSpec, VmSpec, VmStatus, VmStorageSpec, VmmKind,
    VmmStatus, Volume, VolumeMount, defaults, join_ips,
};
