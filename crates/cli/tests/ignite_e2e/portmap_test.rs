//! Ignite's e2e/portmap_test.go: a port forward exists while the VM runs and is gone after
//! `rm -f`. Ignite greps iptables' nat table for the VM's ID; here forwards are nftables
//! rules in the `ip ignite` table, tagged with the VM's ID.

use crate::util::E2e;

#[test]
fn test_portmap_cleanup() {
    ignite_testkit::require_root!("booting VMs");
    ignite_testkit::require_program!("nft", "nftables");
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
    let rules = e2e.netns.ignite_rules();
    let forward = rules
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("no rule names {id}:\n{rules}"));
    assert!(forward.contains(&format!("dport {port}")), "{forward}");
    let ps = e2e.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->{port}/tcp")), "{ps}");
    e2e.ok(&["rm", "-f", vm]);
    let rules = e2e.netns.ignite_rules();
    assert!(!rules.contains(id), "leftover rules:\n{rules}");
}
