//! A DHCP responder for one VM (RFC 2131): it answers DISCOVER, REQUEST and INFORM from
//! that VM's MAC address only, always with the address the allocator gave the VM, so an
//! image whose network stack asks DHCP ends up where ignite-init put it.
//!
//! Every VM's supervisor listens on port 67 of the bridge with SO_REUSEADDR: the kernel
//! hands each of them a copy of every broadcast, and each answers only its own VM.
//! Replies are broadcast on the bridge (the client has no address yet); clients match
//! them by transaction id and MAC. Leases are infinite, so clients never renew by unicast.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use crate::NetError;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's fixed part before the options.
const FIXED: usize = 236;
/// Some clients drop replies shorter than a BOOTP message.
const MIN_REPLY: usize = 300;
const INFINITE: u32 = u32::MAX;

mod kind {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const INFORM: u8 = 8;
}

mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const REQUESTED_ADDRESS: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const END: u8 = 255;
}

/// What one VM is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub mask: Ipv4Addr,
    /// The bridge: router and server id.
    pub gateway: Ipv4Addr,
    pub nameservers: Vec<Ipv4Addr>,
    pub hostname: String,
}

/// Parses `52:54:00:12:34:56`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::Invalid(format!("bad MAC address {s:?}"));
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    parts.try_into().map_err(|_| bad())
}

/// The reply to `request` for `lease`, if it deserves one: `(reply, kind name)`.
pub fn answer(request: &[u8], lease: &Lease) -> Option<(Vec<u8>, &'static str)> {
    if request.len() < FIXED + 4
        || request[0] != 1
        || request[1] != 1
        || request[2] != 6
        || request[28..34] != lease.mac
        || request[FIXED..FIXED + 4] != MAGIC
    {
        return None;
    }
    let options = parse_options(&request[FIXED + 4..]);
    let find = |code: u8| options.iter().find(|(c, _)| *c == code).map(|(_, v)| *v);
    let message_type = *find(option::MESSAGE_TYPE)?.first()?;
    let ciaddr = Ipv4Addr::new(request[12], request[13], request[14], request[15]);
    let (reply_type, name) = match message_type {
        kind::DISCOVER => (kind::OFFER, "DHCPOFFER"),
        kind::REQUEST => {
            // A client that chose another server is not ours to answer.
            if let Some(server) = find(option::SERVER_ID)
                && server != lease.gateway.octets()
            {
                return None;
            }
            let wanted = find(option::REQUESTED_ADDRESS)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(Ipv4Addr::from)
                .unwrap_or(ciaddr);
            if wanted == lease.address {
                (kind::ACK, "DHCPACK")
            } else {
                (kind::NAK, "DHCPNAK")
            }
        }
        kind::INFORM => (kind::ACK, "DHCPACK"),
        _ => return None,
    };

    let mut reply = vec![0u8; FIXED];
    reply[0] = 2; // BOOTREPLY
    reply[1] = 1;
    reply[2] = 6;
    reply[4..8].copy_from_slice(&request[4..8]); // xid
    reply[10..12].copy_from_slice(&request[10..12]); // flags
    if message_type == kind::INFORM {
        reply[12..16].copy_from_slice(&request[12..16]);
    } else if reply_type != kind::NAK {
        reply[16..20].copy_from_slice(&lease.address.octets());
    }
    reply[24..28].copy_from_slice(&request[24..28]); // giaddr
    reply[28..44].copy_from_slice(&request[28..44]); // chaddr
    reply.extend_from_slice(&MAGIC);
    let mut put = |code: u8, value: &[u8]| {
        reply.push(code);
        reply.push(value.len() as u8);
        reply.extend_from_slice(value);
    };
    put(option::MESSAGE_TYPE, &[reply_type]);
    put(option::SERVER_ID, &lease.gateway.octets());
    if reply_type != kind::NAK {
        if message_type != kind::INFORM {
            put(option::LEASE_TIME, &INFINITE.to_be_bytes());
        }
        put(option::SUBNET_MASK, &lease.mask.octets());
        put(option::ROUTER, &lease.gateway.octets());
        if !lease.nameservers.is_empty() {
            let dns: Vec<u8> = lease
                .nameservers
                .iter()
                .take(8)
                .flat_map(|a| a.octets())
                .collect();
            put(option::DNS, &dns);
        }
        let host = lease.hostname.as_bytes();
        if !host.is_empty() {
            put(option::HOSTNAME, &host[..host.len().min(255)]);
        }
    }
    reply.push(option::END);
    if reply.len() < MIN_REPLY {
        reply.resize(MIN_REPLY, option::PAD);
    }
    Some((reply, name))
}

fn parse_options(mut bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut options = Vec::new();
    while let Some((&code, rest)) = bytes.split_first() {
        match code {
            option::PAD => bytes = rest,
            option::END => break,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let Some(value) = rest.get(..len as usize) else {
                    break;
                };
                options.push((code, value));
                bytes = &rest[len as usize..];
            }
        }
    }
    options
}

