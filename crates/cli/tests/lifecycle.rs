//! The VM lifecycle through the `ignite` binary, booting real VMs under QEMU (TCG): run,
//! stop, start, rm, `run --rm` exit statuses, logs, crash recovery, concurrent runs, and
//! errors that create nothing. The harness (the host, network namespaces) is ignite-testkit's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_api::Vm;
use ignite_testkit::git::git;
use ignite_testkit::netns::{Netns, address_of};
use ignite_testkit::process::{alive, kill9};
use ignite_testkit::{Host, guest_init, stdout};

#[test]
fn run_rm_exits_with_the_workloads_status() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    // A command replaces CMD; the image's ENTRYPOINT (/bin/sh -c) stays.
    let out = host
        .ignite()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &host.image(),
            "echo out of the vm; exit 5",
        ])
        .assert()
        .code(5);
    drop(out);
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
    assert_eq!((vmm.name.as_str(), vmm.accel.as_str()), ("qemu", "tcg"));
    let supervisor = first.status.supervisor.expect("and its supervisor");

    host.ignite().args(["stop", "life"]).assert().success();
    assert_eq!(host.status_of("life"), "Stopped");
    let stopped = host.vm("life");
    assert_eq!(stopped.status.exit.as_ref().unwrap().reason, "stopped");
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
    assert!(exit.reason.contains("VMM failed"), "{exit:?}");

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
fn logs_follow_and_attach_detach() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    // logs -f prints everything and returns when the VM ends.
    host.ignite()
        .args([
            "run",
            "--name",
            "talker",
            "--network",
            "none",
            &host.image(),
            "echo line one; busybox sleep 2; echo line two",
        ])
        .assert()
        .success();
    let followed = stdout(host.ignite().args(["logs", "-f", "talker"]));
    assert!(
        followed.contains("line one") && followed.contains("line two"),
        "{followed}"
    );
    assert!(
        followed.contains("ignite-init: exit status 0"),
        "{followed}"
    );
    assert_eq!(host.status_of("talker"), "Stopped");

    // attach joins the console (a container-mode workload's streams go through the agent
    // instead, so this shell is put on the console on purpose); ^P^Q detaches and the VM
    // keeps running.
    host.ignite()
        .args([
            "run",
            "--name",
            "shell",
            "--network",
            "none",
            "-u",
            "0", // the console is root's
            &host.image(),
            "exec sh </dev/console >/dev/console 2>&1",
        ])
        .assert()
        .success();
    host.wait_for_log("shell", "ignite-init: container mode");
    std::thread::sleep(Duration::from_secs(2));
    let mut attach = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignite"))
        .env("IGNITE_ROOT", host.root().join("state"))
        .args(["attach", "shell"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    stdin.write_all(b"echo attached-$((6*7))\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stdout(host.ignite().args(["logs", "shell"])).contains("attached-42") {
        assert!(Instant::now() < deadline, "the shell never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    stdin.write_all(&[0x10, 0x11]).unwrap();
    let out = attach.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attached-42"), "{text}");
    assert_eq!(
        host.status_of("shell"),
        "Up",
        "detaching leaves the VM running"
    );
    host.ignite()
        .args(["rm", "-f", "shell", "talker"])
        .assert()
        .success();
}

#[test]
fn doctor_reports_what_is_missing_and_how_to_fix_it() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let out = stdout(host.ignite().args(["doctor", "--quick"]));
    for check in [
        "qemu",
        "qemu-img",
        "mkfs.ext4",
        "guest init",
        "default kernel",
        "kvm",
    ] {
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
fn exec_runs_commands_through_the_agent() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args([
            "run",
            "--name",
            "box",
            "--network",
            "none",
            &host.image(),
            "echo workload up; while :; do busybox sleep 1; done",
        ])
        .assert()
        .success();
    host.wait_for_log("box", "workload up");
    let exec = |args: &[&str]| {
        let mut cmd = host.ignite();
        cmd.arg("exec").arg("box").args(args);
        cmd
    };
    // Exit status, stdout and stderr apart.
    let out = exec(&["sh", "-c", "echo out; echo err >&2; exit 7"])
        .assert()
        .code(7);
    let output = out.get_output();
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
    // stdin streams through, a megabyte of it.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let out = exec(&["busybox", "md5sum"])
        .write_stdin(data.clone())
        .assert()
        .success();
    let expected = String::from_utf8(
        std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&data)?;
                c.wait_with_output()
            })
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout)
            .split_whitespace()
            .next(),
        expected.split_whitespace().next()
    );
    // A terminal.
    let out = exec(&["-t", "busybox", "tty"]).assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("/dev/pts/"));
    // Several at once.
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignite"));
            cmd.env("IGNITE_ROOT", host.root().join("state")).args([
                "exec",
                "box",
                "sh",
                "-c",
                &format!("busybox sleep 1; echo session {i}"),
            ]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let o = run.join().unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("session {i}\n"));
    }
    // As in Docker: 127 for a missing command.
    exec(&["no-such-command"])
        .assert()
        .code(127)
        .stderr(predicates::str::contains("no-such-command"));
    host.ignite().args(["stop", "-f", "box"]).assert().success();
    exec(&["true"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("not running"));
    host.ignite().args(["rm", "box"]).assert().success();
}

