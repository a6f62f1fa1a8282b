//! Firecracker: the process is started with only its API socket; the machine is then
//! configured over the API (logger, metrics, machine, boot source, drives, network
//! interfaces, vsock) and started with `InstanceStart`. The serial console is the
//! process's stdin and stdout; the guest agent is reached over vsock, whose host side is
//! a unix socket that takes `CONNECT <port>`.
//!
//! A VM with its own user ([`crate::Confinement::user`], VMs started by root) runs under
//! Firecracker's jailer where one is installed ([`jailer`]): every path the API is given
//! is then the file's place in the VM's chroot.

pub mod api;
pub mod jailer;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ignite_guest_protocol::agent::VSOCK_PORT;

use crate::{
    Accel, Capabilities, Confinement, DiskFormat, GuestMemoryStats, KernelFormat, MachineSpec,
    NetworkBackend, NicBackend, StateFiles, Vmm, VmmError, VmmKind,
};

pub const FIRECRACKER_BINARY: &str = "firecracker";
/// The guest's vsock context id. Firecracker's vsock is backed by a unix socket per VM, so
/// the id only has to be valid (3 is the first guest id), not unique on the host.
pub const GUEST_CID: u32 = 3;
pub const LOG_FILE: &str = "firecracker.log";
pub const METRICS_FILE: &str = "firecracker.metrics";

pub struct Firecracker {
    pub binary: PathBuf,
    /// Its jailer, when one was found ([`jailer::locate`]).
    pub jailer: Option<PathBuf>,
}

impl Firecracker {
    /// `binary`, with the jailer beside it or in PATH.
    pub fn new(binary: PathBuf) -> Firecracker {
        let jailer = jailer::locate(&binary);
        Firecracker { binary, jailer }
    }

    /// The configured binary, else `firecracker` from PATH, or how to get one.
    pub fn locate(configured: Option<&Path>) -> Result<Firecracker, VmmError> {
        match configured {
            Some(path) if is_executable(path) => Ok(Firecracker::new(path.to_path_buf())),
            Some(path) => Err(VmmError::NotInstalled(format!(
                "the configured Firecracker binary {} is not an executable file: fix the Configuration's spec.firecracker, or use --vmm qemu",
                path.display()
            ))),
            None => crate::find_in_path(FIRECRACKER_BINARY)
                .map(Firecracker::new)
                .ok_or_else(|| {
                    VmmError::NotInstalled("firecracker is not installed (or not in PATH): install a release from https://github.com/firecracker-microvm/firecracker/releases, set the Configuration's spec.firecracker to its path, or use --vmm qemu".to_string())
                }),
        }
    }

    /// `Firecracker v1.16.1`, as the binary says.
    pub fn version(&self) -> io::Result<String> {
        version_of(&self.binary)
    }

    /// The jail a VM runs in: one for each VM with its own user when the jailer is
    /// installed, else why it runs without (for the supervisor's log). The VM's files
    /// are in `control`'s directory.
    pub fn jail(
        &self,
        confinement: &Confinement,
        control: &Path,
    ) -> Result<(jailer::Jail, &Path), String> {
        let Some(user) = confinement.user else {
            return Err("the VM has no user of its own (VMs started by root get one), so Firecracker runs as the user who started it, without a chroot".into());
        };
        let Some(jailer) = &self.jailer else {
            return Err(format!(
                "no `jailer` beside {} nor in PATH: install the jailer of the same Firecracker release next to it (release archives hold both)",
                self.binary.display()
            ));
        };
        let vm_dir = control.parent().unwrap_or(Path::new("."));
        Ok((jailer::Jail::in_vm_dir(vm_dir, user, &self.binary), jailer))
    }

    /// Refuses what Firecracker cannot run, before anything starts.
    pub fn check(spec: &MachineSpec) -> Result<(), VmmError> {
        if let Some(d) = spec.disks.iter().find(|d| d.format != DiskFormat::Raw) {
            return Err(VmmError::Unsupported(format!(
                "Firecracker reads raw disks only, not {}",
                d.path.display()
            )));
        }
        if spec
            .nics
            .iter()
            .any(|n| !matches!(n.backend, NicBackend::Tap { .. }))
        {
            return Err(VmmError::Unsupported(
                "Firecracker has no user-mode network: use --network bridge (as root) or --network none"
                    .into(),
            ));
        }
        if spec.accel != Accel::Kvm {
            return Err(VmmError::Unsupported(
                "Firecracker runs on KVM only: use --vmm qemu for software emulation".into(),
            ));
        }
        Ok(())
    }
}

