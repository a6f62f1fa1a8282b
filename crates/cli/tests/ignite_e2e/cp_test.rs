//! Ignite's e2e/cp_test.go: `ignite cp` of files (with content, empty, through a symlink)
//! and directories, host to VM and VM to host.

use std::path::Path;

use crate::util::E2e;

/// A file in /tmp, as Ignite's `ioutil.TempFile("", prefix)`: its directory exists in the
/// VM too, so `cp FILE VM:FILE` has somewhere to go.
fn temp_file(prefix: &str, content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in("/tmp")
        .unwrap();
    std::io::Write::write_all(&mut file, content.as_bytes()).unwrap();
    file
}

/// A path removed (file or directory) when the test ends.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_copy_files_to_vm(e2e: &E2e, vm: &str, source: &Path, want: &str) {
    e2e.ok(&["run", &format!("--name={vm}"), "--ssh", &e2e.image()]);
    let destination = format!("{vm}:{}", source.display());
    e2e.ok(&["cp", source.to_str().unwrap(), &destination]);
    let got = e2e.ok(&["exec", vm, "cat", source.to_str().unwrap()]);
    assert_eq!(got, want);
    e2e.ok(&["rm", "-f", vm]);
}

#[test]
fn test_copy_file_from_host_to_vm() {
    ignite_testkit::require_root!("booting VMs");
    for (name, content) in [
        ("file-with-content", "some example file content"),
        ("empty-file", ""),
    ] {
        let e2e = E2e::new("cpfile");
        let file = temp_file("ignite-cp-test", content);
        run_copy_files_to_vm(
            &e2e,
            &format!("e2e-test-copy-to-vm-{name}"),
            file.path(),
            content,
        );
    }
}

#[test]
fn test_copy_symlinked_file_from_host_to_vm() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("cplink");
    let content = "Some file content.";
    let file = temp_file("ignite-symlink-cp-test", content);
    let link = Removed(file.path().with_extension("link"));
    std::os::unix::fs::symlink(file.path(), &link.0).unwrap();
    run_copy_files_to_vm(&e2e, "e2e-test-copy-symlink-to-vm", &link.0, content);
}

#[test]
fn test_copy_file_from_vm_to_host() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("cpfromvm");
    let vm = "e2e-test-copy-file-from-vm-to-host";
    e2e.ok(&["run", &format!("--name={vm}"), "--ssh", &e2e.image()]);
    let vm_file = "/proc/version";
    let want = e2e.ok(&["exec", vm, "cat", vm_file]);
    // In the test's directory rather than Ignite's /tmp/ignite-os-version.
    let host_file = e2e.host.root().join("ignite-os-version");
    e2e.ok(&[
        "cp",
        &format!("{vm}:{vm_file}"),
        host_file.to_str().unwrap(),
    ]);
    let got = std::fs::read_to_string(&host_file).unwrap();
    assert_eq!(got.trim(), want.trim());
    assert!(want.contains("Linux version"), "{want}");
    e2e.ok(&["rm", "-f", vm]);
}

#[test]
fn test_copy_directory_from_host_to_vm() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("cpdir");
    let dir = tempfile::Builder::new()
        .prefix("ignite-cp-dir-test")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = dir.path();
    let content = "some file content";
    let file = dir.join("ignite-cp-file");
    std::fs::write(&file, content).unwrap();
    let vm = "e2e-test-copy-dir-to-vm";
    e2e.ok(&["run", &format!("--name={vm}"), "--ssh", &e2e.image()]);
    let dir_text = dir.to_str().unwrap();
    e2e.ok(&["cp", dir_text, &format!("{vm}:{dir_text}")]);
    // One argument holding a shell command line, as Ignite's test passes it.
    let find = format!(
        "find {} -type d -name {}",
        dir.parent().unwrap().display(),
        dir.file_name().unwrap().to_str().unwrap()
    );
    let found = e2e.ok(&["exec", vm, &find]);
    assert_eq!(found.trim(), dir_text);
    let got = e2e.ok(&["exec", vm, "cat", file.to_str().unwrap()]);
    assert_eq!(got.trim(), content);
    e2e.ok(&["rm", "-f", vm]);
}

#[test]
fn test_copy_directory_from_vm_to_host() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("cpdirfromvm");
    let vm = "e2e-test-copy-dir-from-vm-to-host";
    e2e.ok(&["run", &format!("--name={vm}"), "--ssh", &e2e.image()]);
    let dir = Removed(std::path::PathBuf::from(format!(
        "/tmp/ignite-cp-dir-test{}",
        std::process::id()
    )));
    let dir = &dir.0;
    let dir_text = dir.to_str().unwrap();
    e2e.ok(&["exec", vm, &format!("mkdir -p {dir_text}")]);
    let content = "some content on VM";
    let file = dir.join("ignite-cp-file");
    e2e.ok(&["exec", vm, &format!("echo {content} > {}", file.display())]);
    e2e.ok(&["cp", &format!("{vm}:{dir_text}"), dir_text]);
    assert!(dir.is_dir());
    let got = std::fs::read_to_string(&file).unwrap();
    assert_eq!(got.trim(), content);
    e2e.ok(&["rm", "-f", vm]);
}
