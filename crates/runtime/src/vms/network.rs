//! A VM's network on the host side (ARCHITECTURE §5): which mode it gets, its host ports,
//! and in bridge mode its tap, address, forwards and DHCP answers, made by the
//! supervisor when the VM starts and removed when it ends, or on the next start or
//! removal when the supervisor could not (a crash).
//!
//! Modes are told apart in one place, [`attach`]: what it returns ([`Attachment`]) is
//! the same for every mode (the NICs for the VMM, what the guest is told, the status to
//! record, where sshd is reached), so a new mode is one more branch there.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ignite_api::{Configuration, NetworkMode, NetworkStatus, PortMapping, Protocol, Uid, Vm};
use ignite_guest_protocol::config::Interface;
use std::sync::Arc;

use ignite_net::{
    AddressBook, Commands, Forward, NetError, Subnet, System, Transport, dhcp, docker_user,
    firewall, links,
};
use ignite_store::Store;
use ignite_vmm::{NetworkBackend, NicBackend, NicSpec, PortForward};

use super::cni_network::{self, CniAttachment, CniSettings};
use super::{VmError, uid_of};

pub const DEFAULT_BRIDGE: &str = "ignite0";

/// How often a bridge's `DOCKER-USER` rules are checked while VMs run on it (by one
/// supervisor per bridge): the longest a Docker Engine started after the VMs, or a
/// firewall reload, could cut them off.
const DOCKER_USER_CHECK: Duration = Duration::from_secs(5);

/// QEMU's user-mode network: the guest is 10.0.2.15 behind 10.0.2.2, DNS at .3.
pub const USER_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// The bridge of `--network bridge`, from the Configuration's `spec.bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSettings {
    pub name: String,
    pub subnet: Subnet,
}

impl Default for BridgeSettings {
    fn default() -> BridgeSettings {
        BridgeSettings {
            name: DEFAULT_BRIDGE.into(),
            subnet: Subnet::DEFAULT,
        }
    }
}

impl BridgeSettings {
    pub fn from_configuration(config: Option<&Configuration>) -> Result<BridgeSettings, VmError> {
        let bridge = config.and_then(|c| c.spec.bridge.as_ref());
        let name = bridge.and_then(|b| b.name.clone());
        let subnet = bridge.and_then(|b| b.subnet.clone());
        BridgeSettings::new(name.as_deref(), subnet.as_deref())
            .map_err(|e| VmError::Spec(format!("the Configuration's spec.bridge: {e}")))
    }

    pub(crate) fn new(name: Option<&str>, subnet: Option<&str>) -> Result<BridgeSettings, String> {
        let name = name.unwrap_or(DEFAULT_BRIDGE).to_string();
        if name.is_empty()
            || name.len() > 15
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "bad bridge name {name:?}: 1 to 15 letters, digits, '-', '_' or '.'"
            ));
        }
        let subnet = match subnet {
            Some(s) => s.parse().map_err(|e: NetError| e.to_string())?,
            None => Subnet::DEFAULT,
        };
        Ok(BridgeSettings { name, subnet })
    }
}

/// The mode a VM gets when neither it nor the Configuration names one: bridge as root
/// (it needs CAP_NET_ADMIN), user otherwise.
pub fn default_mode() -> NetworkMode {
    if rustix::process::geteuid().is_root() {
        NetworkMode::Bridge
    } else {
        NetworkMode::User
    }
}

/// A VM's recorded mode (VMs recorded before modes were had user networking).
pub fn mode_of(vm: &Vm) -> NetworkMode {
    vm.spec.network.mode.unwrap_or(NetworkMode::User)
}

/// What a mode needs of the VMM (`None`: no NIC at all).
pub fn backend_of(mode: NetworkMode) -> Option<NetworkBackend> {
    match mode {
        NetworkMode::User => Some(NetworkBackend::User),
        NetworkMode::Bridge | NetworkMode::Cni => Some(NetworkBackend::Tap),
        NetworkMode::None => None,
    }
}

