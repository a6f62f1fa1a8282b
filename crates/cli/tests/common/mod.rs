//! Running the `ignite` binary against a state directory, for the CLI's tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

/// `ignite` with its state in `root`, plain logs and no colour.
pub fn ignite(root: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ignite").unwrap();
    cmd.env("IGNITE_ROOT", root)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs the command, expects success and returns its stdout.
#[allow(dead_code)] // not every test binary uses it
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

/// The static guest init that scripts/test.sh builds before the tests.
#[allow(dead_code)]
pub fn guest_init() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/x86_64-unknown-linux-gnu/release/ignite-init");
    assert!(
        p.is_file(),
        "no static ignite-init at {}: run scripts/test.sh (it builds it)",
        p.display()
    );
    p
}

/// A busybox image as an OCI layout (tag `busybox`): ENTRYPOINT `sh -c`, USER 1000, and
/// an init (VM mode) that powers off on SIGUSR2 or SIGTERM and otherwise idles.
#[allow(dead_code)]
pub fn write_busybox_image(layout: &Path) {
    use ignite_testkit::images::{Compression, Image, LayerBuilder};
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let init = "#!/bin/sh\ntrap 'echo init: powering off; busybox poweroff -f' USR2 TERM\necho init: up\nwhile :; do busybox sleep 0.2; done\n";
    let layer = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .dir("sbin", 0o755)
        .file("sbin/init", init.as_bytes(), 0o755)
        .finish(Compression::Gzip);
    Image::new(vec![layer], &["echo from CMD"]).write_oci_layout(layout, "busybox");
}

/// A state root with Debian's kernel and the busybox image, for tests that boot VMs;
/// the VMs it made are removed when it is dropped, also when a test fails.
#[allow(dead_code)]
pub struct VmHost {
    pub dir: tempfile::TempDir,
    _watchdog: ignite_testkit::watchdog::Watchdog,
}

#[allow(dead_code)]
impl VmHost {
    pub fn new() -> VmHost {
        ignite_testkit::require_root("importing kernels and images");
        ignite_testkit::require_program("qemu-system-x86_64", "qemu-system-x86");
        let dir = tempfile::tempdir().unwrap();
        let host = VmHost {
            _watchdog: ignite_testkit::watchdog::arm(dir.path()),
            dir,
        };
        host.ignite()
            .args(["kernel", "import"])
            .arg(ignite_testkit::kernel_deb())
            .assert()
            .success();
        write_busybox_image(&host.dir.path().join("layout"));
        host
    }

    pub fn image(&self) -> String {
        format!("oci:{}:busybox", self.dir.path().join("layout").display())
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn ignite(&self) -> assert_cmd::Command {
        let mut cmd = ignite(&self.state());
        cmd.env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .timeout(Duration::from_secs(300));
        cmd
    }

    pub fn std_ignite(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("ignite"));
        cmd.env("IGNITE_ROOT", self.state())
            .env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", "tcg");
        cmd
    }

    /// A busybox VM in VM mode with no network, running.
    pub fn run(&self, name: &str) {
        let image = format!("oci:{}:busybox", self.dir.path().join("layout").display());
        self.ignite()
            .args(["run", "--network", "none", "--name", name, &image])
            .assert()
            .success();
    }

    pub fn sh(&self, vm: &str, script: &str) -> String {
        stdout(
            self.ignite()
                .args(["exec", vm, "--", "busybox", "sh", "-c", script]),
        )
    }

    pub fn supervisor_pid(&self, vm: &str) -> u32 {
        stdout(
            self.ignite()
                .args(["inspect", "vm", vm, "-t", "{{.Status.Supervisor.Pid}}"]),
        )
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for VmHost {
    fn drop(&mut self) {
        let state = self.state();
        if let Ok(out) = ignite(&state).args(["ps", "-a", "-q"]).output() {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = ignite(&state).args(["rm", "-f"]).args(&ids).output();
            }
        }
    }
}
