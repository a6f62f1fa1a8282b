//! What the starting command hands the supervisor: a typed file in the VM's directory,
//! written before the supervisor starts and read once by it (not environment variables,
//! which any process in between could change, and which say nothing of their types).

use std::io::Read;
use std::path::{Path, PathBuf};

use ignite_api::Accel;
use serde::{Deserialize, Serialize};

use crate::vms::cni_network::CniSettings;
use crate::vms::confinement::VmmUsers;
use crate::vms::network::BridgeSettings;
use crate::vms::{VmError, io};

/// The file's name in the VM's directory.
pub const CONFIG_FILE: &str = "supervisor.json";
/// Larger files are not read: the supervisor only wrote small ones.
const MAX_CONFIG_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SupervisorConfig {
    /// The accelerator the starting command resolved with the VM's driver.
    pub accel: Accel,
    /// The bridge of `--network bridge` VMs.
    pub bridge_name: String,
    pub bridge_subnet: String,
    /// The Configuration's `spec.firecracker`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firecracker: Option<PathBuf>,
    /// Where `--network cni` VMs find configurations and plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniSettings>,
    /// A container-mode VM may start from a warm-start template (see `vms::warm`).
    #[serde(default)]
    pub warm: bool,
    /// The machine has a balloon for free page reporting (see `vms::host_memory`).
    #[serde(default)]
    pub memory_reporting: bool,
    /// The TCG translation cache in MiB; absent: QEMU's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation_cache_mib: Option<u32>,
    /// The host uids the VMM may run as (see `vms::confinement`).
    #[serde(default)]
    pub vmm_users: VmmUsers,
    /// All of the VMM's private memory is offered to the host's KSM (see
    /// `host_memory::mark_mergeable`).
    #[serde(default)]
    pub vmm_mergeable: bool,
    /// Under TCG, guest time from instruction counting instead of the host's TSC
    /// (`IGNITE_TCG_CLOCK=icount`, see `vms::accel::tcg_icount_from_env`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcg_icount: bool,
}

impl SupervisorConfig {
    pub fn new(accel: Accel, bridge: &BridgeSettings, firecracker: Option<PathBuf>) -> Self {
        SupervisorConfig {
            accel,
            bridge_name: bridge.name.clone(),
            bridge_subnet: bridge.subnet.to_string(),
            firecracker,
            cni: None,
            warm: false,
            memory_reporting: false,
            translation_cache_mib: None,
            vmm_users: VmmUsers::default(),
            vmm_mergeable: false,
            tcg_icount: false,
        }
    }

    pub fn bridge(&self) -> Result<BridgeSettings, VmError> {
        BridgeSettings::new(Some(&self.bridge_name), Some(&self.bridge_subnet))
            .map_err(VmError::Spec)
    }

    /// Writes the file for the VM in `dir` (mode 0600, replacing any former one).
    pub fn write(&self, dir: &Path) -> Result<(), VmError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(CONFIG_FILE);
        let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let text = serde_json::to_vec_pretty(self).expect("the config serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        file.write_all(&text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("move into place", &path))
    }

    /// Reads the file of the VM in `dir`.
    pub fn read(dir: &Path) -> Result<SupervisorConfig, VmError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(CONFIG_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(io("open the supervisor's configuration", &path))?;
        let mut text = Vec::new();
        file.take(MAX_CONFIG_BYTES)
            .read_to_end(&mut text)
            .map_err(io("read", &path))?;
        serde_json::from_slice(&text).map_err(|e| {
            VmError::Spec(format!(
                "the supervisor's configuration {} is not valid ({e}): start the VM again",
                path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_round_trips_privately_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = SupervisorConfig::new(
            Accel::Tcg,
            &BridgeSettings::default(),
            Some("/opt/fc".into()),
        );
        config.write(dir.path()).unwrap();
        assert_eq!(SupervisorConfig::read(dir.path()).unwrap(), config);
        assert_eq!(config.bridge().unwrap(), BridgeSettings::default());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CONFIG_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(CONFIG_FILE), r#"{"accel":"hvf"}"#).unwrap();
        let e = SupervisorConfig::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not valid"), "{e}");
        let other = tempfile::tempdir().unwrap();
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        std::os::unix::fs::symlink(other.path().join("x"), dir.path().join(CONFIG_FILE)).unwrap();
        assert!(
            SupervisorConfig::read(dir.path()).is_err(),
            "links are not followed"
        );
    }
}
