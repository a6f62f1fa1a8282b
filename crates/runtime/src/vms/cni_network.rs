//! `--network cni`: a VM on a CNI network, as a container would be (ARCHITECTURE §5).
//!
//! Each VM gets a network namespace of its own (`ignite-<VM UID>`); CNI ADD runs with the
//! VM's UID as the container ID and `eth0` as the interface, then tc redirects join the
//! VM's tap to `eth0` inside the namespace, and the guest takes `eth0`'s MAC address and
//! the address, gateway and DNS of the CNI result (through ignite-init's static
//! configuration, and DHCP answers from the supervisor on the tap). The VMM is started inside the namespace (see
//! [`super::supervisor::exec_vmm`]). What was attached is recorded in the VM's directory
//! before ADD runs, so that DEL runs and the namespace goes on stop, on `rm`, and on the
//! repair after a crash (the supervisor killed with `kill -9`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ignite_api::{Configuration, NetworkStatus, Protocol, Uid, Vm};
use ignite_guest_protocol::config::Interface;
use ignite_net::cni::{self, Cni, Invocation, NetworkConfig, PortMapping, RuntimeConfig, sandbox};
use ignite_net::{Commands, System};
use ignite_store::Store;
use serde::{Deserialize, Serialize};

use super::network::{GuestNetwork, HeldPort, hold_host_ports};
use super::{VmError, VmFiles, io, uid_of};

/// What a VM attached: written before ADD, completed after it, removed after DEL.
const RECORD: &str = "cni-attachment.json";
/// The address the VM had, asked for again on its next start (`ips` capability).
const LAST_ADDRESS: &str = "cni-address";
/// The interface the plugins make in the VM's namespace.
pub const IFNAME: &str = "eth0";

