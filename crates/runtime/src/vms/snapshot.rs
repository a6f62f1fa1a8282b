//! Snapshots of running VMs, and new VMs made from them (`ignite snapshot create`,
//! `ignite run --from-snapshot`).
//!
//! A snapshot is a `Snapshot` object in `<root>/snapshots/<uid>/`: the VMM's saved state
//! of the paused guest (`state`, and `memory` where the VMM keeps memory apart) and a
//! point-in-time copy of the VM's root disk layer (`disk0.qcow2`: the VM's overlay, whose
//! backing stays the image's disk), all owner-only. The VM goes on, on its own overlay.
//! A VM made from a snapshot gets its own overlay on the snapshot's layer and a marker
//! ([`VmFiles::restore_marker`]); its supervisor then starts the VMM to load the state
//! instead of booting, and the restored guest is told its new clock, entropy, hostname
//! and network identity ([`restore_request`]) before anything else reaches it. Once
//! restored, the marker goes: a later start boots from the disk as any VM's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ignite_api::{
    ObjectMeta, PortMapping, Snapshot, SnapshotInterface, SnapshotMachine, SnapshotOf,
    SnapshotSpec, Time, Uid, Vm,
};
use ignite_guest_protocol::agent::{RESTORE_ENTROPY_BYTES, Readdress, RestoreRequest};
use ignite_guest_protocol::config::Interface;
use ignite_store::{Store, StoreError};
use ignite_vmm::{DiskFormat, MachineSpec, StateFiles};

use super::{VmError, VmFiles, io, is_running, kernel_of, repair, uid_of};
use crate::kernels::{INITRAMFS_FILE, VMLINUX_FILE, kernel_dir};

/// The root disk layer's file in a snapshot's directory.
const DISK_LAYER: &str = "disk0";

/// The files of one snapshot.
pub struct SnapshotFiles {
    dir: PathBuf,
}

impl SnapshotFiles {
    pub fn new(store: &Store, uid: &Uid) -> SnapshotFiles {
        SnapshotFiles {
            dir: store.snapshots().object_dir(uid),
        }
    }

    pub fn state(&self) -> StateFiles {
        StateFiles::in_dir(&self.dir)
    }

    /// The root disk's point-in-time layer, in the VM's disk format.
    pub fn disk_layer(&self, format: DiskFormat) -> PathBuf {
        let ext = match format {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        };
        self.dir.join(format!("{DISK_LAYER}.{ext}"))
    }

    /// Bytes the snapshot takes on disk (allocated: a memory file has holes).
    fn sizes(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let len =
            |p: PathBuf| std::fs::symlink_metadata(p).map_or(0, |m| m.len().min(m.blocks() * 512));
        let state = self.state();
        let disks = DiskFormat::ALL
            .into_iter()
            .map(|f| len(self.disk_layer(f)))
            .sum();
        (len(state.state) + len(state.memory), disks)
    }
}

