//! Running the `ignite` binary against a state root, and [`Host`]: a state root of a test's
//! own, under a watchdog, with Debian's kernel and a busybox image for tests that boot VMs.
//!
//! The binaries come from the caller: a package's tests get their own binaries from cargo
//! (`assert_cmd::cargo::cargo_bin!("ignite")`), other packages' from [`workspace_binary`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use ignite_api::Vm;

use crate::watchdog::Watchdog;

/// A binary of another workspace package, beside the test executable
/// (`target/<profile>/<name>`): `cargo test --workspace` builds every workspace binary, but
/// cargo names to a package's tests only that package's own (`CARGO_BIN_EXE_<name>`).
/// Fails the test loudly, saying how to build it, when it is not there.
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "no {name} at {}: run `cargo build -p {package}` first (`cargo test --workspace` and scripts/test.sh build it)",
        path.display()
    );
    path
}

/// Where tests point `DOCKER_HOST` unless they start an engine of their own: nowhere, so
/// that no test reads the host's Docker Engine (bare names go on to the registry).
pub const NO_DOCKER_HOST: &str = "unix:///nonexistent/ignite-tests/docker.sock";
/// The same for containerd (`CONTAINERD_ADDRESS`).
pub const NO_CONTAINERD: &str = "/nonexistent/ignite-tests/containerd.sock";

/// `ignite` (the binary `bin`) with its state in `root`, plain logs and no colour, and no
/// local engine (see [`NO_DOCKER_HOST`], [`NO_CONTAINERD`]).
pub fn ignite(bin: &Path, root: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("IGNITE_ROOT", root)
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", NO_DOCKER_HOST)
        .env("CONTAINERD_ADDRESS", NO_CONTAINERD)
        .env("IGNITE_WARM_STARTS", "off")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs the command, expects success and returns its stdout.
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

/// The static guest init: `$IGNITE_INIT`, or the one scripts/test.sh builds before the
/// tests (`target/x86_64-unknown-linux-gnu/release/ignite-init` in the workspace).
pub fn guest_init() -> PathBuf {
    if let Some(p) = std::env::var_os("IGNITE_INIT") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/x86_64-unknown-linux-gnu/release/ignite-init");
    assert!(
        p.is_file(),
        "no static ignite-init at {}: run scripts/test.sh (it builds it), or set IGNITE_INIT",
        p.display()
    );
    p
}

/// A busybox image as an OCI layout (tag `busybox`): ENTRYPOINT `sh -c`, USER 1000, and
/// an init (VM mode) that powers off on SIGUSR2 or SIGTERM and otherwise idles.
pub fn write_busybox_image(layout: &Path) {
    use crate::images::{Compression, Image, LayerBuilder};
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

/// A test's own directory: the state root in `state/`, the busybox image in `layout/`
/// when asked for, room for the test's files beside them. A watchdog is armed for it, and
/// the VMs it holds are removed when it is dropped, also when a test fails.
pub struct Host {
    dir: tempfile::TempDir,
    ignite: PathBuf,
    accel: &'static str,
    path_first: Option<PathBuf>,
    _watchdog: Watchdog,
}

/// How a [`Host`] is made: [`Host::builder`].
pub struct HostBuilder {
    ignite: PathBuf,
    accel: &'static str,
    path_first: Option<PathBuf>,
    kernel_and_image: bool,
}

impl HostBuilder {
    /// The accelerator `ignite` is told to use (`IGNITE_ACCEL`); `tcg` unless set.
    pub fn accel(mut self, accel: &'static str) -> Self {
        self.accel = accel;
        self
    }

    /// A directory put first in `ignite`'s `PATH` (a VMM that is not installed).
    pub fn path_first(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_first = Some(dir.into());
        self
    }

    /// Imports Debian's kernel as the default and writes the busybox image to `layout/`.
    pub fn kernel_and_image(mut self) -> Self {
        self.kernel_and_image = true;
        self
    }

    pub fn build(self) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            _watchdog: crate::watchdog::arm(dir.path()),
            dir,
            ignite: self.ignite,
            accel: self.accel,
            path_first: self.path_first,
        };
        if self.kernel_and_image {
            let deb = crate::kernel_deb();
            host.ignite()
                .args(["kernel", "import"])
                .arg(&deb)
                .assert()
                .success();
            write_busybox_image(&host.layout());
        }
        host
    }
}

impl Host {
    /// For tests that boot VMs under QEMU (TCG): Debian's kernel as the default and the
    /// busybox image. Fails the test loudly without root or QEMU (a test starts
    /// with [`crate::require_root!`], which skips it as a normal user outside CI).
    pub fn new(ignite: impl Into<PathBuf>) -> Host {
        crate::require_root("importing kernels and images");
        crate::require_program("qemu-system-x86_64", "qemu-system-x86");
        Host::builder(ignite).kernel_and_image().build()
    }

    /// An empty state root: no kernel, no image.
    pub fn empty(ignite: impl Into<PathBuf>) -> Host {
        Host::builder(ignite).build()
    }

    /// A host made to measure, for `ignite` at `ignite`.
    pub fn builder(ignite: impl Into<PathBuf>) -> HostBuilder {
        HostBuilder {
            ignite: ignite.into(),
            accel: "tcg",
            path_first: None,
            kernel_and_image: false,
        }
    }

