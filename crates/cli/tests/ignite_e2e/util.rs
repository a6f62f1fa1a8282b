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
    /// A Configuration whose CNI configuration directory is the scenario's own: Ignite's
    /// default network with its leases under the state root (`--network-plugin=cni`).
    config: std::path::PathBuf,
}

impl E2e {
    /// Needs root (the caller starts with `require_root!`).
    pub fn new(tag: &str) -> E2e {
        let host = Host::new(cargo_bin!("ignite"));
        // One process runs many scenarios: each namespace needs a name of its own.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let netns = Netns::new(&format!("{tag}{n}"));
        let cni = host.root().join("cni");
        std::fs::create_dir_all(cni.join("net.d")).unwrap();
        std::fs::write(
            cni.join("net.d/10-ignite.conflist"),
            format!(
                r#"{{"cniVersion":"1.0.0","name":"ignite-cni","plugins":[
                    {{"type":"bridge","bridge":"ignite-cni0","isGateway":true,"ipMasq":true,"hairpinMode":true,"capabilities":{{"ips":true}},
                      "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.62.0.0/16"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
                    {{"type":"portmap","capabilities":{{"portMappings":true}}}},
                    {{"type":"firewall"}}]}}"#,
                cni.join("leases").display()
            ),
        )
        .unwrap();
        let config = host.root().join("cni-config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  cni:\n    confDir: {}\n",
                cni.join("net.d").display()
            ),
        )
        .unwrap();
        E2e {
            host,
            netns,
            config,
        }
    }

    /// `args` with the scenario's Configuration first, unless they name one.
    fn with_config<'a>(&'a self, args: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
        let mut all: Vec<&std::ffi::OsStr> = Vec::new();
        if !args.iter().any(|a| a.starts_with("--ignite-config")) {
            all.extend(["--ignite-config".as_ref(), self.config.as_os_str()]);
        }
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        all
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
            .env("IGNITE_WARM_STARTS", "off")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs `ignite ARGS`, expects success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ignite().args(self.with_config(args)).output().unwrap();
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
        let out = self.ignite().args(self.with_config(args)).output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The stand-in for Ignite's `util.DefaultVMImage` (`weaveworks/ignite-ubuntu`: an init,
    /// an sshd and the usual commands): a static busybox with every applet linked into
    /// /bin, the host's OpenSSH sshd with the libraries it links, and an init that starts
    /// sshd. It boots in seconds under TCG where a systemd image takes half a minute, and
    /// `run --ssh` waits for its sshd as Ignite's did.
    pub fn image(&self) -> String {
        format!("oci:{}:ubuntu", default_vm_image().display())
    }
}

/// Made once per test run, in cargo's scratch directory for this test binary.
fn default_vm_image() -> &'static std::path::Path {
    static IMAGE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let layout = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-default-vm-image");
        let _ = std::fs::remove_dir_all(&layout);
        write_default_vm_image(&layout);
        layout
    })
}

const INIT: &str = "#!/bin/sh
trap 'busybox poweroff -f' USR2 TERM
mkdir -p /run/sshd /root && chmod 0755 /run/sshd && chmod 0700 /root
/usr/sbin/sshd -e
echo init: up
while :; do busybox sleep 0.2; done
";

const SSHD_CONFIG: &str = "HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
";

/// The shared libraries a dynamically linked program loads, as `ldd` lists them.
fn libraries_of(program: &str) -> Vec<std::path::PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .unwrap();
    assert!(out.status.success(), "ldd {program}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/')
                .then(|| std::path::PathBuf::from(path))
        })
        .collect()
}

fn write_default_vm_image(layout: &std::path::Path) {
    use ignite_testkit::images::{Compression, Image, LayerBuilder};
    ignite_testkit::require_program("sshd", "openssh-server");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    let applets = String::from_utf8(list.stdout).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let host_key = keys.path().join("ssh_host_ed25519_key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .status()
        .unwrap();
    assert!(keygen.success(), "ssh-keygen");
    let mut layer = LayerBuilder::new();
    let mut dirs = std::collections::BTreeSet::new();
    let mut add_dirs = |layer: LayerBuilder, path: &str| -> LayerBuilder {
        let mut layer = layer;
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if dirs.insert(prefix.clone()) {
                layer = layer.dir(&prefix, 0o755);
            }
        }
        layer
    };
    for dir in [
        "bin",
        "sbin",
        "tmp",
        "root",
        "etc/ssh",
        "run",
        "var/empty",
        "usr/sbin",
    ] {
        layer = add_dirs(layer, dir);
    }
    layer = layer
        .file("bin/busybox", &busybox, 0o755)
        .file("sbin/init", INIT.as_bytes(), 0o755)
        .file(
            "usr/sbin/sshd",
            &std::fs::read("/usr/sbin/sshd").unwrap(),
            0o755,
        )
        .file("etc/ssh/sshd_config", SSHD_CONFIG.as_bytes(), 0o644)
        .file(
            "etc/ssh/ssh_host_ed25519_key",
            &std::fs::read(&host_key).unwrap(),
            0o600,
        )
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n",
            0o644,
        )
        .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
        .file(
            "etc/shadow",
            b"root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n",
            0o640,
        );
    for lib in libraries_of("/usr/sbin/sshd") {
        let inside = lib.to_str().unwrap().trim_start_matches('/').to_string();
        let parent = std::path::Path::new(&inside)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        layer = add_dirs(layer, &parent);
        // Read through the host's symlinks: the image gets the library itself.
        layer = layer.file(&inside, &std::fs::read(&lib).unwrap(), 0o755);
    }
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
        let line =
            format!("wget -q -O - http://$(ip route | awk '/^default/ {{print $3}}'):{WEB_PORT}/");
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
                "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  hostAccess:\n    paths:\n    - {}\n    - {}\n",
                root.display(),
                default_vm_image().display()
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
            .env("IGNITE_WARM_STARTS", "off")
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
    /// stdout is `want`; returns the last one.
    pub fn wait_for_output(&self, args: &[&str], want: &str, ignited: &Ignited) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            // `ps` fails the test if it fails, as Ignite's check of its error does.
            let got = self.ok(args).trim().to_string();
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
