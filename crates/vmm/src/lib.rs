//! VMM drivers. A [`MachineSpec`] describes a VM the same way whatever runs it; each driver
//! turns it into its VMM's terms.
//!
//! - [`qemu`]: QEMU `-M microvm`, from the distribution's `qemu-system-x86` package, and
//!   [`qmp`], its control socket; [`tsc`], the host TSC frequency a TCG guest is told.
//! - [`firecracker`]: Firecracker, configured over its HTTP API ([`firecracker::api`]).
//!
//! Nothing outside this crate knows which VMM runs: [`driver`] chooses and finds one, and
//! callers ask it what it can do ([`Capabilities`]: its root disk format, kernel format,
//! network backends and accelerators) instead of matching on its kind. [`accel`] tells
//! whether KVM works here.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod accel;
pub mod driver;
pub mod firecracker;
pub mod qemu;
pub mod qmp;
pub mod tsc;

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub use driver::{Capabilities, KernelFormat, NetworkBackend, VmmError};
pub use ignite_api::{Accel, VmmKind};
pub use ignite_disk::DiskFormat;

/// What the supervisor needs from a VMM. The supervisor starts the returned command as its
/// child, so it owns the VMM process whatever the driver.
pub trait Vmm: Send + Sync {
    /// Which VMM this is, as recorded in the VM's status.
    fn kind(&self) -> VmmKind;
    /// `qemu` or `firecracker`.
    fn name(&self) -> &'static str {
        self.kind().name()
    }
    /// What the VMM reads and supports; callers ask this instead of matching on the kind.
    fn capabilities(&self) -> Capabilities;
    /// The accelerator a VM gets: `asked` when the VMM supports it, else `auto()` where
    /// nothing was asked; an unsupported request is refused with what to do instead.
    fn choose_accel(
        &self,
        asked: Option<Accel>,
        auto: &dyn Fn() -> Accel,
    ) -> Result<Accel, VmmError> {
        Ok(asked.unwrap_or_else(auto))
    }
    /// Refuses a network backend the VMM lacks, with what to do instead.
    fn check_network(&self, backend: NetworkBackend) -> Result<(), VmmError> {
        let _ = backend;
        Ok(())
    }
    /// True when the VMM can run as the unprivileged user of [`Confinement::user`] (QEMU
    /// always; Firecracker under its jailer only). Otherwise the user is not claimed.
    fn runs_as_vm_user(&self) -> bool {
        true
    }
    /// The program and arguments that run `spec`; `control` is the VMM's control socket.
    fn command(&self, spec: &MachineSpec, control: &Path) -> (PathBuf, Vec<OsString>);
    /// Configures and boots the machine once the process runs (a no-op where the command
    /// line says it all).
    fn boot(&self, spec: &MachineSpec, control: &Path) -> io::Result<()>;
    /// Presses the power button: a guest that listens powers off.
    fn power_button(&self, control: &Path) -> io::Result<()>;
    /// Freezes the guest's vCPUs (`ignite pause`); its memory and devices stay as they are.
    fn pause(&self, control: &Path) -> io::Result<()>;
    /// Lets a paused guest run again (`ignite unpause`).
    fn resume(&self, control: &Path) -> io::Result<()>;
    /// Writes a paused guest's whole state (vCPUs, devices, memory) into `files`, which
    /// must not exist yet; they are created readable by their owner only. The guest stays
    /// paused. A VM started with [`MachineSpec::restore`] continues from them.
    fn save_state(&self, control: &Path, files: &StateFiles) -> io::Result<()>;
    /// What the guest's balloon driver last reported of its memory; `None` when the
    /// machine has no balloon or the guest has reported nothing yet.
    fn guest_memory(&self, control: &Path) -> io::Result<Option<GuestMemoryStats>> {
        let _ = control;
        Ok(None)
    }
    /// True when a [`ConsoleSpec::Socket`] console is the VMM's stdin and stdout, which the
    /// supervisor then relays (with a capped log) itself.
    fn console_on_stdio(&self) -> bool {
        false
    }
    /// A connection to the guest agent's channel, once the guest listens on it.
    fn connect_agent(&self, spec: &MachineSpec) -> io::Result<UnixStream> {
        let socket = spec
            .agent_socket
            .as_deref()
            .ok_or_else(|| io::Error::other("the VM has no agent channel"))?;
        UnixStream::connect(socket)
    }
}

/// The guest's memory as its balloon driver reports it, in bytes (each figure only where
/// the guest gave it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestMemoryStats {
    pub total: Option<u64>,
    pub free: Option<u64>,
    pub available: Option<u64>,
}

/// How often a guest's balloon driver reports its memory statistics, in seconds.
pub const BALLOON_STATS_SECONDS: u32 = 5;