    /// The test's directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The state root, `state/` in the test's directory.
    pub fn state(&self) -> PathBuf {
        self.root().join("state")
    }

    /// The busybox image's OCI layout.
    pub fn layout(&self) -> PathBuf {
        self.root().join("layout")
    }

    /// The busybox image, as `ignite` names it.
    pub fn image(&self) -> String {
        format!("oci:{}:busybox", self.layout().display())
    }

    /// A VM manifest for the busybox image: VM mode, no network; `extra_spec` lines go at
    /// the end of `spec`, `status` (a whole `status:` block, or nothing) after it.
    pub fn manifest(&self, name: &str, extra_spec: &str, status: &str) -> String {
        format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\nspec:\n  image:\n    oci: \"{}\"\n  network:\n    mode: none\n{extra_spec}{status}",
            self.image()
        )
    }

    /// The `ignite` binary.
    pub fn ignite_binary(&self) -> &Path {
        &self.ignite
    }

    /// `ignite` over this state root, with the static guest init, the host's accelerator
    /// and five minutes to finish.
    pub fn ignite(&self) -> Command {
        let mut cmd = ignite(&self.ignite, &self.state());
        if let Some(dir) = &self.path_first {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![dir.clone()];
            paths.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(paths).unwrap());
        }
        // Warm starts build templates in the background, which would race what tests
        // count and time; the tests of warm starts turn them on.
        cmd.env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", self.accel)
            .env("IGNITE_WARM_STARTS", "off")
            .timeout(Duration::from_secs(300));
        cmd
    }

    /// Plain `ignite` (nothing but [`ignite`]'s settings) over another state root.
    pub fn ignite_in(&self, root: &Path) -> Command {
        ignite(&self.ignite, root)
    }

    /// [`Host::ignite`] as a std command, for running several at once.
    pub fn std_ignite(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.ignite);
        cmd.env("IGNITE_ROOT", self.state())
            .env("DOCKER_HOST", NO_DOCKER_HOST)
            .env("CONTAINERD_ADDRESS", NO_CONTAINERD)
            .env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", self.accel)
            .env("IGNITE_WARM_STARTS", "off");
        cmd
    }

    /// A busybox VM in VM mode with no network, running.
    pub fn run(&self, name: &str) {
        self.ignite()
            .args(["run", "--network", "none", "--name", name, &self.image()])
            .assert()
            .success();
    }

    /// `ignite run` of a small container-mode VM (128 MB, no network) named `name`,
    /// running `workload` (one shell string; the image's entrypoint is `sh -c`), with
    /// `extra` flags; not yet run, so a test may add to its environment.
    pub fn run_small(&self, name: &str, extra: &[&str], workload: &str) -> Command {
        let mut cmd = self.ignite();
        cmd.args([
            "run",
            "--network",
            "none",
            "--memory",
            "128MB",
            "--name",
            name,
        ])
        .args(extra)
        .arg(self.image())
        .arg(workload);
        cmd
    }

    /// Runs a busybox shell script in a VM; returns its stdout.
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

    /// The VM as `ignite inspect` shows it.
    pub fn vm(&self, name: &str) -> Vm {
        let json = stdout(self.ignite().args(["inspect", "vm", name]));
        serde_json::from_str(&json).unwrap()
    }

    /// `ignite ps -a`.
    pub fn ps_all(&self) -> String {
        stdout(self.ignite().args(["ps", "-a"]))
    }

    /// `Up`, `Paused` or `Stopped`, as `ps -a` lists the VM; fails the test when it is not
    /// listed.
    pub fn status_of(&self, name: &str) -> String {
        let ps = self.ps_all();
        let line = ps
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{ps}"));
        if line.contains("(Paused)") {
            "Paused".into()
        } else if line.contains("\tUp") {
            "Up".into()
        } else {
            "Stopped".into()
        }
    }

    /// The names of the state root's warm-start templates (built, not being built), once
    /// at least `want` of them exist; waits up to 4 minutes, then fails with the builders'
    /// logs.
    pub fn templates(&self, want: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        loop {
            let out = self
                .ignite()
                .args(["snapshots", "-o", "json"])
                .output()
                .unwrap();
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let names: Vec<String> = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["metadata"]["labels"]["ignite.weave.works/template"].is_string())
                .filter(|s| s["status"]["taken"].is_string())
                .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
                .collect();
            if names.len() >= want {
                return names;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no warm-start template was built: {list}\n{}",
                self.template_logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the template builders logged (`<root>/locks/template-<key>.log`).
    fn template_logs(&self) -> String {
        let mut text = String::new();
        let Ok(dir) = std::fs::read_dir(self.state().join("locks")) else {
            return text;
        };
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }

    /// Waits up to two minutes for the VM's logs to hold `needle`; returns them.
    pub fn wait_for_log(&self, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let logs = stdout(self.ignite().args(["logs", name]));
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never logged {needle:?}:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A failed test leaves no VM running behind it.
impl Drop for Host {
    fn drop(&mut self) {
        let state = self.state();
        if let Ok(out) = self.ignite_in(&state).args(["ps", "-a", "-q"]).output() {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self
                    .ignite_in(&state)
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}