/// A VM's network while its supervisor runs, whatever its mode. Dropping it takes the VM
/// off the network (a bridge VM's tap and forwards go).
pub struct Attachment {
    /// The NICs the VMM gets.
    pub nics: Vec<NicSpec>,
    /// What the guest is told.
    pub guest: GuestNetwork,
    /// What `status.network` records.
    pub status: Option<NetworkStatus>,
    /// Where the VM's sshd is reached from the host (VMs with `--ssh`).
    pub ssh_address: Option<String>,
    /// The network namespace the VMM runs in (CNI VMs); the supervisor's own otherwise.
    pub netns: Option<PathBuf>,
    /// Held while the VM runs.
    _bridge: Option<BridgeAttachment>,
    _cni: Option<CniAttachment>,
}

/// Connects a VM in its mode (see [`mode_of`]).
pub fn attach(
    store: &Store,
    vm: &Vm,
    settings: &BridgeSettings,
    cni: &CniSettings,
) -> Result<Attachment, VmError> {
    if mode_of(vm) == NetworkMode::Cni {
        let cni = cni_network::attach(store, vm, cni)?;
        let mut attachment = on_cni(vm, &cni);
        attachment._cni = Some(cni);
        return Ok(attachment);
    }
    attach_with(Arc::new(System), store, vm, settings)
}

/// [`attach`], with the host's networking commands run by `host`.
pub fn attach_with(
    host: Arc<dyn Commands>,
    store: &Store,
    vm: &Vm,
    settings: &BridgeSettings,
) -> Result<Attachment, VmError> {
    match mode_of(vm) {
        NetworkMode::Bridge => {
            let bridge = attach_to_bridge(host, store, vm, settings)?;
            let mut attachment = on_bridge(vm, &bridge.tap, bridge.address, bridge.guest.clone());
            attachment._bridge = Some(bridge);
            Ok(attachment)
        }
        NetworkMode::User => {
            let ssh_port = vm.spec.ssh.as_ref().and_then(|_| free_loopback_port());
            Ok(user_network(vm, ssh_port))
        }
        NetworkMode::None => Ok(no_network()),
        NetworkMode::Cni => Err(VmError::Spec(
            "CNI networking is attached by attach(), with its settings".into(),
        )),
    }
}

/// No NIC: the guest has loopback only.
pub fn no_network() -> Attachment {
    Attachment {
        nics: vec![],
        guest: GuestNetwork::default(),
        status: None,
        ssh_address: None,
        netns: None,
        _bridge: None,
        _cni: None,
    }
}

/// The VMM's user-mode network, the VM's `-p` ports and (with `ssh_port`) its sshd
/// forwarded from the host.
pub fn user_network(vm: &Vm, ssh_port: Option<u16>) -> Attachment {
    let mut forwards: Vec<PortForward> = vm
        .spec
        .network
        .ports
        .iter()
        .map(|p| PortForward {
            udp: p.protocol == Some(Protocol::Udp),
            host_address: p
                .bind_address
                .map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string()),
            host_port: p.host_port,
            guest_port: p.vm_port,
        })
        .collect();
    if let Some(port) = ssh_port {
        forwards.push(PortForward {
            udp: false,
            host_address: "127.0.0.1".into(),
            host_port: port,
            guest_port: 22,
        });
    }
    Attachment {
        nics: vec![NicSpec {
            mac: mac_of(&uid_of(vm)),
            backend: NicBackend::User {
                forwards,
                isolated: false,
            },
        }],
        guest: user_guest_network(vm),
        status: Some(NetworkStatus {
            plugin: "user".into(),
            ip_addresses: vec![USER_GUEST.into()],
        }),
        ssh_address: ssh_port.map(|p| format!("127.0.0.1:{p}")),
        netns: None,
        _bridge: None,
        _cni: None,
    }
}

/// A VM on the bridge through `tap`, at `address`.
fn on_bridge(vm: &Vm, tap: &str, address: Ipv4Addr, guest: GuestNetwork) -> Attachment {
    Attachment {
        nics: vec![NicSpec {
            mac: mac_of(&uid_of(vm)),
            backend: NicBackend::Tap {
                ifname: tap.to_string(),
            },
        }],
        guest,
        status: Some(NetworkStatus {
            plugin: "bridge".into(),
            ip_addresses: vec![address.into()],
        }),
        ssh_address: vm.spec.ssh.as_ref().map(|_| format!("{address}:22")),
        netns: None,
        _bridge: None,
        _cni: None,
    }
}