/// The first line `PROGRAM --version` prints (`Firecracker v1.16.1`, `Jailer v1.16.1`).
pub fn version_of(program: &Path) -> io::Result<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| io::Error::other(format!("{} --version printed nothing", program.display())))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Vmm for Firecracker {
    fn kind(&self) -> VmmKind {
        VmmKind::Firecracker
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            root_disk: DiskFormat::Raw,
            kernel: KernelFormat::Vmlinux,
            user_network: false,
        }
    }

    fn choose_accel(
        &self,
        asked: Option<Accel>,
        _auto: &dyn Fn() -> Accel,
    ) -> Result<Accel, VmmError> {
        match asked {
            Some(Accel::Tcg) => Err(VmmError::Unsupported(
                "this VM runs on Firecracker, which needs KVM: drop --accel tcg (and IGNITE_ACCEL=tcg), or recreate the VM with --vmm qemu".into(),
            )),
            _ => Ok(Accel::Kvm),
        }
    }

    fn check_network(&self, backend: NetworkBackend) -> Result<(), VmmError> {
        match backend {
            NetworkBackend::User => Err(VmmError::Unsupported(
                "Firecracker has no user-mode network: use --network bridge (as root) or --network none, or --vmm qemu".into(),
            )),
            NetworkBackend::Tap => Ok(()),
        }
    }

    fn runs_as_vm_user(&self) -> bool {
        self.jailer.is_some()
    }

    fn command(&self, spec: &MachineSpec, control: &Path) -> (PathBuf, Vec<OsString>) {
        let args = |api_socket: &Path| -> Vec<OsString> {
            vec![
                "--api-sock".into(),
                api_socket.as_os_str().to_owned(),
                // Until the logger is configured, Firecracker logs to stdout: the console.
                "--level".into(),
                "Warning".into(),
            ]
        };
        match self.jail(&spec.confinement, control) {
            Ok((jail, jailer)) => {
                // A failure shows as the jailer's own error, which names the directory.
                if let Err(e) = jail.create_base() {
                    tracing::warn!("cannot create {}: {e}", jail.base().display());
                }
                tracing::info!(
                    "Firecracker runs under its jailer in {}",
                    jail.root().display()
                );
                jail.command(
                    jailer,
                    &self.binary,
                    args(&jailer::Jail::jailed_path(jailer::API_SOCKET)),
                )
            }
            Err(why) => {
                tracing::warn!("Firecracker runs without its jailer: {why}");
                (self.binary.clone(), args(control))
            }
        }
    }

    fn boot(&self, spec: &MachineSpec, control: &Path) -> io::Result<()> {
        Firecracker::check(spec).map_err(io::Error::other)?;
        let jail = self.jail(&spec.confinement, control).ok().map(|(j, _)| j);
        if let Some(jail) = &jail {
            jail.socket_link(jailer::API_SOCKET, control)?;
            // Firecracker listens once the jailer is done with the chroot.
            wait_for_socket(control, Duration::from_secs(10))?;
        }
        if let Some(files) = &spec.restore {
            let steps = restore_steps(spec, files)?;
            let steps = match &jail {
                Some(jail) => jailed_restore(jail, spec, steps)?,
                None => steps,
            };
            for step in steps {
                match step {
                    RestoreStep::Put(path, Request::Logger(b)) => api::put(control, &path, &b),
                    RestoreStep::Put(path, Request::Metrics(b)) => api::put(control, &path, &b),
                    RestoreStep::Put(path, _) => Err(io::Error::other(format!(
                        "no such restore step: PUT {path}"
                    ))),
                    RestoreStep::Load(b) => api::put(control, "/snapshot/load", &b),
                    RestoreStep::Drive(path, b) => api::patch(control, &path, &b),
                    RestoreStep::Resume => {
                        api::patch(control, "/vm", &api::VmState { state: "Resumed" })
                    }
                }?;
            }
            return Ok(());
        }
        wait_for_socket(control, Duration::from_secs(10))?;
        let requests = match &jail {
            Some(jail) => requests(spec)?
                .into_iter()
                .map(|(path, request)| Ok((path, jailed_request(jail, request)?)))
                .collect::<io::Result<Vec<_>>>()?,
            None => requests(spec)?,
        };
        for (path, body) in requests {
            match body {
                Request::Logger(b) => api::put(control, &path, &b),
                Request::Metrics(b) => api::put(control, &path, &b),
                Request::Machine(b) => api::put(control, &path, &b),
                Request::Boot(b) => api::put(control, &path, &b),
                Request::Drive(b) => api::put(control, &path, &b),
                Request::Nic(b) => api::put(control, &path, &b),
                Request::Vsock(b) => api::put(control, &path, &b),
                Request::Balloon(b) => put_balloon(control, &path, b),
                Request::Action(b) => api::put(control, &path, &b),
            }?;
        }
        Ok(())
    }

    fn power_button(&self, control: &Path) -> io::Result<()> {
        // Ctrl-Alt-Del: the guest reboots, and Firecracker ends when its guest reboots.
        api::put(
            control,
            "/actions",
            &api::InstanceAction {
                action_type: "SendCtrlAltDel",
            },
        )
    }

    fn pause(&self, control: &Path) -> io::Result<()> {
        api::patch(control, "/vm", &api::VmState { state: "Paused" })
    }

    fn resume(&self, control: &Path) -> io::Result<()> {
        api::patch(control, "/vm", &api::VmState { state: "Resumed" })
    }

    fn save_state(&self, control: &Path, files: &StateFiles) -> io::Result<()> {
        if let Some(root) = jailer::root_of_control(control) {
            return save_jailed(control, &root, files);
        }
        // Made here, owner-only: Firecracker writes into them (it would create them with
        // its umask's mode).
        StateFiles::create(&files.state)?;
        StateFiles::create(&files.memory)?;
        api::put(control, "/snapshot/create", &snapshot_create(files))
    }

    fn guest_memory(&self, control: &Path) -> io::Result<Option<GuestMemoryStats>> {
        match api::get(control, "/balloon/statistics") {
            Ok(stats) => Ok(balloon_statistics(&stats)),
            // No balloon, or no statistics yet.
            Err(e) if e.to_string().contains("(400)") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn console_on_stdio(&self) -> bool {
        true
    }

    fn connect_agent(&self, spec: &MachineSpec) -> io::Result<UnixStream> {
        let socket = spec
            .agent_socket
            .as_deref()
            .ok_or_else(|| io::Error::other("the VM has no agent channel"))?;
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("CONNECT {VSOCK_PORT}\n").as_bytes())?;
        // Byte by byte: what follows the answer line is the agent's.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 64 {
            io::Read::read_exact(&mut stream, &mut byte)?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line);
        if !line.starts_with("OK ") {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the guest's vsock port {VSOCK_PORT} did not accept: {line:?}"),
            ));
        }
        stream.set_read_timeout(None)?;
        Ok(stream)
    }
}

