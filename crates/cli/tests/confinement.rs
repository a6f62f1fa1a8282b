//! Confined VMMs, through the `ignite` binary, booting real VMs under QEMU (TCG) as root:
//! each VM's QEMU in a control group of its own with the VM's limits (made by its supervisor),
//! QEMU under its seccomp filter and running as the VM's own unprivileged user, which
//! cannot read another VM's disk; a CPU quota holds a busy guest to it, a guest that
//! allocates past its memory does not take the host's, `ignite stats` shows the VMs, and
//! the groups are gone after `rm` and after a `kill -9` of the supervisor.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;

fn run(host: &Host, name: &str, extra: &[&str], workload: &str) {
    host.run_small(name, extra, workload).assert().success();
}

/// The group's directory in the mount of `controller` (v1) or the v2 mount.
fn group_dir(relative: &str, controller: &str) -> PathBuf {
    let hierarchy = ignite_cgroup::Hierarchy::detect().expect("a cgroup hierarchy");
    let mount = hierarchy
        .mounts
        .iter()
        .find(|m| {
            hierarchy.version == ignite_cgroup::Version::V2
                || m.controllers.iter().any(|c| c == controller)
        })
        .unwrap_or_else(|| panic!("no mount carries {controller}: {hierarchy:?}"));
    mount
        .point
        .join(relative.trim_start_matches('/'))
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn status_field(pid: u32, field: &str) -> String {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The VM's cgroup (relative), its VMM's pid and its VMM's user, from `inspect`.
fn confinement_of(host: &Host, name: &str) -> (String, u32, u32) {
    let vm = host.vm(name);
    let vmm = vm.status.vmm.expect("a running VM has a VMM");
    (
        vmm.cgroup.expect("the VM has a cgroup"),
        vmm.process.pid,
        vmm.user.expect("a VM started by root has a VMM user"),
    )
}

/// True when the host's claim of VMM user `user` names the VM `vm` (other tests' VMs
/// may claim the same user once it is free).
fn claimed_by(user: u32, vm: &str) -> bool {
    std::fs::read_to_string(Path::new("/run/ignite/vmm-users").join(user.to_string()))
        .is_ok_and(|text| text.contains(&format!("\"vm\":\"{vm}\"")))
}

fn uid_of(host: &Host, name: &str) -> String {
    host.vm(name).metadata.uid.unwrap().to_string()
}

#[test]
fn qemu_is_filtered_runs_as_its_vms_user_in_the_vms_cgroup_and_leaves_nothing() {
    ignite_testkit::require_root!("booting confined VMs");
    let host = Host::new(cargo_bin!("ignite"));
    run(&host, "c1", &[], "busybox sleep 100000");
    run(&host, "c2", &[], "busybox sleep 100000");
    let (group1, qemu1, user1) = confinement_of(&host, "c1");
    let (group2, qemu2, user2) = confinement_of(&host, "c2");
    let (c1_uid, c2_uid) = (uid_of(&host, "c1"), uid_of(&host, "c2"));
    assert!(claimed_by(user1, &c1_uid) && claimed_by(user2, &c2_uid));
    assert_ne!(user1, user2, "two running VMs share a VMM user");
    assert_ne!(group1, group2);
    for (qemu, user) in [(qemu1, user1), (qemu2, user2)] {
        assert_eq!(
            status_field(qemu, "Seccomp"),
            "2",
            "QEMU {qemu} is not filtered"
        );
        assert_eq!(status_field(qemu, "NoNewPrivs"), "1");
        let uids = status_field(qemu, "Uid");
        assert!(
            uids.split_whitespace().all(|u| u == user.to_string()),
            "QEMU {qemu} runs as {uids}, not {user}"
        );
        assert!(
            status_field(qemu, "CapEff") == "0000000000000000",
            "QEMU {qemu} kept capabilities"
        );
    }
    // c1's QEMU user cannot read c2's disk (nor anything else of the state root).
    let c2_dir = host.state().join("vms").join(uid_of(&host, "c2"));
    let disks: Vec<PathBuf> = std::fs::read_dir(&c2_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "qcow2" || e == "img" || e == "raw")
        })
        .collect();
    assert!(!disks.is_empty(), "no disk in {}", c2_dir.display());
    for target in disks.iter().chain([&host.state().join("vms")]) {
        let read = std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={user1}"),
                &format!("--regid={user1}"),
                "--clear-groups",
                "--",
                "head",
                "-c",
                "1",
            ])
            .arg(target)
            .output()
            .unwrap();
        assert!(
            !read.status.success(),
            "c1's VMM user {user1} could read {}",
            target.display()
        );
        let why = String::from_utf8_lossy(&read.stderr);
        assert!(why.contains("Permission denied"), "{why}");
    }
    // The group holds QEMU, with the VM's limits: 128 MiB of guest, the VMM's own and
    // TCG's translation cache. The supervisor made it and went back to its own group once
    // QEMU ran in it (so that the VM's end waits for no cgroup move).
    let memory = group_dir(&group1, "memory");
    let procs = read(&memory.join("cgroup.procs"));
    assert!(
        procs.lines().any(|p| p == qemu1.to_string()),
        "QEMU {qemu1} is not in {}: {procs}",
        memory.display()
    );
    assert!(
        !procs
            .lines()
            .any(|p| p == host.supervisor_pid("c1").to_string()),
        "the supervisor stayed in its VM's group: {procs}"
    );
    let limit: u64 = match memory.join("memory.max").exists() {
        true => read(&memory.join("memory.max")).parse().unwrap(),
        false => read(&memory.join("memory.limit_in_bytes")).parse().unwrap(),
    };
    assert_eq!(limit, (128 + 256 + 1024) << 20);
    assert_eq!(read(&group_dir(&group1, "pids").join("pids.max")), "1024");

    // `ignite stats --no-stream` shows both, with their memory limit.
    let stats = host
        .ignite()
        .args(["stats", "--no-stream"])
        .output()
        .unwrap();
    let stats_out = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.status.success(), "{stats:?}");
    for name in ["c1", "c2"] {
        let line = stats_out
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in ignite stats:\n{stats_out}"));
        assert!(line.contains("1.375GiB"), "{line}");
    }
    let json = host
        .ignite()
        .args(["stats", "--no-stream", "--format", "json", "c1"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&json.stdout));
    });
    assert_eq!(rows[0]["Name"], "c1", "{rows}");
    assert_eq!(
        rows[0]["MemLimitBytes"],
        (128u64 + 256 + 1024) << 20,
        "{rows}"
    );
    assert!(
        rows[0]["MemUsageBytes"].as_u64().unwrap() > 16 << 20,
        "{rows}"
    );

    // rm: the group and the user's claim go with the VM.
    host.ignite().args(["rm", "-f", "c1"]).assert().success();
    assert!(!memory.exists(), "{} outlived rm", memory.display());
    assert!(
        !claimed_by(user1, &c1_uid),
        "c1's VMM user is still claimed"
    );
    // kill -9 of the supervisor: QEMU goes with it, and the repair removes the group.
    let supervisor = host.supervisor_pid("c2");
    std::process::Command::new("kill")
        .args(["-9", &supervisor.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{qemu2}")).exists() {
        assert!(Instant::now() < deadline, "QEMU outlived its supervisor");
        std::thread::sleep(Duration::from_millis(100));
    }
    // `start` and `rm` repair a record whose supervisor is gone.
    let memory2 = group_dir(&group2, "memory");
    host.ignite().args(["start", "c2"]).assert().success();
    let (restarted, _, _) = confinement_of(&host, "c2");
    assert_eq!(restarted, group2, "a start makes the VM's group anew");
    host.ignite().args(["rm", "-f", "c2"]).assert().success();
    assert!(
        !memory2.exists(),
        "{} outlived the VM after kill -9 and rm",
        memory2.display()
    );
    assert!(
        !claimed_by(user2, &c2_uid),
        "c2's VMM user is still claimed after kill -9 and rm"
    );
}

