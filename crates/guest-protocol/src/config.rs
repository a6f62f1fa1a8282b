//! The per-VM boot configuration. The host writes it as `/etc/ignite/vm.json` into a small
//! cpio archive appended to the kernel's cached initramfs; files to copy into the VM travel
//! in the same archive under `/etc/ignite/files/`. ignite-init applies it on every boot, so
//! everything here must be applied idempotently.

use serde::{Deserialize, Serialize};

/// Where the configuration lives inside the initramfs.
pub const CONFIG_PATH: &str = "etc/ignite/vm.json";
/// Where copied files live inside the initramfs, each under the name in [`CopiedFile::source`].
pub const FILES_DIR: &str = "etc/ignite/files";
/// The newest configuration version this crate writes and ignite-init understands.
pub const CONFIG_VERSION: u32 = 1;
/// The ext4 label of a kernel's modules disk, checked before it is mounted.
pub const MODULES_LABEL: &str = "ignite-modules";
/// On the kernel command line, keeps ignite-init from starting the guest agent: no
/// `ignite exec`/`cp` into the VM (exec falls back to SSH), for guests that must not
/// take commands from the host.
pub const AGENT_OFF_ARG: &str = "ignite.agent=off";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestConfig {
    pub version: u32,
    /// The VM's name and uid, for messages.
    pub name: String,
    pub uid: String,
    pub hostname: String,
    pub mode: BootMode,
    /// What container mode runs: the image's ENTRYPOINT/CMD (CMD replaced by the command
    /// given to `ignite run`), ENV, WORKDIR and USER.
    pub workload: Workload,
    /// The root disk's device node inside the guest.
    pub root_device: String,
    /// The kernel's modules disk (read-only ext4 labelled [`MODULES_LABEL`]), if any; it
    /// is mounted on /lib/modules/<release> in the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_device: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_domains: Vec<String>,
    /// Extra /etc/hosts entries (localhost and the VM's own name are always written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEntry>,
    /// Public keys for root's ~/.ssh/authorized_keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<CopiedFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// A warm-start template (see the host's `vms::warm`): ignite-init stops before it
    /// touches the root disk and waits for a VM's configuration over the agent channel
    /// ([`crate::agent::BootRequest`]), which arrives once the template was snapshotted
    /// and a clone of it restored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
}

/// How the guest runs the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// VM mode when the image has an init and no command was given, container mode otherwise.
    #[default]
    Auto,
    /// Hand over to the image's `/sbin/init` (what Ignite did).
    Vm,
    /// Run ENTRYPOINT/CMD as a supervised workload; the VM powers off when it exits.
    Container,
}

impl BootMode {
    pub fn parse(s: &str) -> Option<BootMode> {
        match s {
            "auto" => Some(BootMode::Auto),
            "vm" => Some(BootMode::Vm),
            "container" => Some(BootMode::Container),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Auto => "auto",
            BootMode::Vm => "vm",
            BootMode::Container => "container",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// `KEY=value` pairs, as in the image config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, as in the image config.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// True when the command came from the user rather than the image, which makes auto
    /// mode choose container mode.
    #[serde(default)]
    pub command_given: bool,
    /// The workload's stdin, stdout and stderr are a pseudo-terminal (`-t`) rather than
    /// pipes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// The host feeds the workload's stdin (`-i` while attached); otherwise it reads
    /// /dev/null, as a docker container without `-i` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// The terminal's size at start, for `tty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::agent::WindowSize>,
}

impl Workload {
    /// The command line container mode runs: ENTRYPOINT followed by CMD.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// A network interface, found by MAC address, configured statically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub mac: String,
    /// Addresses in CIDR form, `10.61.0.2/16`.
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub address: String,
    pub names: Vec<String>,
}

/// A file from the host put into the VM (`--copy-files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopiedFile {
    /// Its name below [`FILES_DIR`] in the initramfs.
    pub source: String,
    /// The absolute path in the VM.
    pub path: String,
    pub mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

/// A block device mounted into the VM (`--volumes`), also written to its /etc/fstab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub device: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

impl GuestConfig {
    /// What a guest does with no configuration: root on /dev/vda, auto mode, nothing else.
    pub fn defaults() -> GuestConfig {
        GuestConfig {
            version: CONFIG_VERSION,
            name: String::new(),
            uid: String::new(),
            hostname: String::new(),
            mode: BootMode::Auto,
            workload: Workload::default(),
            root_device: "/dev/vda".into(),
            modules_device: None,
            interfaces: vec![],
            nameservers: vec![],
            search_domains: vec![],
            hosts: vec![],
            authorized_keys: vec![],
            files: vec![],
            volumes: vec![],
            template: false,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the guest config always serialises")
    }

    /// Parses the configuration, refusing versions newer than this build knows.
    pub fn from_json(bytes: &[u8]) -> Result<GuestConfig, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version == 0 || version > u64::from(CONFIG_VERSION) {
            return Err(format!(
                "configuration version {version} is not supported by this ignite-init (it knows 1 to {CONFIG_VERSION}): use matching ignite and ignite-init builds"
            ));
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GuestConfig {
        GuestConfig {
            version: CONFIG_VERSION,
            name: "web".into(),
            uid: "0123456789abcdef".into(),
            hostname: "web".into(),
            mode: BootMode::Auto,
            workload: Workload {
                entrypoint: vec!["/bin/sh".into(), "-c".into()],
                cmd: vec!["echo hi".into()],
                ..Workload::default()
            },
            root_device: "/dev/vda".into(),
            modules_device: Some("/dev/vdb".into()),
            interfaces: vec![Interface {
                mac: "52:54:00:12:34:56".into(),
                addresses: vec!["10.61.0.2/16".into()],
                gateway: Some("10.61.0.1".into()),
                mtu: None,
            }],
            nameservers: vec!["1.1.1.1".into()],
            search_domains: vec![],
            hosts: vec![],
            authorized_keys: vec!["ssh-ed25519 AAAA test".into()],
            files: vec![],
            volumes: vec![],
            template: false,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let config = sample();
        assert_eq!(GuestConfig::from_json(&config.to_json()).unwrap(), config);
        assert_eq!(config.workload.argv(), ["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn newer_versions_are_refused_with_advice() {
        let mut value: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        value["version"] = 99.into();
        let err = GuestConfig::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("version 99"), "{err}");
        assert!(
            GuestConfig::from_json(b"{")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
