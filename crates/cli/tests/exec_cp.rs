//! `ignite exec` and `ignite cp` through the binary, booting real VMs under QEMU (TCG)
//! with no network: commands through the guest agent (statuses, streams, a terminal,
//! sessions at once), and files and trees copied both ways (100 MB with checksums).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;

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
