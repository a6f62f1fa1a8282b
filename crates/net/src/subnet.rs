//! An IPv4 subnet such as `10.61.0.0/16`: its gateway (the bridge's address, the first
//! host) and the hosts VMs may get.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NetError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// Ignite's default: 10.61.0.0/16 (ARCHITECTURE §5).
    pub const DEFAULT: Subnet = Subnet {
        network: Ipv4Addr::new(10, 61, 0, 0),
        prefix: 16,
    };

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    fn mask_bits(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The bridge's address: the first host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask_bits())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network)
    }

    /// The addresses VMs may get: every host but the gateway, in order.
    pub fn vm_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.network) + 2..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }
}

impl FromStr for Subnet {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Subnet, NetError> {
        let bad = |why: &str| NetError::Invalid(format!("bad subnet {s:?}: {why}"));
        let (address, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("want an IPv4 network such as 10.61.0.0/16"))?;
        let network: Ipv4Addr = address
            .parse()
            .map_err(|_| bad("want an IPv4 network such as 10.61.0.0/16"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| bad("the prefix length must be between 8 and 30"))?;
        let subnet = Subnet { network, prefix };
        let base = Ipv4Addr::from(u32::from(network) & subnet.mask_bits());
        if base != network {
            return Err(bad(&format!(
                "host bits are set: did you mean {base}/{prefix}?"
            )));
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = NetError;
    fn try_from(s: String) -> Result<Subnet, NetError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_subnet_has_its_gateway_and_hosts() {
        let s: Subnet = "10.61.0.0/16".parse().unwrap();
        assert_eq!(s, Subnet::DEFAULT);
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 61, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 61, 255, 255));
        assert_eq!(s.mask(), Ipv4Addr::new(255, 255, 0, 0));
        assert!(s.contains(Ipv4Addr::new(10, 61, 200, 3)));
        assert!(!s.contains(Ipv4Addr::new(10, 62, 0, 3)));
        let mut hosts = s.vm_addresses();
        assert_eq!(hosts.next(), Some(Ipv4Addr::new(10, 61, 0, 2)));
        assert_eq!(s.vm_addresses().count(), 65536 - 3);
        let small: Subnet = "192.168.7.0/30".parse().unwrap();
        assert_eq!(
            small.vm_addresses().collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 168, 7, 2)]
        );
    }

    #[test]
    fn bad_subnets_are_refused_with_advice() {
        for (bad, why) in [
            ("10.61.0.0", "such as"),
            ("10.61.0.0/33", "between 8 and 30"),
            ("10.61.0.0/31", "between 8 and 30"),
            ("fd00::/64", "such as"),
            ("10.61.0.1/16", "did you mean 10.61.0.0/16"),
        ] {
            let e = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
