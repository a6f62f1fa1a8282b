//! Ignite's e2e/vm_exec_test.go: `exec` feeds its stdin to the command.

use std::io::Write;
use std::process::Stdio;

use crate::util::E2e;

#[test]
fn test_vm_exec_interactive() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("exec");
    let vm = "e2e-test-ignite-exec-interactive";
    e2e.ok(&["run", &format!("--name={vm}"), &e2e.image(), "--ssh"]);
    let (remote_file, input) = ("afile.txt", "foooo...");
    let mut tee = e2e
        .std_ignite()
        .args(["exec", vm, "tee", remote_file])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tee.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = tee.wait_with_output().unwrap();
    assert!(out.status.success(), "exec tee: {}", out.status);
    let cat = e2e.ok(&["exec", vm, "cat", remote_file]);
    assert_eq!(cat, input);
    e2e.ok(&["rm", "-f", vm]);
}
