//! `--ssh` and `ignite ssh` through the binary, booting real VMs under QEMU (TCG): keys
//! generated or imported and authorised in the guest, and the Debian base image on the
//! bridge (in a network namespace the test creates) getting its address by DHCP, reached
//! with `ignite ssh`, restarted, and run with exec over SSH when its agent is off; and the
//! same image imported and run by a normal user (user networking) booting to a clean
//! `running` with sshd answering.

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::netns::{Netns, address_of};
use ignite_testkit::{Host, stdout};

#[test]
fn ssh_keys_are_generated_or_imported_and_authorised_in_the_guest() {
    use std::os::unix::fs::PermissionsExt;
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    // The image's USER is 1000: root's keys are read through exec, which runs as root.
    let uid = stdout(host.ignite().args([
        "run",
        "-q",
        "--ssh",
        "--name",
        "keyed",
        "--network",
        "none",
        &host.image(),
        "echo up; while :; do busybox sleep 1; done",
    ]));
    let dir = host.root().join("state/vms").join(uid.trim());
    let private = dir.join("id_ed25519");
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    host.wait_for_log("keyed", "up");
    let keys = stdout(host.ignite().args([
        "exec",
        "keyed",
        "busybox",
        "cat",
        "/root/.ssh/authorized_keys",
    ]));
    assert!(
        keys.contains(public.trim()),
        "the guest authorised the generated key:\n{keys}"
    );

    // --ssh=PATH imports a public key (".pub" is tried too); a missing one creates nothing.
    let key = host.root().join("mykey");
    std::fs::write(
        key.with_extension("pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImportedKeyImportedKeyImportedKeyImported0 me@host\n",
    )
    .unwrap();
    host.ignite()
        .args([
            "create",
            "--name",
            "imported",
            &format!("--ssh={}", key.display()),
            &host.image(),
        ])
        .assert()
        .success();
    host.ignite()
        .args([
            "create",
            "--name",
            "nokey",
            "--ssh=/no/such/key",
            &host.image(),
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("/no/such/key"));
    let names = stdout(
        host.ignite()
            .args(["ps", "-a", "-t", "{{.ObjectMeta.Name}}"]),
    );
    assert!(!names.contains("nokey"), "{names}");
    host.ignite()
        .args(["rm", "-f", "keyed", "imported"])
        .assert()
        .success();
}

#[test]
fn debian_on_the_bridge_gets_dhcp_ssh_exec_and_restarts() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let ns = Netns::new("ssh");
    let layout = ignite_testkit::base_image_layout();
    host.ignite()
        .args(["image", "import", "--name", "ignite/debian:bookworm"])
        .arg(format!("oci:{}:bookworm", layout.display()))
        .assert()
        .success();
    // run returns once the agent and sshd answer; bridge networking is the default as root.
    ns.ignite(&host)
        .args([
            "run",
            "--ssh",
            "--name",
            "deb",
            "--memory",
            "512MB",
            "ignite/debian:bookworm",
        ])
        .assert()
        .success();
    let vm = host.vm("deb");
    let ip = address_of(&host, "deb");
    assert_eq!(vm.status.ssh_address.as_deref(), Some(&*format!("{ip}:22")));
    let out = ns
        .ignite(&host)
        .args(["ssh", "deb", "--", "hostname"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "deb"
    );
    ns.ignite(&host)
        .args(["ssh", "deb", "--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    // The image's systemd-networkd asks DHCP and gets the address ignite-init set. sshd
    // does not wait for the network (it answers first), so the exchange may come later.
    let log_file = host
        .root()
        .join("state/vms")
        .join(vm.metadata.uid.as_ref().unwrap().as_str())
        .join("supervisor.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(&log_file).unwrap();
        if log.contains(&format!("DHCPACK {ip} to ")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no DHCPACK {ip}: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // networkd applies the lease just after the server acknowledged it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let networkd = stdout(ns.ignite(&host).args([
            "exec",
            "deb",
            "networkctl",
            "status",
            "eth0",
            "--no-pager",
        ]));
        if networkd.contains(&format!("{ip} (DHCP4 via 10.61.0.1)")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{networkd}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // exec needs none of it.
    let out = ns
        .ignite(&host)
        .args(["exec", "deb", "systemctl", "is-system-running", "--wait"])
        .assert();
    let state = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_string();
    assert!(state == "running" || state == "degraded", "{state}");
    // Ignite's scenario: stop, start, exec again; the address stays.
    ns.ignite(&host).args(["stop", "deb"]).assert().success();
    ns.ignite(&host).args(["start", "deb"]).assert().success();
    assert_eq!(address_of(&host, "deb"), ip);
    let name = stdout(ns.ignite(&host).args(["exec", "deb", "hostname"]));
    assert_eq!(name.trim(), "deb");
    ns.ignite(&host)
        .args(["rm", "-f", "deb"])
        .assert()
        .success();

    // With its agent off, start waits for sshd alone and exec goes over SSH.
    ns.ignite(&host)
        .args([
            "run",
            "--ssh",
            "--name",
            "noagent",
            "--memory",
            "512MB",
            "--kernel-args",
            "console=ttyS0 reboot=k panic=1 ignite.agent=off",
            "ignite/debian:bookworm",
        ])
        .assert()
        .success();
    let out = ns
        .ignite(&host)
        .args(["exec", "noagent", "sh", "-c", "hostname; exit 4"])
        .assert()
        .code(4)
        .stderr(predicates::str::contains("over SSH"));
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "noagent"
    );
    ns.ignite(&host)
        .args(["rm", "-f", "noagent"])
        .assert()
        .success();

    // Without --ssh there is nothing to reach.
    ns.ignite(&host)
        .args(["run", "--name", "nossh", "--network", "none", &host.image()])
        .assert()
        .success();
    ns.ignite(&host)
        .args(["ssh", "nossh"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("--ssh"));
    ns.ignite(&host)
        .args(["rm", "-f", "nossh"])
        .assert()
        .success();
}

/// `ignite` as the user nobody, over a state root of its own: Debian's default user
/// `PATH`, no root anywhere.
fn as_nobody(host: &Host, state: &std::path::Path) -> assert_cmd::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = host.std_ignite();
    cmd.env("IGNITE_ROOT", state)
        .env("HOME", state)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .uid(65534)
        .gid(65534);
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(std::time::Duration::from_secs(300));
    cmd
}

#[test]
fn debian_imported_and_run_rootless_boots_to_running_with_sshd() {
    use std::os::unix::fs::PermissionsExt;
    ignite_testkit::require_root!("making a state root for another user");
    ignite_testkit::require_program!("qemu-system-x86_64", "qemu-system-x86");
    let host = Host::empty(cargo_bin!("ignite"));
    std::fs::set_permissions(host.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = host.root().join("nobody");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let layout = ignite_testkit::base_image_layout();
    as_nobody(&host, &state)
        .args(["kernel", "import"])
        .arg(ignite_testkit::kernel_deb())
        .assert()
        .success();
    as_nobody(&host, &state)
        .args(["image", "import", "--name", "ignite/debian:bookworm"])
        .arg(format!("oci:{}:bookworm", layout.display()))
        .assert()
        .success();
    // User networking is a normal user's default; run returns once sshd answers.
    as_nobody(&host, &state)
        .args([
            "run",
            "--ssh",
            "--name",
            "deb",
            "--memory",
            "512MB",
            "ignite/debian:bookworm",
        ])
        .assert()
        .success();
    let result = (|| {
        let out = as_nobody(&host, &state)
            .args(["exec", "deb", "systemctl", "is-system-running", "--wait"])
            .output()
            .unwrap();
        let running = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if running != "running" {
            let failed = as_nobody(&host, &state)
                .args(["exec", "deb", "systemctl", "--failed", "--no-pager"])
                .output()
                .unwrap();
            return Err(format!(
                "{running}: {}",
                String::from_utf8_lossy(&failed.stdout)
            ));
        }
        let shadow = as_nobody(&host, &state)
            .args(["exec", "deb", "stat", "-c", "%U:%G %a", "/etc/shadow"])
            .output()
            .unwrap();
        let shadow = String::from_utf8_lossy(&shadow.stdout).trim().to_string();
        if shadow != "root:shadow 640" {
            return Err(format!("/etc/shadow is {shadow}"));
        }
        let hostname = as_nobody(&host, &state)
            .args(["ssh", "deb", "--", "hostname"])
            .output()
            .unwrap();
        let hostname = String::from_utf8_lossy(&hostname.stdout).trim().to_string();
        if hostname != "deb" {
            return Err(format!("ssh answered {hostname:?}"));
        }
        Ok(())
    })();
    as_nobody(&host, &state)
        .args(["rm", "-f", "deb"])
        .assert()
        .success();
    result.unwrap();
}
