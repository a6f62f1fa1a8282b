//! A VM's own network namespace (`ip netns add ignite-<VM UID>`), where the plugins put
//! the VM's interface (`eth0`), and the VM's tap joined to it by tc redirects both ways,
//! as Firecracker's tc-redirect-tap does: every frame arriving on `eth0` leaves by the
//! tap and the other way round, so the guest, using `eth0`'s MAC address and the address
//! the plugins gave `eth0`, is on the CNI network as a container would be, whatever made
//! `eth0` (a veth from bridge or ptp, a macvlan, ...).
//!
//! The guest's DHCP requests (UDP to port 67) are the one exception: they stay in the
//! namespace, where the VM's supervisor answers them with the CNI result.
//!
//! `eth0` keeps its address in the namespace: nothing reaches the namespace's own stack
//! through it (every frame is redirected), and plugins read it back on DEL (Debian's
//! bridge plugin finds the masquerade rules it removes by the address on `eth0`).

use std::path::PathBuf;

use crate::{Commands, NetError};

/// The VM's tap inside its namespace (one VM per namespace: the name can be fixed).
pub const TAP: &str = "tap0";

/// The namespace of the VM with `uid`.
pub fn netns_name(uid: &str) -> String {
    format!("ignite-{uid}")
}

/// Its path, for `CNI_NETNS` and for entering it.
pub fn netns_path(name: &str) -> PathBuf {
    std::path::Path::new("/run/netns").join(name)
}

fn ip(host: &dyn Commands, args: &[&str]) -> Result<String, NetError> {
    host.run(ignite_host_tools::IP, args, None)
}

fn tc(host: &dyn Commands, args: &[&str]) -> Result<String, NetError> {
    host.run(ignite_host_tools::TC, args, None)
}

/// Whether the namespace exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Makes the namespace (a leftover one of the same name is made anew) with loopback up.
pub fn create_netns(host: &dyn Commands, name: &str) -> Result<(), NetError> {
    if netns_exists(name) {
        delete_netns(host, name)?;
    }
    ip(host, &["netns", "add", name])?;
    ip(host, &["-n", name, "link", "set", "dev", "lo", "up"]).map(drop)
}

/// Removes the namespace and every interface still in it (a veth's host end goes with
/// its peer). Idempotent.
pub fn delete_netns(host: &dyn Commands, name: &str) -> Result<(), NetError> {
    if !netns_exists(name) {
        return Ok(());
    }
    ip(host, &["netns", "delete", name]).map(drop)
}

/// Joins the tap [`TAP`] (made here) to `ifname` in namespace `netns`. Its MTU follows
/// `ifname`'s.
pub fn join_tap(
    host: &dyn Commands,
    netns: &str,
    ifname: &str,
    mtu: Option<u32>,
) -> Result<(), NetError> {
    ip(
        host,
        &["-n", netns, "tuntap", "add", "dev", TAP, "mode", "tap"],
    )?;
    if let Some(mtu) = mtu {
        ip(
            host,
            &[
                "-n",
                netns,
                "link",
                "set",
                "dev",
                TAP,
                "mtu",
                &mtu.to_string(),
            ],
        )?;
    }
    ip(host, &["-n", netns, "link", "set", "dev", TAP, "up"])?;
    for (from, to) in [(ifname, TAP), (TAP, ifname)] {
        tc(host, &["-n", netns, "qdisc", "add", "dev", from, "ingress"])?;
        if from == TAP {
            // The guest's DHCP requests stay in the namespace, for the supervisor's
            // responder (classified, so no later filter redirects them).
            tc(
                host,
                &[
                    "-n", netns, "filter", "add", "dev", TAP, "parent", "ffff:", "protocol", "ip",
                    "prio", "1", "u32", "match", "ip", "protocol", "17", "0xff", "match", "ip",
                    "dport", "67", "0xffff", "flowid", "ffff:1",
                ],
            )?;
        }
        tc(
            host,
            &[
                "-n", netns, "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all",
                "prio", "2", "u32", "match", "u8", "0", "0", "action", "mirred", "egress",
                "redirect", "dev", to,
            ],
        )?;
    }
    Ok(())
}

/// The MTU and MAC address of `ifname` in the namespace.
pub fn link_of(
    host: &dyn Commands,
    netns: &str,
    ifname: &str,
) -> Result<(Option<u32>, Option<String>), NetError> {
    let listing = ip(host, &["-n", netns, "-o", "link", "show", "dev", ifname])?;
    let words: Vec<&str> = listing.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|w| w.to_string())
    };
    Ok((
        after("mtu").and_then(|m| m.parse().ok()),
        after("link/ether"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recording;

    #[test]
    fn the_tap_is_joined_both_ways() {
        let host = Recording::new();
        join_tap(&host, "ignite-abc", "eth0", Some(1450)).unwrap();
        let calls = host.calls();
        assert_eq!(calls[0], "ip -n ignite-abc tuntap add dev tap0 mode tap");
        assert_eq!(calls[1], "ip -n ignite-abc link set dev tap0 mtu 1450");
        assert!(calls.contains(&"tc -n ignite-abc filter add dev eth0 parent ffff: protocol all prio 2 u32 match u8 0 0 action mirred egress redirect dev tap0".to_string()));
        // DHCP for the supervisor, before the redirect.
        let dhcp = calls
            .iter()
            .position(|c| c.starts_with("tc -n ignite-abc filter add dev tap0 parent ffff: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 67 0xffff"))
            .unwrap();
        assert_eq!(
            calls[dhcp + 1],
            "tc -n ignite-abc filter add dev tap0 parent ffff: protocol all prio 2 u32 match u8 0 0 action mirred egress redirect dev eth0"
        );
        assert!(calls.contains(&"tc -n ignite-abc filter add dev tap0 parent ffff: protocol all prio 2 u32 match u8 0 0 action mirred egress redirect dev eth0".to_string()));
        assert_eq!(
            calls.last().unwrap(),
            "tc -n ignite-abc filter add dev tap0 parent ffff: protocol all prio 2 u32 match u8 0 0 action mirred egress redirect dev eth0"
        );
    }

    #[test]
    fn the_link_mtu_and_mac_are_read_from_ip() {
        let host = Recording::new();
        host.reply(
            "ip -n ns -o link show dev eth0",
            "2: eth0@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 6a:1b:2c:3d:4e:60 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n",
        );
        let (mtu, mac) = link_of(&host, "ns", "eth0").unwrap();
        assert_eq!(mtu, Some(1450));
        assert_eq!(mac.as_deref(), Some("6a:1b:2c:3d:4e:60"));
    }
}