#[test]
fn cp_copies_files_and_trees_both_ways() {
    use std::os::unix::fs::PermissionsExt;
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args([
            "run",
            "--name",
            "files",
            "--network",
            "none",
            &host.image(),
            "echo ready; while :; do busybox sleep 1; done",
        ])
        .assert()
        .success();
    host.wait_for_log("files", "ready");
    let exec = |args: &[&str]| {
        let mut cmd = host.ignite();
        cmd.args(["exec", "files"]).args(args);
        String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
    };
    let local = host.root().join("local");
    std::fs::create_dir_all(local.join("tree/sub")).unwrap();
    std::fs::write(local.join("tree/a.txt"), "alpha").unwrap();
    std::fs::write(local.join("tree/sub/b.sh"), "#!/bin/sh\necho beta\n").unwrap();
    std::fs::set_permissions(
        local.join("tree/sub/b.sh"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    // 100 MB of data that does not compress into nothing.
    let big = local.join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..(100 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
    let sha = |p: &Path| {
        let out = std::process::Command::new("sha256sum")
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };

    // Into an existing directory, and as a new name.
    let started = Instant::now();
    host.ignite()
        .args(["cp"])
        .arg(&big)
        .arg("files:/srv/")
        .assert()
        .success();
    eprintln!("100 MB into the VM in {:?}", started.elapsed());
    host.ignite()
        .args(["cp"])
        .arg(local.join("tree"))
        .arg("files:/srv/copied")
        .assert()
        .success();
    let listing = exec(&["busybox", "find", "/srv/copied"]);
    let mut lines: Vec<&str> = listing.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "/srv/copied",
            "/srv/copied/a.txt",
            "/srv/copied/sub",
            "/srv/copied/sub/b.sh"
        ]
    );
    assert_eq!(
        exec(&["busybox", "stat", "-c", "%a", "/srv/copied/sub/b.sh"]).trim(),
        "751"
    );
    assert_eq!(
        exec(&["busybox", "sha256sum", "/srv/big.bin"])
            .split_whitespace()
            .next()
            .unwrap(),
        sha(&big)
    );

    // And back out.
    let back = host.root().join("back");
    std::fs::create_dir_all(&back).unwrap();
    let started = Instant::now();
    host.ignite()
        .args(["cp", "files:/srv/big.bin"])
        .arg(back.join("big-again.bin"))
        .assert()
        .success();
    eprintln!("100 MB out of the VM in {:?}", started.elapsed());
    assert_eq!(sha(&back.join("big-again.bin")), sha(&big));
    host.ignite()
        .args(["cp", "files:/srv/copied"])
        .arg(&back)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(back.join("copied/a.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        std::fs::metadata(back.join("copied/sub/b.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o751
    );
    let leftovers: Vec<_> = std::fs::read_dir(&back)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ignite-cp-"))
        .collect();
    assert!(leftovers.is_empty(), "no staging left behind");

    // Errors name what is wrong.
    host.ignite()
        .args(["cp", "files:/no/such/file"])
        .arg(&back)
        .assert()
        .failure()
        .stderr(predicates::str::contains("/no/such/file"));
    host.ignite()
        .args(["cp", "/no/such/host/file", "files:/srv/"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("/no/such/host/file"));
    host.ignite()
        .args(["cp", "a", "b"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("VM:path"));
    host.ignite().args(["rm", "-f", "files"]).assert().success();
}

/// Retries `attempt` until it succeeds with output containing `want` (a server starting).
fn eventually(what: &str, want: &str, attempt: impl Fn() -> (bool, String)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = attempt();
        if ok && out.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never got {want:?}; last answer:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn bridge_networking_connects_vms_forwards_ports_and_cleans_up() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    ignite_testkit::require_program("nft", "nftables");
    let ns = Netns::new("bridge");
    // The image's user is 1000: the server listens on an unprivileged port.
    let serve = |name: &str| format!("echo {name} up; exec busybox httpd -f -p 8000 -h /");
    // Bridge is the default as root.
    ns.ignite(&host)
        .args(["run", "--name", "web", "-p", "8080:8000", &host.image()])
        .arg(serve("web"))
        .assert()
        .success();
    ns.ignite(&host)
        .args(["run", "--name", "peer", &host.image()])
        .assert()
        .success();
    host.wait_for_log("web", "web up");
    let web = host.vm("web");
    assert_eq!(web.spec.network.mode, Some(ignite_api::NetworkMode::Bridge));
    let web_ip = address_of(&host, "web");
    let peer_ip = address_of(&host, "peer");
    assert!(web_ip.starts_with("10.61.") && peer_ip.starts_with("10.61."));
    assert_ne!(web_ip, peer_ip);
    let ps = host.ps_all();
    let line = ps.lines().find(|l| l.ends_with("web")).unwrap();
    assert!(
        line.contains(&web_ip) && line.contains("0.0.0.0:8080->8000"),
        "{line}"
    );
    let exec = |vm: &str, args: &[&str]| {
        let out = ns
            .ignite(&host)
            .args(["exec", vm])
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    // The VMs reach each other and the bridge.
    eventually("peer pings web", "1 packets received", || {
        exec("peer", &["busybox", "ping", "-c", "1", "-W", "5", &web_ip])
    });
    eventually("peer pings the bridge", "1 packets received", || {
        exec(
            "peer",
            &["busybox", "ping", "-c", "1", "-W", "5", "10.61.0.1"],
        )
    });
    let get = |url: String| move || exec("peer", &["busybox", "wget", "-q", "-O", "-", &url]);
    eventually(
        "peer fetches from web",
        "web",
        get(format!("http://{web_ip}:8000/etc/hostname")),
    );
    // The forward, from the namespace (the bridge's address and loopback) and from a VM.
    let fetch = |url: &str| ns.run("/bin/busybox", &["wget", "-q", "-O", "-", url]);
    eventually("the forward on the bridge address", "web", || {
        fetch("http://10.61.0.1:8080/etc/hostname")
    });
    eventually("the forward on 127.0.0.1", "web", || {
        fetch("http://127.0.0.1:8080/etc/hostname")
    });
    eventually(
        "the forward from another VM",
        "web",
        get("http://10.61.0.1:8080/etc/hostname".into()),
    );
    // A host port in use is refused before anything is made.
    ns.ignite(&host)
        .args(["run", "--name", "clash", "-p", "8080:80", &host.image()])
        .assert()
        .failure()
        .stderr(predicates::str::contains("host port 8080/tcp"))
        .stderr(predicates::str::contains("already in use"));
    assert!(!host.ps_all().contains("clash"));

    // Stop and start: the same address, the forward back.
    ns.ignite(&host).args(["stop", "web"]).assert().success();
    let tap = |vm: &Vm| format!("ign{}", &vm.metadata.uid.as_ref().unwrap().as_str()[..12]);
    assert!(!ns.link_exists(&tap(&web)), "a stopped VM keeps no tap");
    assert!(!ns.ignite_rules().contains("8080"));
    ns.ignite(&host).args(["start", "web"]).assert().success();
    assert_eq!(address_of(&host, "web"), web_ip);
    eventually("the forward after a restart", "web", || {
        fetch("http://10.61.0.1:8080/etc/hostname")
    });

    // rm leaves nothing: no tap, no rule, no lease.
    let leases = host.root().join("state/network/addresses.json");
    let web_uid = web.metadata.uid.clone().unwrap().to_string();
    assert!(std::fs::read_to_string(&leases).unwrap().contains(&web_uid));
    ns.ignite(&host)
        .args(["rm", "-f", "web"])
        .assert()
        .success();
    assert!(!ns.link_exists(&tap(&web)));
    assert!(!ns.ignite_rules().contains(&web_uid));
    assert!(!std::fs::read_to_string(&leases).unwrap().contains(&web_uid));

    // kill -9 of the supervisor leaves its tap until the next rm (or start) takes it.
    let peer = host.vm("peer");
    kill9(peer.status.supervisor.as_ref().unwrap().pid);
    let vmm = peer.status.vmm.as_ref().unwrap().process.pid;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(vmm) {
        assert!(Instant::now() < deadline, "the VMM outlived its supervisor");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ns.link_exists(&tap(&peer)));
    ns.ignite(&host).args(["rm", "peer"]).assert().success();
    assert!(!ns.link_exists(&tap(&peer)));
    let (_, ports) = ns.run("ip", &["link", "show", "master", "ignite0"]);
    assert!(ports.trim().is_empty(), "ports left on the bridge: {ports}");

    // Concurrent runs get distinct addresses.
    let names = ["c0", "c1", "c2"];
    std::thread::scope(|scope| {
        for name in names {
            let (ns, host) = (&ns, &host);
            scope.spawn(move || {
                ns.ignite(host)
                    .args(["run", "--name", name, "--network", "bridge", &host.image()])
                    .assert()
                    .success();
            });
        }
    });
    let mut addresses: Vec<String> = names.iter().map(|n| address_of(&host, n)).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), names.len(), "{addresses:?}");
    ns.ignite(&host)
        .args(["rm", "-f"])
        .args(names)
        .assert()
        .success();
    let (_, ports) = ns.run("ip", &["link", "show", "master", "ignite0"]);
    assert!(ports.trim().is_empty(), "ports left on the bridge: {ports}");

    // User networking forwards ports too, from the namespace's 127.0.0.1.
    ns.ignite(&host)
        .args(["run", "--name", "userweb", "--network", "user", "-p"])
        .args(["8081:8000", &host.image()])
        .arg(serve("userweb"))
        .assert()
        .success();
    eventually("a user-mode forward", "userweb", || {
        fetch("http://127.0.0.1:8081/etc/hostname")
    });
    ns.ignite(&host)
        .args(["rm", "-f", "userweb"])
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
    // The image's systemd-networkd asked DHCP and got the address ignite-init set.
    let log = std::fs::read_to_string(
        host.root()
            .join("state/vms")
            .join(vm.metadata.uid.as_ref().unwrap().as_str())
            .join("supervisor.log"),
    )
    .unwrap();
    assert!(log.contains(&format!("DHCPACK {ip} to ")), "{log}");
    let networkd = stdout(ns.ignite(&host).args([
        "exec",
        "deb",
        "networkctl",
        "status",
        "eth0",
        "--no-pager",
    ]));
    assert!(
        networkd.contains(&format!("{ip} (DHCP4 via 10.61.0.1)")),
        "{networkd}"
    );
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

#[test]
fn apply_creates_updates_stops_and_prunes() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), host.manifest("a", "  cpus: 1\n", "")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        host.manifest("b", "", "status:\n  running: false\n"),
    )
    .unwrap();
    let apply = |args: &[&str]| {
        let out = host
            .ignite()
            .arg("apply")
            .arg("-f")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // --dry-run says what it would do and does nothing.
    let (ok, out, _) = apply(&["--dry-run"]);
    assert!(ok);
    assert_eq!(out, "would create and start VM a\nwould create VM b\n");
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
    let (ok, out, err) = apply(&[]);
    assert!(ok, "{err}");
    assert_eq!(out, "created and started VM a\ncreated VM b\n");
    assert_eq!(host.status_of("a"), "Up");
    assert_eq!(host.status_of("b"), "Stopped");
    let (ok, out, _) = apply(&[]);
    assert!(ok);
    assert_eq!(out, "VM a is up to date\nVM b is up to date\n");
    // A change a restart applies.
    std::fs::write(
        dir.join("a.yaml"),
        host.manifest("a", "  cpus: 2\n  memory: 256MB\n", ""),
    )
    .unwrap();
    let (ok, out, err) = apply(&[]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "VM b is up to date\nupdated and restarted VM a (spec.cpus, spec.memory changed)\n"
    );
    let a = host.vm("a");
    assert_eq!(a.spec.cpus, Some(2));
    assert_eq!(a.spec.memory().bytes(), 256 << 20);
    assert_eq!(host.status_of("a"), "Up");
    // One a recreate applies: a new VM under the same name.
    std::fs::write(
        dir.join("a.yaml"),
        host.manifest("a", "  cpus: 2\n  memory: 256MB\n  diskSize: 5GB\n", ""),
    )
    .unwrap();
    let (ok, out, err) = apply(&[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("recreated VM a (spec.diskSize changed)"),
        "{out}"
    );
    assert_ne!(host.vm("a").metadata.uid, a.metadata.uid);
    // status.running: false stops it.
    std::fs::write(
        dir.join("a.yaml"),
        host.manifest(
            "a",
            "  cpus: 2\n  memory: 256MB\n  diskSize: 5GB\n",
            "status:\n  running: false\n",
        ),
    )
    .unwrap();
    let (_, out, _) = apply(&[]);
    assert!(out.contains("stopped VM a"), "{out}");
    assert_eq!(host.status_of("a"), "Stopped");
    // A broken manifest is reported; the others are still applied.
    std::fs::write(dir.join("broken.yaml"), "kind: VM\nspec: [").unwrap();
    // Prune removes what apply made and is gone, not VMs made otherwise.
    host.ignite()
        .args([
            "create",
            "--name",
            "handmade",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success();
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    let (_, out, _) = apply(&[]);
    assert!(!out.contains("removed"), "{out}");
    let (ok, out, err) = apply(&["--prune"]);
    assert!(!ok, "a broken manifest fails the run");
    assert!(err.contains("broken.yaml"), "{err}");
    assert!(out.contains("removed VM b"), "{out}");
    let names = stdout(
        host.ignite()
            .args(["ps", "-a", "-t", "{{.ObjectMeta.Name}}"]),
    );
    let mut names: Vec<&str> = names.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "handmade"]);
    host.ignite()
        .args(["rm", "-f", "a", "handmade"])
        .assert()
        .success();
}

/// `ignited daemon` over a manifest directory, until dropped.
struct Daemon(std::process::Child);

/// A Configuration whose host access policy lets ignited's manifests use the test's
/// local image layout (declarative manifests may name no host path otherwise).
fn host_access_config(host: &Host) -> PathBuf {
    let file = host.root().join("ignited-config.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  hostAccess:\n    paths:\n    - {}\n",
            host.root().display()
        ),
    )
    .unwrap();
    file
}

impl Daemon {
    fn start(host: &Host, dir: &Path) -> Daemon {
        let log = std::fs::File::create(host.root().join("ignited.log")).unwrap();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignited"))
            .args(["daemon", "--resync", "2", "--manifest-dir"])
            .arg(dir)
            .arg("--root")
            .arg(host.root().join("state"))
            .arg("--ignite")
            .arg(host.ignite_binary())
            .arg("--api-socket")
            .arg(host.root().join("api.sock"))
            .arg("--ignite-config")
            .arg(host_access_config(host))
            .env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `check` holds (the daemon acts within seconds).
fn wait_until(host: &Host, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check() {
        let log = std::fs::read_to_string(host.root().join("ignited.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; ignited said:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn ignited_daemon_follows_the_manifest_directory() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = Daemon::start(&host, &dir);
    let listed = |name: &str| host.ps_all().lines().any(|l| l.ends_with(name));
    // A manifest dropped in: the VM runs (no uid, no status needed), its status is written back.
    std::fs::write(dir.join("d1.yaml"), host.manifest("d1", "  cpus: 1\n", "")).unwrap();
    wait_until(&host, "d1 runs", || {
        listed("d1") && host.status_of("d1") == "Up"
    });
    wait_until(&host, "d1's status is written back", || {
        std::fs::read_to_string(dir.join("d1.yaml")).is_ok_and(|t| t.contains("running: true"))
    });
    // An edit (written elsewhere and renamed over, as editors and git do) is applied.
    let tmp = host.root().join("d1.yaml.new");
    std::fs::write(&tmp, host.manifest("d1", "  cpus: 2\n", "")).unwrap();
    std::fs::rename(&tmp, dir.join("d1.yaml")).unwrap();
    wait_until(&host, "d1 gets 2 CPUs", || {
        host.vm("d1").spec.cpus == Some(2) && host.status_of("d1") == "Up"
    });
    // A broken manifest is reported and does not stop the others.
    std::fs::write(dir.join("broken.yaml"), "kind: VM\nspec: [").unwrap();
    std::fs::write(dir.join("d2.json"), {
        let yaml = host.manifest("d2", "", "");
        let tree: serde_json::Value = ignite_api::manifest::decode(&yaml).unwrap();
        ignite_api::manifest::to_json(&tree)
    })
    .unwrap();
    wait_until(&host, "d2 runs", || {
        listed("d2") && host.status_of("d2") == "Up"
    });
    wait_until(&host, "the broken manifest is reported", || {
        std::fs::read_to_string(host.root().join("ignited.log"))
            .is_ok_and(|l| l.contains("broken.yaml"))
    });
    // A VM that cannot be made gets its error in its manifest.
    std::fs::write(
        dir.join("bad.yaml"),
        host.manifest("bad", "", "")
            .replace(&host.image(), "oci:/no/such/layout:x"),
    )
    .unwrap();
    wait_until(&host, "bad's error is written back", || {
        std::fs::read_to_string(dir.join("bad.yaml")).is_ok_and(|t| t.contains("error:"))
    });
    // A deleted manifest takes its VM along.
    std::fs::remove_file(dir.join("d1.yaml")).unwrap();
    wait_until(&host, "d1 is removed", || !listed("d1"));
    assert_eq!(host.status_of("d2"), "Up");
    std::fs::remove_file(dir.join("d2.json")).unwrap();
    wait_until(&host, "d2 is removed", || !listed("d2"));
}

/// One request to the daemon's API socket: (status, body).
fn api(host: &Host, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let socket = host.root().join("api.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no API at {}: {e}",
                    socket.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn ignited_api_serves_vms_images_kernels_and_metrics() {
    use std::os::unix::fs::PermissionsExt;
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = Daemon::start(&host, &dir);
    let (status, body) = api(&host, "GET", "/v1/kernels", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let mode = std::fs::metadata(host.root().join("api.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only root may use the API without --api-group"
    );
    // Create from a manifest: started unless it says otherwise.
    let manifest = host.manifest("api1", "", "");
    let (status, body) = api(&host, "POST", "/v1/vms", &manifest);
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["status"]["running"], true);
    let (status, body) = api(&host, "POST", "/v1/vms", &manifest);
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["status"], 409);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let (status, body) = api(&host, "POST", "/v1/vms", "kind: VM\nspec: [");
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("bad VM manifest")
    );
    let (status, body) = api(&host, "GET", "/v1/images", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let (status, body) = api(&host, "GET", "/v1/vms", "");
    assert_eq!(status, 200);
    let names: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["api1"]);
    let (status, body) = api(&host, "GET", "/v1/vms/api1", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["metadata"]["name"], "api1");
    let (status, body) = api(&host, "GET", "/v1/vms/nope", "");
    assert_eq!(status, 404);
    assert!(json(&body)["error"].as_str().unwrap().contains("nope"));
    // Once the guest's agent answers, its boot time is a metric.
    host.ignite()
        .args(["exec", "api1", "busybox", "true"])
        .assert()
        .success();
    let (status, metrics) = api(&host, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let mut samples = std::collections::HashMap::new();
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a sample: {line}"));
        samples.insert(name.to_string(), value);
    }
    assert_eq!(samples["ignite_vms{state=\"running\"}"], 1.0);
    assert!(samples["ignite_reconcile_passes_total"] >= 1.0);
    let uid = host.vm("api1").metadata.uid.unwrap().to_string();
    let labels = format!("{{vm=\"api1\",uid=\"{uid}\"}}");
    assert!(samples[&format!("ignite_vm_boot_seconds{labels}")] > 0.0);
    assert_eq!(
        samples[&format!("ignite_vm_memory_bytes{labels}")],
        512.0 * 1024.0 * 1024.0
    );
    assert!(samples[&format!("ignite_vm_supervisor_resident_bytes{labels}")] > 0.0);
    // Stop, start, a second start refused, remove (refused while it runs, unless forced).
    let (status, body) = api(&host, "POST", "/v1/vms/api1/stop", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"]["running"], false);
    let (status, body) = api(&host, "POST", "/v1/vms/api1/start", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"]["running"], true);
    let (status, _) = api(&host, "POST", "/v1/vms/api1/start", "");
    assert_eq!(status, 409);
    let (status, _) = api(&host, "DELETE", "/v1/vms/api1", "");
    assert_eq!(status, 409);
    let (status, body) = api(&host, "DELETE", "/v1/vms/api1?force=true", "");
    assert_eq!(status, 204, "{body}");
    assert_eq!(api(&host, "GET", "/v1/vms/api1", "").0, 404);
    // Wrong methods and paths.
    assert_eq!(api(&host, "PUT", "/v1/vms", "").0, 405);
    assert_eq!(api(&host, "GET", "/v2/anything", "").0, 404);
}

/// A bare repository (branch main) with one manifest committed through a working clone.
fn git_remote(host: &Host, tag: &str, manifest_text: &str, file: &str) -> (PathBuf, PathBuf) {
    let base = host.root().join(format!("git-{tag}"));
    std::fs::create_dir_all(&base).unwrap();
    let remote = base.join("remote.git");
    git(
        &base,
        &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
    );
    let work = base.join("work");
    git(
        &base,
        &["clone", "--quiet", remote.to_str().unwrap(), "work"],
    );
    git(&work, &["checkout", "--quiet", "-b", "main"]);
    std::fs::write(work.join(file), manifest_text).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "a VM"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    (remote, work)
}

/// `ignited gitops` until dropped.
fn start_gitops(host: &Host, tag: &str, url: &str, extra: &[&str]) -> Daemon {
    let log = std::fs::File::create(host.root().join("ignited.log")).unwrap();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignited"))
        .args([
            "gitops",
            url,
            "--branch",
            "main",
            "--interval",
            "1",
            "--root",
        ])
        .arg(host.root().join("state"))
        .arg("--ignite")
        .arg(host.ignite_binary())
        .arg("--api-socket")
        .arg(host.root().join(format!("api-{tag}.sock")))
        .arg("--checkout-dir")
        .arg(host.root().join(format!("checkout-{tag}")))
        .arg("--ignite-config")
        .arg(host_access_config(host))
        .args(extra)
        .env("IGNITE_INIT", guest_init())
        .env("IGNITE_ACCEL", "tcg")
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ignited_gitops_follows_git_remotes_and_pushes_status() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let listed = |name: &str| host.ps_all().lines().any(|l| l.ends_with(name));
    let ignited_commits = |remote: &Path| {
        git(remote, &["log", "--format=%an", "main"])
            .lines()
            .filter(|a| *a == "ignited")
            .count()
    };

    // file://: a commit makes a VM, its status lands in a new commit, a removal removes it.
    let (remote, work) = git_remote(&host, "file", &host.manifest("g1", "", ""), "g1.yaml");
    // The remote rejects the first push: the status gets there at a later try.
    let hook = remote.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ ! -e {m} ]; then touch {m}; echo 'rejected for the test' >&2; exit 1; fi\n",
            m = remote.join("rejected-once").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let url = format!("file://{}", remote.display());
    let gitops = start_gitops(&host, "file", &url, &[]);
    wait_until(&host, "g1 runs", || {
        listed("g1") && host.status_of("g1") == "Up"
    });
    wait_until(&host, "g1's status is pushed", || {
        ignited_commits(&remote) > 0
    });
    assert!(git(&remote, &["show", "main:g1.yaml"]).contains("running: true"));
    assert!(remote.join("rejected-once").exists());
    // The remote goes away for a while: the daemon carries on, and picks up later commits.
    let away = remote.with_extension("away");
    std::fs::rename(&remote, &away).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::rename(&away, &remote).unwrap();
    assert_eq!(host.status_of("g1"), "Up");
    git(&work, &["pull", "--quiet", "--rebase", "origin", "main"]);
    git(&work, &["rm", "--quiet", "g1.yaml"]);
    git(&work, &["commit", "--quiet", "-m", "no more g1"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    wait_until(&host, "g1 is removed", || !listed("g1"));
    let log = std::fs::read_to_string(host.root().join("ignited.log")).unwrap();
    assert!(log.contains("cannot fetch"), "{log}");
    assert!(log.contains("cannot push the status"), "{log}");
    drop(gitops);

    // git daemon (git://): read-only, so VMs follow but no status is pushed.
    let (remote, _work) = git_remote(&host, "daemon", &host.manifest("g2", "", ""), "g2.yaml");
    let port = free_port();
    let base = remote.parent().unwrap().to_path_buf();
    let mut git_daemon = std::process::Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(&base)
        .spawn()
        .unwrap();
    let gitops = start_gitops(
        &host,
        "daemon",
        &format!("git://127.0.0.1:{port}/remote.git"),
        &[],
    );
    wait_until(&host, "g2 runs", || {
        listed("g2") && host.status_of("g2") == "Up"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        ignited_commits(&remote),
        0,
        "a read-only remote gets no commits"
    );
    drop(gitops);
    let _ = git_daemon.kill();
    let _ = git_daemon.wait();
    host.ignite().args(["rm", "-f", "g2"]).assert().success();

    // SSH with a key and a checked host key: status is pushed.
    ignite_testkit::require_program("/usr/sbin/sshd", "openssh-server");
    let (remote, _work) = git_remote(&host, "ssh", &host.manifest("g3", "", ""), "g3.yaml");
    let sshd_dir = host.root().join("sshd");
    std::fs::create_dir_all(&sshd_dir).unwrap();
    let keygen = |path: &Path| {
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    };
    keygen(&sshd_dir.join("host_key"));
    keygen(&sshd_dir.join("client_key"));
    let port = free_port();
    std::fs::copy(
        sshd_dir.join("client_key.pub"),
        sshd_dir.join("authorized_keys"),
    )
    .unwrap();
    std::fs::write(
        sshd_dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
            dir = sshd_dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut sshd = std::process::Command::new("/usr/sbin/sshd")
        .args(["-D", "-f"])
        .arg(sshd_dir.join("sshd_config"))
        .arg("-E")
        .arg(sshd_dir.join("sshd.log"))
        .spawn()
        .unwrap();
    let host_key = std::fs::read_to_string(sshd_dir.join("host_key.pub")).unwrap();
    let known_hosts = sshd_dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{port} {}\n",
            host_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    let url = format!("ssh://root@127.0.0.1:{port}{}", remote.display());
    let key = sshd_dir.join("client_key");
    let gitops = start_gitops(
        &host,
        "ssh",
        &url,
        &[
            "--identity-file",
            key.to_str().unwrap(),
            "--known-hosts-file",
            known_hosts.to_str().unwrap(),
        ],
    );
    wait_until(&host, "g3 runs", || {
        listed("g3") && host.status_of("g3") == "Up"
    });
    wait_until(&host, "g3's status is pushed over SSH", || {
        ignited_commits(&remote) > 0
    });
    drop(gitops);
    let _ = sshd.kill();
    let _ = sshd.wait();
    host.ignite().args(["rm", "-f", "g3"]).assert().success();
}
