//! Static network configuration with rtnetlink: loopback up, each configured interface
//! (found by MAC address) up with its addresses, MTU and default route. Requests replace
//! what is there, so a reboot applies the same state again without duplicates.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ignite_guest_protocol::agent::Readdress;
use ignite_guest_protocol::config::Interface;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink::SocketAddrNetlink};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const EADDRNOTAVAIL: i32 = 99;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RTN_UNICAST: u8 = 1;
const EEXIST: i32 = 17;

/// How long an interface may take to appear after its driver loaded.
const INTERFACE_WAIT: Duration = Duration::from_secs(5);

pub fn configure(interfaces: &[Interface]) -> Result<(), String> {
    let mut nl = Netlink::open()?;
    let lo = ifindex("lo").ok_or("the loopback interface is missing")?;
    nl.link_up(lo, None)
        .map_err(|e| format!("cannot bring lo up: {e}"))?;
    for iface in interfaces {
        let name = wait_for_mac(&iface.mac)?;
        let index = ifindex(&name).ok_or_else(|| format!("{name} has no index"))?;
        nl.link_up(index, iface.mtu)
            .map_err(|e| format!("cannot bring {name} up: {e}"))?;
        for cidr in &iface.addresses {
            let (addr, prefix) = parse_cidr(cidr)?;
            nl.add_address(index, addr, prefix)
                .map_err(|e| format!("cannot give {name} the address {cidr}: {e}"))?;
        }
        if let Some(gateway) = &iface.gateway {
            let gw: IpAddr = gateway
                .parse()
                .map_err(|_| format!("bad gateway {gateway:?} for {name}"))?;
            nl.default_route(index, gw)
                .map_err(|e| format!("cannot route through {gateway} on {name}: {e}"))?;
        }
    }
    Ok(())
}

/// Moves each interface of a guest restored from a snapshot to its new identity: found by
/// the MAC it had, it gets its new MAC, loses the addresses it had, and gets its new
/// addresses and default route. virtio-net takes a new MAC while the link is up.
pub fn readdress(changes: &[Readdress]) -> Result<(), String> {
    let mut nl = Netlink::open()?;
    for change in changes {
        let name = find_mac(&change.old_mac)
            .or_else(|| find_mac(&change.new.mac))
            .ok_or_else(|| format!("no network interface has the MAC {}", change.old_mac))?;
        let index = ifindex(&name).ok_or_else(|| format!("{name} has no index"))?;
        if !change.old_mac.eq_ignore_ascii_case(&change.new.mac) {
            let mac = parse_mac(&change.new.mac)?;
            nl.set_mac(index, &mac)
                .map_err(|e| format!("cannot give {name} the MAC {}: {e}", change.new.mac))?;
        }
        for cidr in &change.old_addresses {
            if change.new.addresses.contains(cidr) {
                continue;
            }
            let (addr, prefix) = parse_cidr(cidr)?;
            nl.remove_address(index, addr, prefix)
                .map_err(|e| format!("cannot remove {cidr} from {name}: {e}"))?;
        }
    }
    drop(nl);
    configure(
        &changes
            .iter()
            .map(|c| c.new.clone())
            .collect::<Vec<Interface>>(),
    )
}

fn find_mac(mac: &str) -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let address = std::fs::read_to_string(entry.path().join("address")).ok()?;
            address
                .trim()
                .eq_ignore_ascii_case(mac)
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
}

