//! Warm starts of container-mode VMs: instead of booting, a VM is restored from a
//! template, a VM of the same machine (kernel and init, VMM, accelerator, vCPUs, memory,
//! kernel command line, disks, NICs) booted once to the point where ignite-init waits
//! for its root disk and workload, and snapshotted there. The restored guest gets the
//! VM's configuration over the agent channel ([`BootRequest`]) with its clock, entropy
//! and network identity, drops what it cached of the template's disk, and boots on as a
//! cold guest would from that point: root disk, provisioning, network, workload.
//!
//! The first container-mode start of a machine boots cold and has a template built
//! beside it (`vm build-template`, a detached process); later ones start warm. A
//! template is a [`Snapshot`] labelled [`TEMPLATE_LABEL`] with its machine's key; a
//! kernel or init changed (its files' identity) makes a new key, and the templates of
//! the kernel's former files are removed when next looked for. `--cold` (or
//! `IGNITE_WARM_STARTS=off`) boots without them; `ignite snapshot rm` removes them.

use std::path::Path;

use ignite_api::{GuestMode, ObjectMeta, Snapshot, Vm, VmmKind};
use ignite_guest_protocol::agent::BootRequest;
use ignite_guest_protocol::config::GuestConfig;
use ignite_store::{Store, StoreError};
use ignite_vmm::{MachineSpec, NicBackend, StateFiles};
use sha2::{Digest, Sha256};

use super::snapshot::{self, SnapshotFiles};
use super::{VmError, agent_enabled, uid_of};

/// On a template's VM and snapshot: the key of the machine it is the template of.
pub const TEMPLATE_LABEL: &str = "ignite.weave.works/template";
/// `off` (or `0`, `false`) boots every VM cold.
pub const WARM_ENV: &str = "IGNITE_WARM_STARTS";

/// Whether warm starts are on for this process (they are unless [`WARM_ENV`] says off).
pub fn enabled() -> bool {
    !matches!(
        std::env::var(WARM_ENV).as_deref(),
        Ok("off" | "0" | "false" | "no")
    )
}

/// A template's own VM (booted to be snapshotted, then removed).
pub fn is_template(vm: &Vm) -> bool {
    vm.metadata.labels.contains_key(TEMPLATE_LABEL)
}

/// Whether a VM can start from a template: container mode as the host knows it (asked
/// for, a command given, or an image without /sbin/init), on QEMU, with the agent, and
/// nothing the template's initramfs would have to carry (copied files) or a restored
/// machine cannot have (volumes).
pub fn eligible(vm: &Vm, image: &ignite_api::Image, vmm: VmmKind) -> bool {
    let container = match vm.spec.mode.unwrap_or_default() {
        GuestMode::Container => true,
        GuestMode::Auto => {
            vm.spec.command.as_ref().is_some_and(|c| !c.is_empty())
                || image.status.has_init == Some(false)
        }
        GuestMode::Vm => false,
    };
    container
        && vmm == VmmKind::Qemu
        && !is_template(vm)
        && agent_enabled(vm)
        && vm.spec.copy_files.is_empty()
        && vm.spec.storage.volumes.is_empty()
}

