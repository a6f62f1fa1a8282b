//! The files a VM owns in its directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use ignite_api::Uid;
use ignite_store::Store;

use super::{VmError, io};

pub struct VmFiles {
    dir: PathBuf,
}

impl VmFiles {
    pub fn new(store: &Store, uid: &Uid) -> VmFiles {
        VmFiles {
            dir: store.vms().object_dir(uid),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The VM's writable disk: a qcow2 overlay over the image's shared ext4.
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("root.qcow2")
    }
    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio")
    }
    /// Everything the serial console printed, across boots.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// `attach` connects here.
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    /// The VMM's control socket (QMP, or Firecracker's API).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("vmm.sock")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// The VMM's command line of the last start, NUL-separated (for debugging and the
    /// manager-overhead benchmark, which replays it with a bare QEMU).
    pub fn vmm_command_line(&self) -> PathBuf {
        self.dir.join("vmm.cmdline")
    }

    /// Sockets: stale after a crash, recreated on every start.
    pub fn remove_runtime_files(&self) {
        for path in [
            self.console_socket(),
            self.agent_socket(),
            self.control_socket(),
        ] {
            let _ = std::fs::remove_file(path);
        }
    }

    pub fn create_overlay(&self, base: &Path, size: u64) -> Result<(), VmError> {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(base)
            .arg(self.overlay())
            .arg(size.to_string())
            .output()
            .map_err(|e| {
                VmError::Invalid(format!("cannot run qemu-img ({e}): install qemu-utils"))
            })?;
        if !out.status.success() {
            return Err(VmError::Invalid(format!(
                "qemu-img could not create {}: {}",
                self.overlay().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let overlay = self.overlay();
        std::fs::metadata(&overlay).map_err(io("create", &overlay))?;
        Ok(())
    }
}