fn parse_mac(mac: &str) -> Result<[u8; 6], String> {
    let bad = || format!("bad MAC address {mac:?}");
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for byte in &mut out {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("bad interface address {cidr:?}: want ADDRESS/PREFIX");
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((addr, prefix))
}

fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn wait_for_mac(mac: &str) -> Result<String, String> {
    let deadline = Instant::now() + INTERFACE_WAIT;
    loop {
        if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
            for entry in dir.flatten() {
                let address =
                    std::fs::read_to_string(entry.path().join("address")).unwrap_or_default();
                if address.trim().eq_ignore_ascii_case(mac) {
                    return Ok(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no network interface with MAC address {mac} appeared (is virtio_net loaded?)"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn family(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

struct Netlink {
    fd: rustix::fd::OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open() -> Result<Netlink, String> {
        let fd = rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::RAW,
            None, // NETLINK_ROUTE is protocol 0
        )
        .map_err(|e| format!("cannot open a netlink socket: {e}"))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(|e| format!("cannot bind the netlink socket: {e}"))?;
        Ok(Netlink { fd, seq: 0 })
    }

    fn link_up(&mut self, index: u32, mtu: Option<u32>) -> Result<(), String> {
        let mut body = Vec::new();
        body.push(0); // family
        body.push(0);
        body.extend_from_slice(&0u16.to_ne_bytes()); // type
        body.extend_from_slice(&(index as i32).to_ne_bytes());
        body.extend_from_slice(&IFF_UP.to_ne_bytes()); // flags
        body.extend_from_slice(&IFF_UP.to_ne_bytes()); // change
        if let Some(mtu) = mtu {
            attr(&mut body, IFLA_MTU, &mtu.to_ne_bytes());
        }
        self.request(RTM_NEWLINK, 0, body)
    }

    fn set_mac(&mut self, index: u32, mac: &[u8; 6]) -> Result<(), String> {
        let mut body = vec![0, 0];
        body.extend_from_slice(&0u16.to_ne_bytes()); // type
        body.extend_from_slice(&(index as i32).to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes()); // flags
        body.extend_from_slice(&0u32.to_ne_bytes()); // change
        attr(&mut body, IFLA_ADDRESS, mac);
        self.request(RTM_NEWLINK, 0, body)
    }

    /// Removes an address; one that is not there is no error.
    fn remove_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), String> {
        let mut body = vec![family(&addr), prefix, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        attr(&mut body, IFA_LOCAL, &addr_bytes(&addr));
        attr(&mut body, IFA_ADDRESS, &addr_bytes(&addr));
        match self.request(RTM_DELADDR, 0, body) {
            Err(e) if e == rustix::io::Errno::from_raw_os_error(EADDRNOTAVAIL).to_string() => {
                Ok(())
            }
            other => other,
        }
    }

    fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), String> {
        let mut body = vec![family(&addr), prefix, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        attr(&mut body, IFA_LOCAL, &addr_bytes(&addr));
        attr(&mut body, IFA_ADDRESS, &addr_bytes(&addr));
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body)
    }

    fn default_route(&mut self, index: u32, gateway: IpAddr) -> Result<(), String> {
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        let mut body = vec![
            family(&gateway),
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            0,
            RTN_UNICAST,
        ];
        body.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut body, RTA_GATEWAY, &addr_bytes(&gateway));
        attr(&mut body, RTA_OIF, &index.to_ne_bytes());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body)
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, kind: u16, flags: u16, body: Vec<u8>) -> Result<(), String> {
        self.seq += 1;
        let len = 16 + body.len() as u32;
        let mut msg = Vec::with_capacity(len as usize);
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        rustix::net::sendto(
            &self.fd,
            &msg,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 8192];
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut buf, RecvFlags::empty())
                .map_err(|e| e.to_string())?;
            let mut at = 0;
            while at + 16 <= n {
                let h = &buf[at..];
                let msg_len = u32::from_ne_bytes(h[0..4].try_into().expect("4")) as usize;
                let msg_type = u16::from_ne_bytes(h[4..6].try_into().expect("2"));
                let seq = u32::from_ne_bytes(h[8..12].try_into().expect("4"));
                if msg_type == NLMSG_ERROR && seq == self.seq && msg_len >= 20 {
                    let errno = -i32::from_ne_bytes(h[16..20].try_into().expect("4"));
                    return match errno {
                        0 | EEXIST => Ok(()),
                        e => Err(rustix::io::Errno::from_raw_os_error(e).to_string()),
                    };
                }
                if msg_len < 16 {
                    break;
                }
                at += msg_len.next_multiple_of(4);
            }
        }
    }
}

fn attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len() as u16;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_mac("6a:0B:2c:3d:4e:5f").unwrap(),
            [0x6a, 0x0b, 0x2c, 0x3d, 0x4e, 0x5f]
        );
        for bad in [
            "6a:0b:2c:3d:4e",
            "6a:0b:2c:3d:4e:5f:00",
            "6a:0b:2c:3d:4e:zz",
            "6a0b2c3d4e5f",
        ] {
            assert!(parse_mac(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn cidrs_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_cidr("10.61.0.2/16").unwrap(),
            ("10.61.0.2".parse().unwrap(), 16)
        );
        assert_eq!(parse_cidr("fd00::2/64").unwrap().1, 64);
        for bad in ["10.61.0.2", "10.61.0.2/33", "x/8", "fd00::1/129"] {
            assert!(parse_cidr(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut out = Vec::new();
        attr(&mut out, 3, b"eth0\0");
        assert_eq!(out.len(), 12);
        assert_eq!(&out[..4], &[9, 0, 3, 0]);
    }
}
