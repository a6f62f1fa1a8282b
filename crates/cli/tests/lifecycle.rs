//! The VM lifecycle through the `ignite` binary, booting real VMs under QEMU (TCG): run,
//! stop, start, rm, `run --rm` exit statuses, crash recovery, concurrent runs, `doctor`,
//! and errors that create nothing.

use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::process::{alive, kill9};
use ignite_testkit::{Host, guest_init, stdout};

#[test]
fn run_rm_exits_with_the_workloads_status() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    // A command replaces CMD; the image's ENTRYPOINT (/bin/sh -c) stays. At debug level
    // the client says where the boot's time went, every phase measured.
    let out = host
        .ignite()
        .args([
            "--log-level",
            "debug",
            "run",
            "--rm",
            "--network",
            "none",
            &host.image(),
            "echo out of the vm; exit 5",
        ])
        .assert()
        .code(5);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let phases = stderr
        .lines()
        .find_map(|l| l.split_once("boot phases: ").map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| panic!("no boot phases in: {stderr}"));
    let millis: Vec<(String, u64)> = phases
        .split(", ")
        .map(|p| {
            let (name, ms) = p.rsplit_once(' ').unwrap().0.rsplit_once(' ').unwrap();
            (name.to_string(), ms.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = millis.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prepare",
            "VMM start",
            "kernel → init",
            "init → agent hello",
            "ready"
        ],
        "{phases}"
    );
    // The guest's kernel and init phases happen within what the host saw as the boot.
    let (kernel, init, ready) = (millis[2].1, millis[3].1, millis[4].1);
    assert!(kernel > 0 && init > 0 && ready > 0, "{phases}");
    assert!(kernel + init <= ready + 500, "{phases}");
    // Without a command, container mode runs ENTRYPOINT + CMD ... but this image has an
    // init, so auto mode would pick VM mode: force container mode.
    host.ignite()
        .args([
            "run",
            "--rm",
            "--mode",
            "container",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .code(0);
    // Ignite's order, flags after the image; `--` before a command.
    host.ignite()
        .args([
            "run",
            &host.image(),
            "--rm",
            "--network",
            "none",
            "--",
            "exit 6",
        ])
        .assert()
        .code(6);
    host.ignite()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &host.image(),
            "no-such-program",
        ])
        .assert()
        .code(127);
    assert_eq!(
        stdout(host.ignite().args(["ps", "-a", "-q"])),
        "",
        "--rm removed every VM"
    );
}

#[test]
fn lifecycle_run_stop_start_rm_leaves_nothing_behind() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let uid = stdout(host.ignite().args([
        "run",
        "--name",
        "life",
        "--network",
        "none",
        "-q",
        &host.image(),
    ]));
    let uid = uid.trim().to_string();
    assert_eq!(uid.len(), 16, "{uid}");
    assert_eq!(host.status_of("life"), "Up");
    host.wait_for_log("life", "init: up");
    let first = host.vm("life");
    let vmm = first
        .status
        .vmm
        .clone()
        .expect("a running VM records its VMM");
    assert_eq!(
        (vmm.name, vmm.accel),
        (ignite_api::VmmKind::Qemu, ignite_api::Accel::Tcg)
    );
    let supervisor = first.status.supervisor.expect("and its supervisor");

    host.ignite().args(["stop", "life"]).assert().success();
    assert_eq!(host.status_of("life"), "Stopped");
    let stopped = host.vm("life");
    assert_eq!(
        stopped.status.exit.as_ref().unwrap().reason,
        ignite_api::ExitReason::Stopped
    );
    assert!(!alive(supervisor.pid) && !alive(vmm.process.pid));
    assert!(stdout(host.ignite().args(["logs", "life"])).contains("init: powering off"));

    // A stopped VM starts again, any number of times.
    for round in 0..2 {
        host.ignite().args(["start", "life"]).assert().success();
        assert_eq!(host.status_of("life"), "Up", "round {round}");
        host.ignite()
            .args(["start", "life"])
            .assert()
            .failure()
            .stderr(predicates::str::contains("already running"));
        host.ignite().args(["stop", "life"]).assert().success();
        assert_eq!(host.status_of("life"), "Stopped", "round {round}");
    }

    // rm refuses a running VM; -f kills it; nothing is left.
    host.ignite().args(["start", "life"]).assert().success();
    let running = host.vm("life");
    host.ignite()
        .args(["rm", "life"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("is running"));
    host.ignite().args(["rm", "-f", "life"]).assert().success();
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
    assert!(!alive(running.status.supervisor.unwrap().pid));
    assert!(!alive(running.status.vmm.unwrap().process.pid));
    assert!(
        !host.root().join("state/vms").join(&uid).exists(),
        "the VM's directory is gone"
    );
}

