//! Snapshots through the `ignite` binary, booting real VMs under QEMU (TCG): a snapshot
//! of a counting guest, restored, counts on from where it was with its files there;
//! clones of one snapshot run side by side on the bridge network (in a namespace the test
//! creates) with their own MACs, addresses and random state; a snapshot is refused on
//! another kernel; and removing clones and snapshots (also after `kill -9` of a restore
//! in progress) leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::netns::{Netns, address_of};
use ignite_testkit::process::{eventually, kill9};
use ignite_testkit::{Host, stdout};

const COUNTER: &str = "busybox mkdir -p /tmp; echo kept > /tmp/kept; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; echo count $i; busybox sleep 0.2; done";

fn failure(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().failure();
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// The guest's counter, read through the agent.
fn count(host: &Host, vm: &str) -> u64 {
    let text = stdout(
        host.ignite()
            .args(["exec", vm, "busybox", "cat", "/tmp/count"])
            .timeout(Duration::from_secs(60)),
    );
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{vm}: {text:?}"))
}

/// Everything left in a state root's object directory of `kind` (bookkeeping files aside).
fn objects(host: &Host, kind: &str) -> Vec<String> {
    std::fs::read_dir(host.state().join(kind))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The process's command name.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
}

/// A process whose arguments include each of `wanted` (as whole arguments or parts).
fn process_with(wanted: &[&[u8]]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        wanted
            .iter()
            .all(|w| args.iter().any(|a| a.windows(w.len()).any(|x| x == *w)))
            .then_some(pid)
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_restored_snapshot_counts_on_where_it_was_and_goes_without_a_trace() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args([
            "run",
            "--name",
            "src",
            "--network",
            "none",
            "-u",
            "0",
            &host.image(),
            COUNTER,
        ])
        .assert()
        .success();
    host.wait_for_log("src", "count 3");

    let uid = stdout(
        host.ignite()
            .args(["snapshot", "create", "src", "--name", "s1"]),
    );
    let uid = uid.trim();
    let dir = host.state().join("snapshots").join(uid);
    // The guest's memory and disk are the owner's alone.
    for file in ["state", "disk0.qcow2"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&dir), 0o700);
    let taken_at = count(&host, "src");
    // The VM it was taken of runs on.
    assert_eq!(host.status_of("src"), "Up");
    eventually("src counts on", "", || {
        (count(&host, "src") > taken_at + 2, String::new())
    });

    let list = stdout(host.ignite().args(["snapshots", "-o", "json"]));
    let listed: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(listed[0]["metadata"]["name"], "s1", "{list}");
    assert_eq!(listed[0]["spec"]["vm"]["name"], "src", "{list}");
    assert!(listed[0]["status"]["stateBytes"].as_u64().unwrap() > 1 << 20);
    let table = stdout(host.ignite().args(["snapshot", "ls"]));
    assert!(table.contains("s1") && table.contains("src"), "{table}");
    let yaml = stdout(host.ignite().args(["snapshot", "ls", "-o", "yaml"]));
    assert!(yaml.contains("name: s1"), "{yaml}");
    // A second snapshot of the same name is refused; the first stays.
    let taken = failure(
        host.ignite()
            .args(["snapshot", "create", "src", "--name", "s1"]),
    );
    assert!(taken.contains("s1"), "{taken}");
    assert_eq!(objects(&host, "snapshots"), [uid]);

    host.ignite()
        .args(["run", "--from-snapshot", "s1", "--name", "c1"])
        .assert()
        .success();
    assert_eq!(host.status_of("c1"), "Up");
    // The file written before the snapshot is there, and the counter goes on from where
    // it was when the snapshot was taken, not from 1.
    assert_eq!(
        stdout(
            host.ignite()
                .args(["exec", "c1", "busybox", "cat", "/tmp/kept"])
        )
        .trim(),
        "kept"
    );
    let first = count(&host, "c1");
    assert!(first >= 3, "the clone restarted its count: {first}");
    eventually("c1 counts on", "", || {
        (count(&host, "c1") > first + 2, String::new())
    });
    let c1 = host.vm("c1");
    assert_eq!(c1.status.restored_from.as_deref(), Some("s1"));
    assert_eq!(c1.spec.image, host.vm("src").spec.image);
    // The workload's output goes on in the clone's own log.
    let logs = stdout(host.ignite().args(["logs", "c1"]));
    assert!(logs.contains(&format!("count {}", first + 1)), "{logs}");
    // The clock was set from the host's: guest and host agree within seconds.
    let guest_now: i64 = stdout(host.ignite().args(["exec", "c1", "busybox", "date", "+%s"]))
        .trim()
        .parse()
        .unwrap();
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (guest_now - host_now).abs() < 5,
        "guest {guest_now}, host {host_now}"
    );

    // In use: refused, naming the VM.
    let in_use = failure(host.ignite().args(["snapshot", "rm", "s1"]));
    assert!(
        in_use.contains("in use by VMs made from it (c1)"),
        "{in_use}"
    );
    // A stopped clone boots from its disk on its next start (the snapshot is restored once).
    host.ignite().args(["stop", "c1"]).assert().success();
    host.ignite().args(["start", "c1"]).assert().success();
    assert_eq!(host.vm("c1").status.restored_from, None);

    // kill -9 of a restore in progress: the VM and its files go with rm.
    host.ignite()
        .args(["create", "--from-snapshot", "s1", "--name", "c2"])
        .assert()
        .success();
    let c2 = host.vm("c2").metadata.uid.unwrap().to_string();
    let mut start = host.std_ignite();
    start.args(["start", "c2"]);
    let mut child = start.spawn().unwrap();
    // The supervisor is killed once its QEMU waits for or loads the saved state.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (supervisor, qemu) = loop {
        if let (Some(s), Some(q)) = (
            process_with(&[b"supervise", c2.as_bytes()]),
            process_with(&[b"-incoming", c2.as_bytes()])
                .filter(|pid| comm(*pid).starts_with("qemu")),
        ) {
            break (s, q);
        }
        assert!(Instant::now() < deadline, "c2's restore never began");
    };
    kill9(supervisor);
    let _ = child.wait();
    eventually("QEMU goes with its supervisor", "", || {
        (!Path::new(&format!("/proc/{qemu}")).exists(), String::new())
    });
    assert_ne!(host.status_of("c2"), "Up");
    // Its restore was not finished: the next start restores it.
    host.ignite().args(["start", "c2"]).assert().success();
    assert_eq!(host.vm("c2").status.restored_from.as_deref(), Some("s1"));
    assert!(count(&host, "c2") >= 3);

    // The image goes only with its VMs and snapshots.
    let image = host.vm("src").spec.image.unwrap().oci.to_string();
    let rmi = failure(host.ignite().args(["rmi", &image]));
    assert!(rmi.contains("snapshot s1") && rmi.contains("c1"), "{rmi}");
    for vm in ["c1", "c2", "src"] {
        host.ignite().args(["rm", "-f", vm]).assert().success();
    }
    host.ignite()
        .args(["snapshot", "rm", "s1"])
        .assert()
        .success();
    assert!(objects(&host, "snapshots").is_empty());
    assert!(objects(&host, "vms").is_empty());
    // The image's disk stays for the image, and nothing else is left of the snapshot.
    assert!(!dir.exists());
    let none = failure(host.ignite().args(["run", "--from-snapshot", "s1"]));
    assert!(none.contains("s1"), "{none}");
}

