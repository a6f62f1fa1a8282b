//! Network namespaces of a test's own, for tests of bridge and user networking.

use std::time::Duration;

use crate::host::Host;

/// A network namespace of the test's own with loopback up: VMs with user networking
/// started in it reach nothing beyond it, and their forwarded ports are its 127.0.0.1.
#[derive(Debug)]
pub struct Netns(String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        crate::require_program("ip", "iproute2");
        let name = format!("ignite-{tag}-{}", std::process::id());
        let ok = |args: &[&str]| {
            assert!(
                std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .unwrap()
                    .success(),
                "ip {args:?}"
            );
        };
        ok(&["netns", "add", &name]);
        ok(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// The host's `ignite` inside the namespace, with ten minutes to finish.
    pub fn ignite(&self, host: &Host) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new("ip");
        cmd.args(["netns", "exec", &self.0])
            .arg(host.ignite_binary())
            .env("IGNITE_ROOT", host.root().join("state"))
            .env("DOCKER_HOST", crate::host::NO_DOCKER_HOST)
            .env("CONTAINERD_ADDRESS", crate::host::NO_CONTAINERD)
            .env("IGNITE_INIT", crate::guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .env("IGNITE_WARM_STARTS", "off")
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(600));
        cmd
    }

    /// `program` inside the namespace, to be spawned (for daemons that outlive one call).
    pub fn command(&self, program: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }

    /// Runs a program inside the namespace: (success, stdout and stderr).
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Starts a program inside the namespace, left running (the caller kills it).
    pub fn spawn(&self, program: &str, args: &[&str]) -> std::process::Child {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The namespace's name (`ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.0
    }

    pub fn link_exists(&self, name: &str) -> bool {
        self.run("ip", &["link", "show", "dev", name]).0
    }

    /// The `ip ignite` nftables table as `nft list` prints it.
    pub fn ignite_rules(&self) -> String {
        self.run("nft", &["list", "table", "ip", "ignite"]).1
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// The VM's one address, from its network status.
pub fn address_of(host: &Host, name: &str) -> String {
    let vm = host.vm(name);
    let network = vm
        .status
        .network
        .unwrap_or_else(|| panic!("{name} has no network status"));
    assert_eq!(network.ip_addresses.len(), 1, "{network:?}");
    network.ip_addresses[0].to_string()
}
