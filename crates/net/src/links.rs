//! The bridge and the taps, made and removed with iproute2's `ip`.

use crate::{NetError, Subnet, run};

fn ip(args: &[&str]) -> Result<String, NetError> {
    run(ignite_host_tools::IP, args)
}

/// The tap of a VM: named after its uid, within the kernel's 15 characters.
pub fn tap_name(owner: &str) -> String {
    let id: String = owner.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("ign{}", &id[..id.len().min(12)])
}

pub fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).is_ok()
}

/// Makes sure the bridge exists, has the subnet's gateway address and is up, and that
/// the host forwards IPv4 (masquerade needs it) and lets port forwards to 127.0.0.1
/// reach the bridge (`route_localnet`; packets from the bridge to 127/8 are dropped by
/// the firewall's guard chain). Safe to call concurrently and repeatedly.
pub fn ensure_bridge(name: &str, subnet: Subnet) -> Result<(), NetError> {
    if !link_exists(name)
        && let Err(e) = ip(&["link", "add", "name", name, "type", "bridge"])
        // Another start made it meanwhile.
        && !link_exists(name)
    {
        return Err(e);
    }
    let address = format!("{}/{}", subnet.gateway(), subnet.prefix());
    ip(&["address", "replace", &address, "dev", name])?;
    ip(&["link", "set", "dev", name, "up"])?;
    for (path, what) in [
        (
            "/proc/sys/net/ipv4/ip_forward".to_string(),
            "IPv4 forwarding",
        ),
        (
            format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
            "port forwards from 127.0.0.1",
        ),
    ] {
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        if let Err(e) = std::fs::write(&path, "1") {
            tracing::warn!("cannot turn on {what} ({path}): {e}");
        }
    }
    Ok(())
}

/// Makes a VM's tap (replacing a stale one of the same name) and puts it on the bridge.
pub fn create_tap(name: &str, bridge: &str) -> Result<(), NetError> {
    delete_link(name)?;
    ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
    let attached = ip(&["link", "set", "dev", name, "master", bridge])
        .and_then(|_| ip(&["link", "set", "dev", name, "up"]));
    if let Err(e) = attached {
        let _ = delete_link(name);
        return Err(e);
    }
    Ok(())
}

/// Removes a link if it exists; returns whether it did.
pub fn delete_link(name: &str) -> Result<bool, NetError> {
    if !link_exists(name) {
        return Ok(false);
    }
    match ip(&["link", "delete", "dev", name]) {
        Ok(_) => Ok(true),
        Err(_) if !link_exists(name) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_the_kernel_limit_and_differ_per_vm() {
        let a = tap_name("0123456789abcdef");
        assert_eq!(a, "ign0123456789ab");
        assert!(a.len() <= 15);
        assert_ne!(a, tap_name("1123456789abcdef"));
    }
}
