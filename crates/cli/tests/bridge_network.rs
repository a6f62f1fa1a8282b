//! Bridge and user networking through the `ignite` binary, booting real VMs under QEMU
//! (TCG) in a network namespace the test creates: VMs reaching each other and the bridge,
//! port forwards, a taken port refused, addresses kept over stop/start, and nothing left
//! behind after `rm` or after `kill -9` of the supervisor.

use ignite_testkit::process::eventually;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_api::Vm;
use ignite_testkit::Host;
use ignite_testkit::netns::{Netns, address_of};
use ignite_testkit::process::{alive, kill9};

#[test]
fn bridge_networking_connects_vms_forwards_ports_and_cleans_up() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    ignite_testkit::require_program("nft", "nftables");
    let ns = Netns::new("bridge");
    // The image's user is 1000: the server listens on an unprivileged port.
    let serve = |name: &str| format!("echo {name} up; exec busybox httpd -f -p 8000 -h /");
    // Bridge is the default as root.
    ns.ignite(&host)
        .args(["run", "--name", "web", "-p", "8080:8000", &host.image()])
        .arg(serve("web"))
        .assert()
        .success();
    ns.ignite(&host)
        .args(["run", "--name", "peer", &host.image()])
        .assert()
        .success();
    host.wait_for_log("web", "web up");
    let web = host.vm("web");
    assert_eq!(web.spec.network.mode, Some(ignite_api::NetworkMode::Bridge));
    let web_ip = address_of(&host, "web");
    let peer_ip = address_of(&host, "peer");
    assert!(web_ip.starts_with("10.61.") && peer_ip.starts_with("10.61."));
    assert_ne!(web_ip, peer_ip);
    let ps = host.ps_all();
    let line = ps.lines().find(|l| l.ends_with("web")).unwrap();
    assert!(
        line.contains(&web_ip) && line.contains("0.0.0.0:8080->8000"),
        "{line}"
    );
    let exec = |vm: &str, args: &[&str]| {
        let out = ns
            .ignite(&host)
            .args(["exec", vm])
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    // The VMs reach each other and the bridge.
    eventually("peer pings web", "1 packets received", || {
        exec("peer", &["busybox", "ping", "-c", "1", "-W", "5", &web_ip])
    });
    eventually("peer pings the bridge", "1 packets received", || {
        exec(
            "peer",
            &["busybox", "ping", "-c", "1", "-W", "5", "10.61.0.1"],
        )
    });
    let get = |url: String| move || exec("peer", &["busybox", "wget", "-q", "-O", "-", &url]);
    eventually(
        "peer fetches from web",
        "web",
        get(format!("http://{web_ip}:8000/etc/hostname")),
    );
    // The forward, from the namespace (the bridge's address and loopback) and from a VM.
    let fetch = |url: &str| ns.run("/bin/busybox", &["wget", "-q", "-O", "-", url]);
    eventually("the forward on the bridge address", "web", || {
        fetch("http://10.61.0.1:8080/etc/hostname")
    });
    eventually("the forward on 127.0.0.1", "web", || {
        fetch("http://127.0.0.1:8080/etc/hostname")
    });
    eventually(
        "the forward from another VM",
        "web",
        get("http://10.61.0.1:8080/etc/hostname".into()),
    );
    // A host port in use is refused before anything is made.
    ns.ignite(&host)
        .args(["run", "--name", "clash", "-p", "8080:80", &host.image()])
        .assert()
        .failure()
        .stderr(predicates::str::contains("host port 8080/tcp"))
        .stderr(predicates::str::contains("already in use"));
    assert!(!host.ps_all().contains("clash"));

    // Stop and start: the same address, the forward back.
    ns.ignite(&host).args(["stop", "web"]).assert().success();
    let tap = |vm: &Vm| format!("ign{}", &vm.metadata.uid.as_ref().unwrap().as_str()[..12]);
    assert!(!ns.link_exists(&tap(&web)), "a stopped VM keeps no tap");
    assert!(!ns.ignite_rules().contains("8080"));
    ns.ignite(&host).args(["start", "web"]).assert().success();
    assert_eq!(address_of(&host, "web"), web_ip);
    eventually("the forward after a restart", "web", || {
        fetch("http://10.61.0.1:8080/etc/hostname")
    });

    // rm leaves nothing: no tap, no rule, no lease.
    let leases = host.root().join("state/network/addresses.json");
    let web_uid = web.metadata.uid.clone().unwrap().to_string();
    assert!(std::fs::read_to_string(&leases).unwrap().contains(&web_uid));
    ns.ignite(&host)
        .args(["rm", "-f", "web"])
        .assert()
        .success();
    assert!(!ns.link_exists(&tap(&web)));
    assert!(!ns.ignite_rules().contains(&web_uid));
    assert!(!std::fs::read_to_string(&leases).unwrap().contains(&web_uid));

    // kill -9 of the supervisor leaves its tap until the next rm (or start) takes it.
    let peer = host.vm("peer");
    kill9(peer.status.supervisor.as_ref().unwrap().pid);
    let vmm = peer.status.vmm.as_ref().unwrap().process.pid;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(vmm) {
        assert!(Instant::now() < deadline, "the VMM outlived its supervisor");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ns.link_exists(&tap(&peer)));
    ns.ignite(&host).args(["rm", "peer"]).assert().success();
    assert!(!ns.link_exists(&tap(&peer)));
    let (_, ports) = ns.run("ip", &["link", "show", "master", "ignite0"]);
    assert!(ports.trim().is_empty(), "ports left on the bridge: {ports}");

    // Concurrent runs get distinct addresses.
    let names = ["c0", "c1", "c2"];
    std::thread::scope(|scope| {
        for name in names {
            let (ns, host) = (&ns, &host);
            scope.spawn(move || {
                ns.ignite(host)
                    .args(["run", "--name", name, "--network", "bridge", &host.image()])
                    .assert()
                    .success();
            });
        }
    });
    let mut addresses: Vec<String> = names.iter().map(|n| address_of(&host, n)).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), names.len(), "{addresses:?}");
    ns.ignite(&host)
        .args(["rm", "-f"])
        .args(names)
        .assert()
        .success();
    let (_, ports) = ns.run("ip", &["link", "show", "master", "ignite0"]);
    assert!(ports.trim().is_empty(), "ports left on the bridge: {ports}");

    // User networking forwards ports too, from the namespace's 127.0.0.1.
    ns.ignite(&host)
        .args(["run", "--name", "userweb", "--network", "user", "-p"])
        .args(["8081:8000", &host.image()])
        .arg(serve("userweb"))
        .assert()
        .success();
    eventually("a user-mode forward", "userweb", || {
        fetch("http://127.0.0.1:8081/etc/hostname")
    });
    ns.ignite(&host)
        .args(["rm", "-f", "userweb"])
        .assert()
        .success();
}
