//! `ignite kernel import|ls|rm`, `ignite kernels` and `ignite rmk` through the binary.

mod common;

use common::ignite;

use ignite_testkit::kernel_deb;
use predicates::prelude::*;

#[test]
fn import_list_and_remove_a_kernel() {
    ignite_testkit::require_root("unpacking a kernel package");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let out = ignite(&root)
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .assert()
        .success();
    let uid = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_string();
    assert_eq!(uid.len(), 16);
    let table = String::from_utf8(
        ignite(&root)
            .arg("kernels")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(table.starts_with("KERNEL ID\t"), "{table}");
    assert!(
        table.contains("cloud-amd64 (default)") && table.contains(&uid),
        "{table}"
    );
    ignite(&root)
        .args(["inspect", "kernel", &uid, "-t", "{{.Status.Version}}"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cloud-amd64"));
    ignite(&root).args(["rmk", &uid]).assert().success();
    ignite(&root)
        .args(["kernel", "ls", "-q"])
        .assert()
        .success()
        .stdout("");
    ignite(&root)
        .args(["kernel", "import", "/nonexistent/vmlinuz"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/nonexistent/vmlinuz"));
}
