//! What Ignite's `e2e/util` gives its tests: the `ignite` command (here inside the
//! scenario's own network namespace, over the scenario's own state root) and the default
//! VM image.

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::netns::Netns;

/// One scenario's world: a state root with Debian's kernel as the default and the busybox
/// image, and a network namespace that `ignite` runs in.
pub struct E2e {
    pub host: Host,
    pub netns: Netns,
}

impl E2e {
    /// Needs root (the caller starts with `require_root!`).
    pub fn new(tag: &str) -> E2e {
        let host = Host::new(cargo_bin!("ignite"));
        let netns = Netns::new(tag);
        E2e { host, netns }
    }

    /// `ignite`, in the namespace, over the scenario's state root.
    pub fn ignite(&self) -> Command {
        self.netns.ignite(&self.host)
    }

    /// Runs `ignite ARGS`, expects success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ignite().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ignite {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `ignite ARGS`; returns (success, stdout + stderr).
    pub fn try_run(&self, args: &[&str]) -> (bool, String) {
        let out = self.ignite().args(args).output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The stand-in for Ignite's `util.DefaultVMImage` (`weaveworks/ignite-ubuntu`): the
    /// harness's busybox image with every applet linked into /bin, so that the commands
    /// Ignite's scenarios run (`cat`, `tee`, `find`, `stat`, ...) exist by name.
    pub fn image(&self) -> String {
        let layout = self.host.root().join("e2e-image");
        if !layout.join("index.json").is_file() {
            write_default_vm_image(&layout);
        }
        format!("oci:{}:ubuntu", layout.display())
    }
}

fn write_default_vm_image(layout: &std::path::Path) {
    use ignite_testkit::images::{Compression, Image, LayerBuilder};
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    let applets = String::from_utf8(list.stdout).unwrap();
    let init = "#!/bin/sh\ntrap 'busybox poweroff -f' USR2 TERM\necho init: up\nwhile :; do busybox sleep 0.2; done\n";
    let mut layer = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .dir("sbin", 0o755)
        .file("sbin/init", init.as_bytes(), 0o755)
        .dir("tmp", 0o1777);
    for applet in applets.split_whitespace().filter(|a| *a != "busybox") {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    Image::new(vec![layer.finish(Compression::Gzip)], &["sh"]).write_oci_layout(layout, "ubuntu");
}

/// `ignited`, started by [`E2e::ignited`]: killed when dropped, then the VMs it was to
/// make are removed (`ignite rm -f`), also when the test fails.
pub struct Ignited<'a> {
    e2e: &'a E2e,
    child: std::process::Child,
    vms: Vec<String>,
    log: std::path::PathBuf,
}

impl Ignited<'_> {
    /// What ignited has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Ignited<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for vm in &self.vms {
            let _ = self.e2e.try_run(&["rm", "-f", vm]);
        }
    }
}

impl E2e {
    /// Starts `ignited ARGS` in the namespace over the scenario's state root, as `ignite`
    /// runs, with a Configuration that lets manifests use [`E2e::image`] and an API socket
    /// of the scenario's own; `vms` are removed when it is dropped.
    pub fn ignited(&self, args: &[&str], vms: &[&str]) -> Ignited<'_> {
        let root = self.host.root();
        let config = root.join("ignited-config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  hostAccess:\n    paths:\n    - {}\n",
                root.display()
            ),
        )
        .unwrap();
        let log = root.join("ignited.log");
        let bin = ignite_testkit::host::workspace_binary("ignited", "ignite-daemon");
        let child = self
            .netns
            .command(&bin)
            .arg("--ignite-config")
            .arg(&config)
            .args(args)
            .arg("--api-socket")
            .arg(root.join("ignited.sock"))
            .env("IGNITE_ROOT", root.join("state"))
            .env("IGNITE_INIT", ignite_testkit::guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Ignited {
            e2e: self,
            child,
            vms: vms.iter().map(|v| v.to_string()).collect(),
            log,
        }
    }

    /// Polls `ignite ARGS` (up to 180 s: VMs boot in seconds under TCG) until its trimmed
    /// output is `want`; returns the last output.
    pub fn wait_for_output(&self, args: &[&str], want: &str, ignited: &Ignited) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let (_, out) = self.try_run(args);
            let got = out.trim().to_string();
            if got == want || std::time::Instant::now() > deadline {
                return got;
            }
            assert!(
                ignited.log().is_empty() || !ignited.log().contains("Error: "),
                "ignited failed:\n{}",
                ignited.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}
