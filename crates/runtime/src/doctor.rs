//! `ignite doctor`: what running VMs needs on this host, each with how to fix it.

use std::path::Path;
use std::time::Duration;

use ignite_net::docker_user::{self, Backend};
use ignite_net::{Commands, System, links};
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
/// `firecracker` is the Configuration's `spec.firecracker`, if any; `bridge` the bridge of
/// `--network bridge`.
pub fn run_checks(
    store: &Store,
    probe_kvm: bool,
    firecracker: Option<&Path>,
    bridge: &str,
) -> Vec<Check> {
    let mut checks = vec![
        program(
            "qemu",
            "qemu-system-x86_64",
            "qemu-system-x86",
            Verdict::Fail,
            "it runs VMs",
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
    checks.push(match ignite_vmm::driver::check_jailer(firecracker) {
        ignite_vmm::driver::JailerCheck::Found(found) => check("jailer", Verdict::Ok, found),
        ignite_vmm::driver::JailerCheck::Missing(why) => check("jailer", Verdict::Ok, why),
    });
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
    checks.push(docker_check(&System, bridge, dockerd_pid()));
    checks.push(ksm_check(Path::new(KSM_DIR)));
    checks.push(cgroup_check());
    checks.push(seccomp_check());
    checks
}

/// Each VM's cgroup (its limits, `ignite stats`): the host's hierarchy, and whether this
/// user may make groups in it.
fn cgroup_check() -> Check {
    use ignite_cgroup::{Hierarchy, Version};
    let hierarchy = match Hierarchy::detect() {
        Ok(h) => h,
        Err(e) => {
            return check(
                "cgroups",
                Verdict::Warn,
                format!("{e}: VMs run without limits"),
            );
        }
    };
    let version = match hierarchy.version {
        Version::V2 => "cgroup v2".to_string(),
        Version::V1 => "cgroup v1 (legacy layout; v2 is preferred)".to_string(),
    };
    let euid = rustix::process::geteuid().as_raw();
    match hierarchy.parent_for(euid) {
        Ok(parent) => check(
            "cgroups",
            Verdict::Ok,
            format!("{version}: each VM gets its own group under {parent}"),
        ),
        Err(e) => check("cgroups", Verdict::Warn, format!("{version}: {e}")),
    }
}

/// The VMM's system-call filter needs the kernel's seccomp filters and a QEMU built with
/// them (`-sandbox`).
fn seccomp_check() -> Check {
    if !Path::new("/proc/sys/kernel/seccomp/actions_avail").exists() {
        return check(
            "seccomp",
            Verdict::Warn,
            "this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER): VMMs run unfiltered",
        );
    }
    let Some(qemu) = ignite_host_tools::locate("qemu-system-x86_64") else {
        return check("seccomp", Verdict::Ok, "the kernel filters system calls");
    };
    let help = std::process::Command::new(&qemu)
        .arg("-help")
        .stdin(std::process::Stdio::null())
        .output();
    match help {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("-sandbox") => check(
            "seccomp",
            Verdict::Ok,
            "the kernel filters system calls and QEMU has -sandbox: every QEMU runs filtered",
        ),
        _ => check(
            "seccomp",
            Verdict::Fail,
            format!(
                "{} has no -sandbox (built without seccomp): VMs cannot start confined; install Debian's qemu-system-x86",
                qemu.display()
            ),
        ),
    }
}

/// The host's kernel samepage merging, exported here.
const KSM_DIR: &str = "/sys/kernel/mm/ksm";

/// Kernel samepage merging: off is fine (the default; nothing of the host is changed on
/// the user's behalf), said with what turning it on gives and costs.
fn ksm_check(dir: &Path) -> Check {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let Some(run) = read("run") else {
        return check(
            "ksm",
            Verdict::Ok,
            "this kernel has no KSM (identical pages of VMs are not merged)",
        );
    };
    match run {
        1 => check(
            "ksm",
            Verdict::Ok,
            format!(
                "on: {} MiB of guest memory merged (pages_sharing); costs host CPU to scan, and lets guests time each other's pages (see the README's density part)",
                read("pages_sharing").unwrap_or(0) * 4 / 1024
            ),
        ),
        _ => check(
            "ksm",
            Verdict::Ok,
            "off: identical pages of VMs are not merged; to trade host CPU (and a timing side channel between guests) for memory: echo 1 > /sys/kernel/mm/ksm/run (see the README's density part)",
        ),
    }
}

/// A running Docker Engine's pid, if one runs.
fn dockerd_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "dockerd")
        })
}

