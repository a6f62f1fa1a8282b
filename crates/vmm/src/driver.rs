//! Which VMM runs a VM (ARCHITECTURE §3), found on this host, and what each can do.
//!
//! The choice is made once, when a VM is created, and recorded in its `spec.vmm`, so a VM
//! keeps its driver (and the root disk format that goes with it).

use std::path::{Path, PathBuf};

use ignite_api::VmmKind;
use ignite_disk::DiskFormat;

use crate::firecracker::Firecracker;
use crate::qemu::Qemu;
use crate::{GuestMemoryStats, Vmm};

/// What a driver reads and supports, asked by the runtime instead of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The format of a VM's own root disk.
    pub root_disk: DiskFormat,
    /// The kernel image it boots.
    pub kernel: KernelFormat,
    /// The VMM's own user-mode network (no root, ports forwarded from the host).
    pub user_network: bool,
}

/// A kernel image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// The compressed bzImage, booted through its own setup code (faster to load); the
    /// ELF vmlinux is used when a kernel has no bzImage.
    BzImage,
    /// The uncompressed ELF vmlinux.
    Vmlinux,
    /// The ELF vmlinux when it has a PVH entry point (booted directly, no decompression in
    /// the guest: ~0.35 s faster per boot under TCG, measured), else the bzImage.
    PvhVmlinux,
}

/// How a NIC reaches the network, as the runtime asks a driver to provide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkBackend {
    /// The VMM's user-mode network.
    User,
    /// An existing tap device.
    Tap,
}

/// What a driver refuses or lacks, with what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The VMM's binary is not on this host (the host must act).
    #[error("{0}")]
    NotInstalled(String),
    /// The VM asks for what this VMM cannot do (the VM's spec must change).
    #[error("{0}")]
    Unsupported(String),
}

/// `auto` (or nothing): Firecracker when its binary is found and KVM works (`kvm_works`
/// is asked only then), QEMU otherwise. An explicit choice stands.
pub fn choose(
    requested: Option<VmmKind>,
    firecracker: Option<&Path>,
    kvm_works: impl FnOnce() -> bool,
) -> VmmKind {
    match requested.unwrap_or(VmmKind::Auto) {
        VmmKind::Auto if Firecracker::locate(firecracker).is_ok() && kvm_works() => {
            VmmKind::Firecracker
        }
        VmmKind::Auto => VmmKind::Qemu,
        explicit => explicit,
    }
}

/// A VM's recorded driver (VMs recorded before drivers were chosen ran on QEMU).
pub fn recorded(spec_vmm: Option<VmmKind>) -> VmmKind {
    match spec_vmm {
        Some(VmmKind::Firecracker) => VmmKind::Firecracker,
        _ => VmmKind::Qemu,
    }
}

/// The driver of `kind` with its binary found (`firecracker`: the configured binary, tried
/// before PATH), or why it cannot run here.
pub fn locate(kind: VmmKind, firecracker: Option<&Path>) -> Result<Box<dyn Vmm>, VmmError> {
    match recorded(Some(kind)) {
        VmmKind::Firecracker => Ok(Box::new(Firecracker::locate(firecracker)?)),
        _ => Ok(Box::new(Qemu::locate()?)),
    }
}

/// What the guest of a running VM of `kind` last reported of its memory, through the
/// VMM's control socket (its binary is not needed for that).
pub fn guest_memory(kind: VmmKind, control: &Path) -> std::io::Result<Option<GuestMemoryStats>> {
    match recorded(Some(kind)) {
        VmmKind::Firecracker => Firecracker {
            binary: PathBuf::new(),
            jailer: None,
        }
        .guest_memory(control),
        _ => Qemu::default().guest_memory(control),
    }
}

/// Files a driver leaves in a VM's directory while the VM runs, which must not outlive
/// the run (a later start, or another driver, would read them).
pub fn run_files() -> impl Iterator<Item = &'static str> {
    [crate::firecracker::METRICS_FILE].into_iter()
}

/// Removes what drivers leave in the VM directory `vm_dir` while a VM runs ([`run_files`]
/// and Firecracker's jail), once its VMM is gone: after it ended, or a crash. Failures
/// are logged: a jail left behind is retried at the next start or removal.
pub fn remove_run_files(vm_dir: &Path) {
    for name in run_files() {
        let _ = std::fs::remove_file(vm_dir.join(name));
    }
    if let Err(e) = crate::firecracker::jailer::remove(vm_dir) {
        tracing::warn!(
            "cannot remove Firecracker's jail in {}: {e}",
            vm_dir.display()
        );
    }
}

/// How `doctor` sees the optional Firecracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirecrackerCheck {
    /// Found and runs: its path and version.
    Runs(String),
    /// Found but `--version` fails: its path and why.
    Broken(String),
    /// Not found (or the configured path is not an executable file).
    Missing(String),
}

pub fn check_firecracker(configured: Option<&Path>) -> FirecrackerCheck {
    match Firecracker::locate(configured) {
        Err(why) => FirecrackerCheck::Missing(why.to_string()),
        Ok(f) => match f.version() {
            Ok(version) => FirecrackerCheck::Runs(format!("{} ({version})", f.binary.display())),
            Err(e) => {
                FirecrackerCheck::Broken(format!("{} does not run ({e})", f.binary.display()))
            }
        },
    }
}

