//! Test support shared by the workspace's integration tests. Nothing here is a stand-in for
//! a component the product talks to: images are real OCI images, the registry is the
//! distribution's `docker-registry`, filesystems are read back with e2fsprogs' `debugfs`.

pub mod ext4;
pub mod images;
pub mod qemu;
pub mod registry;
pub mod watchdog;

/// Fails the test loudly when it is not run as root (CI is root).
pub fn require_root(what: &str) {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("id runs");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        panic!("{what} needs root: run the tests as root (sudo scripts/test.sh)");
    }
}

/// Fails the test loudly when a program it needs is missing.
pub fn require_program(program: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        panic!("{program} is missing: install {package} (scripts/setup.sh does)");
    }
}

/// Where scripts/setup.sh keeps Debian's cloud kernel package.
pub const KERNEL_CACHE: &str = "/var/cache/ignite/kernel";

/// Debian's cloud kernel package: `$IGNITE_TEST_KERNEL_DEB`, or the one setup.sh downloaded.
/// Fails the test loudly when there is none.
pub fn kernel_deb() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("IGNITE_TEST_KERNEL_DEB") {
        return p.into();
    }
    std::fs::read_dir(KERNEL_CACHE)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "deb")))
        .unwrap_or_else(|| {
            panic!("no kernel package: run scripts/setup.sh (it downloads Debian's cloud kernel into {KERNEL_CACHE}) or set IGNITE_TEST_KERNEL_DEB")
        })
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
