//! The Firecracker driver against a real `firecracker` binary, named by
//! `IGNITE_TEST_FIRECRACKER` (Firecracker is in no package registry: build it from its
//! public source). Without the variable every test here is reported as skipped, with the
//! reason, and none counts as passed.
//!
//! Where nested KVM cannot finish a guest boot (`ignite doctor` says so), the tests assert
//! what such a host can reach (the whole configuration accepted, InstanceStart, the VMM
//! running, graceful and forced stop, clean-up) and say that the guest's console and agent
//! were not checked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_api::Vm;
use ignite_testkit::stdout;

type Test = (&'static str, fn(&Host));

const TESTS: &[Test] = &[
    (
        "auto_picks_firecracker_with_kvm_and_qemu_without",
        auto_selection,
    ),
    ("firecracker_vms_start_stop_and_clean_up", lifecycle),
    ("firecracker_api_errors_reach_the_user_verbatim", api_errors),
    ("firecracker_vms_get_the_bridge_tap", bridge_tap),
    ("firecracker_runs_under_its_jailer_in_a_chroot", jailed),
];

fn main() -> ExitCode {
    let Some(binary) = std::env::var_os("IGNITE_TEST_FIRECRACKER").map(PathBuf::from) else {
        for (name, _) in TESTS {
            println!(
                "test {name} ... skipped: IGNITE_TEST_FIRECRACKER is not set (point it at a firecracker binary to run the Firecracker driver's tests)"
            );
        }
        println!(
            "\ntest result: skipped. 0 passed; 0 failed; {} skipped",
            TESTS.len()
        );
        return ExitCode::SUCCESS;
    };
    assert!(
        binary.is_file(),
        "IGNITE_TEST_FIRECRACKER={} is not a file",
        binary.display()
    );
    ignite_testkit::require_root("Firecracker VMs with taps and KVM");
    let host = Host::new(binary);
    println!(
        "running {} tests against {} ({})",
        TESTS.len(),
        host.firecracker.display(),
        host.firecracker_version()
    );
    if !host.kvm_boots {
        println!(
            "note: nested KVM cannot finish a guest boot on this machine (ignite doctor): the guest's console output and agent are not asserted"
        );
    }
    for (name, test) in TESTS {
        test(&host);
        println!("test {name} ... ok");
    }
    println!("\ntest result: ok. {} passed; 0 failed", TESTS.len());
    ExitCode::SUCCESS
}

/// A state root with Debian's kernel and the busybox image (ignite_testkit's host, with
/// Firecracker first in `ignite`'s PATH and KVM asked for), and the Firecracker under test.
struct Host {
    host: ignite_testkit::Host,
    firecracker: PathBuf,
    /// Whether KVM can boot a guest here (not under every nested virtualisation).
    kvm_boots: bool,
}

impl std::ops::Deref for Host {
    type Target = ignite_testkit::Host;
    fn deref(&self) -> &ignite_testkit::Host {
        &self.host
    }
}

impl Host {
    fn new(firecracker: PathBuf) -> Host {
        let host = ignite_testkit::Host::builder(cargo_bin!("ignite"))
            .path_first(firecracker.parent().unwrap())
            .accel("kvm")
            .kernel_and_image()
            .build();
        let doctor = stdout(host.ignite().args(["doctor"]));
        let kvm_boots = doctor
            .lines()
            .any(|l| l.starts_with("kvm\t") && l.contains("\tok\t"));
        Host {
            host,
            firecracker,
            kvm_boots,
        }
    }

    fn firecracker_version(&self) -> String {
        let out = std::process::Command::new(&self.firecracker)
            .arg("--version")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    fn vm_dir(&self, vm: &Vm) -> PathBuf {
        self.state()
            .join("vms")
            .join(vm.metadata.uid.as_ref().unwrap().as_str())
    }

    /// Starts a VM without waiting for it to be ready (a guest that cannot boot never is).
    fn start_in_background(&self, name: &str) -> std::process::Child {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignite"));
        let template = self.ignite();
        for (k, v) in template.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let child = cmd
            .args(["start", name])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.vm(name).status.running {
            assert!(Instant::now() < deadline, "{name} never ran");
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }
}

fn auto_selection(host: &Host) {
    // KVM asked for and Firecracker in PATH: auto picks it, with a raw root disk.
    host.ignite()
        .args([
            "create",
            "--name",
            "auto-fc",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success();
    let vm = host.vm("auto-fc");
    assert_eq!(vm.spec.vmm, Some(ignite_api::VmmKind::Firecracker));
    let raw = host.vm_dir(&vm).join("root.raw");
    let meta = std::fs::metadata(&raw).unwrap();
    assert_eq!(meta.len(), 4 << 30, "the raw disk has the VM's size");
    {
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 1 << 30, "the raw disk is sparse");
    }
    // Software emulation: QEMU, on a qcow2 overlay.
    host.ignite()
        .env("IGNITE_ACCEL", "tcg")
        .env("IGNITE_WARM_STARTS", "off")
        .args([
            "create",
            "--name",
            "auto-qemu",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success();
    let vm = host.vm("auto-qemu");
    assert_eq!(vm.spec.vmm, Some(ignite_api::VmmKind::Qemu));
    assert!(host.vm_dir(&vm).join("root.qcow2").is_file());
    // No Firecracker to be found: QEMU.
    host.ignite()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "create",
            "--name",
            "auto-nofc",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success();
    assert_eq!(
        host.vm("auto-nofc").spec.vmm,
        Some(ignite_api::VmmKind::Qemu)
    );
    // Asked for but impossible: clear errors, nothing made.
    host.ignite()
        .args([
            "create",
            "--vmm",
            "firecracker",
            "--network",
            "user",
            &host.image(),
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no user-mode network"));
    host.ignite()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "create",
            "--vmm",
            "firecracker",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("firecracker is not installed"));
    host.ignite()
        .args(["rm", "auto-fc", "auto-qemu", "auto-nofc"])
        .assert()
        .success();
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
}

fn lifecycle(host: &Host) {
    host.ignite()
        .args([
            "create",
            "--name",
            "fc",
            "--vmm",
            "firecracker",
            "--network",
            "none",
        ])
        .arg(host.image())
        .assert()
        .success();
    let mut start = host.start_in_background("fc");
    let vm = host.vm("fc");
    let dir = host.vm_dir(&vm);
    let vmm = vm
        .status
        .vmm
        .as_ref()
        .expect("a running VM records its VMM");
    assert_eq!(vmm.name, ignite_api::VmmKind::Firecracker);
    assert_eq!(vmm.accel, ignite_api::Accel::Kvm);
    // Every request was accepted and the instance started: the logger is configured, the
    // API and vsock sockets are there.
    for file in [
        "firecracker.log",
        "firecracker.metrics",
        "vmm.sock",
        "agent.sock",
        "console.sock",
    ] {
        assert!(dir.join(file).exists(), "no {file} in {}", dir.display());
    }
    let log = std::fs::read_to_string(dir.join("firecracker.log")).unwrap();
    assert!(!log.contains("refused"), "{log}");
    if host.kvm_boots {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stdout(host.ignite().args(["logs", "fc"])).contains("init: up") {
            assert!(
                Instant::now() < deadline,
                "no console output from the guest"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = stdout(
            host.ignite()
                .args(["exec", "fc", "busybox", "echo", "agent"]),
        );
        assert_eq!(out.trim(), "agent");
    }
    // Graceful stop (the agent, else Ctrl-Alt-Del; killed after the grace period).
    host.ignite().args(["stop", "fc"]).assert().success();
    let _ = start.wait();
    let vm = host.vm("fc");
    assert!(!vm.status.running);
    let reason = vm.status.exit.as_ref().unwrap().reason;
    assert!(
        matches!(
            reason,
            ignite_api::ExitReason::Stopped | ignite_api::ExitReason::StoppedAfterGrace
        ),
        "{reason}"
    );
    for file in [
        "vmm.sock",
        "agent.sock",
        "console.sock",
        "exec.sock",
        "firecracker.metrics",
    ] {
        assert!(!dir.join(file).exists(), "{file} left after stop");
    }
    // Forced stop.
    let mut start = host.start_in_background("fc");
    let pid = host.vm("fc").status.vmm.unwrap().process.pid;
    host.ignite().args(["kill", "fc"]).assert().success();
    let _ = start.wait();
    assert_eq!(
        host.vm("fc").status.exit.unwrap().reason,
        ignite_api::ExitReason::Killed
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "Firecracker outlived kill"
    );
    host.ignite().args(["rm", "fc"]).assert().success();
    assert!(!dir.exists(), "{} left after rm", dir.display());
}

fn api_errors(host: &Host) {
    host.ignite()
        .args([
            "create",
            "--name",
            "toomany",
            "--vmm",
            "firecracker",
            "--network",
            "none",
        ])
        .args(["--cpus", "33", &host.image()])
        .assert()
        .success();
    host.ignite()
        .args(["start", "toomany"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "Firecracker refused PUT /machine-config (400)",
        ));
    assert!(!host.vm("toomany").status.running);
    host.ignite().args(["rm", "toomany"]).assert().success();
}

/// In a network namespace of the test's own: the VM's NIC is its tap on the bridge.
fn bridge_tap(host: &Host) {
    let ns = format!("ignite-fc-{}", std::process::id());
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(ip(&["netns", "add", &ns]).status.success());
    let in_ns = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(assert_cmd::cargo::cargo_bin("ignite"))
            .args(args);
        for (k, v) in host.ignite().get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    };
    in_ns(&[
        "create",
        "--name",
        "fcnet",
        "--vmm",
        "firecracker",
        "--network",
        "bridge",
    ])
    .arg(host.image())
    .assert()
    .success();
    let mut start = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(assert_cmd::cargo::cargo_bin("ignite"))
        .args(["start", "fcnet"])
        .envs(
            host.ignite()
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host.vm("fcnet").status.running {
        assert!(Instant::now() < deadline, "fcnet never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let vm = host.vm("fcnet");
    let tap = format!("ign{}", &vm.metadata.uid.as_ref().unwrap().as_str()[..12]);
    let link = ip(&["-n", &ns, "-o", "link", "show", "dev", &tap]);
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    assert!(link.contains("master ignite0"), "{link}");
    // Firecracker holds the tap open: the kernel shows it attached to a process.
    assert!(
        !link.contains("NO-CARRIER"),
        "nothing holds the tap: {link}"
    );
    let address = vm.status.network.unwrap().ip_addresses[0].to_string();
    assert!(address.starts_with("10.61."), "{address}");
    in_ns(&["rm", "-f", "fcnet"]).assert().success();
    let _ = start.wait();
    assert!(
        !ip(&["-n", &ns, "link", "show", "dev", &tap])
            .status
            .success()
    );
    let _ = ip(&["netns", "del", &ns]);
}

/// As root, with the jailer beside the Firecracker under test: Firecracker runs as the
/// VM's user, filtered, in a chroot that holds the VM's files and goes with the VM (also
/// after its supervisor was killed). Without a jailer the supervisor's log says so.
fn jailed(host: &Host) {
    use std::os::unix::fs::MetadataExt;
    host.ignite()
        .args([
            "create",
            "--name",
            "fc-jail",
            "--vmm",
            "firecracker",
            "--network",
            "none",
        ])
        .arg(host.image())
        .assert()
        .success();
    let mut start = host.start_in_background("fc-jail");
    let vm = host.vm("fc-jail");
    let dir = host.vm_dir(&vm);
    let uid = vm.metadata.uid.as_ref().unwrap().as_str().to_string();
    // Where the driver looks: beside the Firecracker binary, then PATH.
    let jailer = std::iter::once(host.firecracker.with_file_name("jailer"))
        .chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("jailer")),
        )
        .find(|p| p.is_file());
    let Some(jailer) = jailer else {
        let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap();
        assert!(log.contains("Firecracker runs without its jailer"), "{log}");
        println!(
            "note: no jailer beside {}: only the supervisor's warning was checked",
            host.firecracker.display()
        );
        host.ignite()
            .args(["rm", "-f", "fc-jail"])
            .assert()
            .success();
        let _ = start.wait();
        return;
    };
    let chroot = dir.join("jail/firecracker").join(&uid).join("root");
    let pid = vm.status.vmm.as_ref().unwrap().process.pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    // Real, effective, saved and filesystem ids: all the VM's, none root's.
    let uids = field("Uid:");
    let gids = field("Gid:");
    assert!(uids.iter().all(|u| *u == uids[0] && *u != 0), "{status}");
    assert!(gids.iter().all(|g| *g == gids[0] && *g != 0), "{status}");
    assert_eq!(field("Seccomp:"), [2], "{status}");
    // Its root is the chroot (the jailer's bind mount of it: the same inode).
    let root = std::fs::metadata(format!("/proc/{pid}/root")).unwrap();
    let jail = std::fs::metadata(&chroot).unwrap();
    assert_eq!((root.dev(), root.ino()), (jail.dev(), jail.ino()));
    assert_eq!((jail.uid(), jail.gid()), (uids[0], gids[0]));
    assert!(jailer.is_file());
    // The VM's files: its disk linked in, the kernel copied, all the VM user's, 0600.
    let disk = std::fs::metadata(chroot.join("drive-root")).unwrap();
    assert_eq!(
        disk.ino(),
        std::fs::metadata(dir.join("root.raw")).unwrap().ino()
    );
    for name in [
        "drive-root",
        "drive-disk1",
        "vmlinux",
        "initrd",
        "firecracker.log",
    ] {
        let m = std::fs::symlink_metadata(chroot.join(name))
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", chroot.display()));
        assert!(m.is_file(), "{name}");
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uids[0], gids[0], 0o600),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read_link(dir.join("vmm.sock")).unwrap(),
        chroot.join("vmm.sock")
    );
    assert_eq!(
        std::fs::read_link(dir.join("agent.sock")).unwrap(),
        chroot.join("agent.sock")
    );
    // The API answers through the supervisor's path: a graceful stop, and the jail goes.
    host.ignite().args(["stop", "fc-jail"]).assert().success();
    let _ = start.wait();
    assert!(!dir.join("jail").exists(), "the jail outlived the VM");
    assert_eq!(std::fs::metadata(dir.join("root.raw")).unwrap().uid(), 0);

    // A supervisor killed with -9: Firecracker goes too (its watcher kills it: the jailer's
    // change of user cleared its parent-death signal), and rm repairs the record, removes
    // the jail left behind and then the VM.
    let mut start = host.start_in_background("fc-jail");
    let vm = host.vm("fc-jail");
    let supervisor = vm.status.supervisor.as_ref().unwrap().pid;
    let pid = vm.status.vmm.as_ref().unwrap().process.pid;
    assert!(chroot.is_dir());
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &supervisor.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let _ = start.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{supervisor}/status"))
        .is_ok_and(|s| !s.contains("State:\tZ"))
    {
        assert!(Instant::now() < deadline, "the supervisor outlived kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|s| !s.contains("State:\tZ"))
    {
        assert!(
            Instant::now() < deadline,
            "Firecracker outlived its killed supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(chroot.is_dir(), "a killed supervisor removed nothing");
    host.ignite().args(["rm", "fc-jail"]).assert().success();
    assert!(!chroot.exists(), "the jail outlived rm");
    assert!(!dir.exists(), "{} left after rm", dir.display());
}