#[test]
fn killed_supervisors_and_vmms_leave_a_truthful_state() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args(["run", "--name", "crash", "--network", "none", &host.image()])
        .assert()
        .success();
    host.wait_for_log("crash", "init: up");

    // kill -9 of the supervisor: the VMM goes with it, ps says Stopped, start works.
    let vm = host.vm("crash");
    let (supervisor, vmm) = (vm.status.supervisor.unwrap(), vm.status.vmm.unwrap());
    kill9(supervisor.pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(vmm.process.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(vmm.process.pid), "the VMM died with its supervisor");
    assert_eq!(host.status_of("crash"), "Stopped");
    host.ignite().args(["start", "crash"]).assert().success();
    assert_eq!(host.status_of("crash"), "Up");

    // kill -9 of the VMM: the supervisor records it and ends.
    let vm = host.vm("crash");
    kill9(vm.status.vmm.unwrap().process.pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.status_of("crash") == "Up" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(host.status_of("crash"), "Stopped");
    let exit = host.vm("crash").status.exit.unwrap();
    assert_eq!(exit.reason, ignite_api::ExitReason::VmmFailed, "{exit:?}");

    // A host reboot: the record says running, no process exists.
    host.ignite().args(["start", "crash"]).assert().success();
    let vm = host.vm("crash");
    kill9(vm.status.supervisor.unwrap().pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host.status_of("crash"), "Stopped");
    host.ignite().args(["rm", "crash"]).assert().success();
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
}

#[test]
fn concurrent_runs_all_succeed_with_distinct_names() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    // The image is imported once first; ten runs then race on create and start.
    host.ignite()
        .args(["image", "import", &host.image()])
        .assert()
        .success();
    let runs: Vec<_> = (0..10)
        .map(|_| {
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignite"));
            cmd.env("IGNITE_ROOT", host.root().join("state"))
                .env("IGNITE_INIT", guest_init())
                .env("IGNITE_ACCEL", "tcg")
                .env("IGNITE_WARM_STARTS", "off")
                .args([
                    "run",
                    "-q",
                    "--network",
                    "none",
                    "--memory",
                    "256MB",
                    &host.image(),
                ]);
            std::thread::spawn(move || cmd.output())
        })
        .collect();
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ps = stdout(host.ignite().args(["ps", "-q"]));
    assert_eq!(ps.lines().count(), 10, "ten VMs run:\n{ps}");
    let names = stdout(
        host.ignite()
            .args(["ps", "-a", "-t", "{{.ObjectMeta.Name}}"]),
    );
    let unique: std::collections::BTreeSet<_> = names.lines().collect();
    assert_eq!(unique.len(), 10, "{names}");
    let all: Vec<String> = ps.lines().map(String::from).collect();
    host.ignite()
        .args(["rm", "-f"])
        .args(&all)
        .assert()
        .success();
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
}

