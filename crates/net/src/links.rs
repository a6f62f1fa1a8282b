//! The bridge and the taps, made and removed with iproute2's `ip`.

use crate::{Commands, NetError, Subnet};

fn ip(host: &dyn Commands, args: &[&str]) -> Result<String, NetError> {
    host.run(ignite_host_tools::IP, args, None)
}

/// The tap of a VM: named after its uid, within the kernel's 15 characters.
pub fn tap_name(owner: &str) -> String {
    let id: String = owner.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("ign{}", &id[..id.len().min(12)])
}

/// Whether `name` is a VM's tap as [`tap_name`] makes them.
pub fn is_tap_name(name: &str) -> bool {
    name.len() == 15
        && name
            .strip_prefix("ign")
            .is_some_and(|id| id.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The VMs' taps on `bridge` (none when the bridge does not exist). Other ports an
/// administrator put on the bridge are not VMs and are left out.
pub fn taps_on(host: &dyn Commands, bridge: &str) -> Result<Vec<String>, NetError> {
    if !link_exists(host, bridge) {
        return Ok(Vec::new());
    }
    let listing = ip(host, &["-o", "link", "show", "master", bridge])?;
    Ok(port_names(&listing)
        .filter(|name| is_tap_name(name))
        .map(str::to_string)
        .collect())
}

/// The link names in `ip -o link show` lines (`7: ign0123456789ab: <BROADCAST,...`), without
/// a veth's `@peer` suffix.
fn port_names(listing: &str) -> impl Iterator<Item = &str> {
    listing.lines().filter_map(|line| {
        let name = line.split_whitespace().nth(1)?.strip_suffix(':')?;
        Some(name.split('@').next().unwrap_or(name))
    })
}

pub fn link_exists(host: &dyn Commands, name: &str) -> bool {
    ip(host, &["link", "show", "dev", name]).is_ok()
}

/// Makes sure the bridge exists, has the subnet's gateway address and is up, and that
/// the host forwards IPv4 (masquerade needs it) and lets port forwards to 127.0.0.1
/// reach the bridge (`route_localnet`; packets from the bridge to 127/8 are dropped by
/// the firewall's guard chain). Safe to call concurrently and repeatedly.
pub fn ensure_bridge(host: &dyn Commands, name: &str, subnet: Subnet) -> Result<(), NetError> {
    if !link_exists(host, name)
        && let Err(e) = ip(host, &["link", "add", "name", name, "type", "bridge"])
        // Another start made it meanwhile.
        && !link_exists(host, name)
    {
        return Err(e);
    }
    let address = format!("{}/{}", subnet.gateway(), subnet.prefix());
    ip(host, &["address", "replace", &address, "dev", name])?;
    ip(host, &["link", "set", "dev", name, "up"])?;
    for (key, what) in [
        ("net/ipv4/ip_forward".to_string(), "IPv4 forwarding"),
        (
            format!("net/ipv4/conf/{name}/route_localnet"),
            "port forwards from 127.0.0.1",
        ),
    ] {
        if host.sysctl(&key).is_some_and(|v| v.trim() == "1") {
            continue;
        }
        if let Err(e) = host.set_sysctl(&key, "1") {
            tracing::warn!("cannot turn on {what} (/proc/sys/{key}): {e}");
        }
    }
    Ok(())
}

/// Makes a VM's tap (replacing a stale one of the same name) and puts it on the bridge.
pub fn create_tap(host: &dyn Commands, name: &str, bridge: &str) -> Result<(), NetError> {
    delete_link(host, name)?;
    ip(host, &["tuntap", "add", "dev", name, "mode", "tap"])?;
    let attached = ip(host, &["link", "set", "dev", name, "master", bridge])
        .and_then(|_| ip(host, &["link", "set", "dev", name, "up"]));
    if let Err(e) = attached {
        let _ = delete_link(host, name);
        return Err(e);
    }
    Ok(())
}

/// Removes a link if it exists; returns whether it did.
pub fn delete_link(host: &dyn Commands, name: &str) -> Result<bool, NetError> {
    if !link_exists(host, name) {
        return Ok(false);
    }
    match ip(host, &["link", "delete", "dev", name]) {
        Ok(_) => Ok(true),
        Err(_) if !link_exists(host, name) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_that_cannot_join_the_bridge_is_removed_again() {
        let host = crate::Recording::new();
        host.fail("ip link show dev ign0123", "Device does not exist")
            .fail("ip link set dev ign0123 master", "No such device");
        let e = create_tap(&host, "ign0123", "ignite0").unwrap_err();
        assert!(e.to_string().contains("No such device"), "{e}");
        assert_eq!(
            host.calls(),
            [
                "ip link show dev ign0123",
                "ip tuntap add dev ign0123 mode tap",
                "ip link set dev ign0123 master ignite0",
                // The clean-up looks first; the recording says the link is absent, as a
                // failed `ip link show` does.
                "ip link show dev ign0123",
            ]
        );
    }

    #[test]
    fn the_bridge_is_made_once_addressed_and_up() {
        let host = crate::Recording::new();
        host.fail("ip link show dev ignite0", "Device does not exist");
        ensure_bridge(&host, "ignite0", Subnet::DEFAULT).unwrap();
        let calls = host.calls();
        assert_eq!(
            calls[..4],
            [
                "ip link show dev ignite0",
                "ip link add name ignite0 type bridge",
                &format!(
                    "ip address replace {}/{} dev ignite0",
                    Subnet::DEFAULT.gateway(),
                    Subnet::DEFAULT.prefix()
                ),
                "ip link set dev ignite0 up",
            ]
        );
    }

    #[test]
    fn only_the_vms_taps_on_a_bridge_count() {
        let host = crate::Recording::new();
        host.reply(
            "ip -o link show master ignite0",
            "7: ign0123456789ab: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel master ignite0 state UP mode DEFAULT group default qlen 1000\\    link/ether 6a:1b:2c:3d:4e:5f brd ff:ff:ff:ff:ff:ff
9: eth1@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master ignite0 state UP mode DEFAULT group default qlen 1000\\    link/ether 6a:1b:2c:3d:4e:60 brd ff:ff:ff:ff:ff:ff link-netnsid 0
11: ignfedcba987654: <BROADCAST,MULTICAST> mtu 1500 qdisc noop master ignite0 state DOWN mode DEFAULT group default qlen 1000\\    link/ether 6a:1b:2c:3d:4e:61 brd ff:ff:ff:ff:ff:ff
",
        );
        assert_eq!(
            taps_on(&host, "ignite0").unwrap(),
            ["ign0123456789ab", "ignfedcba987654"]
        );
        // No bridge, no taps, and no error.
        let host = crate::Recording::new();
        host.fail(
            "ip link show dev ignite0",
            "Device \"ignite0\" does not exist.",
        );
        assert!(taps_on(&host, "ignite0").unwrap().is_empty());
        assert_eq!(host.calls(), ["ip link show dev ignite0"]);
    }

    #[test]
    fn tap_names_fit_the_kernel_limit_and_differ_per_vm() {
        let a = tap_name("0123456789abcdef");
        assert_eq!(a, "ign0123456789ab");
        assert!(a.len() <= 15);
        assert_ne!(a, tap_name("1123456789abcdef"));
        assert!(is_tap_name(&a));
        assert!(!is_tap_name("ignite0") && !is_tap_name("eth0"));
    }
}