/// A VM on a CNI network: its tap in its own namespace, with the MAC address and the
/// address of the interface the plugins made.
fn on_cni(vm: &Vm, cni: &CniAttachment) -> Attachment {
    let mut attachment = on_bridge(vm, &cni.tap, cni.address, cni.guest.clone());
    attachment.nics[0].mac = cni.mac.clone();
    attachment.status = Some(cni_network::status(cni.address));
    attachment.netns = Some(cni.netns.clone());
    attachment
}

/// A free TCP port on 127.0.0.1 for the VM's sshd (VMs with `--ssh` and user networking).
fn free_loopback_port() -> Option<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// A stable MAC address per VM: locally administered and unicast (first octet 0x52), the
/// other 40 bits from the VM's random UID, so a thousand VMs on one bridge collide with a
/// chance of about 1 in 2 million (24 bits, as QEMU's 52:54:00 prefix leaves, gave ~3%).
pub fn mac_of(uid: &Uid) -> String {
    let hex = uid.to_string();
    format!(
        "52:{}:{}:{}:{}:{}",
        &hex[0..2],
        &hex[2..4],
        &hex[4..6],
        &hex[6..8],
        &hex[8..10]
    )
}

/// A host port held open so that nothing else takes it while the VM runs.
#[derive(Debug)]
pub enum HeldPort {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

/// Binds every host port of `ports`; the first one taken is a clear error.
pub fn hold_host_ports(ports: &[PortMapping]) -> Result<Vec<HeldPort>, VmError> {
    ports
        .iter()
        .map(|p| {
            let address = p.bind_address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let at = (address, p.host_port);
            let held = match p.protocol() {
                Protocol::Udp => UdpSocket::bind(at).map(HeldPort::Udp),
                Protocol::Tcp => TcpListener::bind(at).map(HeldPort::Tcp),
            };
            held.map_err(|e| {
                let what = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "is already in use".to_string()
                } else {
                    format!("cannot be used ({e})")
                };
                VmError::Conflict(format!(
                    "host port {}/{} of -p {p} {what}: choose another host port",
                    p.host_port,
                    p.protocol()
                ))
            })
        })
        .collect()
}

/// Checks that the host ports of a VM about to be made are free: bound and let go.
pub fn check_host_ports(ports: &[PortMapping]) -> Result<(), VmError> {
    hold_host_ports(ports).map(drop)
}

/// What the guest is told about its network.
#[derive(Debug, Clone, Default)]
pub struct GuestNetwork {
    pub interfaces: Vec<Interface>,
    pub nameservers: Vec<String>,
}

/// The guest side of user-mode networking.
pub fn user_guest_network(vm: &Vm) -> GuestNetwork {
    GuestNetwork {
        interfaces: vec![Interface {
            mac: mac_of(&uid_of(vm)),
            addresses: vec![format!("{USER_GUEST}/24")],
            gateway: Some("10.0.2.2".into()),
            mtu: None,
        }],
        nameservers: vec!["10.0.2.3".into()],
    }
}

/// A VM on the bridge, while its supervisor runs.
pub struct BridgeAttachment {
    host: Arc<dyn Commands>,
    uid: Uid,
    network_dir: PathBuf,
    keeper: Option<docker_user::Keeper>,
    pub tap: String,
    pub address: Ipv4Addr,
    pub guest: GuestNetwork,
    _held: Vec<HeldPort>,
}

