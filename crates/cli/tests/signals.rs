//! Signals to an attached `ignite run --rm` and its auto-removal, as `docker run --rm`
//! has them, through the `ignite` binary (QEMU, TCG): in container mode SIGINT and SIGTERM
//! reach the workload and the client exits with its status; in VM mode they stop the VM;
//! the VM's supervisor removes it when it ends, also when the client was killed outright.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::{Host, stdout};

/// An attached `run --rm --name NAME` of the busybox image with `args` after the image,
/// its stdout read line by line.
fn spawn_run(
    host: &Host,
    name: &str,
    args: &[&str],
) -> (Child, std::io::BufReader<std::process::ChildStdout>) {
    let mut child = host
        .std_ignite()
        .args([
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "none",
            "--memory",
            "192MB",
        ])
        .arg(host.image())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// Reads the workload's stdout until a line holds `needle` (two minutes at most).
fn wait_for_line(out: &mut impl BufRead, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut line = String::new();
    while !line.contains(needle) {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the workload ended before it said {needle:?}"
        );
        assert!(
            Instant::now() < deadline,
            "no {needle:?} within two minutes"
        );
    }
}

/// Waits (up to `limit`) for the client to exit; returns its exit code and stderr.
fn wait_for_client(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the client did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
    (status.code(), err)
}

/// Sends `signal` (`INT`, `TERM`, `KILL`) to the client.
fn signal(child: &Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
}

fn no_vm_left(host: &Host) {
    assert_eq!(
        stdout(host.ignite().args(["ps", "-a", "-q"])),
        "",
        "{}",
        host.ps_all()
    );
}

fn import_image(host: &Host) {
    host.ignite()
        .args(["image", "import"])
        .arg(host.image())
        .assert()
        .success();
}

/// SIGINT to the client reaches the workload (a `sleep` it dies of): the client exits
/// 130 as a shell would, and no VM is left.
#[test]
fn sigint_reaches_the_workload_and_the_vm_is_removed() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    import_image(&host);
    let (child, mut out) = spawn_run(
        &host,
        "interrupted",
        &["--", "echo ready; exec busybox sleep 1000"],
    );
    wait_for_line(&mut out, "ready");
    signal(&child, "INT");
    // Well within the 10 s the supervisor would give a client that holds on to the
    // attachment before it removes the VM regardless.
    let (code, err) = wait_for_client(child, Duration::from_secs(9));
    assert_eq!(code, Some(130), "{err}");
    no_vm_left(&host);
}

/// SIGTERM to the client reaches the workload, which reports it in its own way: the
/// client exits with the workload's status (here the trap's 42), and no VM is left. A
/// workload that dies of it gives 143.
#[test]
fn sigterm_reaches_the_workload_and_the_vm_is_removed() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    import_image(&host);
    let (child, mut out) = spawn_run(
        &host,
        "trapped",
        &[
            "--",
            "trap 'echo got-sigterm; exit 42' TERM; echo ready; while :; do busybox sleep 0.2; done",
        ],
    );
    wait_for_line(&mut out, "ready");
    signal(&child, "TERM");
    wait_for_line(&mut out, "got-sigterm");
    let (code, err) = wait_for_client(child, Duration::from_secs(60));
    assert_eq!(code, Some(42), "{err}");
    no_vm_left(&host);

    let (child, mut out) = spawn_run(
        &host,
        "terminated",
        &["--", "echo ready; exec busybox sleep 1000"],
    );
    wait_for_line(&mut out, "ready");
    signal(&child, "TERM");
    let (code, err) = wait_for_client(child, Duration::from_secs(60));
    assert_eq!(code, Some(143), "{err}");
    no_vm_left(&host);

    // Sent while the VM boots, before there is a workload: held for it, not the end of
    // the client alone.
    let (child, _out) = spawn_run(&host, "early", &["--", "busybox sleep 1000"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.ps_all().contains("\tUp") {
        assert!(Instant::now() < deadline, "the VM never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "TERM");
    let (code, err) = wait_for_client(child, Duration::from_secs(120));
    assert_eq!(code, Some(143), "{err}");
    no_vm_left(&host);
}

/// A client killed outright (SIGKILL, a CI job's timeout) leaves the VM running until its
/// workload ends; its supervisor then removes it, with no client. `inspect` shows that the
/// VM removes itself.
#[test]
fn a_killed_client_leaves_no_vm_once_the_workload_ends() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    import_image(&host);
    let (child, mut out) = spawn_run(
        &host,
        "orphan",
        &["--", "echo ready; busybox sleep 6; exit 3"],
    );
    wait_for_line(&mut out, "ready");
    signal(&child, "KILL");
    let (code, _) = wait_for_client(child, Duration::from_secs(10));
    assert_eq!(code, None, "killed by a signal");
    assert_eq!(
        host.status_of("orphan"),
        "Up",
        "the VM runs on without its client"
    );
    assert_eq!(
        stdout(
            host.ignite()
                .args(["inspect", "vm", "orphan", "-t", "{{.Status.AutoRemove}}"])
        )
        .trim(),
        "true"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stdout(host.ignite().args(["ps", "-a", "-q"])).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the VM was not removed:\n{}",
            host.ps_all()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A concurrent `ignite rm -f` of a `run --rm` VM succeeds: the client ends and no VM is
/// left.
#[test]
fn rm_of_a_run_rm_vm_while_it_runs_succeeds() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    import_image(&host);
    let (child, mut out) = spawn_run(
        &host,
        "removed",
        &["--", "echo ready; exec busybox sleep 1000"],
    );
    wait_for_line(&mut out, "ready");
    host.ignite()
        .args(["rm", "-f", "removed"])
        .assert()
        .success();
    let (code, err) = wait_for_client(child, Duration::from_secs(60));
    assert_ne!(code, Some(0), "{err}");
    no_vm_left(&host);
}

/// VM mode (the image's own init, which waits): SIGTERM to the attached client stops the
/// VM gracefully, as `ignite stop` does (well within the grace period after which a stop
/// kills), and the client exits 143; no VM is left.
#[test]
fn sigterm_to_an_attached_vm_mode_run_stops_the_vm() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    import_image(&host);
    let (child, _out) = spawn_run(&host, "vm-mode", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.ps_all().contains("vm-mode") {
        assert!(Instant::now() < deadline, "the VM was never created");
        std::thread::sleep(Duration::from_millis(100));
    }
    host.wait_for_log("vm-mode", "init: up");
    signal(&child, "TERM");
    let (code, err) = wait_for_client(child, Duration::from_secs(15));
    assert_eq!(code, Some(143), "{err}");
    no_vm_left(&host);
}
