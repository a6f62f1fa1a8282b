//! A plugin's result (spec 1.0.0, and 0.3.x/0.4.0 whose IP entries carry a `version`):
//! the interfaces it made, their addresses, the routes and DNS settings.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<ResultInterface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultInterface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// The network namespace it is in; empty for the host's.
    #[serde(default)]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR form, `10.62.0.5/16`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
}

/// The IPv4 address a VM takes over from the CNI interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Config {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl CniResult {
    pub fn parse(value: &serde_json::Value) -> Result<CniResult, String> {
        CniResult::deserialize(value).map_err(|e| format!("not a CNI result: {e}"))
    }

    /// The index of the interface named `ifname` inside a namespace.
    pub fn sandbox_interface(&self, ifname: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == ifname && !i.sandbox.is_empty())
    }

    /// The first IPv4 address on `ifname` in the namespace (or on no interface in
    /// particular), with its gateway: the entry's own, else the default route's.
    pub fn ipv4_of(&self, ifname: &str) -> Option<Ipv4Config> {
        let index = self.sandbox_interface(ifname);
        self.ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == index)
            .find_map(|ip| {
                let (address, prefix) = ip.address.split_once('/')?;
                let address: Ipv4Addr = address.parse().ok()?;
                let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
                let gateway = match ip.gateway {
                    Some(IpAddr::V4(g)) => Some(g),
                    _ => self.default_gateway(),
                };
                Some(Ipv4Config {
                    address,
                    prefix,
                    gateway,
                })
            })
    }

    fn default_gateway(&self) -> Option<Ipv4Addr> {
        self.routes
            .iter()
            .filter(|r| r.dst == "0.0.0.0/0")
            .find_map(|r| match r.gw {
                Some(IpAddr::V4(g)) => Some(g),
                _ => None,
            })
    }

    /// The MAC address of `ifname` in the namespace, as the plugin reported it.
    pub fn mac_of(&self, ifname: &str) -> Option<&str> {
        let index = self.sandbox_interface(ifname)?;
        Some(self.interfaces[index].mac.as_str()).filter(|m| !m.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_0_0_bridge_result_gives_the_sandbox_address_and_gateway() {
        let value = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
                {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/run/netns/x"}
            ],
            "ips": [{"address": "10.62.0.5/16", "gateway": "10.62.0.1", "interface": 2}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["192.0.2.53"], "search": ["example.org"]}
        });
        let result = CniResult::parse(&value).unwrap();
        let ip = result.ipv4_of("eth0").unwrap();
        assert_eq!(ip.address, Ipv4Addr::new(10, 62, 0, 5));
        assert_eq!(ip.prefix, 16);
        assert_eq!(ip.gateway, Some(Ipv4Addr::new(10, 62, 0, 1)));
        assert_eq!(result.mac_of("eth0"), Some("aa:bb:cc:00:00:03"));
        assert_eq!(result.mac_of("cni0"), None, "not in the namespace");
        assert_eq!(result.dns.nameservers, ["192.0.2.53"]);
    }

    #[test]
    fn a_0_4_0_result_with_versions_and_a_routed_gateway_is_read() {
        let value = serde_json::json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/proc/1/ns/net"}],
            "ips": [
                {"version": "6", "address": "fd00::5/64", "interface": 0},
                {"version": "4", "address": "10.63.0.7/24", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.63.0.1"}],
            "dns": {}
        });
        let ip = CniResult::parse(&value).unwrap().ipv4_of("eth0").unwrap();
        assert_eq!(ip.address, Ipv4Addr::new(10, 63, 0, 7));
        assert_eq!(ip.gateway, Some(Ipv4Addr::new(10, 63, 0, 1)));
    }

    #[test]
    fn a_result_without_an_ipv4_address_has_none() {
        let value = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "fd00::5/64"}]});
        assert_eq!(CniResult::parse(&value).unwrap().ipv4_of("eth0"), None);
        assert!(CniResult::parse(&serde_json::json!({"ips": 5})).is_err());
    }
}