/// One API request's body.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Logger(api::Logger),
    Metrics(api::Metrics),
    Machine(api::MachineConfiguration),
    Boot(api::BootSource),
    Drive(api::Drive),
    Nic(api::NetworkInterface),
    Vsock(api::Vsock),
    Balloon(api::Balloon),
    Action(api::InstanceAction),
}

/// The figures of `GET /balloon/statistics` (bytes; absent where the guest gave none).
fn balloon_statistics(reply: &serde_json::Value) -> Option<GuestMemoryStats> {
    let figure = |name: &str| reply.get(name).and_then(serde_json::Value::as_u64);
    let found = GuestMemoryStats {
        total: figure("total_memory"),
        free: figure("free_memory"),
        available: figure("available_memory"),
    };
    (found != GuestMemoryStats::default()).then_some(found)
}

/// Adds the balloon. A Firecracker older than 1.14 refuses `free_page_reporting`: the VM
/// then gets a balloon without it (its memory stays with the host), and the log says so.
fn put_balloon(control: &Path, path: &str, body: api::Balloon) -> io::Result<()> {
    match api::put(control, path, &body) {
        Err(e) if body.free_page_reporting && e.to_string().contains("free_page_reporting") => {
            tracing::warn!(
                "this Firecracker has no free page reporting (1.14 and later have): memory the guest frees stays with the VM ({e})"
            );
            api::put(
                control,
                path,
                &api::Balloon {
                    free_page_reporting: false,
                    ..body
                },
            )
        }
        other => other,
    }
}

