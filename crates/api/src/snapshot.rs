//! The `Snapshot` kind (an addition to Ignite's model): a VM's state at one moment, its
//! vCPUs, devices and memory and a copy-on-write point of its disks, from which any number
//! of new VMs are made (`ignite run --from-snapshot`). It is made by `ignite snapshot
//! create`, never from a manifest: it names the machine it needs, and is restored only
//! onto the same one.

use serde::{Deserialize, Serialize};

use crate::meta::{ObjectMeta, Time, Uid, api_version};
use crate::vm::{Accel, VmSpec, VmmKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(with = "crate::kind_tag::snapshot")]
    pub kind: (),
    #[serde(with = "api_version")]
    pub api_version: (),
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SnapshotSpec,
    #[serde(default)]
    pub status: SnapshotStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// The VM it was taken of, as it was then.
    pub vm: SnapshotOf,
    /// The VM's spec then: a VM made from the snapshot gets it (with its own name, UID,
    /// MAC and address).
    pub vm_spec: VmSpec,
    /// What a restore needs, checked before any restore.
    pub machine: SnapshotMachine,
}

/// The VM a snapshot was taken of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotOf {
    pub name: String,
    pub uid: Uid,
}

/// The machine a snapshot's state belongs to: a restore anywhere else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotMachine {
    pub vmm: VmmKind,
    pub accel: Accel,
    /// The guest's CPU model where Ignite chooses it (QEMU's `-cpu`); absent in snapshots
    /// taken before it was recorded, whose TCG guests had QEMU's `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The kernel's name and UID.
    pub kernel: String,
    pub kernel_uid: Uid,
    /// The identity of the kernel's files (its image and the initramfs holding
    /// ignite-init): a re-import changes it.
    pub kernel_files: String,
    /// How many disks and NICs the machine had (devices are part of the saved state).
    pub disks: usize,
    pub nics: usize,
    /// The guest's network interfaces then (MAC, addresses, gateway), which a restored
    /// guest is moved off.
    #[serde(default)]
    pub interfaces: Vec<SnapshotInterface>,
    /// The guest's memory is a file of its own (`memory`), mapped privately by each VM
    /// restored from it, not part of the saved state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_file: bool,
    /// The machine had a balloon for free page reporting (a device of the saved state).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_reporting: bool,
}

/// One guest interface as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotInterface {
    pub mac: String,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Bytes of saved VMM state and guest memory.
    #[serde(default)]
    pub state_bytes: u64,
    /// Bytes of the disks' point-in-time layers.
    #[serde(default)]
    pub disk_bytes: u64,
    /// How long taking it kept the VM paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<Time>,
}

impl Snapshot {
    pub fn new(metadata: ObjectMeta, spec: SnapshotSpec) -> Snapshot {
        Snapshot {
            kind: (),
            api_version: (),
            metadata,
            spec,
            status: SnapshotStatus::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_another_kind_is_refused() {
        let snap = Snapshot::new(
            ObjectMeta {
                name: "s1".into(),
                ..ObjectMeta::default()
            },
            SnapshotSpec {
                vm: SnapshotOf {
                    name: "web".into(),
                    uid: "0123456789abcdef".parse().unwrap(),
                },
                vm_spec: VmSpec::default(),
                machine: SnapshotMachine {
                    vmm: VmmKind::Qemu,
                    accel: Accel::Tcg,
                    cpu: None,
                    vcpus: 1,
                    memory_mib: 128,
                    kernel: "k".into(),
                    kernel_uid: "fedcba9876543210".parse().unwrap(),
                    kernel_files: "1:2:3".into(),
                    disks: 1,
                    nics: 1,
                    interfaces: vec![SnapshotInterface {
                        mac: "6a:00:00:00:00:01".into(),
                        addresses: vec!["10.61.0.2/16".into()],
                    }],
                    memory_file: true,
                    memory_reporting: true,
                },
            },
        );
        let text = serde_json::to_string(&snap).unwrap();
        assert!(text.contains(r#""kind":"Snapshot""#), "{text}");
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snap);
        let wrong = text.replace(r#""kind":"Snapshot""#, r#""kind":"VM""#);
        assert!(serde_json::from_str::<Snapshot>(&wrong).is_err());
    }
}