/// Docker Engine beside bridge networking: where its `DOCKER-USER` chain is, the `FORWARD`
/// policy, and whether the bridge's accept rules are there while VMs run on it.
fn docker_check(host: &dyn Commands, bridge: &str, dockerd: Option<u32>) -> Check {
    let engine = match dockerd {
        Some(pid) => format!("Docker Engine runs (dockerd pid {pid})"),
        None if find_in_path("dockerd").is_some() => {
            "Docker Engine is installed, not running".to_string()
        }
        None => "no Docker Engine".to_string(),
    };
    let vms = links::taps_on(host, bridge).map_or(0, |t| t.len());
    let mut chains = Vec::new();
    let mut drops = Vec::new();
    for backend in Backend::ALL {
        match docker_user::listing(host, backend) {
            Ok(Some(listing)) => chains.push((backend, listing)),
            Ok(None) => {}
            Err(e) => {
                // A normal user's doctor: nothing is wrong that it could see.
                let (verdict, why) = if e.to_string().contains("Permission denied") {
                    (Verdict::Ok, "only root can read the firewall".to_string())
                } else {
                    (Verdict::Warn, format!("the firewall cannot be read ({e})"))
                };
                return check(
                    "docker",
                    verdict,
                    format!(
                        "{engine}; {why}: run ignite doctor as root to see Docker Engine's {} chain and the bridge's rules",
                        docker_user::CHAIN
                    ),
                );
            }
        }
        if docker_user::forward_policy(host, backend).as_deref() == Some("DROP") {
            drops.push(backend.name());
        }
    }
    let policy = if drops.is_empty() {
        "FORWARD policy ACCEPT".to_string()
    } else {
        format!("FORWARD policy DROP ({})", drops.join(", "))
    };
    if chains.is_empty() {
        if drops.is_empty() {
            return check(
                "docker",
                Verdict::Ok,
                format!(
                    "{engine}; no {} chain, {policy}: bridge networking needs no rule",
                    docker_user::CHAIN
                ),
            );
        }
        return check(
            "docker",
            Verdict::Warn,
            format!(
                "{engine}; {policy} without Docker Engine's {} chain: VMs on bridge {bridge} reach nothing beyond this host and their port forwards answer only on it; set the policy to ACCEPT or accept {bridge}'s traffic in FORWARD",
                docker_user::CHAIN
            ),
        );
    }
    let wanted = docker_user::accept_rules(bridge, ignite_net::Subnet::DEFAULT).len();
    let mut missing = Vec::new();
    let mut found = Vec::new();
    let mut total = 0;
    for (backend, listing) in &chains {
        let ours = docker_user::rules_of(listing, bridge);
        total += ours;
        if ours < wanted {
            missing.push(backend.name());
        }
        found.push(format!(
            "{} chain in {}: {ours} rule(s) for {bridge}",
            docker_user::CHAIN,
            backend.name()
        ));
    }
    let found = found.join("; ");
    let on_bridge = match vms {
        0 => format!("no VM on {bridge}"),
        1 => format!("1 VM on {bridge}"),
        n => format!("{n} VMs on {bridge}"),
    };
    if vms > 0 && !missing.is_empty() {
        return check(
            "docker",
            Verdict::Warn,
            format!(
                "{engine}; {policy}; {found}; {on_bridge}: its traffic is not accepted in {}, so the VMs may be cut off; a running VM's supervisor restores the rules within seconds (its log says why it cannot), or restart the VMs",
                missing.join(", ")
            ),
        );
    }
    let state = if vms > 0 {
        "its traffic is accepted there"
    } else if total == 0 {
        "the first VM there adds its rules"
    } else {
        "the rules left there go when the next VM there ends"
    };
    check(
        "docker",
        Verdict::Ok,
        format!("{engine}; {policy}; {found}; {on_bridge}: {state}"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_net::Recording;

    #[test]
    fn ksm_is_reported_with_what_it_gives_and_costs() {
        let dir = tempfile::tempdir().unwrap();
        let none = ksm_check(&dir.path().join("missing"));
        assert!(none.detail.contains("no KSM"), "{none:?}");
        std::fs::write(dir.path().join("run"), "0\n").unwrap();
        let off = ksm_check(dir.path());
        assert_eq!(off.verdict, Verdict::Ok);
        assert!(
            off.detail.starts_with("off") && off.detail.contains("echo 1 > /sys/kernel/mm/ksm/run"),
            "{off:?}"
        );
        std::fs::write(dir.path().join("run"), "1\n").unwrap();
        std::fs::write(dir.path().join("pages_sharing"), "2560\n").unwrap();
        let on = ksm_check(dir.path());
        assert!(on.detail.starts_with("on: 10 MiB"), "{on:?}");
    }

    const LIST: &str = "iptables-nft -w 5 -t filter -S DOCKER-USER";
    const FORWARD: &str = "iptables-nft -w 5 -t filter -S FORWARD";

    fn docker_chain(bridge_rules: bool) -> String {
        let mut listing = "-N DOCKER-USER\n".to_string();
        if bridge_rules {
            for rule in docker_user::accept_rules("ignite0", ignite_net::Subnet::DEFAULT) {
                listing.push_str(&format!("-A DOCKER-USER {}\n", rule.join(" ")));
            }
        }
        listing + "-A DOCKER-USER -j RETURN\n"
    }

    fn with_vm(host: &Recording) {
        host.reply(
            "ip -o link show master ignite0",
            "7: ign0123456789ab: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master ignite0\n",
        );
    }

    #[test]
    fn docker_beside_bridge_networking_is_reported_with_the_rule() {
        // Docker's chain, FORWARD DROP, a VM on the bridge and its rules: all is well.
        let host = Recording::new();
        with_vm(&host);
        host.reply(LIST, &docker_chain(true))
            .reply(FORWARD, "-P FORWARD DROP\n");
        let c = docker_check(&host, "ignite0", Some(42));
        assert_eq!(c.verdict, Verdict::Ok, "{}", c.detail);
        assert_eq!(
            c.detail,
            "Docker Engine runs (dockerd pid 42); FORWARD policy DROP (iptables-nft); DOCKER-USER chain in iptables-nft: 3 rule(s) for ignite0; 1 VM on ignite0: its traffic is accepted there"
        );

        // The same without the rules: the VM is cut off, and doctor says so.
        let host = Recording::new();
        with_vm(&host);
        host.reply(LIST, &docker_chain(false))
            .reply(FORWARD, "-P FORWARD DROP\n");
        let c = docker_check(&host, "ignite0", Some(42));
        assert_eq!(c.verdict, Verdict::Warn, "{}", c.detail);
        assert!(c.detail.contains("0 rule(s) for ignite0"), "{}", c.detail);
        assert!(c.detail.contains("cut off"), "{}", c.detail);

        // No VM, no rule: nothing to say but how it will go.
        let host = Recording::new();
        host.reply(LIST, &docker_chain(false))
            .reply(FORWARD, "-P FORWARD DROP\n");
        let c = docker_check(&host, "ignite0", None);
        assert_eq!(c.verdict, Verdict::Ok, "{}", c.detail);
        assert!(
            c.detail
                .ends_with("no VM on ignite0: the first VM there adds its rules")
        );
    }

    #[test]
    fn without_docker_a_dropping_forward_policy_is_a_warning() {
        let host = Recording::new();
        host.fail(LIST, "iptables: No chain/target/match by that name.")
            .reply(FORWARD, "-P FORWARD ACCEPT\n");
        let c = docker_check(&host, "ignite0", None);
        assert_eq!(c.verdict, Verdict::Ok, "{}", c.detail);
        assert!(
            c.detail
                .contains("no DOCKER-USER chain, FORWARD policy ACCEPT")
        );

        let host = Recording::new();
        host.fail(LIST, "iptables: No chain/target/match by that name.")
            .reply(FORWARD, "-P FORWARD DROP\n");
        let c = docker_check(&host, "ignite0", None);
        assert_eq!(c.verdict, Verdict::Warn, "{}", c.detail);
        assert!(
            c.detail.contains("reach nothing beyond this host"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn a_normal_user_is_told_that_root_sees_the_firewall() {
        let host = Recording::new();
        host.fail(LIST, "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)");
        let c = docker_check(&host, "ignite0", None);
        assert_eq!(c.verdict, Verdict::Ok, "{}", c.detail);
        assert!(
            c.detail.contains("run ignite doctor as root"),
            "{}",
            c.detail
        );
    }
}