/// The requests that configure and start `spec`, in order. The log and metrics files are
/// made here: Firecracker opens them but does not create them.
pub fn requests(spec: &MachineSpec) -> io::Result<Vec<(String, Request)>> {
    let mut out = Vec::new();
    if let Some(dir) = &spec.log_dir {
        let log_path = dir.join(LOG_FILE);
        let metrics_path = dir.join(METRICS_FILE);
        for path in [&log_path, &metrics_path] {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
        }
        out.push((
            "/logger".into(),
            Request::Logger(api::Logger {
                log_path,
                level: "Warning",
                show_level: true,
                show_log_origin: false,
            }),
        ));
        out.push((
            "/metrics".into(),
            Request::Metrics(api::Metrics { metrics_path }),
        ));
    }
    out.push((
        "/machine-config".into(),
        Request::Machine(api::MachineConfiguration {
            vcpu_count: spec.vcpus,
            mem_size_mib: spec.memory_mib,
            smt: false,
        }),
    ));
    out.push((
        "/boot-source".into(),
        Request::Boot(api::BootSource {
            kernel_image_path: spec.kernel.clone(),
            initrd_path: Some(spec.initrd.clone()),
            boot_args: spec.cmdline.clone(),
        }),
    ));
    // Attached in order, so the root disk is /dev/vda, then vdb...
    for (i, disk) in spec.disks.iter().enumerate() {
        let drive_id = if i == 0 {
            "root".to_string()
        } else {
            format!("disk{i}")
        };
        out.push((
            format!("/drives/{drive_id}"),
            Request::Drive(api::Drive {
                drive_id,
                path_on_host: disk.path.clone(),
                is_root_device: false,
                is_read_only: disk.read_only,
            }),
        ));
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        if let NicBackend::Tap { ifname } = &nic.backend {
            let iface_id = format!("eth{i}");
            out.push((
                format!("/network-interfaces/{iface_id}"),
                Request::Nic(api::NetworkInterface {
                    iface_id,
                    host_dev_name: ifname.clone(),
                    guest_mac: nic.mac.clone(),
                }),
            ));
        }
    }
    if let Some(socket) = &spec.agent_socket {
        out.push((
            "/vsock".into(),
            Request::Vsock(api::Vsock {
                guest_cid: GUEST_CID,
                uds_path: socket.clone(),
            }),
        ));
    }
    if spec.memory_reporting {
        out.push((
            "/balloon".into(),
            Request::Balloon(api::Balloon {
                amount_mib: 0,
                deflate_on_oom: true,
                stats_polling_interval_s: crate::BALLOON_STATS_SECONDS,
                free_page_reporting: true,
            }),
        ));
    }
    out.push((
        "/actions".into(),
        Request::Action(api::InstanceAction {
            action_type: "InstanceStart",
        }),
    ));
    Ok(out)
}

/// A jailed VM's state: written by Firecracker into files in its chroot (its user's,
/// owner-only, made here), then moved out to `files`.
fn save_jailed(control: &Path, root: &Path, files: &StateFiles) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The jailer gave the chroot to the VM's user.
    let owner = std::fs::symlink_metadata(root)?;
    let user = crate::VmmUser {
        uid: owner.uid(),
        gid: owner.gid(),
    };
    let inside = [jailer::SAVED_STATE, jailer::SAVED_MEMORY].map(|name| root.join(name));
    for path in &inside {
        // Left by an earlier save that failed half-way.
        let _ = std::fs::remove_file(path);
        let file = StateFiles::create(path)?;
        std::os::unix::fs::fchown(&file, Some(user.uid), Some(user.gid))?;
    }
    let jailed = StateFiles {
        state: jailer::Jail::jailed_path(jailer::SAVED_STATE),
        memory: jailer::Jail::jailed_path(jailer::SAVED_MEMORY),
        memory_in_file: files.memory_in_file,
    };
    let saved = api::put(control, "/snapshot/create", &snapshot_create(&jailed))
        .and_then(|()| jailer::take_out(&inside[0], &files.state))
        .and_then(|()| jailer::take_out(&inside[1], &files.memory));
    for path in &inside {
        let _ = std::fs::remove_file(path);
    }
    saved
}

/// `request` with the files it names put into `jail`, named as Firecracker sees them.
fn jailed_request(jail: &jailer::Jail, request: Request) -> io::Result<Request> {
    use jailer::Placement::{Own, Shared};
    Ok(match request {
        Request::Logger(mut b) => {
            b.log_path = jail.place(&b.log_path, LOG_FILE, Own)?;
            Request::Logger(b)
        }
        Request::Metrics(mut b) => {
            b.metrics_path = jail.place(&b.metrics_path, METRICS_FILE, Own)?;
            Request::Metrics(b)
        }
        Request::Boot(mut b) => {
            // The kernel is the kernel's, shared by every VM booting it.
            b.kernel_image_path = jail.place(&b.kernel_image_path, JAILED_KERNEL, Shared)?;
            b.initrd_path = b
                .initrd_path
                .map(|p| jail.place(&p, JAILED_INITRD, Own))
                .transpose()?;
            Request::Boot(b)
        }
        Request::Drive(mut b) => {
            // A read-only disk (the kernel's modules) is shared; a writable one the VM's.
            let how = if b.is_read_only { Shared } else { Own };
            b.path_on_host = jail.place(&b.path_on_host, &jailed_drive(&b.drive_id), how)?;
            Request::Drive(b)
        }
        Request::Vsock(mut b) => {
            b.uds_path = jail.socket_link(jailer::VSOCK_SOCKET, &b.uds_path)?;
            Request::Vsock(b)
        }
        other => other,
    })
}