/// One VM's machine, as every driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The kernel the VMM boots (a bzImage for QEMU, the ELF vmlinux for Firecracker).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// In order: the root disk first (`/dev/vda` in the guest), then the rest.
    pub disks: Vec<DiskSpec>,
    pub console: ConsoleSpec,
    /// The host end of the guest agent's channel.
    pub agent_socket: Option<PathBuf>,
    pub nics: Vec<NicSpec>,
    pub accel: Accel,
    /// Where the VMM keeps its own log and metrics, for VMMs that have them.
    pub log_dir: Option<PathBuf>,
    /// Continue from a saved state instead of booting: the machine must be the one the
    /// state was saved from (same vCPUs, memory, kernel, disks and NICs, in order).
    pub restore: Option<StateFiles>,
    /// The guest's memory in a file instead of anonymous memory (QEMU).
    pub memory_file: Option<MemoryFile>,
    /// A balloon device through which the guest reports the memory it frees, so the host
    /// takes those pages back (virtio free page reporting). Part of the machine: a saved
    /// state loads only into a machine with the same setting.
    pub memory_reporting: bool,
    /// The TCG translation cache's size in MiB (QEMU's `tb-size`); `None`: QEMU's own.
    pub translation_cache_mib: Option<u32>,
    /// Under TCG, guest time from QEMU's instruction counting (`-icount shift=auto`, as
    /// before the host's TSC frequency was handed to the guest): slower, for comparison
    /// and for hosts whose TSC cannot be trusted (`IGNITE_TCG_CLOCK=icount`).
    pub tcg_icount: bool,
    /// How the VMM process is held in.
    pub confinement: Confinement,
}

/// How the VMM process is held in (the README's "Confinement"): what the runtime decided
/// for this host and caller, which each driver turns into its VMM's terms. The VM's cgroup
/// is not here: the VMM's launcher joins it just before it becomes the VMM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// The unprivileged user and group the VMM runs as once it has opened its devices,
    /// disks and sockets (VMs started by root); `None`: it runs as its caller.
    pub user: Option<VmmUser>,
    /// The VMM's own system-call filter (QEMU's `-sandbox`; Firecracker always filters).
    pub seccomp: bool,
}

/// A VMM's user and group: one of the host's range for VMMs, a VM's own while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmmUser {
    pub uid: u32,
    pub gid: u32,
}

/// Guest memory backed by a file. `shared`: the guest writes into the file (a warm-start
/// template, whose memory is then saved without copying it through the state stream);
/// otherwise the file is mapped privately, so VMs restored from one file share its pages
/// in the host's page cache until they write to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFile {
    pub path: PathBuf,
    pub shared: bool,
}

/// A saved guest state. QEMU writes one stream (devices and memory) into `state`;
/// Firecracker its VM state into `state` and the guest memory into `memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFiles {
    pub state: PathBuf,
    pub memory: PathBuf,
    /// The guest's memory is in a file of its own ([`MemoryFile`]), not in `state`: saved
    /// and loaded without its pages (QEMU's `x-ignore-shared`).
    pub memory_in_file: bool,
}

impl StateFiles {
    /// The state files in a snapshot's directory.
    pub fn in_dir(dir: &Path) -> StateFiles {
        StateFiles {
            state: dir.join("state"),
            memory: dir.join("memory"),
            memory_in_file: false,
        }
    }

    /// Creates a state file: new (never an existing file or a link), owner-only, since it
    /// holds the guest's memory and whatever secrets are in it.
    pub fn create(path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    }

    /// Opens a state file to read, without following a link.
    pub fn open(path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub read_only: bool,
    /// Writes go to a throw-away overlay (tests boot shared images this way).
    pub snapshot: bool,
    /// The VMM inherits the disk open (read-write) at this descriptor and opens it as
    /// `/proc/self/fd/N` (QEMU): a VMM that changed user reopens its disks by name around
    /// a saved state, and that name needs no search permission on the disk's directories.
    pub inherited_fd: Option<u32>,
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleSpec {
    /// Appended to a log file.
    File(PathBuf),
    /// Relayed by the supervisor: the VMM has the console on its stdin and stdout (every
    /// driver's `console_on_stdio` is true for it), and the supervisor serves the unix
    /// socket `path` (for attach) and appends the output to the capped `log`.
    Socket { path: PathBuf, log: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub mac: String,
    pub backend: NicBackend,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBackend {
    /// The VMM's user-mode network, with host ports forwarded to the guest. `isolated`
    /// keeps the guest from reaching the host or beyond (forwards still work).
    User {
        forwards: Vec<PortForward>,
        isolated: bool,
    },
    /// An existing tap device.
    Tap { ifname: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub udp: bool,
    pub host_address: String,
    pub host_port: u16,
    pub guest_port: u16,
}

/// A program in PATH, or in the sbin and bin directories a normal user's PATH may lack.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    ignite_host_tools::locate(program)
}