/// Listens on the bridge and answers the lease's VM until the process ends.
pub fn serve(bridge: &str, lease: Lease) -> Result<(), NetError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |action: &'static str| {
        let path: std::path::PathBuf = format!("udp port {SERVER_PORT} on {bridge}").into();
        move |source| NetError::Io(ignite_host_tools::PathError::new(action, path, source))
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(io("open a socket for"))?;
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_broadcast(true))
        .and_then(|()| socket.bind_device(Some(bridge.as_bytes())))
        .map_err(io("configure the socket on"))?;
    let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT));
    socket.bind(&any.into()).map_err(io("listen on"))?;
    let socket: UdpSocket = socket.into();
    std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            let mut buf = [0u8; 1500];
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
            loop {
                let Ok((n, _)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((reply, name)) = answer(&buf[..n], &lease) {
                    match socket.send_to(&reply, to) {
                        Ok(_) => tracing::info!("{name} {} to {}", lease.address, mac(&lease.mac)),
                        Err(e) => tracing::warn!("cannot send {name}: {e}"),
                    }
                }
            }
        })
        .map_err(io("start a thread for"))?;
    Ok(())
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    fn lease() -> Lease {
        Lease {
            mac: MAC,
            address: Ipv4Addr::new(10, 61, 0, 7),
            mask: Ipv4Addr::new(255, 255, 0, 0),
            gateway: Ipv4Addr::new(10, 61, 0, 1),
            nameservers: vec![Ipv4Addr::new(9, 9, 9, 9)],
            hostname: "web".into(),
        }
    }

    fn request(mac: [u8; 6], options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = 1;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        m[10] = 0x80;
        m[28..34].copy_from_slice(&mac);
        m.extend_from_slice(&MAGIC);
        for (code, value) in options {
            m.push(*code);
            m.push(value.len() as u8);
            m.extend_from_slice(value);
        }
        m.push(option::END);
        m
    }

    fn reply_options(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
        parse_options(&reply[FIXED + 4..])
            .into_iter()
            .map(|(c, v)| (c, v.to_vec()))
            .collect()
    }

    #[test]
    fn discover_gets_an_offer_of_the_vms_address() {
        let (reply, name) = answer(&request(MAC, &[(53, &[1])]), &lease()).unwrap();
        assert_eq!(name, "DHCPOFFER");
        assert!(reply.len() >= MIN_REPLY);
        assert_eq!(reply[0], 2);
        assert_eq!(&reply[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(reply[10], 0x80);
        assert_eq!(&reply[16..20], &[10, 61, 0, 7]);
        assert_eq!(&reply[28..34], &MAC);
        let opts = reply_options(&reply);
        assert!(opts.contains(&(53, vec![2])));
        assert!(opts.contains(&(54, vec![10, 61, 0, 1])));
        assert!(opts.contains(&(1, vec![255, 255, 0, 0])));
        assert!(opts.contains(&(3, vec![10, 61, 0, 1])));
        assert!(opts.contains(&(6, vec![9, 9, 9, 9])));
        assert!(opts.contains(&(12, b"web".to_vec())));
        assert!(opts.contains(&(51, vec![255; 4])));
    }

    #[test]
    fn requests_are_acked_for_the_vms_address_and_nakked_otherwise() {
        let ours = request(
            MAC,
            &[(53, &[3]), (50, &[10, 61, 0, 7]), (54, &[10, 61, 0, 1])],
        );
        assert_eq!(answer(&ours, &lease()).unwrap().1, "DHCPACK");
        let other = request(MAC, &[(53, &[3]), (50, &[10, 61, 0, 9])]);
        let (nak, name) = answer(&other, &lease()).unwrap();
        assert_eq!(name, "DHCPNAK");
        assert_eq!(&nak[16..20], &[0, 0, 0, 0]);
        // Another server chosen: silence.
        let elsewhere = request(MAC, &[(53, &[3]), (54, &[192, 168, 0, 1])]);
        assert!(answer(&elsewhere, &lease()).is_none());
    }

    #[test]
    fn other_macs_and_malformed_messages_get_no_answer() {
        assert!(answer(&request([0x52, 0x54, 0, 9, 9, 9], &[(53, &[1])]), &lease()).is_none());
        assert!(answer(&request(MAC, &[]), &lease()).is_none());
        assert!(answer(&[1, 1, 6], &lease()).is_none());
        let mut truncated = request(MAC, &[(53, &[1])]);
        truncated.truncate(FIXED + 4 + 1);
        assert!(answer(&truncated, &lease()).is_none());
        // An option whose length runs past the end is not read past it.
        let mut long = request(MAC, &[]);
        long.pop();
        long.extend_from_slice(&[53, 200, 1]);
        assert!(answer(&long, &lease()).is_none());
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("52:54:00:01:02:03").unwrap(), MAC);
        assert!(parse_mac("52:54:00:01:02").is_err());
        assert!(parse_mac("52:54:00:01:02:zz").is_err());
    }
}