/// The kernel, initramfs and drives in a jail. The names are the same in every jail, so
/// the paths a jailed VM's snapshot records are those of any jailed VM restored from it.
const JAILED_KERNEL: &str = "vmlinux";
const JAILED_INITRD: &str = "initrd";
const JAILED_SNAPSHOT_STATE: &str = "snapshot-state";
const JAILED_SNAPSHOT_MEMORY: &str = "snapshot-memory";

fn jailed_drive(drive_id: &str) -> String {
    format!("drive-{drive_id}")
}

/// A restore with the files it names put into `jail`. The drives go in first: loading a
/// snapshot opens the drives it recorded, which in a jail are this VM's.
fn jailed_restore(
    jail: &jailer::Jail,
    spec: &MachineSpec,
    steps: Vec<RestoreStep>,
) -> io::Result<Vec<RestoreStep>> {
    use jailer::Placement::{Own, Shared};
    let mut drives = std::collections::HashMap::new();
    for step in &steps {
        if let RestoreStep::Drive(_, b) = step {
            let read_only = spec
                .disks
                .iter()
                .any(|d| d.path == b.path_on_host && d.read_only);
            let how = if read_only { Shared } else { Own };
            let placed = jail.place(&b.path_on_host, &jailed_drive(&b.drive_id), how)?;
            drives.insert(b.drive_id.clone(), placed);
        }
    }
    steps
        .into_iter()
        .map(|step| {
            Ok(match step {
                RestoreStep::Put(path, request) => {
                    RestoreStep::Put(path, jailed_request(jail, request)?)
                }
                RestoreStep::Load(mut b) => {
                    // A snapshot's files may be restored by many VMs at once: copies.
                    b.snapshot_path =
                        jail.place(&b.snapshot_path, JAILED_SNAPSHOT_STATE, Shared)?;
                    b.mem_backend.backend_path =
                        jail.place(&b.mem_backend.backend_path, JAILED_SNAPSHOT_MEMORY, Shared)?;
                    if let Some(v) = &mut b.vsock_override {
                        v.uds_path = jail.socket_link(jailer::VSOCK_SOCKET, &v.uds_path)?;
                    }
                    RestoreStep::Load(b)
                }
                RestoreStep::Drive(path, mut b) => {
                    if let Some(placed) = drives.remove(&b.drive_id) {
                        b.path_on_host = placed;
                    }
                    RestoreStep::Drive(path, b)
                }
                RestoreStep::Resume => RestoreStep::Resume,
            })
        })
        .collect()
}

/// The body that saves a paused VM into `files`.
pub fn snapshot_create(files: &StateFiles) -> api::SnapshotCreate {
    api::SnapshotCreate {
        snapshot_type: "Full",
        snapshot_path: files.state.clone(),
        mem_file_path: files.memory.clone(),
    }
}

/// One request of a restore, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum RestoreStep {
    /// The logger and metrics: the only configuration allowed before a load.
    Put(String, Request),
    Load(api::SnapshotLoad),
    /// Each drive moved to this VM's file (the snapshot names the VM it was taken of).
    Drive(String, api::DrivePath),
    Resume,
}

/// Restoring `files` into the machine `spec`: logger and metrics, the load with this VM's
/// taps and vsock socket, its drives, then running.
pub fn restore_steps(spec: &MachineSpec, files: &StateFiles) -> io::Result<Vec<RestoreStep>> {
    let mut steps: Vec<RestoreStep> = requests(spec)?
        .into_iter()
        .filter(|(_, r)| matches!(r, Request::Logger(_) | Request::Metrics(_)))
        .map(|(path, r)| RestoreStep::Put(path, r))
        .collect();
    let network_overrides = spec
        .nics
        .iter()
        .enumerate()
        .filter_map(|(i, nic)| match &nic.backend {
            NicBackend::Tap { ifname } => Some(api::NetworkOverride {
                iface_id: format!("eth{i}"),
                host_dev_name: ifname.clone(),
            }),
            NicBackend::User { .. } => None,
        })
        .collect();
    steps.push(RestoreStep::Load(api::SnapshotLoad {
        snapshot_path: files.state.clone(),
        mem_backend: api::MemoryBackend {
            backend_type: "File",
            backend_path: files.memory.clone(),
        },
        resume_vm: false,
        network_overrides,
        vsock_override: spec
            .agent_socket
            .as_ref()
            .map(|uds_path| api::VsockOverride {
                uds_path: uds_path.clone(),
            }),
    }));
    for (i, disk) in spec.disks.iter().enumerate() {
        let drive_id = if i == 0 {
            "root".to_string()
        } else {
            format!("disk{i}")
        };
        steps.push(RestoreStep::Drive(
            format!("/drives/{drive_id}"),
            api::DrivePath {
                drive_id,
                path_on_host: disk.path.clone(),
            },
        ));
    }
    steps.push(RestoreStep::Resume);
    Ok(steps)
}