#[test]
fn clones_of_one_snapshot_get_their_own_identity_and_a_changed_kernel_is_refused() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    ignite_testkit::require_program("nft", "nftables");
    let ns = Netns::new("clones");
    ns.ignite(&host)
        .args([
            "run",
            "--name",
            "tpl",
            &host.image(),
            "echo tpl up; exec busybox sleep 100000",
        ])
        .assert()
        .success();
    host.wait_for_log("tpl", "tpl up");
    ns.ignite(&host)
        .args(["snapshot", "create", "tpl", "--name", "base"])
        .assert()
        .success();
    // The template may go: its snapshot stands on its own.
    ns.ignite(&host)
        .args(["rm", "-f", "tpl"])
        .assert()
        .success();
    for name in ["a", "b"] {
        ns.ignite(&host)
            .args(["run", "--from-snapshot", "base", "--name", name])
            .assert()
            .success();
    }
    let exec = |vm: &str, script: &str| {
        let out = ns
            .ignite(&host)
            .args(["exec", vm, "busybox", "sh", "-c", script])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (a_ip, b_ip) = (address_of(&host, "a"), address_of(&host, "b"));
    assert_ne!(a_ip, b_ip);
    let mac = |vm: &str| exec(vm, "busybox cat /sys/class/net/eth0/address").1;
    assert_ne!(mac("a"), mac("b"));
    // Each guest wears its own address (and not the template's any more), and they reach
    // each other on the bridge.
    for (vm, ip) in [("a", &a_ip), ("b", &b_ip)] {
        let (ok, addrs) = exec(vm, "busybox ip -4 addr show eth0");
        assert!(
            ok && addrs.contains(&format!("inet {ip}/")),
            "{vm}: {addrs}"
        );
        assert_eq!(addrs.matches("inet ").count(), 1, "{vm}: {addrs}");
        let (_, host_name) = exec(vm, "busybox hostname");
        assert_eq!(host_name.trim(), vm);
    }
    eventually("a pings b", "1 packets received", || {
        exec("a", &format!("busybox ping -c 1 -W 5 {b_ip}"))
    });
    // Fresh entropy: the clones resumed with one random state, and were reseeded apart.
    let random = |vm: &str| exec(vm, "busybox head -c 32 /dev/urandom | busybox od -An -tx1").1;
    let (ra, rb) = (random("a"), random("b"));
    assert!(ra.len() > 60, "{ra}");
    assert_ne!(ra, rb);

    // A kernel imported again (its files changed) no longer fits the snapshot.
    let deb = ignite_testkit::kernel_deb();
    ns.ignite(&host)
        .args(["kernel", "import", "--pull"])
        .arg(&deb)
        .assert()
        .success();
    let refused = failure(
        ns.ignite(&host)
            .args(["run", "--from-snapshot", "base", "--name", "c"]),
    );
    assert!(
        refused.contains("snapshot base was taken with other files of kernel"),
        "{refused}"
    );
    let vms: Vec<String> = host
        .ps_all()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
        .collect();
    assert!(!vms.contains(&"c".to_string()), "{vms:?}");
    for vm in ["a", "b"] {
        ns.ignite(&host).args(["rm", "-f", vm]).assert().success();
    }
    ns.ignite(&host)
        .args(["snapshot", "rm", "base"])
        .assert()
        .success();
    assert!(objects(&host, "snapshots").is_empty());
    assert!(objects(&host, "vms").is_empty());
}
