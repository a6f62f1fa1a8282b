//! `--network cni` through the `ignite` binary with Debian's real CNI plugins
//! (/usr/lib/cni), booting real VMs under QEMU (TCG) in a network namespace the test
//! creates (standing in for the host): the default configuration written into an empty
//! directory, a bridge + host-local + portmap + firewall conflist, a second (ptp) network,
//! VMs pinging each other and the host, a forwarded port, the address kept over
//! stop/start, and no namespace, interface or lease left after `rm` or `kill -9` + `rm`.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::netns::{Netns, address_of};
use ignite_testkit::process::{alive, eventually, kill9};

/// Host-local's lease files (one per address) for `network` under `data`.
fn leases(data: &Path, network: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join(network))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes a directory the test made outside its temporary directory.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn netns_exists(uid: &str) -> bool {
    Path::new("/run/netns")
        .join(format!("ignite-{uid}"))
        .exists()
}

#[test]
fn cni_networks_connect_vms_forward_ports_and_clean_up() {
    ignite_testkit::require_root!("booting VMs on CNI networks");
    ignite_testkit::require_program!("/usr/lib/cni/bridge", "containernetworking-plugins");
    ignite_testkit::require_program!("iptables", "iptables");
    let host = Host::new(cargo_bin!("ignite"));
    let ns = Netns::new("cni");
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("net.d");
    let data = dir.path().join("leases");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let config = dir.path().join("config.yaml");
    let write_config = |conf_dir: &Path| {
        std::fs::write(
            &config,
            format!(
                "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nmetadata:\n  name: test\nspec:\n  cni:\n    confDir: {}\n    binDirs: [/usr/lib/cni]\n",
                conf_dir.display()
            ),
        )
        .unwrap();
    };
    write_config(&conf_dir);
    let ignite = || {
        let mut cmd = ns.ignite(&host);
        cmd.arg("--ignite-config").arg(&config);
        cmd
    };
    std::fs::write(
        conf_dir.join("10-lab.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"lab","plugins":[
                {{"type":"bridge","bridge":"cnilab0","isGateway":true,"ipMasq":true,"capabilities":{{"ips":true}},
                  "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.89.0.0/24"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{d}"}}}},
                {{"type":"portmap","capabilities":{{"portMappings":true}}}},
                {{"type":"firewall"}}]}}"#,
            d = data.display()
        ),
    )
    .unwrap();
    std::fs::write(
        conf_dir.join("20-p2p.conf"),
        format!(
            r#"{{"cniVersion":"0.4.0","name":"p2p","type":"ptp","ipMasq":true,
                "ipam":{{"type":"host-local","subnet":"10.89.1.0/24","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{d}"}}}}"#,
            d = data.display()
        ),
    )
    .unwrap();
    // The image's user is 1000: the server listens on an unprivileged port.
    // `--network-plugin cni` makes cni the default; the first configuration ("lab") is used.
    ignite()
        .args([
            "--network-plugin",
            "cni",
            "run",
            "--name",
            "web",
            "-p",
            "8080:8000",
            &host.image(),
        ])
        .arg("echo web up; exec busybox httpd -f -p 8000 -h /")
        .assert()
        .success();
    ignite()
        .args([
            "run",
            "--name",
            "peer",
            "--network",
            "cni",
            "--cni-network",
            "p2p",
            &host.image(),
        ])
        .assert()
        .success();
    host.wait_for_log("web", "web up");
    let web = host.vm("web");
    assert_eq!(web.spec.network.mode, Some(ignite_api::NetworkMode::Cni));
    let web_uid = web.metadata.uid.clone().unwrap().to_string();
    let web_ip = address_of(&host, "web");
    let peer_ip = address_of(&host, "peer");
    assert!(web_ip.starts_with("10.89.0."), "{web_ip}");
    assert!(peer_ip.starts_with("10.89.1."), "{peer_ip}");
    assert_eq!(web.status.network.as_ref().unwrap().plugin, "cni");
    let ps = host.ps_all();
    assert!(
        ps.lines()
            .any(|l| l.ends_with("web") && l.contains(&web_ip)),
        "{ps}"
    );
    assert_eq!(leases(&data, "lab"), std::slice::from_ref(&web_ip));
    assert!(netns_exists(&web_uid));

    let exec = |vm: &str, args: &[&str]| {
        let out = ignite()
            .args(["exec", vm])
            .args(args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    // Each VM reaches its host side, and the two networks' VMs reach each other (routed
    // through the namespace standing in for the host).
    eventually("web pings its gateway", "1 packets received", || {
        exec(
            "web",
            &["busybox", "ping", "-c", "1", "-W", "5", "10.89.0.1"],
        )
    });
    eventually("peer pings web", "1 packets received", || {
        exec("peer", &["busybox", "ping", "-c", "1", "-W", "5", &web_ip])
    });
    eventually("the host pings peer", "1 packets received", || {
        ns.run("/bin/busybox", &["ping", "-c", "1", "-W", "5", &peer_ip])
    });
    // A DHCP client in the guest is answered by the supervisor with the CNI address.
    eventually(
        "web asks DHCP",
        &format!("lease of {web_ip} obtained"),
        || {
            exec(
                "web",
                &[
                    "busybox",
                    "udhcpc",
                    "-i",
                    "eth0",
                    "-n",
                    "-q",
                    "-f",
                    "-t",
                    "3",
                    "-s",
                    "/bin/busybox",
                ],
            )
        },
    );
    // The forward through portmap, from the namespace.
    let fetch = |url: &str| ns.run("/bin/busybox", &["wget", "-q", "-O", "-", url]);
    eventually("the forward on the bridge address", "web", || {
        fetch("http://10.89.0.1:8080/etc/hostname")
    });

    // Stop and start: the same address again (the `ips` capability), nothing left meanwhile.
    ignite().args(["stop", "web"]).assert().success();
    assert!(!netns_exists(&web_uid), "a stopped VM keeps no namespace");
    assert!(
        leases(&data, "lab").is_empty(),
        "a stopped VM keeps no lease"
    );
    ignite().args(["start", "web"]).assert().success();
    assert_eq!(address_of(&host, "web"), web_ip);
    eventually("the forward after a restart", "web", || {
        fetch("http://10.89.0.1:8080/etc/hostname")
    });

    // rm leaves nothing: no namespace, no veth on the bridge, no lease, no forward.
    ignite().args(["rm", "-f", "web"]).assert().success();
    assert!(!netns_exists(&web_uid));
    assert!(leases(&data, "lab").is_empty());
    let (_, ports) = ns.run("ip", &["-o", "link", "show", "master", "cnilab0"]);
    assert!(ports.trim().is_empty(), "veths left on the bridge: {ports}");
    let (_, nat) = ns.run("iptables", &["-t", "nat", "-S"]);
    assert!(!nat.contains("8080") && !nat.contains(&web_uid), "{nat}");

    // kill -9 of the supervisor: the next start, and the next rm, detach what it left.
    let crash = |name: &str| {
        let vm = host.vm(name);
        kill9(vm.status.supervisor.as_ref().unwrap().pid);
        let vmm = vm.status.vmm.as_ref().unwrap().process.pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(vmm) {
            assert!(Instant::now() < deadline, "the VMM outlived its supervisor");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let peer_uid = host.vm("peer").metadata.uid.unwrap().to_string();
    crash("peer");
    assert!(netns_exists(&peer_uid));
    assert_eq!(leases(&data, "p2p").len(), 1);
    ignite().args(["start", "peer"]).assert().success();
    assert_eq!(
        leases(&data, "p2p").len(),
        1,
        "the crashed run's lease is gone"
    );
    let peer_ip = address_of(&host, "peer");
    eventually(
        "the host pings peer after the repair",
        "1 packets received",
        || ns.run("/bin/busybox", &["ping", "-c", "1", "-W", "5", &peer_ip]),
    );
    crash("peer");
    ignite().args(["rm", "peer"]).assert().success();
    assert!(!netns_exists(&peer_uid));
    assert!(leases(&data, "p2p").is_empty());
    // The kernel removes a deleted namespace's veths asynchronously: a bounded wait.
    let veths = || ns.run("ip", &["-o", "link", "show", "type", "veth"]).1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !veths().trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(veths().trim().is_empty(), "veths left: {}", veths());

    // An empty configuration directory gets Ignite's default network, which works. Its
    // leases go to host-local's default directory: removed again if this test made it.
    let _made = [
        "/var/lib/cni",
        "/var/lib/cni/networks",
        "/var/lib/cni/networks/ignite-cni",
    ]
    .into_iter()
    .find(|d| !Path::new(d).exists())
    .map(|d| RemoveOnDrop(d.into()));
    let empty = dir.path().join("empty.d");
    write_config(&empty);
    ignite()
        .args(["run", "--name", "dflt", "--network", "cni", &host.image()])
        .assert()
        .success();
    assert!(empty.join("10-ignite.conflist").is_file());
    let dflt_ip = address_of(&host, "dflt");
    assert!(dflt_ip.starts_with("10.62."), "{dflt_ip}");
    eventually(
        "the host pings the default network's VM",
        "1 packets received",
        || ns.run("/bin/busybox", &["ping", "-c", "1", "-W", "5", &dflt_ip]),
    );
    ignite().args(["rm", "-f", "dflt"]).assert().success();
    assert!(!std::path::Path::new(&format!("/var/lib/cni/networks/ignite-cni/{dflt_ip}")).exists());

    // A missing plugin is a clear error naming the network and plugin; nothing is left.
    std::fs::write(
        empty.join("05-broken.conflist"),
        r#"{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    ignite()
        .args(["run", "--name", "bad", "--network", "cni", &host.image()])
        .assert()
        .failure()
        .stderr(predicates::str::contains("\"broken\""))
        .stderr(predicates::str::contains("\"no-such-plugin\""));
    let bad = host.vm("bad");
    assert!(!netns_exists(bad.metadata.uid.as_ref().unwrap().as_str()));
}
