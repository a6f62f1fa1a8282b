//! The `Configuration` kind: host-wide settings (`/etc/ignite/config.yaml`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::meta::{ObjectMeta, api_version};
use crate::vm::VmSpec;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Configuration {
    #[serde(with = "crate::kind_tag::configuration")]
    pub kind: (),
    #[serde(with = "api_version")]
    pub api_version: (),
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ConfigurationSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigurationSpec {
    /// Ignite's container runtime (`containerd` or `docker`): here, the local engine a
    /// bare image name is looked up in first (before the other engine and the registry).
    /// VMs run without a container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The local engines (`docker`, `containerd`) a bare image name is looked up in, in
    /// order, before the registry (an addition to Ignite's model). Default: docker, then
    /// containerd; `[]`: the registry only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_lookup: Option<Vec<String>>,
    /// Ignite's network plugin: `cni` makes `cni` the network mode of VMs that name none
    /// (`spec.vmDefaults.network.mode` wins); `docker-bridge` means the `bridge` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin: Option<String>,
    /// Defaults for every VM created on this host.
    #[serde(default)]
    pub vm_defaults: VmSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// Where registry credentials (`config.json`) are read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_config_dir: Option<PathBuf>,
    /// The accelerator VMs get: `auto` (KVM when /dev/kvm works), `kvm` or `tcg` (an
    /// addition to Ignite's model; `--accel` and `IGNITE_ACCEL` override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// The Firecracker binary (an addition to Ignite's model); `firecracker` from PATH
    /// when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firecracker: Option<PathBuf>,
    /// The bridge of `--network bridge` (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeConfig>,
    /// Where `--network cni` finds network configurations and plugins (an addition to
    /// Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniConfig>,
    /// What of the host VMs from the API, GitOps and the daemon's manifest directory may
    /// use (an addition to Ignite's model): nothing unless listed here. The local CLI
    /// (`ignite run`, `ignite apply`) is not limited.
    #[serde(default, skip_serializing_if = "HostAccess::is_empty")]
    pub host_access: HostAccess,
    /// The host uids VMMs run as, one per running VM started by root (an addition to
    /// Ignite's model); default: 65536 uids from 1900000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_users: Option<IdRange>,
}

/// A range of host ids: `count` of them from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdRange {
    pub first: u32,
    pub count: u32,
}

/// `spec.cni`: CNI's directories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CniConfig {
    /// Network configurations (`.conflist`, `.conf`); default `/etc/cni/net.d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_dir: Option<PathBuf>,
    /// Plugin directories, searched in order; default `/opt/cni/bin`, `/usr/lib/cni`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bin_dirs: Vec<PathBuf>,
}

/// `spec.hostAccess`: the host paths and block devices declarative manifests may name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostAccess {
    /// Absolute directory prefixes (symbolic links resolved) under which `copyFiles`
    /// host paths, `ssh` public keys and local image and kernel sources (`oci:DIR`,
    /// `docker-archive:FILE`, kernel files) may be. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathBuf>,
    /// Block devices (exact paths, symbolic links resolved) that `storage.volumes` may
    /// attach. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_devices: Vec<PathBuf>,
    /// Whether manifests may take images and kernels from the host's local engines
    /// (`docker-daemon:`, and bare names looked up in Docker Engine or containerd first).
    /// Their sockets are root-equivalent: off unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub engines: bool,
}

impl HostAccess {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.block_devices.is_empty() && !self.engines
    }
}

/// `spec.bridge`: the Linux bridge VMs with `--network bridge` are plugged into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BridgeConfig {
    /// The bridge's name; `ignite0` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The VMs' IPv4 subnet; the bridge takes its first address. `10.61.0.0/16` when
    /// not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}
