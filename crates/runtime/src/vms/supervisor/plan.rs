//! The machine a VM runs as: from the VM, its image, its kernel's files, its network
//! attachment and what its driver reads, the [`MachineSpec`] for the VMM and the
//! [`GuestConfig`] for ignite-init. Pure: every input is given, nothing is read.

use std::path::{Path, PathBuf};

use ignite_api::{Accel, GuestMode, Image, Vm};
use ignite_guest_protocol::config::{BootMode, CONFIG_VERSION, GuestConfig, Volume as GuestVolume};
use ignite_vmm::{Capabilities, ConsoleSpec, DiskFormat, DiskSpec, KernelFormat, MachineSpec};

use crate::guest::workload_for;
use crate::kernels::{BZIMAGE_FILE, MODULES_DISK_FILE, VMLINUX_FILE};
use crate::vms::host_memory::MemorySettings;
use crate::vms::network::{Attachment, GuestNetwork};
use crate::vms::{VmFiles, uid_of};

/// The files of a VM's kernel that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    pub bzimage: Option<PathBuf>,
    pub vmlinux: PathBuf,
    /// The vmlinux has a PVH entry point.
    pub pvh: bool,
    /// The kernel's modules as a disk (when it has modules).
    pub modules_disk: Option<PathBuf>,
}

impl KernelFiles {
    /// Looks at what the kernel directory `dir` holds.
    pub fn in_dir(dir: &Path) -> KernelFiles {
        let present = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let vmlinux = dir.join(VMLINUX_FILE);
        KernelFiles {
            bzimage: present(BZIMAGE_FILE),
            pvh: ignite_kernel::pvh::has_pvh_entry(&vmlinux),
            vmlinux,
            modules_disk: present(MODULES_DISK_FILE),
        }
    }

    /// The image to boot for a driver that reads `format`.
    fn for_format(&self, format: KernelFormat) -> PathBuf {
        match (format, &self.bzimage) {
            (KernelFormat::PvhVmlinux, _) if self.pvh => self.vmlinux.clone(),
            (KernelFormat::BzImage | KernelFormat::PvhVmlinux, Some(bzimage)) => bzimage.clone(),
            _ => self.vmlinux.clone(),
        }
    }
}

/// Everything a plan is made from.
pub struct PlanInputs<'a> {
    pub vm: &'a Vm,
    pub image: &'a Image,
    pub kernel: &'a KernelFiles,
    pub files: &'a VmFiles,
    pub capabilities: Capabilities,
    pub accel: Accel,
    pub network: &'a Attachment,
    pub memory: MemorySettings,
}

/// What the supervisor starts.
#[derive(Debug, Clone)]
pub struct MachinePlan {
    pub machine: MachineSpec,
    pub guest: GuestConfig,
}

pub fn plan(inputs: &PlanInputs<'_>) -> MachinePlan {
    let PlanInputs {
        vm,
        image,
        kernel,
        files,
        capabilities,
        accel,
        network,
        memory,
    } = inputs;
    let guest = guest_config(vm, image, kernel.modules_disk.is_some(), &network.guest);
    let root_format = capabilities.root_disk;
    let mut disks = vec![DiskSpec {
        path: files.root_disk(root_format),
        format: root_format,
        read_only: false,
        snapshot: false,
        inherited_fd: None,
    }];
    if let Some(modules) = &kernel.modules_disk {
        disks.push(DiskSpec {
            path: modules.clone(),
            format: DiskFormat::Raw,
            read_only: true,
            snapshot: false,
            inherited_fd: None,
        });
    }
    for volume in &guest.volumes {
        let source = vm
            .spec
            .storage
            .volumes
            .iter()
            .find(|v| v.name == volume.name)
            .and_then(|v| v.block_device.as_ref())
            .map(|b| b.path.clone())
            .expect("guest volumes come from spec volumes");
        disks.push(DiskSpec {
            path: source,
            format: DiskFormat::Raw,
            read_only: false,
            snapshot: false,
            inherited_fd: None,
        });
    }
    let machine = MachineSpec {
        vcpus: vm.spec.cpus() as u32,
        memory_mib: vm.spec.memory().bytes() >> 20,
        kernel: kernel.for_format(capabilities.kernel),
        initrd: files.initramfs(),
        cmdline: vm
            .spec
            .kernel
            .as_ref()
            .and_then(|k| k.cmd_line.clone())
            .unwrap_or_else(|| ignite_api::defaults::KERNEL_CMDLINE.to_string()),
        disks,
        console: ConsoleSpec::Socket {
            path: files.console_socket(),
            log: files.console_log(),
        },
        agent_socket: Some(files.agent_socket()),
        nics: network.nics.clone(),
        accel: *accel,
        log_dir: Some(files.dir().to_path_buf()),
        restore: None,
        // A template's memory goes into a file its snapshot keeps, which the VMs restored
        // from it map privately (see `vms::warm`).
        memory_file: crate::vms::warm::is_template(vm).then(|| ignite_vmm::MemoryFile {
            path: files.guest_memory(),
            shared: true,
        }),
        memory_reporting: memory.reporting,
        // Only TCG translates code.
        translation_cache_mib: match accel {
            Accel::Tcg => memory.translation_cache_mib,
            Accel::Kvm => None,
        },
        // Set by the supervisor from its settings (`IGNITE_TCG_CLOCK` of the start).
        tcg_icount: false,
        // Decided by the supervisor, which claims the VMM's user (`vms::confinement`).
        confinement: Default::default(),
    };
    MachinePlan { machine, guest }
}

