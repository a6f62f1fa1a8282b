//! `ignite doctor`: what running VMs needs on this host, each with how to fix it.

use std::path::Path;
use std::time::Duration;

use ignite_store::Store;
use ignite_vmm::find_in_path;

use crate::kernels::{default_kernel, find_guest_init, kernel_dir};
use crate::vms::accel::{KVM_DEVICE, kvm_usable, probe_kvm_boot};
use ignite_vmm::driver::FirecrackerCheck;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but not as well as it could, or a later feature will need it.
    Warn,
    /// VMs cannot run until this is fixed.
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    // One line per check, whatever a tool printed.
    let detail: String = detail.into();
    Check {
        name,
        verdict,
        detail: detail.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn program(name: &'static str, binary: &str, package: &str, needed: Verdict, why: &str) -> Check {
    match find_in_path(binary) {
        Some(path) => check(name, Verdict::Ok, path.display().to_string()),
        None => check(
            name,
            needed,
            format!("{binary} not found ({why}): apt-get install {package}"),
        ),
    }
}

/// Runs every check. `probe_kvm` boots the default kernel under KVM for a few seconds to
/// tell a working KVM from one that cannot run a guest (nested virtualisation).
/// `firecracker` is the Configuration's `spec.firecracker`, if any.
pub fn run_checks(store: &Store, probe_kvm: bool, firecracker: Option<&Path>) -> Vec<Check> {
    let mut checks = vec![
        program(
            "qemu",
            "qemu-system-x86_64",
            "qemu-system-x86",
            Verdict::Fail,
            "it runs VMs",
        ),
        program(
            "qemu-img",
            "qemu-img",
            "qemu-utils",
            Verdict::Fail,
            "it makes VM disks",
        ),
        program(
            "mkfs.ext4",
            "mkfs.ext4",
            "e2fsprogs",
            Verdict::Fail,
            "it builds image disks",
        ),
        program(
            "depmod",
            "depmod",
            "kmod",
            Verdict::Warn,
            "modprobe inside VMs needs its index",
        ),
        program(
            "nft",
            "nft",
            "nftables",
            Verdict::Warn,
            "bridge networking's port forwards need it",
        ),
        program(
            "ssh",
            "ssh",
            "openssh-client",
            Verdict::Warn,
            "ignite ssh uses it",
        ),
    ];
    checks.push(
        match ignite_vmm::driver::check_firecracker(firecracker) {
            FirecrackerCheck::Runs(found) => check("firecracker", Verdict::Ok, found),
            FirecrackerCheck::Broken(why) => {
                check("firecracker", Verdict::Warn, format!("{why}: reinstall it"))
            }
            FirecrackerCheck::Missing(_) if firecracker.is_some() => check(
                "firecracker",
                Verdict::Fail,
                format!(
                    "the configured spec.firecracker {} is not an executable file",
                    firecracker.unwrap_or(Path::new("")).display()
                ),
            ),
            FirecrackerCheck::Missing(_) => check(
                "firecracker",
                Verdict::Ok,
                "not installed (optional: QEMU runs VMs without it; --vmm auto picks Firecracker when it is installed and KVM works)",
            ),
        },
    );
    checks.push(match find_guest_init() {
        Some(p) => match std::fs::read(&p)
            .map_err(|e| format!("cannot read {}: {e}", p.display()))
            .and_then(|bytes| {
                crate::guest_init::check_static(&p, &bytes).map_err(|e| e.to_string())
            }) {
            Ok(()) => check("guest init", Verdict::Ok, p.display().to_string()),
            Err(why) => check("guest init", Verdict::Fail, why),
        },
        None => check(
            "guest init",
            Verdict::Fail,
            "ignite-init not found: run scripts/setup.sh (installs /usr/local/lib/ignite/ignite-init) or set IGNITE_INIT",
        ),
    });
    let kernel = default_kernel(store).ok().flatten();
    checks.push(match &kernel {
        Some(k) => check(
            "default kernel",
            Verdict::Ok,
            format!("{} ({})", k.metadata.name, k.status.version),
        ),
        None => check(
            "default kernel",
            Verdict::Fail,
            "none imported: ignite kernel import --default /path/to/linux-image-*.deb (scripts/setup.sh imports Debian's cloud kernel)",
        ),
    });
    checks.push(if Path::new("/dev/net/tun").exists() {
        check("tun", Verdict::Ok, "/dev/net/tun")
    } else {
        check(
            "tun",
            Verdict::Warn,
            "/dev/net/tun is missing (bridge networking needs it): modprobe tun",
        )
    });
    checks.push(kvm_check(
        kernel.as_ref().map(|k| kernel_dir(store, k)).as_deref(),
        probe_kvm,
    ));
    checks
}

fn kvm_check(kernel_dir: Option<&Path>, probe: bool) -> Check {
    if !Path::new(KVM_DEVICE).exists() {
        return check(
            "kvm",
            Verdict::Warn,
            format!(
                "{KVM_DEVICE} is missing: VMs run with TCG (software emulation, much slower); enable virtualisation or load kvm_intel/kvm_amd"
            ),
        );
    }
    if !kvm_usable() {
        return check(
            "kvm",
            Verdict::Warn,
            format!(
                "{KVM_DEVICE} cannot be opened by this user: add it to the kvm group (VMs use TCG until then)"
            ),
        );
    }
    let (Some(dir), true) = (kernel_dir, probe) else {
        return check("kvm", Verdict::Ok, format!("{KVM_DEVICE} (not probed)"));
    };
    match probe_kvm_boot(
        &dir.join(crate::kernels::BZIMAGE_FILE),
        &dir.join(crate::kernels::INITRAMFS_FILE),
        Duration::from_secs(15),
    ) {
        Ok(elapsed) => check(
            "kvm",
            Verdict::Ok,
            format!(
                "{KVM_DEVICE}: a guest reached its init in {:.1} s",
                elapsed.as_secs_f64()
            ),
        ),
        Err(why) => check(
            "kvm",
            Verdict::Warn,
            format!(
                "{KVM_DEVICE} exists but cannot run a guest ({why}); nested virtualisation often cannot: use --accel tcg, IGNITE_ACCEL=tcg or accel: tcg in the Configuration"
            ),
        ),
    }
}