/// Puts a VM on the bridge: its host ports held, the bridge and firewall base made,
/// its address leased, its tap on the bridge, its forwards in place, the bridge's traffic
/// accepted in Docker Engine's `DOCKER-USER` chain where there is one (and kept there
/// while the VM runs), and its DHCP responder listening. Whatever fails undoes the VM's
/// part.
pub fn attach_to_bridge(
    host: Arc<dyn Commands>,
    store: &Store,
    vm: &Vm,
    settings: &BridgeSettings,
) -> Result<BridgeAttachment, VmError> {
    let uid = uid_of(vm);
    let forwards = vm
        .spec
        .network
        .ports
        .iter()
        .map(|p| {
            let host_address = match p.bind_address {
                None => None,
                Some(IpAddr::V4(a)) => Some(a),
                Some(IpAddr::V6(a)) => {
                    return Err(VmError::Spec(format!(
                        "-p {p}: the IPv6 host address {a} cannot be forwarded with --network bridge (use an IPv4 address, or --network user)"
                    )));
                }
            };
            Ok(Forward {
                transport: match p.protocol() {
                    Protocol::Tcp => Transport::Tcp,
                    Protocol::Udp => Transport::Udp,
                },
                host_address,
                host_port: p.host_port,
                vm_port: p.vm_port,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let held = hold_host_ports(&vm.spec.network.ports)?;
    links::ensure_bridge(&*host, &settings.name, settings.subnet)?;
    firewall::ensure_base(&*host, &settings.name, settings.subnet)?;
    let address = address_book(store).allocate(uid.as_str(), settings.subnet, |owner| {
        owner
            .parse::<Uid>()
            .is_ok_and(|u| store.vms().get(&u).is_ok())
    })?;
    let tap = links::tap_name(uid.as_str());
    let network_dir = network_dir(store);
    links::create_tap(&*host, &tap, &settings.name)?;
    if let Err(e) = firewall::add_forwards(&*host, uid.as_str(), address, &forwards) {
        detach_from_bridge(&*host, &network_dir, &uid);
        return Err(e.into());
    }
    // After the tap exists: a VM that ends meanwhile sees it and leaves the rules.
    let accepted = docker_user::lock(&network_dir)
        .and_then(|_held| docker_user::ensure(&*host, &settings.name, settings.subnet));
    if let Err(e) = accepted {
        detach_from_bridge(&*host, &network_dir, &uid);
        return Err(VmError::Host(format!(
            "cannot let the traffic of bridge {} through Docker Engine's firewall (its FORWARD policy drops what its {} chain does not accept): {e}",
            settings.name,
            docker_user::CHAIN
        )));
    }
    let keeper = docker_user::Keeper::start(
        host.clone(),
        network_dir.clone(),
        settings.name.clone(),
        settings.subnet,
        DOCKER_USER_CHECK,
    );
    let mac = mac_of(&uid);
    let nameservers = host_nameservers();
    let lease = dhcp::Lease {
        mac: dhcp::parse_mac(&mac)?,
        address,
        mask: settings.subnet.mask(),
        gateway: settings.subnet.gateway(),
        nameservers: nameservers.clone(),
        hostname: vm.metadata.name.clone(),
    };
    // The static configuration still works without it, so this is no reason to fail.
    if let Err(e) = dhcp::serve(&settings.name, lease) {
        tracing::warn!("no DHCP answers for this VM: {e}");
    }
    Ok(BridgeAttachment {
        host,
        uid,
        network_dir,
        keeper: Some(keeper),
        tap,
        address,
        guest: GuestNetwork {
            interfaces: vec![Interface {
                mac,
                addresses: vec![format!("{address}/{}", settings.subnet.prefix())],
                gateway: Some(settings.subnet.gateway().to_string()),
                mtu: None,
            }],
            nameservers: nameservers.iter().map(ToString::to_string).collect(),
        },
        _held: held,
    })
}

impl Drop for BridgeAttachment {
    fn drop(&mut self) {
        // Stopped first, so that it cannot put back rules the detach removes.
        drop(self.keeper.take());
        detach_from_bridge(&*self.host, &self.network_dir, &self.uid);
    }
}

/// Removes a VM's tap and forwards, and the bridge's `DOCKER-USER` rules when it was the
/// last VM there; the address stays leased for its next start. `network_dir` is the state
/// root's network directory. Idempotent; failures are logged (there is nothing better to
/// do with them).
pub fn detach_from_bridge(host: &dyn Commands, network_dir: &Path, uid: &Uid) {
    if let Err(e) = links::delete_link(host, &links::tap_name(uid.as_str())) {
        tracing::warn!("cannot remove the tap of VM {uid}: {e}");
    }
    if let Err(e) = firewall::remove_forwards(host, uid.as_str()) {
        tracing::warn!("cannot remove the port forwards of VM {uid}: {e}");
    }
    let released =
        docker_user::lock(network_dir).and_then(|_held| docker_user::release_unused(host));
    if let Err(e) = released {
        tracing::warn!(
            "cannot remove the {} rules of a bridge without VMs: {e}",
            docker_user::CHAIN
        );
    }
}

/// Removes what a VM had on its network, its address lease included (it is removed).
pub fn release(store: &Store, vm: &Vm) {
    if mode_of(vm) == NetworkMode::Cni {
        cni_network::detach(store, &uid_of(vm));
        return;
    }
    if mode_of(vm) != NetworkMode::Bridge {
        return;
    }
    let uid = uid_of(vm);
    detach_from_bridge(&System, &network_dir(store), &uid);
    if let Err(e) = address_book(store).release(uid.as_str()) {
        tracing::warn!("cannot release the address of VM {uid}: {e}");
    }
}

/// The state root's network directory: the address leases and the networking locks.
pub fn network_dir(store: &Store) -> PathBuf {
    store.root().join("network")
}

fn address_book(store: &Store) -> AddressBook {
    AddressBook::new(network_dir(store))
}

/// The host's IPv4 nameservers that a VM can reach (not the host's loopback stubs).
pub(crate) fn host_nameservers() -> Vec<Ipv4Addr> {
    let parse = |path: &str| -> Vec<Ipv4Addr> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
            .filter(|a| !a.is_loopback())
            .collect()
    };
    let servers = parse("/etc/resolv.conf");
    if servers.is_empty() {
        // systemd-resolved's stub: its upstream servers.
        parse("/run/systemd/resolve/resolv.conf")
    } else {
        servers
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An attachment as [`attach`] makes for a bridge VM, without the bridge (for plans).
    pub(crate) fn bridged(vm: &Vm, tap: &str, address: Ipv4Addr) -> Attachment {
        let guest = GuestNetwork {
            interfaces: vec![Interface {
                mac: mac_of(&uid_of(vm)),
                addresses: vec![format!("{address}/24")],
                gateway: Some("10.61.0.1".into()),
                mtu: None,
            }],
            nameservers: vec!["192.0.2.53".into()],
        };
        on_bridge(vm, tap, address, guest)
    }

    /// An attachment as [`attach`] makes for a CNI VM, without plugins (for plans).
    pub(crate) fn on_cni_network(vm: &Vm, mac: &str, address: Ipv4Addr) -> Attachment {
        let guest = GuestNetwork {
            interfaces: vec![Interface {
                mac: mac.into(),
                addresses: vec![format!("{address}/24")],
                gateway: Some("10.62.0.1".into()),
                mtu: Some(1500),
            }],
            nameservers: vec!["192.0.2.53".into()],
        };
        let cni = CniAttachment::detached(mac, address, guest);
        on_cni(vm, &cni)
    }

    fn bridge_vm(store: &Store, name: &str, ports: &[&str]) -> Vm {
        let mut spec = ignite_api::VmSpec::default();
        spec.network.mode = Some(NetworkMode::Bridge);
        spec.network.ports = ports.iter().map(|p| p.parse().unwrap()).collect();
        let meta = ignite_api::ObjectMeta {
            name: name.into(),
            ..Default::default()
        };
        store.vms().create(Vm::new(meta, spec)).unwrap()
    }

    /// The bridge and firewall base first, then the VM's tap, then its forwards; the
    /// attachment's end removes the tap and forwards, and so does a failed forward.
    #[test]
    fn a_bridge_vm_is_attached_in_order_and_cleaned_up_without_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let vm = bridge_vm(&store, "web", &[&format!("127.0.0.1:{port}:80")]);
        let tap = links::tap_name(uid_of(&vm).as_str());
        let settings = BridgeSettings::new(Some("ign-unit"), Some("10.99.0.0/24")).unwrap();
        let host = Arc::new(ignite_net::Recording::new());
        host.fail("ip link show dev", "Device does not exist");
        let attachment = attach_with(host.clone(), &store, &vm, &settings).unwrap();
        assert_eq!(attachment.status.as_ref().unwrap().plugin, "bridge");
        let address = attachment.status.as_ref().unwrap().ip_addresses[0];
        assert_eq!(address.to_string(), "10.99.0.2");
        let calls = host.calls();
        let expected = [
            "ip link show dev ign-unit".to_string(),
            "ip link add name ign-unit type bridge".into(),
            "ip address replace 10.99.0.1/24 dev ign-unit".into(),
            "ip link set dev ign-unit up".into(),
            "nft -f -".into(),
            format!("ip link show dev {tap}"),
            format!("ip tuntap add dev {tap} mode tap"),
            format!("ip link set dev {tap} master ign-unit"),
            format!("ip link set dev {tap} up"),
            "nft -a list chain ip ignite prerouting".into(),
            "nft -a list chain ip ignite output".into(),
            "nft -f -".into(),
            // No Docker Engine: its chain is looked for, nothing more.
            DOCKER_USER_LIST.into(),
        ];
        assert_eq!(calls, expected);
        let inputs = host.inputs();
        assert!(inputs[4].contains("masquerade"), "{}", inputs[4]);
        assert!(
            inputs[11].contains("dnat to 10.99.0.2:80"),
            "{}",
            inputs[11]
        );

        drop(attachment);
        let after: Vec<String> = host.calls()[expected.len()..].to_vec();
        assert_eq!(
            after,
            [
                // The link is looked for before it is deleted; the recording says it is gone.
                format!("ip link show dev {tap}"),
                "nft -a list chain ip ignite prerouting".into(),
                "nft -a list chain ip ignite output".into(),
                DOCKER_USER_LIST.into(),
            ]
        );

        // A forward the firewall refuses: the tap goes again and the start fails.
        let host = Arc::new(ignite_net::Recording::new());
        host.reply(&format!("ip link show dev {tap}"), "")
            .fail("nft -a list", "No such file or directory");
        let failing = Arc::new(FailSecondBatch::new(host.clone()));
        let e = attach_with(failing, &store, &vm, &settings).err().unwrap();
        assert!(e.to_string().contains("refused"), "{e}");
        let calls = host.calls();
        let failed_batch = calls.iter().rposition(|c| c == "nft -f -").unwrap();
        assert_eq!(
            calls[failed_batch + 1..],
            [
                format!("ip link show dev {tap}"),
                format!("ip link delete dev {tap}"),
                "nft -a list chain ip ignite prerouting".into(),
                "nft -a list chain ip ignite output".into(),
                DOCKER_USER_LIST.into(),
            ],
            "{calls:#?}"
        );
    }

    const DOCKER_USER_LIST: &str = "iptables-nft -w 5 -t filter -S DOCKER-USER";

    /// Beside a Docker Engine, the bridge's accept rules go into its DOCKER-USER chain
    /// after the tap exists, and out again when the VM was the last on the bridge.
    #[test]
    fn beside_docker_the_bridge_is_accepted_while_a_vm_runs_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let vm = bridge_vm(&store, "web", &[]);
        let tap = links::tap_name(uid_of(&vm).as_str());
        let settings = BridgeSettings::new(Some("ign-unit"), Some("10.99.0.0/24")).unwrap();
        let rules = docker_user::accept_rules("ign-unit", settings.subnet);
        let listing: String = std::iter::once("-N DOCKER-USER\n".to_string())
            .chain(
                rules
                    .iter()
                    .map(|r| format!("-A DOCKER-USER {}\n", r.join(" "))),
            )
            .collect();
        let host = Arc::new(ignite_net::Recording::new());
        host.fail("ip link show dev", "Device does not exist")
            .reply(
                DOCKER_USER_LIST,
                "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n",
            )
            .fail("iptables-nft -w 5 -t filter -C", "Bad rule");
        let attachment = attach_with(host.clone(), &store, &vm, &settings).unwrap();
        let calls = host.calls();
        let tap_made = calls
            .iter()
            .position(|c| *c == format!("ip tuntap add dev {tap} mode tap"))
            .unwrap();
        let inserts: Vec<usize> = (0..calls.len())
            .filter(|&i| calls[i].starts_with("iptables-nft -w 5 -t filter -I DOCKER-USER 1 "))
            .collect();
        assert_eq!(inserts.len(), 3, "{calls:#?}");
        assert!(inserts[0] > tap_made, "{calls:#?}");
        drop(attachment);

        // The VM's tap is gone (the recording says no link exists): the rules go.
        let host = Arc::new(ignite_net::Recording::new());
        host.fail("ip link show dev", "Device does not exist")
            .reply(DOCKER_USER_LIST, &listing);
        detach_from_bridge(&*host, &network_dir(&store), &uid_of(&vm));
        let removed: Vec<String> = host
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("iptables-nft -w 5 -t filter -D DOCKER-USER "))
            .collect();
        let expected: Vec<String> = rules
            .iter()
            .map(|r| format!("iptables-nft -w 5 -t filter -D DOCKER-USER {}", r.join(" ")))
            .collect();
        assert_eq!(removed, expected);

        // Another VM's tap on the bridge keeps them.
        let host = Arc::new(ignite_net::Recording::new());
        host.fail(&format!("ip link show dev {tap}"), "Device does not exist")
            .reply(DOCKER_USER_LIST, &listing)
            .reply(
                "ip -o link show master ign-unit",
                "9: ign0123456789ab: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master ign-unit\n",
            );
        detach_from_bridge(&*host, &network_dir(&store), &uid_of(&vm));
        assert!(
            !host.calls().iter().any(|c| c.contains(" -D DOCKER-USER")),
            "{:#?}",
            host.calls()
        );
    }

    /// Fails the second `nft -f -` (the forwards), passing everything else on.
    struct FailSecondBatch {
        inner: Arc<ignite_net::Recording>,
        batches: std::sync::atomic::AtomicUsize,
    }

    impl FailSecondBatch {
        fn new(inner: Arc<ignite_net::Recording>) -> Self {
            FailSecondBatch {
                inner,
                batches: Default::default(),
            }
        }
    }

    impl Commands for FailSecondBatch {
        fn run(
            &self,
            tool: ignite_host_tools::HostTool,
            args: &[&str],
            input: Option<&str>,
        ) -> Result<String, NetError> {
            let out = self.inner.run(tool, args, input);
            let batch = args == ["-f", "-"];
            if batch
                && self
                    .batches
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    == 1
            {
                return Err(NetError::Command {
                    command: "nft -f -".into(),
                    message: "refused".into(),
                });
            }
            out
        }
        fn sysctl(&self, key: &str) -> Option<String> {
            self.inner.sysctl(key)
        }
        fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
            self.inner.set_sysctl(key, value)
        }
        fn read_proc(&self, path: &str) -> Option<String> {
            self.inner.read_proc(path)
        }
    }

    #[test]
    fn macs_are_unicast_locally_administered_and_use_40_bits_of_the_uid() {
        let a: Uid = "599615df99804ae8".parse().unwrap();
        assert_eq!(mac_of(&a), "52:59:96:15:df:99");
        // UIDs that share their first 24 bits (which collided before) get distinct MACs.
        let b: Uid = "599615aa99804ae8".parse().unwrap();
        assert_ne!(mac_of(&a), mac_of(&b));
        let first = u8::from_str_radix(&mac_of(&a)[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10, "locally administered, unicast");
        // Every one parses as a MAC address.
        assert!(ignite_net::dhcp::parse_mac(&mac_of(&b)).is_ok());
    }

    #[test]
    fn bridge_settings_default_and_validate() {
        assert_eq!(
            BridgeSettings::new(None, None).unwrap(),
            BridgeSettings::default()
        );
        let s = BridgeSettings::new(Some("br-test"), Some("172.30.0.0/24")).unwrap();
        assert_eq!(s.subnet.gateway(), Ipv4Addr::new(172, 30, 0, 1));
        assert!(
            BridgeSettings::new(Some("a-name-much-too-long"), None)
                .unwrap_err()
                .contains("1 to 15")
        );
        assert!(
            BridgeSettings::new(None, Some("10.61.0.0/40"))
                .unwrap_err()
                .contains("between 8 and 30")
        );
    }

    #[test]
    fn a_taken_host_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mapping: PortMapping = format!("127.0.0.1:{port}:80").parse().unwrap();
        let e = check_host_ports(&[mapping]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("host port {port}/tcp")) && e.contains("already in use"),
            "{e}"
        );
        drop(taken);
        let mapping: PortMapping = format!("127.0.0.1:{port}:80").parse().unwrap();
        check_host_ports(&[mapping]).unwrap();
    }
}