/// The key of a machine: VMs with equal keys can start from one template.
pub fn template_key(
    machine: &MachineSpec,
    vmm: VmmKind,
    kernel_identity: &str,
    root_disk_bytes: u64,
) -> String {
    let nics: Vec<&str> = machine
        .nics
        .iter()
        .map(|n| match n.backend {
            NicBackend::User { .. } => "user",
            NicBackend::Tap { .. } => "tap",
        })
        .collect();
    let canonical = format!(
        "template-v1\n{}\n{:?}\n{}\n{}\n{}\n{}\n{}\n{root_disk_bytes}\n{}\n{kernel_identity}\n{}\n{}",
        vmm.name(),
        machine.accel,
        // A template saved on another guest CPU (TCG's was `max` before) cannot be restored.
        ignite_vmm::qemu::cpu_model(machine.accel),
        machine.vcpus,
        machine.memory_mib,
        machine.cmdline,
        machine.disks.len(),
        nics.join(","),
        env!("CARGO_PKG_VERSION"),
        // The balloon is a device of the saved state.
        if machine.memory_reporting {
            "balloon"
        } else {
            ""
        },
    );
    let digest = Sha256::digest(canonical.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of the template (VM and snapshot) of a key.
pub fn template_name(key: &str) -> String {
    format!("ignite-template-{key}")
}

/// The template of `key`, ready to restore onto `machine`. Templates of the same kernel
/// made with its former files (imported again, another init) are removed on the way.
pub fn find_template(
    store: &Store,
    key: &str,
    kernel_uid: &ignite_api::Uid,
    kernel_identity: &str,
    machine: &MachineSpec,
    vmm: VmmKind,
) -> Option<(Snapshot, StateFiles)> {
    let templates = store.snapshots().list().ok()?.objects;
    let mut found = None;
    for template in templates {
        let Some(label) = template.metadata.labels.get(TEMPLATE_LABEL) else {
            continue;
        };
        let m = &template.spec.machine;
        if &m.kernel_uid == kernel_uid && m.kernel_files != kernel_identity {
            tracing::info!(
                "removing template {}: its kernel's files changed",
                template.metadata.name
            );
            if let Err(e) = snapshot::remove_snapshot(store, template) {
                tracing::warn!("cannot remove the stale template: {e}");
            }
            continue;
        }
        if label == key
            && template.status.taken.is_some()
            && snapshot::check_machine(&template, machine, vmm).is_ok()
        {
            let uid = template.metadata.uid.clone()?;
            found = Some((template, SnapshotFiles::new(store, &uid).state()));
        }
    }
    found
}

/// What the restored template's init boots on with: the VM's configuration, and the
/// renewal every restored guest gets.
pub fn boot_request(template: &Snapshot, config: &GuestConfig) -> BootRequest {
    BootRequest {
        renew: snapshot::restore_request(template, &config.hostname, &config.interfaces),
        config: config.clone(),
    }
}

/// `vm build-template`: boots a template of the machine `vm` runs on (its spec, with
/// nothing of its identity), snapshots it once ignite-init waits, and removes its VM.
/// One builder per key at a time; a template that exists already is kept.
pub fn build_template(
    store: &Store,
    vm: &Vm,
    key: &str,
    options: &super::StartOptions<'_>,
) -> Result<(), VmError> {
    let lock_path = store.root().join("locks").join(format!("template-{key}"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(super::io("open", &lock_path))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        tracing::info!("template {key} is being built by another process");
        return Ok(());
    }
    let name = template_name(key);
    let listed = store.snapshots().list()?.objects;
    if listed.iter().any(|s| s.metadata.name == name) {
        return Ok(());
    }
    // A template VM left by a builder that died is removed first.
    if let Ok(old) = store.vms().find(&name)
        && old.metadata.name == name
    {
        super::remove_vm(store, old, true)?;
    }
    let mut spec = vm.spec.clone();
    spec.network.ports.clear();
    spec.ssh = None;
    spec.copy_files.clear();
    spec.mode = Some(GuestMode::Container);
    let mut meta = ObjectMeta {
        name: name.clone(),
        ..ObjectMeta::default()
    };
    meta.labels.insert(TEMPLATE_LABEL.into(), key.into());
    let mut template_vm = Vm::new(meta, spec);
    template_vm.status.image = vm.status.image.clone();
    template_vm.status.kernel = vm.status.kernel.clone();
    let template_vm = store.vms().create(template_vm)?;
    let uid = uid_of(&template_vm);
    let built = (|| {
        let files = super::VmFiles::new(store, &uid);
        let source_disk = super::VmFiles::new(store, &uid_of(vm)).root_disk_backing();
        // The template's disk is never read by its guest; it has the VM's size, and is a
        // layer on the same image disk.
        let image_disk = source_disk
            .map(|(_, backing)| backing)
            .filter(|b| b.extension().is_some_and(|e| e == "ext4"))
            .ok_or_else(|| {
                VmError::NotFound(format!(
                    "VM {}'s root disk is not a layer on an image's disk: no template made",
                    vm.metadata.name
                ))
            })?;
        ignite_disk::create_root_disk(
            ignite_disk::DiskFormat::Qcow2,
            &image_disk,
            &files.root_disk(ignite_disk::DiskFormat::Qcow2),
            template_vm.spec.disk_size().bytes(),
        )?;
        let started = super::start_vm(store, template_vm.clone(), options)?;
        super::wait_until_ready(store, &started, super::READY_TIMEOUT)?;
        let snap = snapshot::create_snapshot(
            store,
            store.vms().get(&uid)?,
            Some(&name),
            options.firecracker.as_deref(),
        )?;
        let snap_uid = snap.metadata.uid.clone().expect("stored objects have UIDs");
        store
            .snapshots()
            .update(&snap_uid, |s| -> Result<(), StoreError> {
                s.metadata.labels.insert(TEMPLATE_LABEL.into(), key.into());
                Ok(())
            })?;
        Ok(())
    })();
    if let Ok(current) = store.vms().get(&uid) {
        let _ = super::remove_vm(store, current, true);
    }
    built.map(|()| tracing::info!("built template {name}"))
}

/// `vm build-template --key KEY UID`: builds the template of key `key` from the VM `uid`
/// (read at once: a `run --rm` VM may soon be gone), started as that VM was.
pub fn build_template_for(root: &Path, uid: &str, key: &str) -> Result<(), VmError> {
    let store = Store::open(root)?;
    let uid: ignite_api::Uid = uid
        .parse()
        .map_err(|e| VmError::Spec(format!("vm build-template {uid:?}: {e}")))?;
    if !key.bytes().all(|b| b.is_ascii_hexdigit()) || key.len() != 16 {
        return Err(VmError::Spec(format!("bad template key {key:?}")));
    }
    let vm = store.vms().get(&uid)?;
    let files = super::VmFiles::new(&store, &uid);
    let settings = super::supervisor::config::SupervisorConfig::read(files.dir())?;
    let program = std::env::current_exe().map_err(super::io("find", "the running binary"))?;
    let options = super::StartOptions {
        supervisor_program: &program,
        accel: Some(settings.accel.name().to_string()),
        configured_accel: None,
        bridge: settings.bridge()?,
        cni: settings.cni.clone().unwrap_or_default(),
        firecracker: settings.firecracker.clone(),
        timeout: super::START_TIMEOUT,
        warm: false,
        // The template's machine is the VM's, balloon and all (the key holds it).
        memory: super::host_memory::MemorySettings {
            reporting: settings.memory_reporting,
            translation_cache_mib: settings.translation_cache_mib,
            vmm_mergeable: settings.vmm_mergeable,
        },
        vmm_users: settings.vmm_users,
    };
    let built = build_template(&store, &vm, key, &options);
    match &built {
        // Later starts do not try again for a while (see `spawn_builder`).
        Err(_) => drop(std::fs::write(failed_marker(root, key), b"")),
        Ok(()) => drop(std::fs::remove_file(failed_marker(root, key))),
    }
    built
}

/// Marks a key whose template could not be built (its log beside it says why).
fn failed_marker(root: &Path, key: &str) -> std::path::PathBuf {
    root.join("locks").join(format!("template-{key}.failed"))
}

/// How long after a failed build no other is started for the same key.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Starts `vm build-template` for `vm` as a process of its own, detached: the start that
/// asked goes on booting cold meanwhile.
pub fn spawn_builder(program: &Path, root: &Path, vm: &Vm, key: &str) {
    let recent_failure = std::fs::metadata(failed_marker(root, key))
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < RETRY_AFTER));
    if recent_failure {
        tracing::info!(
            "the template {key} could not be built lately (see {}): booting cold",
            root.join("locks")
                .join(format!("template-{key}.log"))
                .display()
        );
        return;
    }
    let log = root.join("locks").join(format!("template-{key}.log"));
    let out = std::fs::File::create(&log).ok();
    let mut command = std::process::Command::new(program);
    command
        .args(["vm", "build-template", "--root"])
        .arg(root)
        .args(["--key", key])
        .arg(uid_of(vm).to_string())
        .stdin(std::process::Stdio::null());
    if let Some(out) = out.and_then(|f| Some((f.try_clone().ok()?, f))) {
        command.stdout(out.0).stderr(out.1);
    }
    match command.spawn() {
        Ok(child) => {
            tracing::info!(pid = child.id(), "building the warm-start template {key}")
        }
        Err(e) => tracing::warn!("cannot start the template builder: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::{Accel, VmSpec};
    use ignite_vmm::{ConsoleSpec, DiskFormat, DiskSpec, NicSpec};

    fn machine() -> MachineSpec {
        MachineSpec {
            vcpus: 1,
            memory_mib: 256,
            kernel: "/k".into(),
            initrd: "/vms/a/initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            disks: vec![DiskSpec {
                path: "/vms/a/root.qcow2".into(),
                format: DiskFormat::Qcow2,
                read_only: false,
                snapshot: false,
                inherited_fd: None,
            }],
            console: ConsoleSpec::File("/vms/a/console.log".into()),
            agent_socket: None,
            nics: vec![NicSpec {
                mac: "6a:00:00:00:00:01".into(),
                backend: NicBackend::Tap {
                    ifname: "tap-a".into(),
                },
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
    fn machines_that_differ_only_in_their_identity_share_a_key() {
        let a = machine();
        let mut b = machine();
        b.initrd = "/vms/b/initramfs.cpio".into();
        b.disks[0].path = "/vms/b/root.qcow2".into();
        b.nics[0].mac = "6a:00:00:00:00:02".into();
        b.nics[0].backend = NicBackend::Tap {
            ifname: "tap-b".into(),
        };
        let key = |m: &MachineSpec, id: &str, size: u64| template_key(m, VmmKind::Qemu, id, size);
        assert_eq!(key(&a, "k1", 4 << 30), key(&b, "k1", 4 << 30));
        assert_eq!(key(&a, "k1", 4 << 30).len(), 16);
        // Anything of the machine itself, or another kernel, makes another key.
        assert_ne!(key(&a, "k1", 4 << 30), key(&a, "k2", 4 << 30));
        assert_ne!(key(&a, "k1", 4 << 30), key(&a, "k1", 8 << 30));
        let mut c = machine();
        c.memory_mib = 512;
        assert_ne!(key(&a, "k1", 4 << 30), key(&c, "k1", 4 << 30));
        let mut d = machine();
        d.nics[0].backend = NicBackend::User {
            forwards: vec![],
            isolated: false,
        };
        assert_ne!(key(&a, "k1", 4 << 30), key(&d, "k1", 4 << 30));
        assert_ne!(
            key(&a, "k1", 4 << 30),
            template_key(&a, VmmKind::Firecracker, "k1", 4 << 30)
        );
    }

    #[test]
    fn only_container_mode_vms_without_copied_files_or_volumes_start_warm() {
        let vm = |mode: Option<GuestMode>, command: Option<Vec<String>>| {
            Vm::new(
                ObjectMeta::default(),
                VmSpec {
                    mode,
                    command,
                    ..VmSpec::default()
                },
            )
        };
        let image = |has_init| {
            let mut i = ignite_api::Image::new(
                ObjectMeta::default(),
                ignite_api::ImageSource::parse("busybox").unwrap(),
            );
            i.status.has_init = has_init;
            i
        };
        let unknown = image(None);
        let eligible = |vm: &Vm, vmm| eligible(vm, &unknown, vmm);
        let cmd = Some(vec!["true".to_string()]);
        assert!(eligible(&vm(None, cmd.clone()), VmmKind::Qemu));
        assert!(eligible(
            &vm(Some(GuestMode::Container), None),
            VmmKind::Qemu
        ));
        // Auto without a command is VM mode when the image has an init; unknown is cold.
        assert!(!eligible(&vm(None, None), VmmKind::Qemu));
        assert!(super::eligible(
            &vm(None, None),
            &image(Some(false)),
            VmmKind::Qemu
        ));
        assert!(!super::eligible(
            &vm(None, None),
            &image(Some(true)),
            VmmKind::Qemu
        ));
        assert!(!eligible(&vm(Some(GuestMode::Vm), None), VmmKind::Qemu));
        assert!(!eligible(&vm(None, cmd.clone()), VmmKind::Firecracker));
        let mut copies = vm(None, cmd.clone());
        copies.spec.copy_files.push(ignite_api::FileMapping {
            host_path: "/a".into(),
            vm_path: "/b".into(),
        });
        assert!(!eligible(&copies, VmmKind::Qemu));
        let mut template = vm(None, cmd);
        template
            .metadata
            .labels
            .insert(TEMPLATE_LABEL.into(), "k".into());
        assert!(!eligible(&template, VmmKind::Qemu));
        assert!(is_template(&template));
    }
}
