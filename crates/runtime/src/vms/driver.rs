//! Which VMM runs a VM (ARCHITECTURE §3): chosen when the VM is created and recorded in
//! `spec.vmm`, so a VM keeps its driver (and the disk format that goes with it).

use std::path::{Path, PathBuf};

use ignite_api::{Vm, VmmKind};
use ignite_vmm::firecracker::Firecracker;
use ignite_vmm::qemu::Qemu;
use ignite_vmm::{Accel, Vmm};

use super::VmError;

/// How `ignite vm supervise` learns the Firecracker binary the starting command found.
pub const FIRECRACKER_ENV: &str = "IGNITE_FIRECRACKER";

/// `auto`: Firecracker when its binary is found and KVM works, QEMU otherwise.
pub fn choose(requested: VmmKind, firecracker_found: bool, kvm_works: bool) -> VmmKind {
    match requested {
        VmmKind::Auto if firecracker_found && kvm_works => VmmKind::Firecracker,
        VmmKind::Auto => VmmKind::Qemu,
        explicit => explicit,
    }
}

/// A VM's recorded driver (VMs recorded before drivers were chosen ran on QEMU).
pub fn kind_of(vm: &Vm) -> VmmKind {
    match vm.spec.vmm {
        Some(VmmKind::Firecracker) => VmmKind::Firecracker,
        _ => VmmKind::Qemu,
    }
}

/// The driver of `kind`, with its binary found (the configured Firecracker first).
pub fn locate(kind: VmmKind, firecracker: Option<&Path>) -> Result<Box<dyn Vmm>, VmError> {
    match kind {
        VmmKind::Firecracker => Ok(Box::new(
            Firecracker::locate(firecracker).map_err(VmError::Invalid)?,
        )),
        _ => Ok(Box::new(Qemu::locate().map_err(VmError::Invalid)?)),
    }
}

/// The Firecracker binary the supervisor was told about.
pub fn firecracker_from_env() -> Option<PathBuf> {
    std::env::var_os(FIRECRACKER_ENV).map(PathBuf::from)
}

/// Firecracker runs on KVM only: an explicit TCG is an error, `auto` means KVM.
pub fn firecracker_accel(asked: Option<Accel>) -> Result<Accel, VmError> {
    match asked {
        Some(Accel::Tcg) => Err(VmError::Invalid(
            "this VM runs on Firecracker, which needs KVM: drop --accel tcg (and IGNITE_ACCEL=tcg), or recreate the VM with --vmm qemu".into(),
        )),
        _ => Ok(Accel::Kvm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_firecracker_only_with_its_binary_and_kvm() {
        assert_eq!(choose(VmmKind::Auto, true, true), VmmKind::Firecracker);
        assert_eq!(choose(VmmKind::Auto, true, false), VmmKind::Qemu);
        assert_eq!(choose(VmmKind::Auto, false, true), VmmKind::Qemu);
        assert_eq!(choose(VmmKind::Qemu, true, true), VmmKind::Qemu);
        assert_eq!(
            choose(VmmKind::Firecracker, false, false),
            VmmKind::Firecracker
        );
    }

    #[test]
    fn firecracker_refuses_tcg() {
        assert!(firecracker_accel(Some(Accel::Tcg)).is_err());
        assert_eq!(firecracker_accel(None).unwrap(), Accel::Kvm);
        assert_eq!(firecracker_accel(Some(Accel::Kvm)).unwrap(), Accel::Kvm);
    }
}