fn wait_for_socket(socket: &Path, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "Firecracker's API socket {} did not open within {timeout:?}",
                    socket.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Accel, ConsoleSpec, DiskSpec, NicSpec};

    fn spec(dir: &Path) -> MachineSpec {
        MachineSpec {
            vcpus: 2,
            memory_mib: 512,
            kernel: "/k/vmlinux".into(),
            initrd: "/vm/initramfs.cpio".into(),
            cmdline: "console=ttyS0 reboot=k panic=1".into(),
            disks: vec![
                DiskSpec {
                    path: "/vm/root.raw".into(),
                    format: DiskFormat::Raw,
                    read_only: false,
                    snapshot: false,
                    inherited_fd: None,
                },
                DiskSpec {
                    path: "/k/modules.ext4".into(),
                    format: DiskFormat::Raw,
                    read_only: true,
                    snapshot: false,
                    inherited_fd: None,
                },
            ],
            console: ConsoleSpec::File("/vm/console.log".into()),
            agent_socket: Some("/vm/agent.sock".into()),
            nics: vec![NicSpec {
                mac: "52:54:00:01:02:03".into(),
                backend: NicBackend::Tap {
                    ifname: "ign0123".into(),
                },
            }],
            accel: Accel::Kvm,
            log_dir: Some(dir.to_path_buf()),
            restore: None,
            memory_file: None,
            memory_reporting: false,
            translation_cache_mib: None,
            tcg_icount: false,
            confinement: Default::default(),
        }
    }

    #[test]
    fn a_snapshot_is_saved_into_its_files_and_restored_onto_this_vm_s_devices() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles::in_dir(Path::new("/snap/s1"));
        assert_eq!(
            serde_json::to_value(snapshot_create(&files)).unwrap(),
            serde_json::json!({
                "snapshot_type": "Full",
                "snapshot_path": "/snap/s1/state",
                "mem_file_path": "/snap/s1/memory"
            })
        );
        let steps = restore_steps(&spec(dir.path()), &files).unwrap();
        let names: Vec<String> = steps
            .iter()
            .map(|s| match s {
                RestoreStep::Put(p, _) => format!("PUT {p}"),
                RestoreStep::Load(_) => "PUT /snapshot/load".into(),
                RestoreStep::Drive(p, _) => format!("PATCH {p}"),
                RestoreStep::Resume => "PATCH /vm".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "PUT /logger",
                "PUT /metrics",
                "PUT /snapshot/load",
                "PATCH /drives/root",
                "PATCH /drives/disk1",
                "PATCH /vm"
            ]
        );
        let RestoreStep::Load(load) = &steps[2] else {
            panic!("{steps:?}")
        };
        assert_eq!(
            serde_json::to_value(load).unwrap(),
            serde_json::json!({
                "snapshot_path": "/snap/s1/state",
                "mem_backend": {"backend_type": "File", "backend_path": "/snap/s1/memory"},
                "resume_vm": false,
                "network_overrides": [{"iface_id": "eth0", "host_dev_name": "ign0123"}],
                "vsock_override": {"uds_path": "/vm/agent.sock"}
            })
        );
        assert_eq!(
            steps[3],
            RestoreStep::Drive(
                "/drives/root".into(),
                api::DrivePath {
                    drive_id: "root".into(),
                    path_on_host: "/vm/root.raw".into(),
                }
            )
        );
    }

    #[test]
    fn a_machine_becomes_requests_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let requests = requests(&spec(dir.path())).unwrap();
        let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/logger",
                "/metrics",
                "/machine-config",
                "/boot-source",
                "/drives/root",
                "/drives/disk1",
                "/network-interfaces/eth0",
                "/vsock",
                "/actions"
            ]
        );
        assert!(dir.path().join(LOG_FILE).is_file());
        assert_eq!(
            requests[5].1,
            Request::Drive(api::Drive {
                drive_id: "disk1".into(),
                path_on_host: "/k/modules.ext4".into(),
                is_root_device: false,
                is_read_only: true,
            })
        );
        assert_eq!(
            requests[8].1,
            Request::Action(api::InstanceAction {
                action_type: "InstanceStart"
            })
        );
    }

    #[test]
    fn a_machine_with_memory_reporting_gets_a_balloon_that_never_inflates() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = spec(dir.path());
        machine.memory_reporting = true;
        let requests = requests(&machine).unwrap();
        let (path, balloon) = &requests[requests.len() - 2];
        assert_eq!(path, "/balloon");
        let Request::Balloon(body) = balloon else {
            panic!("not a balloon: {balloon:?}");
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({
                "amount_mib": 0,
                "deflate_on_oom": true,
                "stats_polling_interval_s": crate::BALLOON_STATS_SECONDS,
                "free_page_reporting": true,
            })
        );
        // The statistics Firecracker answers become the guest's memory figures.
        let stats = serde_json::json!({
            "target_pages": 0, "actual_pages": 0, "target_mib": 0, "actual_mib": 0,
            "free_memory": 50_000_000u64, "total_memory": 97_000_000u64,
            "available_memory": 57_000_000u64,
        });
        assert_eq!(
            balloon_statistics(&stats),
            Some(GuestMemoryStats {
                total: Some(97_000_000),
                free: Some(50_000_000),
                available: Some(57_000_000),
            })
        );
        assert_eq!(
            balloon_statistics(&serde_json::json!({"target_pages": 0})),
            None
        );
    }

    #[test]
    fn what_firecracker_cannot_run_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        assert!(Firecracker::check(&s).is_ok());
        s.disks[0].format = DiskFormat::Qcow2;
        assert!(
            Firecracker::check(&s)
                .unwrap_err()
                .to_string()
                .contains("raw disks")
        );
        let mut s = spec(dir.path());
        s.nics[0].backend = NicBackend::User {
            forwards: vec![],
            isolated: false,
        };
        assert!(
            Firecracker::check(&s)
                .unwrap_err()
                .to_string()
                .contains("user-mode")
        );
        let mut s = spec(dir.path());
        s.accel = Accel::Tcg;
        assert!(
            Firecracker::check(&s)
                .unwrap_err()
                .to_string()
                .contains("KVM only")
        );
    }

    /// A VM directory and kernel directory holding the files of [`spec`], the machine
    /// pointed at them, and the VM's jail with its chroot made (as the jailer does).
    fn jailed_machine(dir: &Path) -> (MachineSpec, jailer::Jail) {
        let vm_dir = dir.join("0123456789abcdef");
        let kernel_dir = dir.join("kernel");
        std::fs::create_dir(&vm_dir).unwrap();
        std::fs::create_dir(&kernel_dir).unwrap();
        let mut machine = spec(&vm_dir);
        machine.kernel = kernel_dir.join("vmlinux");
        machine.initrd = vm_dir.join("initramfs.cpio");
        machine.disks[0].path = vm_dir.join("root.raw");
        machine.disks[1].path = kernel_dir.join("modules.ext4");
        machine.agent_socket = Some(vm_dir.join("agent.sock"));
        for path in [
            &machine.kernel,
            &machine.initrd,
            &machine.disks[0].path,
            &machine.disks[1].path,
        ] {
            std::fs::write(path, path.to_string_lossy().as_bytes()).unwrap();
        }
        let user = crate::VmmUser {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        };
        machine.confinement.user = Some(user);
        let jail = jailer::Jail::in_vm_dir(&vm_dir, user, Path::new("/opt/fc/firecracker"));
        std::fs::create_dir_all(jail.root()).unwrap();
        (machine, jail)
    }

    #[test]
    fn a_vm_with_its_own_user_runs_under_the_jailer_else_firecracker_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (mut machine, jail) = jailed_machine(dir.path());
        std::fs::remove_dir_all(jail.base()).unwrap();
        let control = jail.base().parent().unwrap().join("vmm.sock");
        let jailed = Firecracker {
            binary: "/opt/fc/firecracker".into(),
            jailer: Some("/opt/fc/jailer".into()),
        };
        let (program, args) = jailed.command(&machine, &control);
        assert_eq!(program, Path::new("/opt/fc/jailer"));
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        let tail = ["--", "--api-sock", "/vmm.sock", "--level", "Warning"];
        assert!(args.ends_with(&tail), "{args:?}");
        assert!(args.contains(&"--chroot-base-dir"), "{args:?}");
        // The base the jailer needs is made, root's only.
        assert!(jail.base().is_dir());
        // A normal user's VM, or no jailer: Firecracker itself, on the supervisor's socket.
        let control_arg = control.to_str().unwrap();
        let plain = ["--api-sock", control_arg, "--level", "Warning"];
        let unjailed = Firecracker {
            jailer: None,
            ..jailed
        };
        let (program, args) = unjailed.command(&machine, &control);
        assert_eq!(program, Path::new("/opt/fc/firecracker"));
        assert_eq!(args, plain.map(OsString::from));
        assert!(
            unjailed
                .jail(&machine.confinement, &control)
                .unwrap_err()
                .contains("install the jailer")
        );
        machine.confinement.user = None;
        let jailed = Firecracker {
            jailer: Some("/opt/fc/jailer".into()),
            ..unjailed
        };
        let (program, args) = jailed.command(&machine, &control);
        assert_eq!(program, Path::new("/opt/fc/firecracker"));
        assert_eq!(args, plain.map(OsString::from));
        assert!(
            jailed
                .jail(&machine.confinement, &control)
                .unwrap_err()
                .contains("no user of its own")
        );
    }

    #[test]
    fn a_jailed_machine_is_configured_with_its_files_in_the_chroot() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (machine, jail) = jailed_machine(dir.path());
        let jailed: Vec<(String, Request)> = requests(&machine)
            .unwrap()
            .into_iter()
            .map(|(path, r)| (path, jailed_request(&jail, r).unwrap()))
            .collect();
        let named = |path: &str| {
            jailed
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, r)| r)
                .unwrap()
        };
        assert_eq!(
            named("/boot-source"),
            &Request::Boot(api::BootSource {
                kernel_image_path: "/vmlinux".into(),
                initrd_path: Some("/initrd".into()),
                boot_args: machine.cmdline.clone(),
            })
        );
        let Request::Drive(root) = named("/drives/root") else {
            panic!()
        };
        assert_eq!(root.path_on_host, Path::new("/drive-root"));
        let Request::Drive(modules) = named("/drives/disk1") else {
            panic!()
        };
        assert_eq!(modules.path_on_host, Path::new("/drive-disk1"));
        let Request::Logger(logger) = named("/logger") else {
            panic!()
        };
        assert_eq!(logger.log_path, Path::new("/firecracker.log"));
        let Request::Vsock(vsock) = named("/vsock") else {
            panic!()
        };
        assert_eq!(vsock.uds_path, Path::new("/agent.sock"));
        assert_eq!(
            std::fs::read_link(machine.agent_socket.as_ref().unwrap()).unwrap(),
            jail.host_path("agent.sock")
        );
        // The VM's own files are linked in, the kernel's copied.
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&jail.host_path("drive-root")),
            ino(&machine.disks[0].path)
        );
        assert_eq!(ino(&jail.host_path("initrd")), ino(&machine.initrd));
        assert_ne!(ino(&jail.host_path("vmlinux")), ino(&machine.kernel));
        assert_ne!(
            ino(&jail.host_path("drive-disk1")),
            ino(&machine.disks[1].path)
        );
        assert_eq!(
            std::fs::read(jail.host_path("drive-disk1")).unwrap(),
            std::fs::read(&machine.disks[1].path).unwrap()
        );
        assert!(jail.host_path(METRICS_FILE).is_file());
        // The requests that name no file are as they were.
        assert_eq!(
            named("/network-interfaces/eth0"),
            &requests(&machine).unwrap()[6].1
        );
    }

    #[test]
    fn a_jailed_restore_puts_the_drives_in_before_the_load_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut machine, jail) = jailed_machine(dir.path());
        let snap = dir.path().join("snap");
        std::fs::create_dir(&snap).unwrap();
        let files = StateFiles::in_dir(&snap);
        std::fs::write(&files.state, b"state").unwrap();
        std::fs::write(&files.memory, b"memory").unwrap();
        machine.restore = Some(files.clone());
        let steps =
            jailed_restore(&jail, &machine, restore_steps(&machine, &files).unwrap()).unwrap();
        let RestoreStep::Load(load) = &steps[2] else {
            panic!("{steps:?}")
        };
        assert_eq!(load.snapshot_path, Path::new("/snapshot-state"));
        assert_eq!(load.mem_backend.backend_path, Path::new("/snapshot-memory"));
        assert_eq!(
            load.vsock_override.as_ref().unwrap().uds_path,
            Path::new("/agent.sock")
        );
        assert_eq!(
            steps[3],
            RestoreStep::Drive(
                "/drives/root".into(),
                api::DrivePath {
                    drive_id: "root".into(),
                    path_on_host: "/drive-root".into(),
                }
            )
        );
        assert_eq!(steps.last(), Some(&RestoreStep::Resume));
        for name in [
            "drive-root",
            "drive-disk1",
            "snapshot-state",
            "snapshot-memory",
        ] {
            assert!(jail.host_path(name).is_file(), "{name}");
        }
        assert_eq!(
            std::fs::read(jail.host_path("snapshot-memory")).unwrap(),
            b"memory"
        );
    }

    #[test]
    fn a_missing_binary_says_how_to_get_one() {
        let e = Firecracker::locate(Some(Path::new("/no/such/firecracker")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("spec.firecracker"), "{e}");
    }
}
