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

/// A dynamically linked ignite-init (what `cargo build --workspace` leaves beside the
/// `ignite` binary) is refused by name with how to build the static one, and never shadows
/// the installed static init in the search order.
#[test]
fn a_dynamically_linked_guest_init_is_refused_and_passed_over() {
    ignite_testkit::require_root("unpacking a kernel package");
    let dynamic = assert_cmd::cargo::cargo_bin("ignite-init");
    assert!(
        dynamic.is_file(),
        "no {}: cargo build --workspace --bins builds it",
        dynamic.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    ignite(&root)
        .env("IGNITE_INIT", &dynamic)
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .assert()
        .failure()
        .stderr(predicate::str::contains("is dynamically linked"))
        .stderr(predicate::str::contains(dynamic.display().to_string()))
        .stderr(predicate::str::contains("crt-static"));
    ignite(&root)
        .args(["kernel", "ls", "-q"])
        .assert()
        .success()
        .stdout("");

    // An installation whose bin/ also holds a dynamic ignite-init: the static one in
    // lib/ignite wins. Hard links, so that the binary finds itself in bin/.
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("lib/ignite")).unwrap();
    let binary = prefix.join("bin/ignite");
    std::fs::copy(assert_cmd::cargo::cargo_bin("ignite"), &binary).unwrap();
    std::fs::copy(&dynamic, prefix.join("bin/ignite-init")).unwrap();
    let static_init = common::guest_init();
    std::fs::copy(&static_init, prefix.join("lib/ignite/ignite-init")).unwrap();
    let out = std::process::Command::new(&binary)
        .env("IGNITE_ROOT", &root)
        .env_remove("IGNITE_INIT")
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let carries = |uid: &str, init: &std::path::Path| {
        let initramfs =
            std::fs::read(root.join("kernels").join(uid).join("initramfs.cpio")).unwrap();
        let wanted = std::fs::read(init).unwrap();
        initramfs.windows(4096).any(|w| w == &wanted[4096..8192])
    };
    assert!(
        carries(&uid, &static_init),
        "the kernel's initramfs does not carry the static init"
    );
    ignite(&root).args(["rmk", &uid]).assert().success();

    // Only the dynamic one beside the binary: passed over with a warning, never used.
    std::fs::remove_dir_all(prefix.join("lib")).unwrap();
    let out = std::process::Command::new(&binary)
        .env("IGNITE_ROOT", &root)
        .env_remove("IGNITE_INIT")
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("passing over") && stderr.contains("dynamically linked"),
        "{stderr}"
    );
    if out.status.success() {
        let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!carries(&uid, &dynamic), "the dynamic init was used");
    }
}
