//! Test support shared by the workspace's integration tests. Nothing here is a stand-in for
//! a component the product talks to: images are real OCI images, the registry is the
//! distribution's `docker-registry`, filesystems are read back with e2fsprogs' `debugfs`.
//!
//! Tests come in two tiers. Pure tests need nothing and run everywhere. Tests that need
//! root (unpacking images, booting VMs), a program or the kernel package start with
//! [`require_root!`], [`require_program!`] or [`require_kernel_deb!`]: as a normal user
//! outside CI a missing prerequisite skips the test, which says so in one line on stderr
//! (`SKIPPED (needs root): TEST: ...`); as root or under CI (`CI` set) it fails the test,
//! so that no run meant to be complete passes a test it did not run.

use std::io::Write as _;

pub mod docker;
pub mod ext4;
pub mod git;
pub mod host;
pub mod images;
pub mod netns;
pub mod process;
pub mod qemu;
pub mod registry;
pub mod watchdog;

pub use host::{Host, guest_init, ignite, stdout, workspace_binary, write_busybox_image};

/// Whether a missing prerequisite fails the test instead of skipping it: as root (the
/// machine is one the whole suite runs on: `sudo scripts/test.sh`) or under CI (`CI` set,
/// and not `false` or `0`).
pub fn strict() -> bool {
    strict_for(is_root(), std::env::var("CI").ok().as_deref())
}

fn strict_for(root: bool, ci: Option<&str>) -> bool {
    root || ci.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether the effective uid is 0 (the second field of `Uid:` in /proc/self/status).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("an effective uid in /proc/self/status")
        == "0"
}

fn has_program(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The test running on this thread, as the harness names it.
fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string()
}

/// A prerequisite is missing: under [`strict`] the test fails with `failure`; otherwise
/// one line on stderr says that the test is skipped, needing `need`, and how to get it.
/// Not `eprintln!`: the harness captures that and shows it only for failed tests.
fn missing(need: &str, failure: String, fix: &str) {
    if strict() {
        panic!("{failure}");
    }
    // One write, so that the line is not cut by the harness's own output.
    let line = format!("SKIPPED (needs {need}): {}: {fix}\n", current_test());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Whether the running test may go on: true as root. Otherwise the test fails under CI
/// and is reported skipped elsewhere (false). Tests call it through [`require_root!`].
#[must_use]
pub fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    missing(
        "root",
        format!("{what} needs root: run the tests as root (sudo scripts/test.sh)"),
        &format!("{what}; run the tests as root to run it (sudo scripts/test.sh)"),
    );
    false
}

/// Whether `program` is there: if not, the test fails as root or under CI and is reported
/// skipped elsewhere (false). Tests call it through [`require_program!`].
#[must_use]
pub fn program_or_skip(program: &str, package: &str) -> bool {
    if has_program(program) {
        return true;
    }
    missing(
        program,
        format!("{program} is missing: install {package} (scripts/setup.sh does)"),
        &format!("install {package} to run it (scripts/setup.sh does)"),
    );
    false
}

/// Whether Debian's kernel package is there (see [`kernel_deb`]): if not, the test fails as
/// root or under CI and is reported skipped elsewhere (false). Tests call it through
/// [`require_kernel_deb!`].
#[must_use]
pub fn kernel_deb_or_skip() -> bool {
    if find_kernel_deb().is_some() {
        return true;
    }
    missing(
        "a kernel package",
        no_kernel_deb(),
        &format!(
            "run scripts/setup.sh (it downloads Debian's cloud kernel into {KERNEL_CACHE}) or set IGNITE_TEST_KERNEL_DEB to run it"
        ),
    );
    false
}

/// Starts a test that needs root: returns from it, skipped, when not root outside CI; fails
/// it when not root under CI (see the crate's documentation).
#[macro_export]
macro_rules! require_root {
    ($what:expr) => {
        if !$crate::root_or_skip($what) {
            return;
        }
    };
}

/// Starts a test that needs a program: returns from it, skipped, when the program is
/// missing as a normal user outside CI; fails it as root or under CI.
#[macro_export]
macro_rules! require_program {
    ($program:expr, $package:expr) => {
        if !$crate::program_or_skip($program, $package) {
            return;
        }
    };
}

/// Starts a test that needs Debian's kernel package: returns from it, skipped, when there
/// is none as a normal user outside CI; fails it as root or under CI.
#[macro_export]
macro_rules! require_kernel_deb {
    () => {
        if !$crate::kernel_deb_or_skip() {
            return;
        }
    };
}

/// Fails the test loudly when it is not run as root (CI is root). For helpers; a test
/// starts with [`require_root!`], which skips it as a normal user outside CI.
pub fn require_root(what: &str) {
    if !is_root() {
        panic!("{what} needs root: run the tests as root (sudo scripts/test.sh)");
    }
}

/// Fails the test loudly when a program it needs is missing. For helpers; a test starts
/// with [`require_program!`], which skips it as a normal user outside CI.
pub fn require_program(program: &str, package: &str) {
    if !has_program(program) {
        panic!("{program} is missing: install {package} (scripts/setup.sh does)");
    }
}

/// Where scripts/setup.sh keeps Debian's cloud kernel package.
pub const KERNEL_CACHE: &str = "/var/cache/ignite/kernel";

fn find_kernel_deb() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("IGNITE_TEST_KERNEL_DEB") {
        return Some(p.into());
    }
    std::fs::read_dir(KERNEL_CACHE).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
    })
}

fn no_kernel_deb() -> String {
    format!(
        "no kernel package: run scripts/setup.sh (it downloads Debian's cloud kernel into {KERNEL_CACHE}) or set IGNITE_TEST_KERNEL_DEB"
    )
}

/// Debian's cloud kernel package: `$IGNITE_TEST_KERNEL_DEB`, or the one setup.sh downloaded.
/// Fails the test loudly when there is none.
pub fn kernel_deb() -> std::path::PathBuf {
    find_kernel_deb().unwrap_or_else(|| panic!("{}", no_kernel_deb()))
}

/// Where scripts/base-image.sh keeps the Debian base image (systemd, openssh-server).
pub const BASE_IMAGE_LAYOUT: &str = "/var/cache/ignite/images/debian-bookworm";

/// The Debian base image as an OCI layout (tag `bookworm`): `$IGNITE_TEST_BASE_IMAGE`, or
/// the one scripts/base-image.sh built. Fails the test loudly when there is none.
pub fn base_image_layout() -> std::path::PathBuf {
    let path: std::path::PathBuf = std::env::var_os("IGNITE_TEST_BASE_IMAGE")
        .map(Into::into)
        .unwrap_or_else(|| BASE_IMAGE_LAYOUT.into());
    if !path.join("index.json").is_file() {
        panic!(
            "no base image at {}: run scripts/base-image.sh (setup.sh and test.sh do) or set IGNITE_TEST_BASE_IMAGE",
            path.display()
        );
    }
    path
}

#[cfg(test)]
mod tests {
    use super::strict_for;

    #[test]
    fn missing_prerequisites_fail_as_root_or_under_ci_and_skip_otherwise() {
        assert!(strict_for(true, None));
        assert!(strict_for(true, Some("false")));
        assert!(strict_for(false, Some("true")));
        assert!(strict_for(false, Some("1")));
        assert!(!strict_for(false, None));
        assert!(!strict_for(false, Some("")));
        assert!(!strict_for(false, Some("false")));
        assert!(!strict_for(false, Some("0")));
    }
}
