//! What a guest sends is hostile input: these tests make a real VM (QEMU, TCG) do what a
//! compromised guest could, through the `ignite` binary, and check the host holds: `cp` out
//! of the VM drops setuid bits and never creates device nodes or writes through links (and
//! copies procfs and growing files correctly), a
//! guest flooding `exec` output cannot grow host memory, and a guest flooding its console
//! cannot fill the disk.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::{Host, stdout};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
}

#[test]
fn cp_out_of_a_vm_drops_setuid_bits_and_creates_no_device_nodes() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.run("cp-src");
    host.sh(
        "cp-src",
        "busybox mkdir -p /tmp/loot && cd /tmp/loot && \
         echo payload > suid && busybox chmod 4755 suid && \
         echo payload > sgid && busybox chmod 2755 sgid && \
         busybox mkdir sticky && busybox chmod 1777 sticky && \
         busybox mknod null c 1 3 && busybox mknod disk b 8 0 && busybox mkfifo fifo && \
         busybox ln -s /etc/shadow link",
    );
    let canary_dir = tempfile::tempdir().unwrap();
    let canary = canary_dir.path().join("canary");
    std::fs::write(&canary, "unchanged").unwrap();
    let dest = host.root().join("out");
    std::fs::create_dir(&dest).unwrap();
    host.ignite()
        .arg("cp")
        .arg("cp-src:/tmp/loot")
        .arg(&dest)
        .assert()
        .success();
    let loot = dest.join("loot");
    assert_eq!(
        std::fs::read_to_string(loot.join("suid")).unwrap(),
        "payload\n"
    );
    assert_eq!(mode(&loot.join("suid")) & 0o7777, 0o755, "setuid dropped");
    assert_eq!(mode(&loot.join("sgid")) & 0o7777, 0o755, "setgid dropped");
    assert_eq!(mode(&loot.join("sticky")) & 0o7000, 0, "sticky dropped");
    for node in ["null", "disk", "fifo"] {
        assert!(
            std::fs::symlink_metadata(loot.join(node)).is_err(),
            "{node} was created on the host"
        );
    }
    // The link arrives as a link (as docker cp keeps them), nothing is written through it.
    let link = std::fs::symlink_metadata(loot.join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "unchanged");
    // Nothing of the staging area is left beside the destination.
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("loot")]);

    // Files whose size is unknown (procfs) or changes while they are read copy correctly.
    host.ignite()
        .arg("cp")
        .arg("cp-src:/proc/version")
        .arg(&dest)
        .assert()
        .success();
    let version = std::fs::read_to_string(dest.join("version")).unwrap();
    assert!(version.starts_with("Linux version "), "{version:?}");
    host.sh(
        "cp-src",
        "busybox setsid busybox sh -c 'while :; do echo line >> /tmp/grow; done' </dev/null >/dev/null 2>&1 & \
         while ! busybox test -s /tmp/grow; do busybox sleep 0.1; done",
    );
    let size = || host.sh("cp-src", "busybox stat -c %s /tmp/grow");
    let first = size();
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(first, size(), "the file in the VM is not growing");
    for i in 0..3 {
        let copy = dest.join(format!("grow{i}"));
        host.ignite()
            .arg("cp")
            .arg("cp-src:/tmp/grow")
            .arg(&copy)
            .assert()
            .success();
        let text = std::fs::read_to_string(&copy).unwrap();
        assert!(
            "line\n".repeat(text.len() / 5 + 1).starts_with(&text),
            "a copy of a growing file is not a snapshot of it: {:?}",
            &text[..text.len().min(80)]
        );
    }
}

#[test]
fn a_guest_flooding_exec_output_cannot_grow_host_memory() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.run("flood");
    let supervisor = host.supervisor_pid("flood");
    let before = rss_kib(supervisor);
    // A client that never reads its output (`ignite exec VM -- cat /dev/zero | sleep`).
    let (reader, writer) = std::io::pipe().unwrap();
    let mut client = host
        .std_ignite()
        .args(["exec", "flood", "--", "busybox", "cat", "/dev/zero"])
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sample = |seconds: u64, client: u32| {
        let (mut client_peak, mut supervisor_peak) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            client_peak = client_peak.max(rss_kib(client));
            supervisor_peak = supervisor_peak.max(rss_kib(supervisor));
            std::thread::sleep(Duration::from_millis(200));
        }
        (client_peak, supervisor_peak)
    };
    // Bounded backlogs: a few MiB of frames per side, not what the guest sends (before
    // they were bounded, the client grew by ~5 MiB a second here, under TCG).
    let bound = 40 * 1024;
    let (client_peak, supervisor_peak) = sample(12, client.id());
    eprintln!(
        "reading stalled: client {client_peak} KiB, supervisor {before} -> {supervisor_peak} KiB"
    );
    assert!(
        client_peak < bound,
        "the exec client grew to {client_peak} KiB"
    );
    assert!(
        supervisor_peak < before + bound,
        "the supervisor grew from {before} to {supervisor_peak} KiB"
    );
    // A stopped client: now the supervisor is the one nobody reads from.
    let signal = |name: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([name, &client.id().to_string()])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    let (_, supervisor_peak) = sample(10, client.id());
    eprintln!("client stopped: supervisor {before} -> {supervisor_peak} KiB");
    assert!(
        supervisor_peak < before + bound,
        "the supervisor grew from {before} to {supervisor_peak} KiB with the client stopped"
    );
    signal("-CONT");
    // The output did flow while it was read: drain a little to prove it.
    let mut first = [0u8; 4096];
    std::io::Read::read_exact(&mut &reader, &mut first).unwrap();
    assert!(first.iter().all(|&b| b == 0));
    let _ = client.kill();
    let _ = client.wait();
    drop(reader);
    // The VM is not held up by the client that went away.
    assert_eq!(host.sh("flood", "echo still-here"), "still-here\n");
    assert!(rss_kib(supervisor) < before + bound);
}

#[test]
fn a_guest_flooding_its_console_is_capped_on_disk() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let limit: u64 = 256 << 10;
    let image = format!("oci:{}:busybox", host.root().join("layout").display());
    host.ignite()
        .env("IGNITE_CONSOLE_LOG_LIMIT", limit.to_string())
        .args(["run", "--network", "none", "--name", "noisy", &image])
        .assert()
        .success();
    // 2 MiB onto the serial console: eight times the cap.
    host.sh(
        "noisy",
        "busybox yes 'console flood 0123456789abcdef' | busybox head -c 2097152 > /dev/console; echo done",
    );
    let vm_dir = host.state().join("vms").join(
        stdout(
            host.ignite()
                .args(["inspect", "vm", "noisy", "-t", "{{.ObjectMeta.UID}}"]),
        )
        .trim(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let total = loop {
        let current = std::fs::metadata(vm_dir.join("console.log")).map_or(0, |m| m.len());
        let rotated = std::fs::metadata(vm_dir.join("console.log.1")).map_or(0, |m| m.len());
        let logs = host.std_ignite().args(["logs", "noisy"]).output().unwrap();
        let text = String::from_utf8_lossy(&logs.stdout);
        assert!(current <= limit && rotated <= limit, "{current} {rotated}");
        if rotated > 0 && text.contains("console flood") {
            break current + rotated;
        }
        assert!(Instant::now() < deadline, "the console never rotated");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(total <= 2 * limit, "{total}");
    assert!(!vm_dir.join("console.log.2").exists());
}
