//! CNI against Debian's real plugins (`containernetworking-plugins`, /usr/lib/cni), run
//! from a network namespace of the test's own standing in for the host: a bridge with
//! host-local addresses, portmap and firewall; a ptp network; and the errors (a missing
//! plugin, an exhausted IPAM) leaving nothing half attached.

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ignite_net::System;
use ignite_net::cni::{
    Cni, CniError, Invocation, NetworkConfig, PortMapping, RuntimeConfig, sandbox,
};
use ignite_testkit::netns::Netns;

const PLUGINS: &str = "/usr/lib/cni";

/// Runs `body` on a thread inside `ns`: the plugins it starts see `ns` as the host.
fn inside(ns: &Netns, body: impl FnOnce() + Send + 'static) {
    let path = format!("/run/netns/{}", ns.name());
    let outcome = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        body();
    })
    .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn network(dir: &Path, text: &str) -> NetworkConfig {
    let file = dir.join("net.conflist");
    std::fs::write(&file, text).unwrap();
    NetworkConfig::read(&file).unwrap()
}

fn invocation(vm_ns: &str, runtime: RuntimeConfig) -> Invocation {
    Invocation {
        container_id: vm_ns.trim_start_matches("ignite-").to_string(),
        netns: sandbox::netns_path(vm_ns),
        ifname: "eth0".into(),
        runtime,
    }
}

/// Lease files host-local keeps for `network` (one per address, named by it).
fn leases(data_dir: &Path, network: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join(network))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn unique(tag: &str) -> String {
    format!("ignite-t{tag}{:08x}", std::process::id())
}

/// A VM's namespace made by a test, removed even when the test fails.
struct VmNetns(String);

impl VmNetns {
    fn new(tag: &str) -> VmNetns {
        let name = unique(tag);
        sandbox::create_netns(&System, &name).unwrap();
        VmNetns(name)
    }
}

impl std::ops::Deref for VmNetns {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for VmNetns {
    fn drop(&mut self) {
        let _ = sandbox::delete_netns(&System, &self.0);
    }
}

/// bridge + host-local + portmap + firewall: the address, the forwarded port answering,
/// the firewall's accept rule, the lease; DEL leaves no interface, rule or lease; the
/// `ips` capability gets the same address back.
#[test]
fn a_bridge_network_attaches_forwards_and_detaches_with_real_plugins() {
    ignite_testkit::require_root!("CNI plugins make interfaces");
    ignite_testkit::require_program!("/usr/lib/cni/bridge", "containernetworking-plugins");
    ignite_testkit::require_program!("iptables", "iptables");
    let ns = Netns::new("cni-bridge");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("leases");
    let conflist = format!(
        r#"{{"cniVersion":"1.0.0","name":"testnet","plugins":[
            {{"type":"bridge","bridge":"cnitest0","isGateway":true,"ipMasq":true,"capabilities":{{"ips":true}},
              "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.88.7.0/24"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
            {{"type":"portmap","capabilities":{{"portMappings":true}}}},
            {{"type":"firewall"}}]}}"#,
        data.display()
    );
    let network = network(dir.path(), &conflist);
    inside(&ns, move || {
        let host = System;
        let cni = Cni::new(vec![PLUGINS.into()]);
        let vm_ns = VmNetns::new("b");
        let runtime = RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port: 18080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
            }],
            ips: vec![],
        };
        let at = invocation(&vm_ns, runtime.clone());
        let (raw, result) = cni.add(&network, &at).unwrap();
        let ip = result.ipv4_of("eth0").unwrap();
        assert_eq!(ip.prefix, 24);
        assert_eq!(ip.gateway, Some(Ipv4Addr::new(10, 88, 7, 1)));
        assert_eq!(leases(&data, "testnet"), [ip.address.to_string()]);
        let (ok, out) = run(&["ip", "-n", &vm_ns, "-o", "address", "show", "dev", "eth0"]);
        assert!(ok && out.contains(&format!("{}/24", ip.address)), "{out}");
        let (_, rules) = run(&["iptables", "-S", "CNI-FORWARD"]);
        assert!(rules.contains(&ip.address.to_string()), "firewall: {rules}");

        // A server in the VM's namespace answers on the forwarded port.
        let mut server = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &vm_ns,
                "/bin/busybox",
                "nc",
                "-l",
                "-p",
                "80",
                "-e",
                "/bin/busybox",
                "echo",
                "hello from the VM",
            ])
            .spawn()
            .unwrap();
        let gateway = ip.gateway.unwrap();
        let ask = || -> Option<String> {
            let mut stream =
                TcpStream::connect_timeout(&(gateway, 18080).into(), Duration::from_secs(2))
                    .ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).ok()?;
            Some(text).filter(|t| !t.is_empty())
        };
        // The server takes a moment to listen: a bounded number of tries.
        let answer = (0..50).find_map(|_| {
            ask().or_else(|| {
                std::thread::sleep(Duration::from_millis(100));
                None
            })
        });
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(answer.as_deref().map(str::trim), Some("hello from the VM"));

        cni.del(&network, &at, Some(&raw)).unwrap();
        assert!(leases(&data, "testnet").is_empty());
        assert!(!run(&["ip", "-n", &vm_ns, "link", "show", "dev", "eth0"]).0);
        let (_, rules) = run(&["iptables", "-S", "CNI-FORWARD"]);
        assert!(
            !rules.contains(&ip.address.to_string()),
            "firewall: {rules}"
        );
        let (_, nat) = run(&["iptables", "-t", "nat", "-S"]);
        assert!(!nat.contains("18080"), "portmap: {nat}");

        // Asked for through `ips`, the same address comes back (host-local would
        // otherwise hand out the next one).
        let again = invocation(
            &vm_ns,
            RuntimeConfig {
                ips: vec![format!("{}/24", ip.address)],
                ..runtime
            },
        );
        let (raw, result) = cni.add(&network, &again).unwrap();
        assert_eq!(result.ipv4_of("eth0").unwrap().address, ip.address);
        cni.del(&network, &again, Some(&raw)).unwrap();
        // DEL twice is harmless (a repair after a stop that already detached).
        cni.del(&network, &again, Some(&raw)).unwrap();
        sandbox::delete_netns(&host, &vm_ns).unwrap();
        assert!(!sandbox::netns_exists(&vm_ns));
        let (_, links) = run(&["ip", "-o", "link", "show", "master", "cnitest0"]);
        assert!(links.trim().is_empty(), "veths left: {links}");
    });
}

