//! Container mode as `docker run` users expect it, through the `ignite` binary (QEMU, TCG):
//! a guest that never reaches its workload is a failure with the reason, not a clean exit.

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::{Host, stdout};

#[test]
fn a_kernel_panic_at_boot_fails_the_run_with_125_and_the_panic_line() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
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
            "{{.Status.Exit.Reason}} {{.Status.Exit.Detail}}",
        ]));
        if reason.starts_with("kernel-panic ") {
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
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let env_file = host.root().join("app.env");
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
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
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
    let input = host.root().join("input");
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

/// `-t` gives the workload a terminal for all three streams, of the size of ours; with `-i`
/// a ^C typed on our terminal reaches it as SIGINT, as with `docker run -it`. The terminal
/// is a pseudo-terminal `script` makes for us.
#[test]
fn a_terminal_with_t_takes_our_size_and_our_ctrl_c() {
    use std::io::{BufRead, Write};
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args(["image", "import"])
        .arg(host.image())
        .assert()
        .success();
    let ignite = assert_cmd::cargo::cargo_bin("ignite");
    let run = |workload: &str| {
        format!(
            "stty rows 33 cols 101; {} run --rm -i -t --network none --memory 256MB {} -- '{workload}'",
            ignite.display(),
            host.image()
        )
    };
    let script = |workload: &str| {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-q", "-e", "-c", &run(workload), "/dev/null"])
            .env("IGNITE_ROOT", host.state())
            .env("IGNITE_INIT", ignite_testkit::guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .env("IGNITE_WARM_STARTS", "off")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        cmd
    };

    // The terminal and its size.
    let out = script(
        "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-a-tty; busybox stty size; busybox tty",
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all-a-tty"), "{text}");
    assert!(
        text.contains("33 101"),
        "the window size did not arrive: {text}"
    );
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(
        !text.contains("Linux version"),
        "kernel messages on the terminal: {text}"
    );

    // ^C, once the workload is up.
    {
        let mut running = script(
            "trap \"echo got-sigint; exit 130\" INT; echo ready; while :; do busybox sleep 1; done",
        )
        .spawn()
        .unwrap();
        let mut reader = std::io::BufReader::new(running.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !line.contains("ready") {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "the workload never said ready"
            );
            assert!(std::time::Instant::now() < deadline);
        }
        running.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        let status = running.wait().unwrap();
        assert!(rest.contains("got-sigint"), "{rest}");
        assert_eq!(status.code(), Some(130), "{rest}");
    }
}

/// Exit statuses stay exact under load: four, then eight `run --rm` at once of a workload
/// that exits 7 all exit 7 (and leave no VM behind).
#[test]
fn concurrent_runs_each_exit_with_their_workload_s_status() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    host.ignite()
        .args(["image", "import"])
        .arg(host.image())
        .assert()
        .success();
    for count in [4, 8] {
        let runs: Vec<_> = (0..count)
            .map(|i| {
                host.std_ignite()
                    .args(["run", "--rm", "--network", "none", "--memory", "192MB"])
                    .arg(host.image())
                    .args(["--", &format!("echo run {i}; exit 7")])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, run) in runs.into_iter().enumerate() {
            let out = run.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(7),
                "run {i} of {count}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("run {i}\n"));
        }
        assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
    }
}

/// `ignite logs` of a container-mode VM: the boot messages, then the workload's stdout on
/// stdout and stderr on stderr; --tail, --since and -t as in docker logs. `start -a` runs
/// the workload again, attached, and the log keeps both runs.
#[test]
fn logs_show_the_workload_after_the_boot_and_start_attach_repeats_it() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let (out, err, code) = outputs(
        host.ignite()
            .args([
                "run",
                "-a",
                "--name",
                "talks",
                "--network",
                "none",
                "--memory",
                "256MB",
            ])
            .arg(host.image())
            .args(["--", "echo to-stdout; echo to-stderr >&2; exit 5"]),
    );
    assert_eq!(code, Some(5));
    assert_eq!(String::from_utf8_lossy(&out), "to-stdout\n");
    assert!(
        String::from_utf8_lossy(&err).ends_with("to-stderr\n"),
        "{}",
        String::from_utf8_lossy(&err)
    );

    let logs = host.ignite().args(["logs", "talks"]).output().unwrap();
    let (log_out, log_err) = (
        String::from_utf8_lossy(&logs.stdout).into_owned(),
        String::from_utf8_lossy(&logs.stderr).into_owned(),
    );
    let boot = log_out
        .find("Linux version")
        .expect("boot messages in the log");
    let work = log_out
        .find("to-stdout")
        .expect("the workload's stdout in the log");
    assert!(boot < work, "{log_out}");
    assert!(!log_out.contains("to-stderr"), "stderr apart: {log_out}");
    assert_eq!(log_err, "to-stderr\n");

    let tail = stdout(host.ignite().args(["logs", "--tail", "2", "-t", "talks"]));
    let lines: Vec<&str> = tail.lines().collect();
    assert!(lines.len() <= 2, "{tail}");
    for line in &lines {
        let stamp = line.split(' ').next().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "not a timestamp: {line}"
        );
    }
    assert_eq!(
        stdout(
            host.ignite()
                .args(["logs", "--since", "2099-01-01", "talks"])
        ),
        ""
    );
    host.ignite()
        .args(["logs", "--since", "yesterday", "talks"])
        .assert()
        .failure();

    let (out, _, code) = outputs(host.ignite().args(["start", "-a", "talks"]));
    assert_eq!(code, Some(5));
    assert_eq!(String::from_utf8_lossy(&out), "to-stdout\n");
    let log_out = stdout(host.ignite().args(["logs", "talks"]));
    assert_eq!(log_out.matches("to-stdout").count(), 2, "{log_out}");
}
