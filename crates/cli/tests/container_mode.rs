//! Container mode as `docker run` users expect it, through the `ignite` binary (QEMU, TCG):
//! a guest that never reaches its workload is a failure with the reason, not a clean exit.

mod common;

use common::{VmHost, stdout};

#[test]
fn a_kernel_panic_at_boot_fails_the_run_with_125_and_the_panic_line() {
    let host = VmHost::new();
    // No init the kernel can run: "Kernel panic - not syncing: No working init found".
    let args = "console=ttyS0 reboot=k panic=1 rdinit=/nonexistent init=/nonexistent";
    let out = host
        .ignite()
        .args(["run", "--rm", "--network", "none", "--kernel-args", args])
        .arg(host.image())
        .args(["--", "true"])
        .assert()
        .code(125);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("Kernel panic - not syncing"), "{stderr}");
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");

    // Without --rm, the VM's status records it.
    host.ignite()
        .args([
            "run",
            "--name",
            "panics",
            "--network",
            "none",
            "--kernel-args",
            args,
        ])
        .arg(host.image())
        .assert()
        .failure();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let reason = loop {
        let reason = stdout(host.ignite().args([
            "inspect",
            "vm",
            "panics",
            "-t",
            "{{.Status.Exit.Reason}}",
        ]));
        if reason.contains("panicked") {
            break reason;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no panic recorded: {reason}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(reason.contains("Kernel panic - not syncing"), "{reason}");
}

/// docker run's -e, --env-file, --entrypoint, -w and -u reach the workload, are recorded in
/// the VM's spec and hold again on `start`.
#[test]
fn env_entrypoint_workdir_and_user_flags_reach_the_workload() {
    let host = VmHost::new();
    let env_file = host.dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "# settings\nFROM_FILE=file value\n\nOVERRIDDEN=from file\n",
    )
    .unwrap();
    // Each check its own exit status, so a wrong one names itself.
    let script = r#"test "$FROM_FLAG" = "flag value" || exit 10
        test "$FROM_FILE" = "file value" || exit 11
        test "$OVERRIDDEN" = "from flag" || exit 12
        test "$FROM_HOST" = "host value" || exit 13
        test "$(busybox pwd)" = /tmp || exit 14
        test "$(busybox id -u):$(busybox id -g)" = 1000:1001 || exit 15
        exit 42"#;
    host.ignite()
        .env("FROM_HOST", "host value")
        .args(["run", "--name", "flags", "--network", "none"])
        .args(["-e", "FROM_FLAG=flag value", "--env-file"])
        .arg(&env_file)
        .args(["-e", "OVERRIDDEN=from flag", "-e", "FROM_HOST"])
        .args(["-w", "/tmp", "-u", "1000:1001"])
        .arg(host.image())
        .args(["--", script])
        .assert()
        .success();
    let wait_for_exit = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let status = stdout(host.ignite().args([
                "inspect",
                "vm",
                "flags",
                "-t",
                "{{.Status.Exit.Status}}",
            ]));
            let status = status.trim();
            if !status.is_empty() && status != "<no value>" && status != "<nil>" {
                return status.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no exit status");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    assert_eq!(wait_for_exit(), "42");
    let spec = stdout(host.ignite().args(["inspect", "vm", "flags", "-o", "yaml"]));
    for recorded in [
        "FROM_FLAG=flag value",
        "FROM_HOST=host value",
        "workingDir: /tmp",
        "user: 1000:1001",
    ] {
        assert!(spec.contains(recorded), "{recorded} not in\n{spec}");
    }
    host.ignite().args(["rm", "-f", "flags"]).assert().success();

    // --entrypoint replaces the image's `sh -c`: the command is now busybox's argv.
    host.ignite()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/busybox",
        ])
        .arg(host.image())
        .args(["--", "sh", "-c", "exit 9"])
        .assert()
        .code(9);
}

/// What `cmd` wrote on stdout and stderr, with its exit code.
fn outputs(cmd: &mut assert_cmd::Command) -> (Vec<u8>, Vec<u8>, Option<i32>) {
    let out = cmd.output().unwrap();
    (out.stdout, out.stderr, out.status.code())
}

/// The workload's stdout and stderr reach `run --rm` byte for byte and apart, through the
/// agent rather than the console: 10 MB of random bytes fed on stdin (-i) come back whole
/// on each.
#[test]
fn ten_megabytes_on_stdout_and_on_stderr_arrive_intact_and_apart() {
    let host = VmHost::new();
    let data: Vec<u8> = {
        // A fixed pseudo-random sequence: every byte value, no line structure.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..10 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    let input = host.dir.path().join("input");
    std::fs::write(&input, &data).unwrap();
    // Imported first: a first run's import notes go to stderr (as docker's pull does).
    host.ignite()
        .args(["image", "import"])
        .arg(host.image())
        .assert()
        .success();
    let (out, err, code) = outputs(
        host.ignite()
            .args(["run", "--rm", "-i", "-u", "0", "--network", "none", "--memory", "256MB"])
            .arg(host.image())
            .args(["--", "busybox mkdir -p /tmp && busybox tee /tmp/copy && busybox cat /tmp/copy >&2; exit 3"])
            .pipe_stdin(&input)
            .unwrap(),
    );
    assert_eq!(
        code,
        Some(3),
        "stderr tail: {:?}",
        String::from_utf8_lossy(&err[err.len().saturating_sub(2000)..])
    );
    assert_eq!(
        out.len(),
        data.len(),
        "stdout length; stderr: {:?}",
        String::from_utf8_lossy(&err[..err.len().min(2000)])
    );
    assert!(out == data, "stdout differs from the input");
    assert_eq!(
        err.len(),
        data.len(),
        "stderr length: {:?}",
        String::from_utf8_lossy(&err[..err.len().min(2000)])
    );
    assert!(err == data, "stderr differs from the input");
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
}
