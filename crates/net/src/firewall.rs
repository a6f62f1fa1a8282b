//! Masquerade and port forwards in an nftables table of Ignite's own, `ip ignite`.
//!
//! The base chains are (re)made by one atomic batch that is safe to repeat. Each VM's
//! forwards are rules in the `prerouting` (traffic from elsewhere) and `output` (traffic
//! from this host) chains tagged with a comment naming the VM, so they can be found and
//! removed after a crash without any other record.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::{Commands, NetError, Subnet};

pub const TABLE: &str = "ignite";
const FORWARD_CHAINS: [&str; 2] = ["prerouting", "output"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn keyword(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A host port forwarded to a VM port. No host address: every local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub transport: Transport,
    pub host_address: Option<Ipv4Addr>,
    pub host_port: u16,
    pub vm_port: u16,
}

fn nft(host: &dyn Commands, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    host.run(ignite_host_tools::NFT, args, input)
}

fn tag(owner: &str) -> String {
    format!("ignite-vm {owner}")
}

/// The batch that makes the table and its base chains, with masquerade for the subnet.
///
/// The masquerade and loopback-guard rules live in chains of the bridge's own
/// (`postrouting-BRIDGE`, `guard-BRIDGE`), so that state roots with different bridges on
/// one host each flush and refill only their own rules; the port-forward chains are
/// shared (their rules are tagged per VM).
pub fn base_ruleset(bridge: &str, subnet: Subnet) -> String {
    let postrouting = postrouting_chain(bridge);
    let guard = guard_chain(bridge);
    format!(
        "add table ip {TABLE}
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {TABLE} {postrouting} {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain ip {TABLE} {guard} {{ type filter hook prerouting priority raw; policy accept; }}
flush chain ip {TABLE} {postrouting}
flush chain ip {TABLE} {guard}
add rule ip {TABLE} {postrouting} ip saddr {subnet} oifname != \"{bridge}\" masquerade comment \"outbound traffic of VMs\"
add rule ip {TABLE} {postrouting} oifname \"{bridge}\" ct status dnat ip saddr {subnet} masquerade comment \"VMs reaching each other through forwarded ports\"
add rule ip {TABLE} {postrouting} oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade comment \"forwards from 127.0.0.1\"
add rule ip {TABLE} {guard} iifname \"{bridge}\" ip daddr 127.0.0.0/8 drop comment \"VMs may not reach the host's loopback\"
"
    )
}

/// The chain holding `bridge`'s masquerade rules (bridge names are letters, digits, `-`,
/// `_` and `.`, all valid in an nftables chain name after a letter).
pub fn postrouting_chain(bridge: &str) -> String {
    format!("postrouting-{bridge}")
}

/// The chain that keeps `bridge`'s VMs off the host's loopback.
pub fn guard_chain(bridge: &str) -> String {
    format!("guard-{bridge}")
}

/// The rules that forward `forwards` to `vm` for `owner`.
pub fn forward_rules(owner: &str, vm: Ipv4Addr, forwards: &[Forward]) -> String {
    let mut batch = String::new();
    for f in forwards {
        let destination = match f.host_address {
            Some(a) if !a.is_unspecified() => format!("ip daddr {a}"),
            _ => "fib daddr type local".to_string(),
        };
        for chain in FORWARD_CHAINS {
            let _ = writeln!(
                batch,
                "add rule ip {TABLE} {chain} {destination} {proto} dport {host} dnat to {vm}:{guest} comment \"{tag}\"",
                proto = f.transport.keyword(),
                host = f.host_port,
                guest = f.vm_port,
                tag = tag(owner),
            );
        }
    }
    batch
}

/// Makes the table and base chains (idempotent, atomic).
pub fn ensure_base(host: &dyn Commands, bridge: &str, subnet: Subnet) -> Result<(), NetError> {
    nft(host, &["-f", "-"], Some(&base_ruleset(bridge, subnet))).map(drop)
}

/// Adds a VM's forwards, replacing any it had.
pub fn add_forwards(
    host: &dyn Commands,
    owner: &str,
    vm: Ipv4Addr,
    forwards: &[Forward],
) -> Result<(), NetError> {
    remove_forwards(host, owner)?;
    if forwards.is_empty() {
        return Ok(());
    }
    nft(
        host,
        &["-f", "-"],
        Some(&forward_rules(owner, vm, forwards)),
    )
    .map(drop)
}

/// Removes every rule tagged for `owner`; returns how many there were.
pub fn remove_forwards(host: &dyn Commands, owner: &str) -> Result<usize, NetError> {
    let mut batch = String::new();
    let mut count = 0;
    for chain in FORWARD_CHAINS {
        let listing = match nft(host, &["-a", "list", "chain", "ip", TABLE, chain], None) {
            Ok(l) => l,
            // No table yet: nothing to remove.
            Err(NetError::Command { message, .. })
                if message.contains("No such file or directory") =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        for handle in handles_tagged(&listing, &tag(owner)) {
            let _ = writeln!(batch, "delete rule ip {TABLE} {chain} handle {handle}");
            count += 1;
        }
    }
    if count > 0 {
        nft(host, &["-f", "-"], Some(&batch))?;
    }
    Ok(count)
}

/// The handles of the rules in an `nft -a list` listing whose comment is `tag`.
fn handles_tagged(listing: &str, tag: &str) -> Vec<u64> {
    let needle = format!("comment \"{tag}\"");
    listing
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_become_tagged_dnat_rules_in_both_chains() {
        let rules = forward_rules(
            "abc",
            Ipv4Addr::new(10, 61, 0, 2),
            &[
                Forward {
                    transport: Transport::Tcp,
                    host_address: None,
                    host_port: 8080,
                    vm_port: 80,
                },
                Forward {
                    transport: Transport::Udp,
                    host_address: Some(Ipv4Addr::new(127, 0, 0, 1)),
                    host_port: 5353,
                    vm_port: 53,
                },
            ],
        );
        let lines: Vec<&str> = rules.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            "add rule ip ignite prerouting fib daddr type local tcp dport 8080 dnat to 10.61.0.2:80 comment \"ignite-vm abc\""
        );
        assert!(lines[1].starts_with("add rule ip ignite output fib daddr type local tcp"));
        assert_eq!(
            lines[3],
            "add rule ip ignite output ip daddr 127.0.0.1 udp dport 5353 dnat to 10.61.0.2:53 comment \"ignite-vm abc\""
        );
    }

    #[test]
    fn handles_are_found_by_tag_only() {
        let listing = r#"table ip ignite {
	chain prerouting { # handle 1
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local tcp dport 8080 dnat to 10.61.0.2:80 comment "ignite-vm abc" # handle 7
		fib daddr type local tcp dport 8081 dnat to 10.61.0.3:80 comment "ignite-vm abcd" # handle 8
		ip daddr 127.0.0.1 udp dport 53 dnat to 10.61.0.2:53 comment "ignite-vm abc" # handle 12
	}
}"#;
        assert_eq!(handles_tagged(listing, "ignite-vm abc"), [7, 12]);
        assert_eq!(handles_tagged(listing, "ignite-vm abcd"), [8]);
        assert!(handles_tagged(listing, "ignite-vm zzz").is_empty());
    }

    #[test]
    fn the_base_ruleset_masquerades_the_subnet_and_guards_loopback() {
        let base = base_ruleset("ignite0", Subnet::DEFAULT);
        assert!(base.contains(
            "postrouting-ignite0 ip saddr 10.61.0.0/16 oifname != \"ignite0\" masquerade"
        ));
        assert!(base.contains("guard-ignite0 iifname \"ignite0\" ip daddr 127.0.0.0/8 drop"));
        // Repeatable: base chains are flushed before their rules are added again.
        let flush = base
            .find("flush chain ip ignite postrouting-ignite0")
            .unwrap();
        assert!(flush < base.find("masquerade").unwrap());
        // Another bridge's batch touches only its own chains.
        let other = base_ruleset("ignite1", Subnet::DEFAULT);
        assert!(!other.contains("ignite0"), "{other}");
    }
}