/// A ptp network written as a 0.4.0 `.conf`: an address, a host-side veth, a route; gone
/// after DEL; the VM side pings the host side.
#[test]
fn a_ptp_network_with_0_4_0_results_works_too() {
    ignite_testkit::require_root!("CNI plugins make interfaces");
    ignite_testkit::require_program!("/usr/lib/cni/ptp", "containernetworking-plugins");
    let ns = Netns::new("cni-ptp");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("leases");
    let file = dir.path().join("20-ptp.conf");
    std::fs::write(
        &file,
        format!(
            r#"{{"cniVersion":"0.4.0","name":"p2p","type":"ptp","ipMasq":false,
                "ipam":{{"type":"host-local","subnet":"10.88.9.0/24","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}}"#,
            data.display()
        ),
    )
    .unwrap();
    let network = NetworkConfig::read(&file).unwrap();
    inside(&ns, move || {
        let host = System;
        let cni = Cni::new(vec![PathBuf::from("/nonexistent"), PLUGINS.into()]);
        let vm_ns = VmNetns::new("p");
        let at = invocation(&vm_ns, RuntimeConfig::default());
        let (raw, result) = cni.add(&network, &at).unwrap();
        assert_eq!(result.cni_version, "0.4.0");
        let ip = result.ipv4_of("eth0").unwrap();
        assert!(ip.address.to_string().starts_with("10.88.9."), "{ip:?}");
        let gateway = ip.gateway.unwrap().to_string();
        let (ok, out) = run(&[
            "ip",
            "netns",
            "exec",
            &vm_ns,
            "/bin/busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            &gateway,
        ]);
        assert!(ok, "ping {gateway}: {out}");
        assert_eq!(leases(&data, "p2p").len(), 1);
        cni.del(&network, &at, Some(&raw)).unwrap();
        assert!(leases(&data, "p2p").is_empty());
        let (_, routes) = run(&["ip", "route"]);
        assert!(!routes.contains(&ip.address.to_string()), "{routes}");
        sandbox::delete_netns(&host, &vm_ns).unwrap();
    });
}

/// A missing plugin and an exhausted address range are errors naming the network and
/// the plugin, and leave no interface or lease behind.
#[test]
fn plugin_failures_name_the_network_and_plugin_and_leave_nothing_attached() {
    ignite_testkit::require_root!("CNI plugins make interfaces");
    ignite_testkit::require_program!("/usr/lib/cni/bridge", "containernetworking-plugins");
    let ns = Netns::new("cni-fail");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("leases");
    // A /30: host-local hands out .2 only (.1 is the gateway).
    let conflist = format!(
        r#"{{"cniVersion":"1.0.0","name":"tiny","plugins":[
            {{"type":"bridge","bridge":"cnitiny0","isGateway":true,
              "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.88.8.0/30"}}]],"dataDir":"{}"}}}},
            {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
        data.display()
    );
    let network = network(dir.path(), &conflist);
    inside(&ns, move || {
        let host = System;
        let only_bridge = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            Path::new(PLUGINS).join("bridge"),
            only_bridge.path().join("bridge"),
        )
        .unwrap();
        let first = VmNetns::new("f");
        let at = invocation(&first, RuntimeConfig::default());

        let missing = Cni::new(vec![only_bridge.path().to_path_buf()])
            .add(&network, &at)
            .unwrap_err();
        assert!(
            matches!(missing, CniError::MissingPlugin { .. }),
            "{missing}"
        );
        let text = missing.to_string();
        assert!(
            text.contains("\"tiny\"") && text.contains("\"portmap\""),
            "{text}"
        );
        assert!(!run(&["ip", "-n", &first, "link", "show", "dev", "eth0"]).0);

        let cni = Cni::new(vec![PLUGINS.into()]);
        let (raw, _) = cni.add(&network, &at).unwrap();
        let second = VmNetns::new("s");
        let at2 = invocation(&second, RuntimeConfig::default());
        let exhausted = cni.add(&network, &at2).unwrap_err();
        let text = exhausted.to_string();
        assert!(matches!(exhausted, CniError::Plugin { .. }), "{text}");
        assert!(
            text.contains("\"tiny\"") && text.contains("\"bridge\""),
            "{text}"
        );
        assert!(
            !run(&["ip", "-n", &second, "link", "show", "dev", "eth0"]).0,
            "half attached"
        );
        let (_, links) = run(&["ip", "-o", "link", "show", "master", "cnitiny0"]);
        assert_eq!(
            links.lines().count(),
            1,
            "only the first VM's veth: {links}"
        );
        assert_eq!(leases(&data, "tiny"), ["10.88.8.2"]);

        cni.del(&network, &at, Some(&raw)).unwrap();
        for vm_ns in [first, second] {
            sandbox::delete_netns(&host, &vm_ns).unwrap();
        }
        assert!(leases(&data, "tiny").is_empty());
    });
}
