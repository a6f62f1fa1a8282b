//! Bridge networking on a host where Docker Engine runs and has set the `FORWARD` policy
//! to `DROP`, all inside network namespaces the test creates: "host" (IP forwarding off
//! until a dockerd of the test's own, managing iptables there, turns it on) and "other",
//! another host on a veth. A bridge-networked VM reaches a server in "other", "other"
//! reaches the VM's forwarded port through the host's veth address, nothing else of the
//! VM is reachable from "other"; all of it again after a dockerd restart and after Docker
//! made its DOCKER-USER chain anew while the VM ran; `ignite doctor` reports Docker and the
//! rules; removing the VM removes them.

use ignite_testkit::process::eventually;
use std::process::Child;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::docker::{DockerEngine, EngineOptions};
use ignite_testkit::netns::{Netns, address_of};

/// The host's address on the veth, and the other host's.
const HOST_SIDE: &str = "198.51.100.1";
const OTHER_SIDE: &str = "198.51.100.2";
const TAG: &str = "ignite-bridge:ignite0";

fn ok(what: (bool, String)) -> String {
    assert!(what.0, "{}", what.1);
    what.1
}

/// A server in a namespace, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bridge_vms_reach_and_are_reached_beside_docker_across_its_restarts() {
    ignite_testkit::require_root!("booting VMs beside a Docker Engine");
    ignite_testkit::require_program("nft", "nftables");
    ignite_testkit::require_program("iptables-nft", "iptables");
    let host = Host::new(cargo_bin!("ignite"));
    let ns = Netns::new("dkhost");
    let other = Netns::new("dkother");
    ok(ns.run("sysctl", &["-w", "net.ipv4.ip_forward=0"]));
    ok(ns.run(
        "ip",
        &[
            "link",
            "add",
            "dkv0",
            "type",
            "veth",
            "peer",
            "name",
            "dkv1",
            "netns",
            other.name(),
        ],
    ));
    ok(ns.run(
        "ip",
        &["address", "add", &format!("{HOST_SIDE}/24"), "dev", "dkv0"],
    ));
    ok(ns.run("ip", &["link", "set", "dkv0", "up"]));
    ok(other.run(
        "ip",
        &["address", "add", &format!("{OTHER_SIDE}/24"), "dev", "dkv1"],
    ));
    ok(other.run("ip", &["link", "set", "dkv1", "up"]));

    let mut docker = DockerEngine::start_with(EngineOptions {
        netns: Some(&ns),
        manage_network: true,
    });
    let iptables = |args: &[&str]| ok(ns.run("iptables-nft", args));
    assert!(
        iptables(&["-S", "FORWARD"]).contains("-P FORWARD DROP"),
        "dockerd did not set FORWARD to DROP:\n{}",
        iptables(&["-S"])
    );

    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("hi"), "other says hi\n").unwrap();
    let www_dir = www.path().display().to_string();
    let _server = Server(other.spawn(
        "/bin/busybox",
        &[
            "httpd",
            "-f",
            "-p",
            &format!("{OTHER_SIDE}:8000"),
            "-h",
            &www_dir,
        ],
    ));

    // The image's user is 1000: the VM's server listens on an unprivileged port.
    ns.ignite(&host)
        .args(["run", "--name", "web", "-p", "8080:8000", &host.image()])
        .arg("echo web up; exec busybox httpd -f -p 8000 -h /")
        .assert()
        .success();
    host.wait_for_log("web", "web up");
    let rules = || iptables(&["-S", "DOCKER-USER"]);
    assert_eq!(rules().matches(TAG).count(), 3, "{}", rules());

    let vm_fetch = |url: &str| {
        let out = ns
            .ignite(&host)
            .args(["exec", "web", "busybox", "timeout", "10"])
            .args(["busybox", "wget", "-q", "-O", "-", url])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let other_fetch = |url: &str| {
        other.run(
            "timeout",
            &["10", "/bin/busybox", "wget", "-q", "-O", "-", url],
        )
    };
    let both_ways = |when: &str| {
        let outward = format!("http://{OTHER_SIDE}:8000/hi");
        eventually(
            &format!("{when}: the VM fetches from another host"),
            "other says hi",
            || vm_fetch(&outward),
        );
        let inward = format!("http://{HOST_SIDE}:8080/etc/hostname");
        eventually(
            &format!("{when}: another host fetches from the VM's forwarded port"),
            "web",
            || other_fetch(&inward),
        );
    };
    both_ways("beside Docker");

    // Nothing else is let through: routed straight to the VM, its server is not reached.
    ok(other.run("ip", &["route", "add", "10.61.0.0/16", "via", HOST_SIDE]));
    let direct = format!("http://{}:8000/etc/hostname", address_of(&host, "web"));
    let (reached, out) = other_fetch(&direct);
    assert!(
        !reached,
        "the VM's unforwarded port answered another host: {out}"
    );

    // A Docker restart keeps the chain and the rules: nothing is cut off.
    docker.restart();
    assert!(iptables(&["-S", "FORWARD"]).contains("-P FORWARD DROP"));
    assert_eq!(rules().matches(TAG).count(), 3, "{}", rules());
    both_ways("after dockerd restarted");

    // Docker's chain made anew while the VM runs (removed while dockerd was stopped): the
    // FORWARD policy stays DROP, and the VM's supervisor puts the rules back.
    docker.stop();
    iptables(&["-D", "FORWARD", "-j", "DOCKER-USER"]);
    iptables(&["-F", "DOCKER-USER"]);
    iptables(&["-X", "DOCKER-USER"]);
    docker.restart();
    assert!(iptables(&["-S", "FORWARD"]).contains("-P FORWARD DROP"));
    let started = Instant::now();
    while rules().matches(TAG).count() != 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the rules did not come back:\n{}",
            rules()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the rules were back {:.1} s after dockerd answered",
        started.elapsed().as_secs_f64()
    );
    both_ways("after Docker made its chain anew");

    let doctor = || {
        let out = ns
            .ignite(&host)
            .args(["doctor", "--quick"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        out.lines()
            .find(|l| l.starts_with("docker\t"))
            .unwrap_or_else(|| panic!("no docker check:\n{out}"))
            .to_string()
    };
    let line = doctor();
    for said in [
        "\tok\t",
        "Docker Engine runs",
        "FORWARD policy DROP (iptables-nft)",
        "DOCKER-USER chain in iptables-nft: 3 rule(s) for ignite0",
        "1 VM on ignite0: its traffic is accepted there",
    ] {
        assert!(line.contains(said), "{said:?} not in: {line}");
    }

    // The last VM on the bridge takes its rules with it; Docker's own stay.
    ns.ignite(&host)
        .args(["rm", "-f", "web"])
        .assert()
        .success();
    let left = rules();
    assert!(!left.contains(TAG), "{left}");
    assert!(left.contains("-A DOCKER-USER -j RETURN"), "{left}");
    let line = doctor();
    assert!(
        line.contains("0 rule(s) for ignite0; no VM on ignite0"),
        "{line}"
    );
}