/// Where configurations and plugins are found (the Configuration's `spec.cni`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniSettings {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniSettings {
    fn default() -> CniSettings {
        CniSettings {
            conf_dir: cni::DEFAULT_CONF_DIR.into(),
            bin_dirs: cni::DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

impl CniSettings {
    pub fn from_configuration(config: Option<&Configuration>) -> CniSettings {
        let mut settings = CniSettings::default();
        if let Some(cni) = config.and_then(|c| c.spec.cni.as_ref()) {
            if let Some(dir) = &cni.conf_dir {
                settings.conf_dir = dir.clone();
            }
            if !cni.bin_dirs.is_empty() {
                settings.bin_dirs = cni.bin_dirs.clone();
            }
        }
        settings
    }
}

/// The record of one attachment: enough to detach without the configuration files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    netns: String,
    bin_dirs: Vec<PathBuf>,
    network: RecordedNetwork,
    invocation: Invocation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedNetwork {
    name: String,
    cni_version: String,
    plugins: Vec<serde_json::Map<String, serde_json::Value>>,
    file: PathBuf,
}

impl From<&NetworkConfig> for RecordedNetwork {
    fn from(n: &NetworkConfig) -> Self {
        RecordedNetwork {
            name: n.name.clone(),
            cni_version: n.cni_version.clone(),
            plugins: n.plugins.clone(),
            file: n.file.clone(),
        }
    }
}

impl From<&RecordedNetwork> for NetworkConfig {
    fn from(n: &RecordedNetwork) -> Self {
        NetworkConfig {
            name: n.name.clone(),
            cni_version: n.cni_version.clone(),
            plugins: n.plugins.clone(),
            file: n.file.clone(),
        }
    }
}

fn write_record(dir: &Path, record: &Record) -> Result<(), VmError> {
    let path = dir.join(RECORD);
    let tmp = dir.join(format!(".{RECORD}.tmp"));
    let text = serde_json::to_vec_pretty(record).unwrap_or_default();
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(io("write", &path))
}

fn read_record(dir: &Path) -> Option<Record> {
    let text = std::fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// A VM on its CNI network, while its supervisor runs; dropping it detaches.
pub struct CniAttachment {
    dir: PathBuf,
    uid: Uid,
    pub netns: PathBuf,
    pub tap: String,
    pub mac: String,
    pub address: Ipv4Addr,
    pub network: String,
    pub guest: GuestNetwork,
    _held: Vec<HeldPort>,
    attached: bool,
}

impl CniAttachment {
    /// One that is not attached anywhere (dropping it detaches nothing), for plans.
    #[cfg(test)]
    pub(crate) fn detached(mac: &str, address: Ipv4Addr, guest: GuestNetwork) -> CniAttachment {
        CniAttachment {
            dir: PathBuf::new(),
            uid: "0000000000000000".parse().expect("a uid"),
            netns: sandbox::netns_path("ignite-test"),
            tap: sandbox::TAP.into(),
            mac: mac.into(),
            address,
            network: "test".into(),
            guest,
            _held: Vec::new(),
            attached: false,
        }
    }
}

impl Drop for CniAttachment {
    fn drop(&mut self) {
        if self.attached {
            detach_dir(&System, &self.dir, &self.uid);
        }
    }
}

/// Attaches a VM to its CNI network (see the module's documentation). Leftovers of a
/// former run go first; whatever fails afterwards is undone.
pub fn attach(store: &Store, vm: &Vm, settings: &CniSettings) -> Result<CniAttachment, VmError> {
    attach_with(&System, store, vm, settings)
}

fn attach_with(
    host: &dyn Commands,
    store: &Store,
    vm: &Vm,
    settings: &CniSettings,
) -> Result<CniAttachment, VmError> {
    let uid = uid_of(vm);
    let dir = VmFiles::new(store, &uid).dir().to_path_buf();
    detach_dir(host, &dir, &uid);
    if cni::config::ensure_default(&settings.conf_dir)? {
        tracing::info!(
            "no CNI network configuration in {}: wrote Ignite's default ({})",
            settings.conf_dir.display(),
            cni::DEFAULT_FILE
        );
    }
    let network = cni::config::load(&settings.conf_dir, vm.spec.network.cni_network.as_deref())?;
    let port_mappings: Vec<PortMapping> = vm
        .spec
        .network
        .ports
        .iter()
        .map(|p| PortMapping {
            host_port: p.host_port,
            container_port: p.vm_port,
            protocol: match p.protocol() {
                Protocol::Tcp => "tcp".into(),
                Protocol::Udp => "udp".into(),
            },
            host_ip: p.bind_address.map(|a| a.to_string()),
        })
        .collect();
    if !port_mappings.is_empty() && !network.has_capability("portMappings") {
        return Err(VmError::Spec(format!(
            "-p needs a plugin with the portMappings capability in CNI network {:?} ({}), such as portmap: add {{\"type\": \"portmap\", \"capabilities\": {{\"portMappings\": true}}}} to its plugins",
            network.name,
            network.file.display()
        )));
    }
    let held = hold_host_ports(&vm.spec.network.ports)?;
    let last = std::fs::read_to_string(dir.join(LAST_ADDRESS))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty() && network.has_capability("ips"));
    let netns = sandbox::netns_name(uid.as_str());
    let mut record = Record {
        netns: netns.clone(),
        bin_dirs: settings.bin_dirs.clone(),
        network: (&network).into(),
        invocation: Invocation {
            container_id: uid.to_string(),
            netns: sandbox::netns_path(&netns),
            ifname: IFNAME.into(),
            runtime: RuntimeConfig {
                port_mappings,
                ips: last.iter().cloned().collect(),
            },
        },
        result: None,
    };
    // Recorded first: a crash from here on is repaired by DEL and the namespace's removal.
    write_record(&dir, &record)?;
    let undo = |e: VmError| {
        detach_dir(host, &dir, &uid);
        e
    };
    sandbox::create_netns(host, &netns).map_err(|e| undo(e.into()))?;
    let cni = Cni::new(settings.bin_dirs.clone());
    let added = match cni.add(&network, &record.invocation) {
        Err(e) if !record.invocation.runtime.ips.is_empty() => {
            // The former address may be taken by now: any address will do.
            tracing::warn!("cannot have the former address again ({e}): asking for any");
            record.invocation.runtime.ips.clear();
            write_record(&dir, &record).map_err(undo)?;
            cni.add(&network, &record.invocation)
        }
        other => other,
    };
    let (raw, result) = added.map_err(|e| undo(e.into()))?;
    record.result = Some(raw);
    write_record(&dir, &record).map_err(undo)?;
    let Some(ip) = result.ipv4_of(IFNAME) else {
        return Err(undo(VmError::Host(format!(
            "CNI network {:?} gave the VM no IPv4 address on {IFNAME} (IPv6-only networks are not supported)",
            network.name
        ))));
    };
    let _ = std::fs::write(
        dir.join(LAST_ADDRESS),
        format!("{}/{}\n", ip.address, ip.prefix),
    );
    let (mtu, link_mac) = sandbox::link_of(host, &netns, IFNAME).map_err(|e| undo(e.into()))?;
    // Re-spelt from its bytes: it ends up on the VMM's command line.
    let mac = result
        .mac_of(IFNAME)
        .map(str::to_string)
        .or(link_mac)
        .and_then(|m| ignite_net::dhcp::parse_mac(&m).ok())
        .map(|b| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        });
    let Some(mac) = mac else {
        return Err(undo(VmError::Host(format!(
            "CNI network {:?}: no valid MAC address for {IFNAME} in the VM's namespace",
            network.name
        ))));
    };
    sandbox::join_tap(host, &netns, IFNAME, mtu).map_err(|e| undo(e.into()))?;
    let mut nameservers = result.dns.nameservers.clone();
    nameservers.retain(|n| n.parse::<Ipv4Addr>().is_ok());
    if nameservers.is_empty() {
        nameservers = super::network::host_nameservers()
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    if let Some(gateway) = ip.gateway {
        let lease = ignite_net::dhcp::Lease {
            mac: ignite_net::dhcp::parse_mac(&mac)?,
            address: ip.address,
            mask: prefix_mask(ip.prefix),
            gateway,
            nameservers: nameservers.iter().filter_map(|n| n.parse().ok()).collect(),
            hostname: vm.metadata.name.clone(),
        };
        // The static configuration still works without it, so this is no reason to fail.
        if let Err(e) = serve_dhcp(&sandbox::netns_path(&netns), lease) {
            tracing::warn!("no DHCP answers for this VM: {e}");
        }
    }
    tracing::info!(network = %network.name, address = %ip.address, "attached to the CNI network");
    Ok(CniAttachment {
        dir,
        uid,
        netns: sandbox::netns_path(&netns),
        tap: sandbox::TAP.into(),
        mac: mac.clone(),
        address: ip.address,
        network: network.name.clone(),
        guest: GuestNetwork {
            interfaces: vec![Interface {
                mac,
                addresses: vec![format!("{}/{}", ip.address, ip.prefix)],
                gateway: ip.gateway.map(|g| g.to_string()),
                mtu,
            }],
            nameservers,
        },
        _held: held,
        attached: true,
    })
}

/// The netmask of a prefix length (`24`: 255.255.255.0).
fn prefix_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

/// Starts the VM's DHCP responder on its tap, inside its namespace: a thread that enters
/// the namespace starts it (the responder's own thread and socket stay there) and ends.
fn serve_dhcp(netns: &Path, lease: ignite_net::dhcp::Lease) -> Result<(), String> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<(), String> {
        let file = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("cannot enter {}: {e}", netns.display()))?;
        ignite_net::dhcp::serve(sandbox::TAP, lease).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the DHCP responder's thread panicked".to_string())?
}

/// Runs DEL for what the VM's record says it attached and removes its namespace.
/// Idempotent; failures are logged.
fn detach_dir(host: &dyn Commands, dir: &Path, uid: &Uid) {
    let netns = sandbox::netns_name(uid.as_str());
    if let Some(record) = read_record(dir) {
        let cni = Cni::new(record.bin_dirs.clone());
        let network: NetworkConfig = (&record.network).into();
        if let Err(e) = cni.del(&network, &record.invocation, record.result.as_ref()) {
            tracing::warn!("cannot detach VM {uid} from its CNI network: {e}");
        }
    }
    if let Err(e) = sandbox::delete_netns(host, &netns) {
        tracing::warn!("cannot remove the network namespace of VM {uid}: {e}");
    }
    let _ = std::fs::remove_file(dir.join(RECORD));
}

/// Detaches a VM whose supervisor could not (repair after a crash, `rm`).
pub fn detach(store: &Store, uid: &Uid) {
    detach_dir(&System, VmFiles::new(store, uid).dir(), uid);
}

/// The status a CNI VM records.
pub fn status(address: Ipv4Addr) -> NetworkStatus {
    NetworkStatus {
        plugin: "cni".into(),
        ip_addresses: vec![IpAddr::V4(address)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_netmasks() {
        assert_eq!(prefix_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_mask(16), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(prefix_mask(32), Ipv4Addr::BROADCAST);
        assert_eq!(prefix_mask(0), Ipv4Addr::UNSPECIFIED);
    }

    /// `-p` on a network without a `portMappings` plugin is refused before anything is
    /// made (no namespace, no plugin run, no record); an empty directory gets the default.
    #[test]
    fn ports_need_a_port_mapping_plugin_and_an_empty_directory_gets_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("10-plain.conflist"),
            r#"{"cniVersion":"1.0.0","name":"plain","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let settings = CniSettings {
            conf_dir: conf.clone(),
            bin_dirs: vec![dir.path().join("bin")],
        };
        let mut spec = ignite_api::VmSpec::default();
        spec.network.mode = Some(ignite_api::NetworkMode::Cni);
        spec.network.ports = vec!["18099:80".parse().unwrap()];
        let meta = ignite_api::ObjectMeta {
            name: "web".into(),
            ..Default::default()
        };
        let vm = store.vms().create(Vm::new(meta, spec)).unwrap();
        let host = ignite_net::Recording::new();
        let e = attach_with(&host, &store, &vm, &settings).err().unwrap();
        assert!(matches!(e, VmError::Spec(_)), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("portMappings") && text.contains("\"plain\""),
            "{text}"
        );
        assert!(
            !host.calls().iter().any(|c| c.starts_with("ip netns add")),
            "{:?}",
            host.calls()
        );
        assert!(
            !VmFiles::new(&store, &uid_of(&vm))
                .dir()
                .join(RECORD)
                .exists()
        );
        // The configuration was there: no default was written.
        assert!(!conf.join(cni::DEFAULT_FILE).exists());

        let empty = dir.path().join("empty.d");
        let settings = CniSettings {
            conf_dir: empty.clone(),
            ..settings
        };
        let _ = attach_with(&host, &store, &vm, &settings);
        assert!(empty.join(cni::DEFAULT_FILE).is_file());
    }
}
