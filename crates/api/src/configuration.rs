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
    /// Ignite's container runtime (`containerd` or `docker`). Accepted so Ignite
    /// configurations load; VMs here run without a container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Ignite's network plugin (`cni` or `docker-bridge`). Accepted so Ignite
    /// configurations load; see `spec.vmDefaults.network.mode` instead.
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