#[test]
fn bad_requests_fail_clearly_and_create_nothing() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args([
            "create",
            "--name",
            "taken",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success();
    let cases: [(&[&str], &str); 4] = [
        (&["create", "--name", "taken", "IMAGE"], "already exists"),
        (&["create", "oci:/no/such/layout:x"], "/no/such/layout"),
        (&["create", "--memory", "16MB", "IMAGE"], "too little"),
        (
            &["create", "--kernel-image", "/no/such/vmlinux", "IMAGE"],
            "/no/such/vmlinux",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("IMAGE", &host.image()))
            .collect();
        host.ignite()
            .args(&args)
            .assert()
            .failure()
            .stderr(predicates::str::contains(needle));
    }
    assert_eq!(
        stdout(host.ignite().args(["ps", "-a", "-q"]))
            .lines()
            .count(),
        1
    );
    // No kernel at all: a fresh state has none, and there is no system kernel package.
    let empty = tempfile::tempdir().unwrap();
    let no_packages = tempfile::tempdir().unwrap();
    host.ignite_in(empty.path())
        .env("IGNITE_INIT", guest_init())
        .env("IGNITE_SYSTEM_KERNELS", no_packages.path())
        .args(["create", &host.image()])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no kernel"));
    assert_eq!(
        stdout(host.ignite_in(empty.path()).args(["ps", "-a", "-q"])),
        ""
    );
    // With the system's kernel package there, a fresh state imports it as its default.
    let packages = tempfile::tempdir().unwrap();
    let deb = ignite_testkit::kernel_deb();
    std::fs::copy(&deb, packages.path().join(deb.file_name().unwrap())).unwrap();
    host.ignite()
        .env("IGNITE_ROOT", empty.path())
        .env("IGNITE_SYSTEM_KERNELS", packages.path())
        .args([
            "create",
            "--name",
            "first",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success()
        .stderr(predicates::str::contains("importing the system's kernel"));
    assert_eq!(
        stdout(host.ignite_in(empty.path()).args(["kernels", "-q"]))
            .lines()
            .count(),
        1
    );
}

#[test]
fn doctor_reports_what_is_missing_and_how_to_fix_it() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let out = stdout(host.ignite().args(["doctor", "--quick"]));
    for check in ["qemu", "mkfs.ext4", "guest init", "default kernel", "kvm"] {
        let line = out
            .lines()
            .find(|l| l.split('\t').next() == Some(check))
            .unwrap_or_else(|| panic!("no {check} check:\n{out}"));
        assert!(!line.contains("MISSING"), "{line}");
    }
    // A PATH without the system directories (a normal user's has no /usr/sbin): the
    // tools are found there all the same, and nothing is said to be missing.
    let out = stdout(
        host.ignite()
            .env("PATH", "/nonexistent")
            .args(["doctor", "--quick"]),
    );
    for (check, path) in [
        ("qemu", "/usr/bin/qemu-system-x86_64"),
        ("mkfs.ext4", "/usr/sbin/mkfs.ext4"),
        ("depmod", "sbin/depmod"),
    ] {
        let line = out
            .lines()
            .find(|l| l.split('\t').next() == Some(check))
            .unwrap_or_else(|| panic!("no {check} check:\n{out}"));
        assert!(line.contains(path) && !line.contains("apt-get"), "{line}");
    }
}

/// The workload's counter lines in the VM's logs.
fn counted(host: &Host, vm: &str) -> usize {
    stdout(host.ignite().args(["logs", vm]))
        .lines()
        .filter(|l| l.starts_with("count "))
        .count()
}

#[test]
fn pause_freezes_a_counting_guest_and_unpause_resumes_it() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args([
            "run",
            "--name",
            "counter",
            "--network",
            "none",
            &host.image(),
            "i=0; while :; do i=$((i+1)); echo count $i; busybox sleep 0.2; done",
        ])
        .assert()
        .success();
    host.wait_for_log("counter", "count 3");

    host.ignite().args(["pause", "counter"]).assert().success();
    assert_eq!(host.status_of("counter"), "Paused");
    let frozen = counted(&host, "counter");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counted(&host, "counter"),
        frozen,
        "a paused guest counted on"
    );
    // What needs the guest is refused while it is paused; pausing twice is an error.
    let refused = host
        .ignite()
        .args(["exec", "counter", "true"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("VM counter is paused: unpause it first (ignite unpause counter)"),
        "{stderr}"
    );
    let twice = host.ignite().args(["pause", "counter"]).assert().failure();
    let stderr = String::from_utf8_lossy(&twice.get_output().stderr).into_owned();
    assert!(stderr.contains("VM counter is already paused"), "{stderr}");

    host.ignite()
        .args(["vm", "unpause", "counter"])
        .assert()
        .success();
    assert_eq!(host.status_of("counter"), "Up");
    let deadline = Instant::now() + Duration::from_secs(60);
    while counted(&host, "counter") <= frozen + 2 {
        assert!(
            Instant::now() < deadline,
            "the unpaused guest does not count"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    host.ignite()
        .args(["exec", "counter", "busybox", "true"])
        .assert()
        .success();

    // A paused VM still stops gracefully: it is resumed to hear its power button.
    host.ignite().args(["pause", "counter"]).assert().success();
    let started = Instant::now();
    host.ignite().args(["stop", "counter"]).assert().success();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stop waited for its grace period"
    );
    assert_eq!(host.status_of("counter"), "Stopped");
    let out = host
        .ignite()
        .args(["unpause", "counter"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("VM counter is not running"), "{stderr}");
    host.ignite().args(["rm", "counter"]).assert().success();
}

/// Under TCG the guest keeps time with the host's TSC at the frequency it is told
/// (`tsc_early_khz=`): told a wrong one, its clock would run fast or slow against the
/// host's. Over a minute the guest's clock moves with the host's (within 0.5%).
#[test]
fn a_tcg_guests_clock_keeps_the_hosts_time() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let uid = stdout(host.ignite().args([
        "run",
        "--name",
        "clock",
        "--network",
        "none",
        "-q",
        &host.image(),
        "while :; do busybox sleep 1; done",
    ]));
    let cmdline = std::fs::read(
        host.root()
            .join("state/vms")
            .join(uid.trim())
            .join("vmm.cmdline"),
    )
    .unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("-accel tcg"), "{cmdline}");
    assert!(cmdline.contains("tsc_early_khz="), "{cmdline}");
    assert!(!cmdline.contains("-icount"), "{cmdline}");
    // The guest's clock (its uptime, 10 ms steps) less the host's, read around one `exec`.
    let host_start = Instant::now();
    let offset = || {
        let before = host_start.elapsed().as_secs_f64();
        let uptime =
            stdout(
                host.ignite()
                    .args(["exec", "clock", "busybox", "cat", "/proc/uptime"]),
            );
        let guest: f64 = uptime
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("/proc/uptime: {uptime:?}"));
        let after = host_start.elapsed().as_secs_f64();
        (guest - (before + after) / 2.0, after - before)
    };
    let (first, took1) = offset();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let (second, took2) = offset();
    let elapsed = started.elapsed().as_secs_f64();
    let drift = second - first;
    // Each reading is uncertain by half its exec's time, and the uptime by 10 ms.
    let allowed = 0.005 * elapsed + (took1 + took2) / 2.0 + 0.02;
    assert!(
        drift.abs() < allowed,
        "the guest's clock moved {drift:+.3} s against the host's over {elapsed:.0} s (allowed {allowed:.3})"
    );
    eprintln!("guest clock against the host's over {elapsed:.0} s: {drift:+.3} s");
    host.ignite().args(["rm", "-f", "clock"]).assert().success();
}
