//! Ignite's e2e/portmap_test.go: a port forward exists while the VM runs and is gone after
//! `rm -f`. As in Ignite, `--network-plugin=cni` forwards through the CNI portmap plugin,
//! whose iptables nat rules name the VM's ID (the CNI container ID).

use crate::util::E2e;

#[test]
fn test_portmap_cleanup() {
    ignite_testkit::require_root!("booting VMs");
    ignite_testkit::require_program!("iptables", "iptables");
    ignite_testkit::require_program!("/usr/lib/cni/portmap", "containernetworking-plugins");
    let e2e = E2e::new("portmap");
    let vm = "e2e-test-ignite-portmap-cleanup";
    let port = 4242;
    e2e.ok(&[
        "--network-plugin=cni",
        "run",
        &format!("--name={vm}"),
        "--ssh",
        &format!("--ports={port}:{port}"),
        &e2e.image(),
    ]);
    let id = e2e.ok(&[
        "ps",
        "--filter",
        &format!("{{{{.ObjectMeta.Name}}}}={vm}"),
        "--quiet",
    ]);
    let id = id.trim();
    assert!(!id.is_empty());
    let nat = || e2e.netns.run("iptables", &["-t", "nat", "-S"]).1;
    let rules = nat();
    let forward = rules
        .lines()
        .find(|l| l.contains(id) && l.contains("CNI-HOSTPORT-DNAT"))
        .unwrap_or_else(|| panic!("no rule names {id}:\n{rules}"));
    assert!(forward.contains(&port.to_string()), "{forward}");
    let ps = e2e.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->{port}/tcp")), "{ps}");
    e2e.ok(&["rm", "-f", vm]);
    let rules = nat();
    assert!(!rules.contains(id), "leftover rules:\n{rules}");
}
