//! `ignite logs` and `ignite attach` through the binary, booting real VMs under QEMU (TCG):
//! `logs -f` to the VM's end, and attaching to the console then detaching with ^P^Q.

use std::io::Write;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::{Host, stdout};

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