/// How `doctor` sees Firecracker's optional jailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JailerCheck {
    /// Found and runs: its path and version.
    Found(String),
    /// Not found, or it does not run: why, and how to get one.
    Missing(String),
}

/// The jailer VMs started by root run Firecracker under: the one beside the Firecracker
/// binary in use (`configured`, else PATH's), else `jailer` in PATH.
pub fn check_jailer(configured_firecracker: Option<&Path>) -> JailerCheck {
    let firecracker = match Firecracker::locate(configured_firecracker) {
        Ok(f) => f,
        Err(why) => {
            return JailerCheck::Missing(format!("no Firecracker, so no jailer either ({why})"));
        }
    };
    let Some(jailer) = &firecracker.jailer else {
        return JailerCheck::Missing(format!(
            "no `jailer` beside {} nor in PATH: Firecracker runs unconfined (no chroot, as root); install the jailer of the same release next to it (https://github.com/firecracker-microvm/firecracker/releases: the archive holds both)",
            firecracker.binary.display()
        ));
    };
    match crate::firecracker::version_of(jailer) {
        Ok(version) => JailerCheck::Found(format!("{} ({version})", jailer.display())),
        Err(e) => JailerCheck::Missing(format!(
            "{} does not run ({e}): install the jailer of Firecracker's release again",
            jailer.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::Accel;

    #[test]
    fn auto_prefers_firecracker_only_with_its_binary_and_kvm() {
        let dir = tempfile::tempdir().unwrap();
        let fc = dir.path().join("firecracker");
        std::fs::write(&fc, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(choose(None, Some(&fc), || true), VmmKind::Firecracker);
        assert_eq!(
            choose(Some(VmmKind::Auto), Some(&fc), || false),
            VmmKind::Qemu
        );
        assert_eq!(choose(None, Some(&missing), || true), VmmKind::Qemu);
        assert_eq!(
            choose(Some(VmmKind::Qemu), Some(&fc), || true),
            VmmKind::Qemu
        );
        assert_eq!(
            choose(Some(VmmKind::Firecracker), Some(&missing), || false),
            VmmKind::Firecracker
        );
        assert!(matches!(
            locate(VmmKind::Firecracker, Some(&missing)),
            Err(VmmError::NotInstalled(m)) if m.contains("not an executable file")
        ));
        assert_eq!(recorded(None), VmmKind::Qemu);
        assert_eq!(recorded(Some(VmmKind::Auto)), VmmKind::Qemu);
    }

    #[test]
    fn doctor_finds_the_jailer_beside_firecracker_or_says_how_to_get_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fc = dir.path().join("firecracker");
        let jailer = dir.path().join("jailer");
        std::fs::write(&fc, "#!/bin/sh\necho Firecracker v1.16.1\n").unwrap();
        std::fs::write(&jailer, "#!/bin/sh\necho Jailer v1.16.1\n").unwrap();
        for p in [&fc, &jailer] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(
            check_jailer(Some(&fc)),
            JailerCheck::Found(format!("{} (Jailer v1.16.1)", jailer.display()))
        );
        std::fs::write(&jailer, "#!/bin/sh\nexit 1\n").unwrap();
        assert!(matches!(
            check_jailer(Some(&fc)),
            JailerCheck::Missing(m) if m.contains("does not run")
        ));
        std::fs::remove_file(&jailer).unwrap();
        if crate::find_in_path("jailer").is_none() {
            assert!(matches!(
                check_jailer(Some(&fc)),
                JailerCheck::Missing(m) if m.contains("install the jailer of the same release")
            ));
        }
        assert!(matches!(
            check_jailer(Some(&dir.path().join("missing"))),
            JailerCheck::Missing(m) if m.contains("no Firecracker")
        ));
    }

    #[test]
    fn each_driver_says_what_it_reads_and_refuses_what_it_cannot_do() {
        let qemu = Qemu::default();
        let fc = Firecracker {
            binary: "/usr/bin/firecracker".into(),
            jailer: None,
        };
        assert_eq!(
            qemu.capabilities(),
            Capabilities {
                root_disk: DiskFormat::Qcow2,
                kernel: KernelFormat::PvhVmlinux,
                user_network: true,
            }
        );
        assert_eq!(
            fc.capabilities(),
            Capabilities {
                root_disk: DiskFormat::Raw,
                kernel: KernelFormat::Vmlinux,
                user_network: false,
            }
        );
        let tcg = || Accel::Tcg;
        assert_eq!(qemu.choose_accel(None, &tcg).unwrap(), Accel::Tcg);
        assert_eq!(
            qemu.choose_accel(Some(Accel::Kvm), &tcg).unwrap(),
            Accel::Kvm
        );
        assert_eq!(fc.choose_accel(None, &tcg).unwrap(), Accel::Kvm);
        assert!(matches!(
            fc.choose_accel(Some(Accel::Tcg), &tcg),
            Err(VmmError::Unsupported(m)) if m.contains("needs KVM")
        ));
        assert!(qemu.check_network(NetworkBackend::User).is_ok());
        assert!(fc.check_network(NetworkBackend::Tap).is_ok());
        assert!(matches!(
            fc.check_network(NetworkBackend::User),
            Err(VmmError::Unsupported(m)) if m.contains("no user-mode network")
        ));
    }
}
