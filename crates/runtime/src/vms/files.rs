//! The files a VM owns in its directory.

use std::path::{Path, PathBuf};

use ignite_api::Uid;
use ignite_disk::DiskFormat;
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

    /// The files of the VM whose directory is `dir`.
    pub fn at(dir: PathBuf) -> VmFiles {
        VmFiles { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The VM's writable root disk in `format` (its VMM's, see
    /// [`ignite_vmm::Capabilities::root_disk`]).
    pub fn root_disk(&self, format: DiskFormat) -> PathBuf {
        self.dir.join(format.root_disk_file())
    }
    /// The root disk and the image disk it is an overlay on, when it is one.
    pub fn root_disk_backing(&self) -> Option<(PathBuf, PathBuf)> {
        DiskFormat::ALL.into_iter().find_map(|format| {
            let disk = self.root_disk(format);
            ignite_disk::backing_file(&disk).map(|backing| (disk, backing))
        })
    }
    /// The guest's network interfaces of the current run (MACs, addresses), which a
    /// snapshot records so its clones can be moved off them.
    pub fn guest_interfaces(&self) -> PathBuf {
        self.dir.join("interfaces.json")
    }
    /// Present until a VM made from a snapshot has been restored from it: its content is
    /// the snapshot's UID. Later starts boot from the disk.
    pub fn restore_marker(&self) -> PathBuf {
        self.dir.join("restore-from")
    }
    /// The guest's memory, for VMs that run with it in a file (warm-start templates).
    pub fn guest_memory(&self) -> PathBuf {
        self.dir.join("memory")
    }
    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio")
    }
    /// Everything the serial console printed, across boots.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// `attach` connects here.
    /// What `ignite logs` shows (see [`super::output_log`]).
    pub fn output_log(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    /// Where `ignite exec` reaches the guest agent, through the supervisor.
    pub fn exec_socket(&self) -> PathBuf {
        self.dir.join("exec.sock")
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

    /// The key pair `--ssh` generates (the private key is 0600).
    pub fn ssh_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    /// The public keys ignite-init puts into root's authorized_keys on every boot.
    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }

    /// Sets up SSH access for `--ssh`: a new ed25519 key pair, or the given public key
    /// (`.pub` is tried after the path as given, as Ignite did).
    pub fn set_up_ssh(&self, ssh: &ignite_api::Ssh, comment: &str) -> Result<(), VmError> {
        let public = match ssh {
            ignite_api::Ssh::Generate => {
                let key = self.ssh_key();
                let out = ignite_host_tools::SSH_KEYGEN
                    .command()?
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                    .arg(&key)
                    .output()
                    .map_err(|e| {
                        VmError::Host(format!(
                            "cannot run ssh-keygen ({e}): install openssh-client"
                        ))
                    })?;
                if !out.status.success() {
                    return Err(VmError::Host(format!(
                        "ssh-keygen could not create {}: {}",
                        key.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                key.with_extension("pub")
            }
            ignite_api::Ssh::PublicKey(path) => {
                let with_pub = PathBuf::from(format!("{}.pub", path.display()));
                if path.is_file() {
                    path.clone()
                } else if with_pub.is_file() {
                    with_pub
                } else {
                    return Err(VmError::Spec(format!(
                        "--ssh={}: no such public key (nor {})",
                        path.display(),
                        with_pub.display()
                    )));
                }
            }
        };
        let text = std::fs::read_to_string(&public).map_err(io("read the public key", &public))?;
        let keys: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if keys.is_empty()
            || keys
                .iter()
                .any(|k| !k.starts_with("ssh-") && !k.starts_with("ecdsa-"))
        {
            return Err(VmError::Spec(format!(
                "{} is not an OpenSSH public key (ssh-ed25519 AAAA..., ssh-rsa AAAA...)",
                public.display()
            )));
        }
        let dest = self.authorized_keys();
        std::fs::write(&dest, keys.join("\n") + "\n").map_err(io("write", &dest))
    }

    /// Sockets and what the VMM's driver left (Firecracker's jail): stale after a crash,
    /// recreated on every start.
    pub fn remove_runtime_files(&self) {
        for path in [
            self.console_socket(),
            self.agent_socket(),
            self.exec_socket(),
            self.control_socket(),
        ] {
            let _ = std::fs::remove_file(path);
        }
        ignite_vmm::driver::remove_run_files(&self.dir);
    }
}
