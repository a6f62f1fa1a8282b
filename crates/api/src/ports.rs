//! Port forwards in Docker's syntax: `[ip:]hostPort:vmPort[/tcp|udp]`, with equal-length
//! ranges (`8000-8001:80-81`) expanded to one mapping per port.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One forward of a host port to a VM port (`spec.network.ports[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<IpAddr>,
    pub host_port: u16,
    pub vm_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl PortMapping {
    /// The protocol, TCP when none was given.
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Tcp)
    }

    /// Parses one `-p` argument; a range yields several mappings.
    pub fn parse_spec(spec: &str) -> Result<Vec<PortMapping>, PortSpecError> {
        let err = |reason: String| PortSpecError {
            spec: spec.to_string(),
            reason,
        };
        let (body, protocol) = match spec.rsplit_once('/') {
            Some((body, proto)) => {
                let p = match proto.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return Err(err(format!("unknown protocol {proto:?}; use tcp or udp"))),
                };
                (body, Some(p))
            }
            None => (spec, None),
        };
        // The bind address may be an IPv6 address in brackets, which contains ':' itself.
        let (bind_address, ports) = if let Some(rest) = body.strip_prefix('[') {
            let (ip, after) = rest
                .split_once("]:")
                .ok_or_else(|| err("an IPv6 bind address must be written [addr]:host:vm".into()))?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| err(format!("{ip:?} is not an IP address")))?;
            (Some(ip), after)
        } else {
            let parts: Vec<&str> = body.split(':').collect();
            match parts.len() {
                2 => (None, body),
                3 => {
                    let ip: IpAddr = parts[0]
                        .parse()
                        .map_err(|_| err(format!("{:?} is not an IP address", parts[0])))?;
                    (Some(ip), &body[parts[0].len() + 1..])
                }
                _ => {
                    return Err(err(
                        "expected [ip:]hostPort:vmPort[/tcp|udp], e.g. 8080:80 or 127.0.0.1:2222:22/tcp"
                            .into(),
                    ));
                }
            }
        };
        let (host, vm) = ports
            .split_once(':')
            .ok_or_else(|| err("both a host port and a VM port are needed".into()))?;
        let host = parse_range(host).map_err(|r| err(format!("host port: {r}")))?;
        let vm = parse_range(vm).map_err(|r| err(format!("VM port: {r}")))?;
        if host.1 - host.0 != vm.1 - vm.0 {
            return Err(err("the host and VM port ranges differ in length".into()));
        }
        Ok((host.0..=host.1)
            .zip(vm.0..=vm.1)
            .map(|(host_port, vm_port)| PortMapping {
                bind_address,
                host_port,
                vm_port,
                protocol,
            })
            .collect())
    }
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not a port number between 1 and 65535")),
            Ok(n) => Ok(n),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("range {s:?} runs backwards"));
            }
            Ok((a, b))
        }
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
    }
}

/// Why a `-p` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port mapping {spec:?}: {reason}")]
pub struct PortSpecError {
    spec: String,
    reason: String,
}

/// `0.0.0.0:80->8080/tcp`, as `ignite ps` shows forwards.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bind_address {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Some(ip) => write!(f, "{ip}")?,
            None => f.write_str("0.0.0.0")?,
        }
        // The protocol is always shown, TCP when none was given, as Ignite's `ps` does.
        write!(
            f,
            ":{}->{}/{}",
            self.host_port,
            self.vm_port,
            self.protocol()
        )
    }
}

impl FromStr for PortMapping {
    type Err = PortSpecError;
    /// Parses a single mapping; ranges are refused here (use [`PortMapping::parse_spec`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut all = PortMapping::parse_spec(s)?;
        if all.len() != 1 {
            return Err(PortSpecError {
                spec: s.to_string(),
                reason: "a range is not allowed here".into(),
            });
        }
        Ok(all.remove(0))
    }
}

/// Joins mappings as Ignite's table does: `a, b`.
pub fn join_ports(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_syntax() {
        let m: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            (m.bind_address, m.host_port, m.vm_port, m.protocol),
            (None, 8080, 80, None)
        );
        let m: PortMapping = "127.0.0.1:2222:22/udp".parse().unwrap();
        assert_eq!(m.bind_address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m.protocol, Some(Protocol::Udp));
        let m: PortMapping = "[::1]:443:6443/tcp".parse().unwrap();
        assert_eq!(m.to_string(), "[::1]:443->6443/tcp");
        let all = PortMapping::parse_spec("8000-8002:80-82").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!((all[2].host_port, all[2].vm_port), (8002, 82));
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "80",
            "0:80",
            "80:0",
            "70000:80",
            "a:80",
            "80:80/sctp",
            "1.2.3:80:80",
            "1:2:3:4",
            "8000-8001:80",
            "9-1:9-1",
            "[::1:80:80",
        ] {
            let e = PortMapping::parse_spec(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn displays_like_ignite() {
        let m: PortMapping = "443:6443".parse().unwrap();
        assert_eq!(m.to_string(), "0.0.0.0:443->6443/tcp");
        let two = PortMapping::parse_spec("10.0.0.2:80-81:80-81/tcp").unwrap();
        assert_eq!(join_ports(&two), "10.0.0.2:80->80/tcp, 10.0.0.2:81->81/tcp");
    }
}
