//! The `ip ignite` table shared by state roots with different bridges on one host, in a
//! network namespace of the test's own.

use ignite_net::{Subnet, System, firewall};
use ignite_testkit::netns::Netns;

/// Two state roots, two bridges: each one's base batch (run on every VM start) keeps the
/// other's masquerade and loopback guard.
#[test]
fn two_bridges_keep_each_others_masquerade_rules() {
    ignite_testkit::require_root!("nftables needs CAP_NET_ADMIN");
    ignite_testkit::require_program!("nft", "nftables");
    let ns = Netns::new("masq");
    let path = format!("/run/netns/{}", ns.name());
    let listing = std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let file = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let a: Subnet = "10.70.0.0/24".parse().unwrap();
        let b: Subnet = "10.71.0.0/24".parse().unwrap();
        firewall::ensure_base(&System, "ign-a", a).unwrap();
        firewall::ensure_base(&System, "ign-b", b).unwrap();
        // The first root starts another VM: its batch runs again.
        firewall::ensure_base(&System, "ign-a", a).unwrap();
    })
    .join();
    assert!(listing.is_ok());
    let rules = ns.ignite_rules();
    for (bridge, subnet) in [("ign-a", "10.70.0.0/24"), ("ign-b", "10.71.0.0/24")] {
        let masquerade = format!("ip saddr {subnet} oifname != \"{bridge}\" masquerade");
        assert_eq!(rules.matches(&masquerade).count(), 1, "{rules}");
        let guard = format!("iifname \"{bridge}\" ip daddr 127.0.0.0/8 drop");
        assert_eq!(rules.matches(&guard).count(), 1, "{rules}");
    }
}