/// The per-VM configuration ignite-init applies.
pub fn guest_config(
    vm: &Vm,
    image: &Image,
    has_modules: bool,
    network: &GuestNetwork,
) -> GuestConfig {
    // Disks: vda root, vdb modules (when the kernel has them), then volumes in order.
    let first_volume = if has_modules { b'c' } else { b'b' };
    let volumes = vm
        .spec
        .storage
        .volume_mounts
        .iter()
        .enumerate()
        .map(|(i, m)| GuestVolume {
            name: m.name.clone(),
            device: format!("/dev/vd{}", (first_volume + i as u8) as char),
            path: m.mount_path.to_string_lossy().into_owned(),
            fstype: None,
            read_only: false,
        })
        .collect();
    GuestConfig {
        version: CONFIG_VERSION,
        name: vm.metadata.name.clone(),
        uid: uid_of(vm).to_string(),
        hostname: vm.metadata.name.clone(),
        mode: match vm.spec.mode.unwrap_or_default() {
            GuestMode::Auto => BootMode::Auto,
            GuestMode::Vm => BootMode::Vm,
            GuestMode::Container => BootMode::Container,
        },
        workload: workload_for(image, &vm.spec),
        root_device: "/dev/vda".into(),
        modules_device: has_modules.then(|| "/dev/vdb".to_string()),
        interfaces: network.interfaces.clone(),
        nameservers: network.nameservers.clone(),
        search_domains: vec![],
        hosts: vec![],
        authorized_keys: vec![],
        files: vec![],
        volumes,
        template: crate::vms::warm::is_template(vm),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ignite_api::{ImageSource, NetworkMode, ObjectMeta, VmSpec};
    use ignite_vmm::NicBackend;

    use super::*;
    use crate::vms::network;

    fn vm(mode: NetworkMode) -> Vm {
        let mut spec = VmSpec::default();
        spec.network.mode = Some(mode);
        spec.network.ports = vec!["8080:80".parse().unwrap()];
        spec.ssh = Some(ignite_api::Ssh::Generate);
        let meta = ObjectMeta {
            name: "web".into(),
            uid: Some("599615df99804ae8".parse().unwrap()),
            ..ObjectMeta::default()
        };
        Vm::new(meta, spec)
    }

    fn image() -> Image {
        Image::new(
            ObjectMeta {
                name: "busybox".into(),
                ..ObjectMeta::default()
            },
            ImageSource::parse("busybox").unwrap(),
        )
    }

    /// What the QEMU driver declares (its own tests hold it to this).
    const QEMU_LIKE: Capabilities = Capabilities {
        root_disk: DiskFormat::Qcow2,
        kernel: KernelFormat::PvhVmlinux,
        user_network: true,
    };
    /// What the Firecracker driver declares.
    const FIRECRACKER_LIKE: Capabilities = Capabilities {
        root_disk: DiskFormat::Raw,
        kernel: KernelFormat::Vmlinux,
        user_network: false,
    };

    /// Every VMM × network mode: the root disk in the driver's format, the kernel it
    /// reads, the NICs of the mode, and the guest told the same network.
    #[test]
    fn each_vmm_and_network_mode_gets_its_disk_kernel_and_nics() {
        let files = VmFiles::at("/state/vms/599615df99804ae8".into());
        // A vmlinux without a PVH entry point: QEMU boots the bzImage.
        let kernel = KernelFiles {
            bzimage: Some("/k/bzImage".into()),
            vmlinux: "/k/vmlinux".into(),
            pvh: false,
            modules_disk: Some("/k/modules.ext4".into()),
        };
        for (driver, capabilities) in [("qemu", QEMU_LIKE), ("firecracker", FIRECRACKER_LIKE)] {
            for mode in [
                NetworkMode::None,
                NetworkMode::User,
                NetworkMode::Bridge,
                NetworkMode::Cni,
            ] {
                let vm = vm(mode);
                let attachment = match mode {
                    NetworkMode::None => network::no_network(),
                    NetworkMode::User => network::user_network(&vm, Some(2222)),
                    NetworkMode::Bridge => {
                        network::tests::bridged(&vm, "ign-599615df", Ipv4Addr::new(10, 61, 0, 7))
                    }
                    NetworkMode::Cni => network::tests::on_cni_network(
                        &vm,
                        "6a:1b:2c:3d:4e:60",
                        Ipv4Addr::new(10, 62, 0, 9),
                    ),
                };
                let plan = plan(&PlanInputs {
                    vm: &vm,
                    image: &image(),
                    kernel: &kernel,
                    files: &files,
                    capabilities,
                    accel: Accel::Kvm,
                    network: &attachment,
                    memory: MemorySettings::default(),
                });
                let m = &plan.machine;
                let case = format!("{driver} × {mode:?}");
                let (root, format, booted) = if capabilities == FIRECRACKER_LIKE {
                    ("root.raw", DiskFormat::Raw, "/k/vmlinux")
                } else {
                    ("root.qcow2", DiskFormat::Qcow2, "/k/bzImage")
                };
                assert_eq!(m.disks[0].path, files.dir().join(root), "{case}");
                assert_eq!(m.disks[0].format, format, "{case}");
                assert_eq!(m.disks[1].path, PathBuf::from("/k/modules.ext4"), "{case}");
                assert!(m.disks[1].read_only, "{case}");
                assert_eq!(m.kernel, PathBuf::from(booted), "{case}");
                assert_eq!(m.accel, Accel::Kvm, "{case}");
                assert_eq!(m.agent_socket, Some(files.agent_socket()), "{case}");
                assert_eq!(plan.guest.modules_device.as_deref(), Some("/dev/vdb"));
                assert_eq!(plan.guest.uid, "599615df99804ae8");
                match mode {
                    NetworkMode::None => {
                        assert!(m.nics.is_empty(), "{case}");
                        assert!(plan.guest.interfaces.is_empty(), "{case}");
                    }
                    NetworkMode::User => {
                        let [nic] = m.nics.as_slice() else {
                            panic!("{case}: {:?}", m.nics)
                        };
                        let NicBackend::User { forwards, .. } = &nic.backend else {
                            panic!("{case}: {nic:?}")
                        };
                        let ports: Vec<(u16, u16)> = forwards
                            .iter()
                            .map(|f| (f.host_port, f.guest_port))
                            .collect();
                        assert_eq!(ports, [(8080, 80), (2222, 22)], "{case}");
                        assert_eq!(plan.guest.interfaces[0].addresses, ["10.0.2.15/24"]);
                        assert_eq!(attachment.ssh_address.as_deref(), Some("127.0.0.1:2222"));
                        assert_eq!(nic.mac, plan.guest.interfaces[0].mac, "{case}");
                    }
                    NetworkMode::Bridge => {
                        let [nic] = m.nics.as_slice() else {
                            panic!("{case}: {:?}", m.nics)
                        };
                        assert_eq!(
                            nic.backend,
                            NicBackend::Tap {
                                ifname: "ign-599615df".into()
                            },
                            "{case}"
                        );
                        assert_eq!(plan.guest.interfaces[0].addresses, ["10.61.0.7/24"]);
                        assert_eq!(attachment.ssh_address.as_deref(), Some("10.61.0.7:22"));
                        assert_eq!(nic.mac, plan.guest.interfaces[0].mac, "{case}");
                    }
                    NetworkMode::Cni => {
                        let [nic] = m.nics.as_slice() else {
                            panic!("{case}: {:?}", m.nics)
                        };
                        // The tap in the VM's namespace; the MAC address of the CNI
                        // interface, which the guest takes over.
                        assert_eq!(
                            nic.backend,
                            NicBackend::Tap {
                                ifname: "tap0".into()
                            },
                            "{case}"
                        );
                        assert_eq!(nic.mac, "6a:1b:2c:3d:4e:60", "{case}");
                        assert_eq!(plan.guest.interfaces[0].mac, nic.mac, "{case}");
                        assert_eq!(plan.guest.interfaces[0].addresses, ["10.62.0.9/24"]);
                        assert_eq!(attachment.status.as_ref().unwrap().plugin, "cni");
                        assert!(attachment.netns.is_some(), "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_kernel_without_a_bzimage_boots_its_vmlinux_and_volumes_follow_the_disks() {
        let files = VmFiles::at("/vm".into());
        let kernel = KernelFiles {
            bzimage: None,
            vmlinux: "/k/vmlinux".into(),
            pvh: false,
            modules_disk: None,
        };
        let mut vm = vm(NetworkMode::None);
        vm.spec.storage.volumes = vec![ignite_api::Volume {
            name: "data".into(),
            block_device: Some(ignite_api::BlockDeviceVolume {
                path: "/dev/loop7".into(),
            }),
        }];
        vm.spec.storage.volume_mounts = vec![ignite_api::VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
        }];
        let plan = plan(&PlanInputs {
            vm: &vm,
            image: &image(),
            kernel: &kernel,
            files: &files,
            capabilities: QEMU_LIKE,
            accel: Accel::Tcg,
            network: &network::no_network(),
            memory: MemorySettings::default(),
        });
        assert_eq!(plan.machine.kernel, PathBuf::from("/k/vmlinux"));
        assert_eq!(plan.machine.disks.len(), 2);
        assert_eq!(plan.machine.disks[1].path, PathBuf::from("/dev/loop7"));
        assert_eq!(plan.guest.volumes[0].device, "/dev/vdb");
        assert_eq!(plan.guest.modules_device, None);
        assert_eq!(plan.machine.accel, Accel::Tcg);
    }

    /// QEMU boots a vmlinux with a PVH entry point directly (no decompression in the
    /// guest), under either accelerator; Firecracker reads the vmlinux regardless.
    #[test]
    fn qemu_boots_a_pvh_vmlinux_rather_than_the_bzimage() {
        let files = VmFiles::at("/vm".into());
        let kernel = KernelFiles {
            bzimage: Some("/k/bzImage".into()),
            vmlinux: "/k/vmlinux".into(),
            pvh: true,
            modules_disk: None,
        };
        for (capabilities, accel) in [
            (QEMU_LIKE, Accel::Tcg),
            (QEMU_LIKE, Accel::Kvm),
            (FIRECRACKER_LIKE, Accel::Kvm),
        ] {
            let plan = plan(&PlanInputs {
                vm: &vm(NetworkMode::None),
                image: &image(),
                kernel: &kernel,
                files: &files,
                capabilities,
                accel,
                network: &network::no_network(),
                memory: MemorySettings {
                    reporting: true,
                    translation_cache_mib: Some(24),
                    vmm_mergeable: true,
                },
            });
            assert_eq!(plan.machine.kernel, PathBuf::from("/k/vmlinux"));
            // The balloon as asked; only TCG has a translation cache to size.
            assert!(plan.machine.memory_reporting);
            assert_eq!(
                plan.machine.translation_cache_mib,
                (accel == Accel::Tcg).then_some(24)
            );
        }
    }
}