/// What tells a kernel's files apart from a re-imported kernel's: device, inode, size and
/// modification time of its image and of the initramfs that holds ignite-init (a re-import
/// writes new files; reading them whole on every restore would cost more than the restore).
pub fn kernel_identity(kdir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    [VMLINUX_FILE, INITRAMFS_FILE]
        .iter()
        .map(|name| match std::fs::metadata(kdir.join(name)) {
            Ok(m) => format!(
                "{name}:{}:{}:{}:{}.{}",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            ),
            Err(_) => format!("{name}:missing"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Takes a snapshot of a running VM: the guest is paused (if it was not), its state saved
/// and its root disk layer copied, then it runs on as before. Nothing is left of a
/// snapshot whose taking failed.
pub fn create_snapshot(
    store: &Store,
    vm: Vm,
    name: Option<&str>,
    firecracker: Option<&Path>,
) -> Result<Snapshot, VmError> {
    let vm = repair(store, vm);
    let vm_name = vm.metadata.name.clone();
    if !is_running(&vm) {
        return Err(VmError::Conflict(format!(
            "VM {vm_name} is not running: a snapshot holds a running guest's state; start it first (ignite start {vm_name})"
        )));
    }
    if !vm.spec.storage.volumes.is_empty() {
        return Err(VmError::Spec(format!(
            "VM {vm_name} has volumes (host block devices), which a snapshot cannot hold a point-in-time copy of: snapshot a VM without -v"
        )));
    }
    let vmm = ignite_vmm::driver::locate(ignite_vmm::driver::recorded(vm.spec.vmm), firecracker)?;
    let uid = uid_of(&vm);
    let files = VmFiles::new(store, &uid);
    let kernel = kernel_of(store, &vm)?;
    let kdir = kernel_dir(store, &kernel);
    let accel = vm.status.vmm.as_ref().map(|v| v.accel).ok_or_else(|| {
        VmError::Conflict(format!("VM {vm_name} has no VMM recorded: start it again"))
    })?;
    let interfaces: Vec<Interface> = std::fs::read(files.guest_interfaces())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let machine = SnapshotMachine {
        vmm: vmm.kind(),
        accel,
        cpu: ignite_vmm::qemu::guest_cpu(vmm.kind(), accel).map(str::to_string),
        vcpus: vm.spec.cpus() as u32,
        memory_mib: vm.spec.memory().bytes() >> 20,
        kernel: kernel.metadata.name.clone(),
        kernel_uid: kernel
            .metadata
            .uid
            .clone()
            .ok_or_else(|| VmError::NotFound(format!("VM {vm_name}'s kernel has no UID")))?,
        kernel_files: kernel_identity(&kdir),
        disks: 1 + usize::from(kdir.join(crate::kernels::MODULES_DISK_FILE).is_file()),
        nics: interfaces.len(),
        memory_file: files.guest_memory().is_file(),
        memory_reporting: vm.status.vmm.as_ref().is_some_and(|v| v.memory_reporting),
        interfaces: interfaces
            .iter()
            .map(|i| SnapshotInterface {
                mac: i.mac.clone(),
                addresses: i.addresses.clone(),
            })
            .collect(),
    };
    let mut spec = vm.spec.clone();
    // Host ports belong to the VM; a VM made from the snapshot publishes its own.
    spec.network.ports.clear();
    let snapshot = store
        .snapshots()
        .create(Snapshot::new(
            ObjectMeta {
                name: name.unwrap_or_default().to_string(),
                ..ObjectMeta::default()
            },
            SnapshotSpec {
                vm: SnapshotOf {
                    name: vm_name.clone(),
                    uid: uid.clone(),
                },
                vm_spec: spec,
                machine,
            },
        ))
        .map_err(|e| match e {
            StoreError::NameTaken { .. } => VmError::Conflict(format!(
                "{e}: choose another name, or remove it (ignite snapshot rm {})",
                name.unwrap_or_default()
            )),
            e => e.into(),
        })?;
    let snap_uid = snapshot
        .metadata
        .uid
        .clone()
        .expect("the store gives a UID");
    let snap_files = SnapshotFiles::new(store, &snap_uid);
    let control = files.control_socket();
    let was_paused = vm.status.paused;
    let began = Instant::now();
    let taken = (|| {
        if !was_paused {
            vmm.pause(&control).map_err(|e| {
                VmError::Host(format!("{} did not pause VM {vm_name}: {e}", vmm.name()))
            })?;
        }
        let mut state = snap_files.state();
        state.memory_in_file = files.guest_memory().is_file();
        let saved = vmm
            .save_state(&control, &state)
            .map_err(|e| VmError::Host(format!("cannot save VM {vm_name}'s state: {e}")));
        // Memory in a file of its own is copied while the guest is paused (the VM writes
        // on into its own file once it runs again).
        let saved = saved.and_then(|()| {
            if state.memory_in_file {
                ignite_disk::copy_disk_layer(&files.guest_memory(), &state.memory)?;
            }
            Ok(())
        });
        // The disk is copied while the guest is still paused and its VMM has flushed it.
        let format = vmm.capabilities().root_disk;
        let copied = saved.and_then(|()| {
            Ok(ignite_disk::copy_disk_layer(
                &files.root_disk(format),
                &snap_files.disk_layer(format),
            )?)
        });
        if !was_paused && let Err(e) = vmm.resume(&control) {
            tracing::warn!("cannot resume VM {vm_name} after the snapshot: {e}");
        }
        copied
    })();
    let millis = began.elapsed().as_millis() as u64;
    if let Err(e) = taken {
        let _ = store.snapshots().delete(&snap_uid);
        return Err(e);
    }
    let (state_bytes, disk_bytes) = snap_files.sizes();
    tracing::info!(
        "took snapshot {} of VM {vm_name} in {millis} ms ({state_bytes} bytes of state, {disk_bytes} of disk)",
        snapshot.metadata.name
    );
    Ok(store
        .snapshots()
        .update(&snap_uid, |s| -> Result<(), StoreError> {
            s.status.state_bytes = state_bytes;
            s.status.disk_bytes = disk_bytes;
            s.status.create_millis = Some(millis);
            s.status.taken = Some(Time::now());
            Ok(())
        })?)
}

/// The VMs whose root disk is a layer on the snapshot's (made from it).
pub fn vms_made_from(store: &Store, snapshot: &Snapshot) -> Result<Vec<Vm>, VmError> {
    let Some(uid) = &snapshot.metadata.uid else {
        return Ok(Vec::new());
    };
    let dir = store.snapshots().object_dir(uid);
    Ok(store
        .vms()
        .list()?
        .objects
        .into_iter()
        .filter(|vm| {
            VmFiles::new(store, &uid_of(vm))
                .root_disk_backing()
                .is_some_and(|(_, backing)| backing.starts_with(&dir))
        })
        .collect())
}

/// Removes a snapshot, refused while VMs made from it exist (their disks are layers on
/// its disk). The image disk its layer was on goes too when nothing else uses it.
pub fn remove_snapshot(store: &Store, snapshot: Snapshot) -> Result<Snapshot, VmError> {
    let name = snapshot.metadata.name.clone();
    let users = vms_made_from(store, &snapshot)?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|v| v.metadata.name.as_str()).collect();
        return Err(VmError::Conflict(format!(
            "snapshot {name} is in use by VMs made from it ({}): remove them first (ignite rm -f {})",
            names.join(", "),
            names.join(" ")
        )));
    }
    let uid = snapshot
        .metadata
        .uid
        .clone()
        .expect("stored objects have UIDs");
    let files = SnapshotFiles::new(store, &uid);
    let backing = DiskFormat::ALL
        .into_iter()
        .find_map(|f| ignite_disk::backing_file(&files.disk_layer(f)));
    store.snapshots().delete(&uid)?;
    if let Some(disk) = backing
        && let Err(e) = crate::images::remove_rootfs_if_unused(store, &disk)
    {
        tracing::warn!("cannot remove the unused root disk {}: {e}", disk.display());
    }
    Ok(snapshot)
}

/// Makes a VM (stopped) from a snapshot: the snapshot's VM spec with a new name, UID,
/// MAC and address, `ports` as its own published ports, and its own root disk layer on
/// the snapshot's. Its first start restores the snapshot.
pub fn create_vm_from_snapshot(
    store: &Store,
    snapshot: &Snapshot,
    meta: ObjectMeta,
    ports: Vec<PortMapping>,
    auto_remove: bool,
) -> Result<Vm, VmError> {
    let snap_name = &snapshot.metadata.name;
    if snapshot.status.taken.is_none() {
        return Err(VmError::Conflict(format!(
            "snapshot {snap_name} is still being taken, or its taking failed: wait, or remove it (ignite snapshot rm {snap_name})"
        )));
    }
    let snap_uid = snapshot
        .metadata
        .uid
        .clone()
        .expect("stored objects have UIDs");
    let snap_files = SnapshotFiles::new(store, &snap_uid);
    let mut spec = snapshot.spec.vm_spec.clone();
    spec.network.ports = ports;
    super::network::check_host_ports(&spec.network.ports)?;
    super::check_name_free(store, &meta.name)?;
    let mut vm = Vm::new(meta, spec);
    vm.status.auto_remove = auto_remove;
    // What ps and inspect show of the image and kernel, as the VM taken had it.
    if let Ok(source) = store.vms().get(&snapshot.spec.vm.uid) {
        vm.status.image = source.status.image;
        vm.status.kernel = source.status.kernel;
    }
    check_snapshot_kernel(store, snapshot, &vm)?;
    let vmm = ignite_vmm::driver::recorded(vm.spec.vmm);
    if vmm != snapshot.spec.machine.vmm {
        return Err(VmError::Spec(format!(
            "snapshot {snap_name} was taken on {}, but its VM spec says {}",
            snapshot.spec.machine.vmm.name(),
            vmm.name()
        )));
    }
    let format = DiskFormat::ALL
        .into_iter()
        .find(|f| snap_files.disk_layer(*f).is_file())
        .ok_or_else(|| {
            VmError::NotFound(format!(
                "snapshot {snap_name} has no disk layer in {}: remove it (ignite snapshot rm {snap_name})",
                snap_files.dir.display()
            ))
        })?;
    let vm = store.vms().create(vm).map_err(|e| match e {
        StoreError::NameTaken { .. } => VmError::Conflict(format!("{e}: choose another name")),
        e => e.into(),
    })?;
    let uid = uid_of(&vm);
    let files = VmFiles::new(store, &uid);
    let made = ignite_disk::create_root_disk_on_layer(
        format,
        &snap_files.disk_layer(format),
        &files.root_disk(format),
        vm.spec.disk_size().bytes(),
    )
    .map_err(VmError::from)
    .and_then(|()| {
        std::fs::write(files.restore_marker(), snap_uid.to_string())
            .map_err(io("write", files.restore_marker()))
    });
    if let Err(e) = made {
        let _ = store.vms().delete(&uid);
        return Err(e);
    }
    Ok(vm)
}

/// The kernel a snapshot needs must be there, unchanged.
fn check_snapshot_kernel(store: &Store, snapshot: &Snapshot, vm: &Vm) -> Result<(), VmError> {
    let snap_name = &snapshot.metadata.name;
    let machine = &snapshot.spec.machine;
    let kernel = kernel_of(store, vm)
        .ok()
        .filter(|k| k.metadata.uid.as_ref() == Some(&machine.kernel_uid));
    let Some(kernel) = kernel else {
        return Err(VmError::Spec(format!(
            "snapshot {snap_name} needs kernel {} ({}), which is gone or was replaced: a snapshot restores only onto the kernel it was taken with",
            machine.kernel, machine.kernel_uid
        )));
    };
    if kernel_identity(&kernel_dir(store, &kernel)) != machine.kernel_files {
        return Err(VmError::Spec(format!(
            "snapshot {snap_name} was taken with other files of kernel {} (it was imported again, or ignite-init changed): a snapshot restores only onto the kernel and init it was taken with; take a new snapshot",
            machine.kernel
        )));
    }
    Ok(())
}

/// For a VM's supervisor: the snapshot to restore on this start, checked against the
/// machine about to run, or `None` when the VM boots.
pub fn restore_target(
    store: &Store,
    vm: &Vm,
    files: &VmFiles,
    machine: &MachineSpec,
    vmm: ignite_api::VmmKind,
) -> Result<Option<(Snapshot, StateFiles)>, VmError> {
    let Ok(text) = std::fs::read_to_string(files.restore_marker()) else {
        return Ok(None);
    };
    let snap_uid: Uid = text.trim().parse().map_err(|e| {
        VmError::Spec(format!(
            "{} is damaged ({e}): remove the VM and make it again",
            files.restore_marker().display()
        ))
    })?;
    let snapshot = store.snapshots().get(&snap_uid).map_err(|_| {
        VmError::NotFound(format!(
            "VM {} is to be restored from snapshot {snap_uid}, which is gone: remove the VM and make it again",
            vm.metadata.name
        ))
    })?;
    check_snapshot_kernel(store, &snapshot, vm)?;
    check_machine(&snapshot, machine, vmm)?;
    let state = SnapshotFiles::new(store, &snap_uid).state();
    Ok(Some((snapshot, state)))
}

/// Sets `machine` up to continue from `snapshot`'s `state` instead of booting: a memory
/// file is mapped privately (its pages shared with every other VM restored from it).
pub fn restore_onto(machine: &mut MachineSpec, snapshot: &Snapshot, mut state: StateFiles) {
    if snapshot.spec.machine.memory_file {
        state.memory_in_file = true;
        machine.memory_file = Some(ignite_vmm::MemoryFile {
            path: state.memory.clone(),
            shared: false,
        });
    }
    // The balloon is a device of the saved state: the machine has it if the saved one had.
    machine.memory_reporting = snapshot.spec.machine.memory_reporting;
    machine.restore = Some(state);
}

/// A snapshot's state loads only into the machine it was saved from.
pub fn check_machine(
    snapshot: &Snapshot,
    machine: &MachineSpec,
    vmm: ignite_api::VmmKind,
) -> Result<(), VmError> {
    let want = &snapshot.spec.machine;
    let name = &snapshot.metadata.name;
    // A snapshot that does not say was taken when a TCG guest's CPU was QEMU's `max`.
    let legacy = match want.accel {
        ignite_api::Accel::Tcg => "max",
        ignite_api::Accel::Kvm => "host",
    };
    let want_cpu = ignite_vmm::qemu::guest_cpu(want.vmm, want.accel)
        .map(|_| want.cpu.as_deref().unwrap_or(legacy));
    let here_cpu = ignite_vmm::qemu::guest_cpu(vmm, machine.accel);
    let differences: Vec<String> = [
        (want.vmm != vmm).then(|| format!("VMM {} (here {})", want.vmm.name(), vmm.name())),
        (want.accel != machine.accel)
            .then(|| format!("accelerator {:?} (here {:?})", want.accel, machine.accel)),
        (want.vmm == vmm && want.accel == machine.accel && want_cpu != here_cpu).then(|| {
            format!(
                "CPU {} (here {})",
                want_cpu.unwrap_or("unknown"),
                here_cpu.unwrap_or("unknown")
            )
        }),
        (want.vcpus != machine.vcpus)
            .then(|| format!("{} vCPUs (here {})", want.vcpus, machine.vcpus)),
        (want.memory_mib != machine.memory_mib).then(|| {
            format!(
                "{} MiB of memory (here {})",
                want.memory_mib, machine.memory_mib
            )
        }),
        (want.disks != machine.disks.len())
            .then(|| format!("{} disks (here {})", want.disks, machine.disks.len())),
        (want.nics != machine.nics.len())
            .then(|| format!("{} NICs (here {})", want.nics, machine.nics.len())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(VmError::Spec(format!(
        "snapshot {name} needs another machine: {}; a snapshot restores only onto the machine it was taken on",
        differences.join(", ")
    )))
}

/// What a restored guest is told: the host's time and fresh random bytes, its hostname,
/// and each interface it had moved to the new VM's MAC and addresses (in order).
pub fn restore_request(
    snapshot: &Snapshot,
    hostname: &str,
    interfaces: &[Interface],
) -> RestoreRequest {
    let mut entropy = [0u8; RESTORE_ENTROPY_BYTES];
    rand::fill(&mut entropy);
    RestoreRequest {
        unix_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        entropy: entropy.iter().map(|b| format!("{b:02x}")).collect(),
        hostname: Some(hostname.to_string()),
        interfaces: snapshot
            .spec
            .machine
            .interfaces
            .iter()
            .zip(interfaces)
            .map(|(old, new)| Readdress {
                old_mac: old.mac.clone(),
                old_addresses: old.addresses.clone(),
                new: new.clone(),
            })
            .collect(),
        // Restored VMs map a memory file privately (see `restore_onto`).
        stop_free_page_reporting: snapshot.spec.machine.memory_file
            && snapshot.spec.machine.memory_reporting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::{Accel, VmSpec, VmmKind};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new(
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
                    cpu: Some(ignite_vmm::qemu::TCG_CPU.into()),
                    vcpus: 1,
                    memory_mib: 256,
                    kernel: "k".into(),
                    kernel_uid: "fedcba9876543210".parse().unwrap(),
                    kernel_files: String::new(),
                    disks: 2,
                    nics: 1,
                    interfaces: vec![SnapshotInterface {
                        mac: "6a:00:00:00:00:01".into(),
                        addresses: vec!["10.61.0.2/16".into()],
                    }],
                    memory_file: false,
                    memory_reporting: false,
                },
            },
        );
        s.status.taken = Some(Time::now());
        s
    }

    fn machine() -> MachineSpec {
        MachineSpec {
            vcpus: 1,
            memory_mib: 256,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: String::new(),
            disks: vec![
                ignite_vmm::DiskSpec {
                    path: "/d0".into(),
                    format: DiskFormat::Qcow2,
                    read_only: false,
                    snapshot: false,
                    inherited_fd: None,
                };
                2
            ],
            console: ignite_vmm::ConsoleSpec::File("/c".into()),
            agent_socket: None,
            nics: vec![ignite_vmm::NicSpec {
                mac: "6a:00:00:00:00:02".into(),
                backend: ignite_vmm::NicBackend::Tap { ifname: "t".into() },
            }],
            accel: Accel::Tcg,
            log_dir: None,
            restore: None,
            memory_file: None,
            memory_reporting: false,
            translation_cache_mib: None,
            tcg_icount: false,
            confinement: Default::default(),
        }
    }

    #[test]
    fn a_snapshot_loads_only_into_its_own_machine_and_says_what_differs() {
        let snap = snapshot();
        assert!(check_machine(&snap, &machine(), VmmKind::Qemu).is_ok());
        let mut other = machine();
        other.memory_mib = 512;
        other.accel = Accel::Kvm;
        let err = check_machine(&snap, &other, VmmKind::Qemu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("256 MiB of memory (here 512)"), "{err}");
        assert!(err.contains("accelerator Tcg (here Kvm)"), "{err}");
        assert!(!err.contains("vCPUs"), "{err}");
        let err = check_machine(&snap, &machine(), VmmKind::Firecracker)
            .unwrap_err()
            .to_string();
        assert!(err.contains("VMM qemu (here firecracker)"), "{err}");
        // A snapshot from before the CPU model was recorded had TCG's former `max`.
        let mut legacy = snapshot();
        legacy.spec.machine.cpu = None;
        let err = check_machine(&legacy, &machine(), VmmKind::Qemu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("CPU max (here {})", ignite_vmm::qemu::TCG_CPU)),
            "{err}"
        );
    }

    #[test]
    fn a_memory_file_is_mapped_privately_by_each_restored_vm() {
        let mut snap = snapshot();
        let state = StateFiles::in_dir(Path::new("/s"));
        let mut plain = machine();
        restore_onto(&mut plain, &snap, state.clone());
        assert_eq!(plain.memory_file, None);
        assert!(!plain.restore.as_ref().unwrap().memory_in_file);
        snap.spec.machine.memory_file = true;
        let mut shared = machine();
        restore_onto(&mut shared, &snap, state);
        assert_eq!(
            shared.memory_file,
            Some(ignite_vmm::MemoryFile {
                path: "/s/memory".into(),
                shared: false
            })
        );
        assert!(shared.restore.as_ref().unwrap().memory_in_file);
    }

    #[test]
    fn each_restore_moves_the_interfaces_and_brings_its_own_entropy() {
        let snap = snapshot();
        let new = [Interface {
            mac: "6a:00:00:00:00:02".into(),
            addresses: vec!["10.61.0.3/16".into()],
            gateway: Some("10.61.0.1".into()),
            mtu: None,
        }];
        let a = restore_request(&snap, "clone-a", &new);
        let b = restore_request(&snap, "clone-b", &new);
        assert_eq!(a.interfaces.len(), 1);
        assert_eq!(a.interfaces[0].old_mac, "6a:00:00:00:00:01");
        assert_eq!(a.interfaces[0].old_addresses, ["10.61.0.2/16"]);
        assert_eq!(a.interfaces[0].new, new[0]);
        assert_eq!(a.hostname.as_deref(), Some("clone-a"));
        assert_eq!(a.entropy.len(), 2 * RESTORE_ENTROPY_BYTES);
        assert_ne!(a.entropy, b.entropy);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(now - a.unix_nanos < 60_000_000_000);
    }
}