#[test]
fn a_cpu_quota_holds_a_busy_guest_and_a_guest_past_its_memory_keeps_to_its_own() {
    ignite_testkit::require_root!("booting confined VMs");
    let host = Host::new(cargo_bin!("ignite"));
    run(
        &host,
        "hog",
        &["--cpu-quota", "0.5"],
        "busybox sh -c 'while :; do :; done'",
    );
    let (group, _, _) = confinement_of(&host, "hog");
    let hierarchy = ignite_cgroup::Hierarchy::detect().unwrap();
    let cgroup = ignite_cgroup::Group::at(&hierarchy, &group);
    let cpu = group_dir(&group, "cpu");
    match cpu.join("cpu.max").exists() {
        true => assert_eq!(read(&cpu.join("cpu.max")), "50000 100000"),
        false => assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000"),
    }
    // Over 10 s, the group (the spinning guest's QEMU) used at most ~55% of a core.
    let used = |g: &ignite_cgroup::Group| g.usage().cpu_micros.expect("CPU usage is accounted");
    let (t0, u0) = (Instant::now(), used(&cgroup));
    std::thread::sleep(Duration::from_secs(10));
    let cores = (used(&cgroup) - u0) as f64 / t0.elapsed().as_micros() as f64;
    assert!(
        cores <= 0.55,
        "the guest spinning under --cpu-quota 0.5 used {cores:.2} cores"
    );
    // It was held back by the quota, not idle (on a busy host it may get less than half a
    // core anyway): the group's periods were throttled.
    let throttled = ignite_cgroup::usage::keyed(&read(&cpu.join("cpu.stat")), "nr_throttled");
    assert!(
        throttled.is_some_and(|n| n > 10),
        "the spinning guest was never throttled ({throttled:?}) at {cores:.2} cores"
    );
    let inspected = host.vm("hog");
    assert_eq!(inspected.spec.cpu_quota, Some(0.5));

    // A 128 MB guest that asks for 300 MB: its own OOM killer answers; the VMM stays
    // within the guest's memory and its own, and the VM runs on.
    run(&host, "greedy", &[], "busybox sleep 100000");
    let (group, greedy_qemu, _) = confinement_of(&host, "greedy");
    let greedy = host
        .ignite()
        .args([
            "exec",
            "greedy",
            "--",
            "busybox",
            "sh",
            "-c",
            // busybox tail buffers what it keeps; bounded in time, whatever the guest's
            // OOM killer makes of it.
            "busybox timeout -s KILL 60 busybox sh -c 'busybox head -c 300000000 /dev/zero | busybox tail -c 300000000 | busybox wc -c'",
        ])
        .timeout(Duration::from_secs(150))
        .output()
        .unwrap();
    let kept = String::from_utf8_lossy(&greedy.stdout);
    assert_ne!(
        kept.trim(),
        "300000000",
        "a 128 MB guest held 300 MB: {greedy:?}"
    );
    let rss_kib: u64 = status_field(greedy_qemu, "VmRSS")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    assert!(
        rss_kib < (128 + 256 + 1024) << 10,
        "QEMU holds {rss_kib} KiB for a 128 MB guest"
    );
    let memory = ignite_cgroup::Group::at(&hierarchy, &group).usage();
    assert!(
        memory.memory_bytes.unwrap() <= memory.memory_limit.unwrap(),
        "{memory:?}"
    );
    assert_eq!(host.sh("greedy", "echo alive").trim(), "alive");
    assert_eq!(host.status_of("greedy"), "Up");
    host.ignite()
        .args(["rm", "-f", "hog", "greedy"])
        .assert()
        .success();
}
