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

    /// [`E2e::ignite`] as a std command, for several at once or a piped stdin.
    pub fn std_ignite(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", self.netns.name()])
            .arg(self.host.ignite_binary())
            .env("IGNITE_ROOT", self.host.state())
            .env("IGNITE_INIT", ignite_testkit::guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .env("NO_COLOR", "1");
        cmd
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

/// Where Ignite's scenarios check a VM's network with `exec VM curl google.com`, these
/// fetch a page from a web server in the scenario's namespace through the VM's default
/// gateway: the same way out of the VM (its NIC, the bridge, the host side), with no
/// traffic leaving the namespace.
pub struct WebServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

pub const PAGE: &str = "hello from the e2e web server";
const WEB_PORT: &str = "18080";

impl E2e {
    pub fn web_server(&self) -> WebServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), PAGE).unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let child = self.netns.spawn(
            "busybox",
            &[
                "httpd",
                "-f",
                "-p",
                &format!("0.0.0.0:{WEB_PORT}"),
                "-h",
                &root,
            ],
        );
        WebServer { child, _dir: dir }
    }

    /// Ignite's `ignite exec VM curl google.com`: the page, fetched from the VM (through
    /// the exec rule for a one-argument shell command line).
    pub fn curl(&self, vm: &str) {
        let line = format!(
            "wget -q -T 10 -O - http://$(ip route | awk '/^default/ {{print $3}}'):{WEB_PORT}/"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (ok, out) = self.try_run(&["exec", vm, &line]);
            if ok && out.contains(PAGE) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "VM {vm} never fetched the page:\n{out}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ignite's `defer ignite rm -f VM`, for every VM left, also when a scenario fails: run in
/// the namespace, where the VMs' taps and forwards are (the state root's own clean-up
/// would run outside it).
impl Drop for E2e {
    fn drop(&mut self) {
        if let Ok(out) = self.ignite().args(["ps", "-a", "-q"]).output() {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.ignite().arg("rm").arg("-f").args(&ids).output();
            }
        }
    }
}
