//! The VM lifecycle: create, start (a detached supervisor per VM), stop, kill, remove, and
//! the repair of records that outlived their processes (a host reboot, a `kill -9`).
//!
//! Nothing is trusted blindly: a VM counts as running only while the supervisor recorded
//! in its status is alive (same pid, same start time).

pub mod accel;
pub mod agent_proxy;
pub mod attach;
pub mod cni_network;
pub mod confinement;
pub mod console_log;
mod console_relay;
pub mod copy;
pub mod files;
pub mod host_memory;
pub mod listing;
pub mod network;
pub mod output_log;
pub mod process;
pub mod snapshot;
pub mod stats;
pub mod supervisor;
pub mod warm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ignite_api::{
    ExitReason, ExitRecord, GuestMode, Image, Kernel, NetworkMode, ObjectMeta, Size, Time, Vm,
    VmSpec,
};
use ignite_oci::fetch::Progress;
use ignite_store::{Store, StoreError};
use rustix::process::Signal;

use crate::images::{ImageError, ImportOptions, import_image, rootfs_path};
use crate::kernels::{KernelImportOptions, default_kernel_or_system, import_kernel};
pub use files::VmFiles;
pub use ignite_vmm::find_in_path;

/// VMs get at least this much memory: the kernel and the initramfs need it to boot.
pub const MIN_MEMORY_MIB: u64 = 128;
/// How long a graceful stop waits before the VMM is killed (Ignite's 20 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `start` waits for the supervisor to report the VMM running.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request or the VM's spec must change.
    #[error("{0}")]
    Spec(String),
    /// The host's access policy refuses what the request asks for.
    #[error("{0}")]
    Denied(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The host must be fixed (a program that fails, a resource that is taken).
    #[error("{0}")]
    Host(String),
    /// Something else holds what the request needs (a host port).
    #[error("{0}")]
    Conflict(String),
    #[error("bridge networking: {0}")]
    Network(#[from] ignite_net::NetError),
    #[error(transparent)]
    Cni(#[from] ignite_net::cni::CniError),
    #[error(transparent)]
    MissingTool(#[from] ignite_host_tools::MissingTool),
    #[error(transparent)]
    Vmm(#[from] ignite_vmm::VmmError),
    #[error(transparent)]
    Disk(#[from] ignite_disk::DiskError),
    #[error("VM {0} is already running")]
    AlreadyRunning(String),
    #[error("a VM named {0:?} already exists: choose another name, or remove it (ignite rm {0})")]
    NameTaken(String),
    #[error("VM {0} is running: stop it first (ignite stop {0}), or use -f")]
    Running(String),
    #[error("VM {vm} did not start: {reason}")]
    StartFailed { vm: String, reason: String },
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
}

/// Who must act on an error. It decides the API's HTTP status; the CLI prints the
/// message, which says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or the VM's spec must change.
    Spec,
    /// The host's access policy refuses it.
    Denied,
    /// What the request names does not exist.
    NotFound,
    /// The object's state (running, a taken name) or a taken host resource stands in the way.
    Conflict,
    /// The host must be fixed: a missing or failing program, the network, the VMM, I/O.
    Host,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Spec => 400,
            ErrorKind::Denied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Host => 500,
        }
    }

    pub fn of_store(e: &StoreError) -> ErrorKind {
        match e {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::Ambiguous { .. } => ErrorKind::Spec,
            StoreError::NameTaken { .. } | StoreError::UidTaken { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Host,
        }
    }

    pub fn of_image(e: &ImageError) -> ErrorKind {
        match e {
            ImageError::Store(e) => ErrorKind::of_store(e),
            ImageError::InUse { .. } => ErrorKind::Conflict,
            ImageError::Io { .. } | ImageError::Disk(_) | ImageError::GuestInit(_) => {
                ErrorKind::Host
            }
            ImageError::Source(_) | ImageError::Oci(_) | ImageError::Platform(_) => ErrorKind::Spec,
        }
    }
}

impl VmError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            VmError::Image(e) => ErrorKind::of_image(e),
            VmError::Store(e) => ErrorKind::of_store(e),
            VmError::Spec(_) => ErrorKind::Spec,
            VmError::Denied(_) => ErrorKind::Denied,
            VmError::NotFound(_) => ErrorKind::NotFound,
            VmError::Vmm(ignite_vmm::VmmError::Unsupported(_)) => ErrorKind::Spec,
            VmError::Cni(
                ignite_net::cni::CniError::NoConfig { .. }
                | ignite_net::cni::CniError::NotFound { .. }
                | ignite_net::cni::CniError::BadConfig { .. },
            ) => ErrorKind::Spec,
            VmError::AlreadyRunning(_)
            | VmError::NameTaken(_)
            | VmError::Running(_)
            | VmError::Conflict(_) => ErrorKind::Conflict,
            VmError::Host(_)
            | VmError::Network(_)
            | VmError::Cni(_)
            | VmError::MissingTool(_)
            | VmError::Vmm(ignite_vmm::VmmError::NotInstalled(_))
            | VmError::Disk(_)
            | VmError::StartFailed { .. }
            | VmError::Io { .. } => ErrorKind::Host,
        }
    }
}

fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VmError {
    let path = path.into();
    move |source| VmError::Io(ignite_host_tools::PathError::new(action, path, source))
}

pub fn uid_of(vm: &Vm) -> ignite_api::Uid {
    vm.metadata.uid.clone().expect("stored VMs have a uid")
}

/// What `create` needs besides the effective spec.
pub struct CreateRequest<'a> {
    pub meta: ObjectMeta,
    pub spec: VmSpec,
    pub import: ImportOptions,
    pub progress: &'a dyn Progress,
    /// What choosing the VMM for `--vmm auto` needs.
    pub driver: DriverOptions,
    /// `run --rm`: the VM's supervisor removes it when it ends (`status.autoRemove`).
    pub auto_remove: bool,
}

/// Where the choice of VMM and accelerator comes from, besides the VM's spec.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions {
    /// `--accel`, if given.
    pub accel: Option<String>,
    /// The Configuration's `spec.accel`, if any.
    pub configured_accel: Option<String>,
    /// The Configuration's `spec.firecracker`, if any.
    pub firecracker: Option<PathBuf>,
}

impl DriverOptions {
    /// `--accel` (when given) and the Configuration's settings.
    pub fn new(accel: Option<&str>, configuration: Option<&ignite_api::Configuration>) -> Self {
        DriverOptions {
            accel: accel.map(str::to_string),
            configured_accel: configuration.and_then(|c| c.spec.accel.clone()),
            firecracker: configuration.and_then(|c| c.spec.firecracker.clone()),
        }
    }
}

/// Creates a VM (stopped): imports its image and kernel when missing, records them, and
/// makes its disk, a qcow2 overlay on the image's ext4 (instant whatever the size).
/// Creates nothing when any step fails.
pub fn create_vm(store: &Store, request: CreateRequest<'_>) -> Result<Vm, VmError> {
    let CreateRequest {
        meta,
        mut spec,
        import,
        progress,
        driver: driver_options,
        auto_remove,
    } = request;
    if spec.network.mode.is_none() {
        spec.network.mode = Some(network::default_mode());
    }
    validate_spec(&spec)?;
    network::check_host_ports(&spec.network.ports)?;
    check_name_free(store, &meta.name)?;
    let image = find_or_import_image(store, &spec, &import, progress)?;
    let kernel = find_or_import_kernel(store, &spec, &import, progress)?;
    let vmm = choose_vmm(store, &spec, &kernel, &driver_options)?;
    spec.vmm = Some(vmm.kind());
    let image_disk = rootfs_path(store, image.status.image_id.as_deref().unwrap_or_default());
    let base_size = std::fs::metadata(&image_disk)
        .map_err(io("read the image's disk", &image_disk))?
        .len();
    if spec.disk_size().bytes() < base_size {
        tracing::warn!(
            "--size {} is smaller than the image's disk ({}): using that",
            spec.disk_size(),
            Size::from_bytes(base_size)
        );
        spec.disk_size = Some(Size::from_bytes(base_size));
    }
    // The kernel is recorded by name, as Ignite recorded its default kernel image: `ps`
    // shows it, and a later change of the default does not change this VM.
    if spec.kernel_ref().is_none()
        && let Ok(source) = ignite_api::ImageSource::parse(&kernel.metadata.name)
    {
        let cmd_line = spec.kernel.take().and_then(|k| k.cmd_line);
        spec.kernel = Some(ignite_api::VmKernelSpec {
            oci: Some(source),
            cmd_line,
        });
    }
    let mut vm = Vm::new(meta, spec);
    vm.status.image = image.status.oci_source.clone();
    vm.status.kernel = kernel.status.oci_source.clone();
    vm.status.auto_remove = auto_remove;
    let vm = store.vms().create(vm).map_err(|e| match e {
        StoreError::NameTaken { .. } => VmError::Conflict(format!("{e}: choose another name")),
        e => e.into(),
    })?;
    let uid = uid_of(&vm);
    let files = VmFiles::new(store, &uid);
    let format = vmm.capabilities().root_disk;
    let root_disk = ignite_disk::create_root_disk(
        format,
        &image_disk,
        &files.root_disk(format),
        vm.spec.disk_size().bytes(),
    )
    .map_err(VmError::from);
    let prepared = root_disk.and_then(|()| match &vm.spec.ssh {
        Some(ssh) => files.set_up_ssh(ssh, &format!("ignite-{}", vm.metadata.name)),
        None => Ok(()),
    });
    if let Err(e) = prepared {
        let _ = store.vms().delete(&uid);
        return Err(e);
    }
    Ok(vm)
}

/// A new VM's name (when given) must not be another VM's.
pub(crate) fn check_name_free(store: &Store, name: &str) -> Result<(), VmError> {
    if !name.is_empty()
        && store
            .vms()
            .list()?
            .objects
            .iter()
            .any(|v| v.metadata.name == name)
    {
        return Err(VmError::NameTaken(name.to_string()));
    }
    Ok(())
}

/// The VMM a new VM gets (see [`ignite_vmm::driver::choose`]), found on this host and
/// checked against what the VM asks for.
fn choose_vmm(
    store: &Store,
    spec: &VmSpec,
    kernel: &Kernel,
    options: &DriverOptions,
) -> Result<Box<dyn ignite_vmm::Vmm>, VmError> {
    let firecracker = options.firecracker.as_deref();
    let kind = ignite_vmm::driver::choose(spec.vmm, firecracker, || {
        let kdir = crate::kernels::kernel_dir(store, kernel);
        accel::resolve_with(
            options.accel.as_deref(),
            options.configured_accel.as_deref(),
            || accel::auto(store.root(), &kdir),
        )
        .is_ok_and(|a| a == ignite_vmm::Accel::Kvm)
    });
    let vmm = ignite_vmm::driver::locate(kind, firecracker)?;
    if let Some(backend) = spec.network.mode.and_then(network::backend_of) {
        vmm.check_network(backend)?;
    }
    Ok(vmm)
}

fn validate_spec(spec: &VmSpec) -> Result<(), VmError> {
    if spec.image_ref().is_none() {
        return Err(VmError::Spec(
            "no image: give one (ignite run IMAGE) or set spec.image.oci in --config".into(),
        ));
    }
    let memory = spec.memory().bytes() >> 20;
    if memory < MIN_MEMORY_MIB {
        return Err(VmError::Spec(format!(
            "--memory {} is too little: a VM needs at least {MIN_MEMORY_MIB} MB",
            spec.memory()
        )));
    }
    if spec.network.mode == Some(NetworkMode::Bridge) && !rustix::process::geteuid().is_root() {
        return Err(VmError::Spec(
            "--network bridge needs root (it makes a bridge, taps and firewall rules): run as root, or use --network user".into(),
        ));
    }
    if spec.network.mode == Some(NetworkMode::Cni) && !rustix::process::geteuid().is_root() {
        return Err(VmError::Spec(
            "--network cni needs root (CNI plugins make namespaces, interfaces and firewall rules): run as root, or use --network user".into(),
        ));
    }
    if spec.network.cni_network.is_some() && spec.network.mode != Some(NetworkMode::Cni) {
        return Err(VmError::Spec(
            "--cni-network names a CNI network: it needs --network cni".into(),
        ));
    }
    if spec.mode == Some(GuestMode::Vm) && spec.command.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(VmError::Spec(
            "a command runs in container mode: drop --mode vm, or the command".into(),
        ));
    }
    Ok(())
}

/// The image a VM names: the imported one of that name (checked against Docker Engine when
/// it came from there), or imported now.
pub fn find_or_import_image(
    store: &Store,
    spec: &VmSpec,
    import: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Image, VmError> {
    let source = spec.image_ref().expect("validated");
    Ok(import_image(store, &source.to_string(), import, progress)?.image)
}

/// The kernel a VM names, or the default kernel.
pub fn find_or_import_kernel(
    store: &Store,
    spec: &VmSpec,
    import: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Kernel, VmError> {
    match spec.kernel_ref() {
        Some(source) => {
            let name = source.image_name();
            if let Some(k) = store
                .kernels()
                .list()?
                .objects
                .into_iter()
                .find(|k| k.metadata.name == name)
            {
                return Ok(k);
            }
            let options = KernelImportOptions {
                image: import.clone(),
                ..KernelImportOptions::default()
            };
            Ok(import_kernel(store, &source.to_string(), &options, progress)?.kernel)
        }
        None => default_kernel_or_system(store, import, progress)?.ok_or_else(|| {
            VmError::Spec(
                "no kernel: import one as the default (ignite kernel import --default FILE; scripts/setup.sh imports Debian's cloud kernel) or give --kernel-image".into(),
            )
        }),
    }
}

/// The kernel a VM was created with (matched by content id), else the one it names or the
/// default.
pub fn kernel_of(store: &Store, vm: &Vm) -> Result<Kernel, VmError> {
    let kernels = store.kernels().list()?.objects;
    if let Some(id) = &vm.status.kernel.id
        && let Some(k) = kernels
            .iter()
            .find(|k| k.status.oci_source.id.as_ref() == Some(id))
    {
        return Ok(k.clone());
    }
    find_or_import_kernel(
        store,
        &vm.spec,
        &ImportOptions::default(),
        &ignite_oci::fetch::NoProgress,
    )
}

/// The image a VM was created from.
pub fn image_of(store: &Store, vm: &Vm) -> Result<Image, VmError> {
    let images = store.images().list()?.objects;
    if let Some(id) = &vm.status.image.id
        && let Some(i) = images
            .iter()
            .find(|i| i.status.oci_source.id.as_ref() == Some(id))
    {
        return Ok(i.clone());
    }
    let name = vm
        .spec
        .image_ref()
        .map(|s| s.image_name())
        .unwrap_or_default();
    images
        .into_iter()
        .find(|i| i.metadata.name == name)
        .ok_or_else(|| {
            VmError::NotFound(format!(
                "the image of VM {} ({name}) is gone: import it again (ignite image import {name})",
                vm.metadata.name
            ))
        })
}

/// True while the VM's supervisor runs.
/// False when the VM's kernel command line turns its guest agent off
/// (`ignite.agent=off`): no exec or cp through it, readiness is sshd alone, and a
/// graceful stop presses the power button.
pub fn agent_enabled(vm: &Vm) -> bool {
    !vm.spec
        .kernel
        .as_ref()
        .and_then(|k| k.cmd_line.as_deref())
        .is_some_and(|c| {
            c.split_whitespace()
                .any(|a| a == ignite_guest_protocol::config::AGENT_OFF_ARG)
        })
}

pub fn is_running(vm: &Vm) -> bool {
    // The process decides, not the recorded flag: the supervisor sets both at once, so
    // they differ only in a record changed by hand or lost in a crash, and a VM whose
    // supervisor runs must never be taken for a stopped one (and left running by rm).
    vm.status.supervisor.as_ref().is_some_and(process::is_alive)
}

/// The record says stopped while the VM's supervisor runs (`ps` marks it `*Up`, as
/// Ignite marked a status its manifest did not hold).
pub fn is_recorded_stopped_but_running(vm: &Vm) -> bool {
    !vm.status.running && is_running(vm)
}

/// Brings a record whose processes are gone back to the truth: not running, the VMM
/// killed if it outlived its supervisor, the exit recorded. Returns the repaired VM (in
/// memory only when the store cannot be written).
pub fn repair(store: &Store, vm: Vm) -> Vm {
    if !vm.status.running || is_running(&vm) {
        return vm;
    }
    if let Some(vmm) = &vm.status.vmm {
        process::signal(&vmm.process, Signal::KILL);
        if let Some(cgroup) = &vmm.cgroup {
            confinement::remove_left_group(cgroup);
        }
        if let Some(user) = vmm.user {
            confinement::release_left_user(user);
        }
    }
    let fix = |vm: &mut Vm| {
        vm.status.running = false;
        vm.status.paused = false;
        vm.status.supervisor = None;
        vm.status.vmm = None;
        vm.status.ssh_address = None;
        vm.status.network = None;
        vm.status.exit = Some(ExitRecord::new(None, ExitReason::SupervisorGone, None));
    };
    let uid = uid_of(&vm);
    VmFiles::new(store, &uid).remove_runtime_files();
    match network::mode_of(&vm) {
        NetworkMode::Bridge => {
            network::detach_from_bridge(&ignite_net::System, &network::network_dir(store), &uid);
        }
        NetworkMode::Cni => cni_network::detach(store, &uid),
        NetworkMode::User | NetworkMode::None => {}
    }
    match store.vms().update(&uid, |v| -> Result<(), StoreError> {
        if v.status.running && !is_running(v) {
            fix(v);
        }
        Ok(())
    }) {
        Ok(v) => v,
        Err(_) => {
            let mut vm = vm;
            fix(&mut vm);
            vm
        }
    }
}

pub struct StartOptions<'a> {
    /// The binary started as the VM's supervisor (`PROGRAM vm supervise --root ROOT UID`):
    /// `ignite` or `ignited`, which both carry it ([`supervisor::supervise`]).
    pub supervisor_program: &'a Path,
    /// `--accel`, if given.
    pub accel: Option<String>,
    /// The Configuration's `spec.accel`, if any.
    pub configured_accel: Option<String>,
    /// The bridge of `--network bridge` VMs (the Configuration's `spec.bridge`).
    pub bridge: network::BridgeSettings,
    /// Where `--network cni` VMs find configurations and plugins (`spec.cni`).
    pub cni: cni_network::CniSettings,
    /// The Configuration's `spec.firecracker`, if any.
    pub firecracker: Option<PathBuf>,
    pub timeout: Duration,
    /// A container-mode VM may start from a warm-start template (off with `--cold`).
    pub warm: bool,
    /// The balloon and translation cache of the machines started.
    pub memory: host_memory::MemorySettings,
    /// The host uids VMMs run as (the Configuration's `spec.vmmUsers`).
    pub vmm_users: confinement::VmmUsers,
}

impl<'a> StartOptions<'a> {
    /// `--accel` (when given) and the Configuration's settings.
    pub fn new(
        supervisor_program: &'a Path,
        accel: Option<&str>,
        configuration: Option<&ignite_api::Configuration>,
    ) -> Result<StartOptions<'a>, VmError> {
        let driver = DriverOptions::new(accel, configuration);
        Ok(StartOptions {
            supervisor_program,
            accel: driver.accel,
            configured_accel: driver.configured_accel,
            bridge: network::BridgeSettings::from_configuration(configuration)?,
            cni: cni_network::CniSettings::from_configuration(configuration),
            firecracker: driver.firecracker,
            timeout: START_TIMEOUT,
            warm: warm::enabled(),
            vmm_users: confinement::VmmUsers::from_configuration(configuration)
                .map_err(VmError::Spec)?,
            memory: host_memory::MemorySettings::from_env(),
        })
    }
}

/// Starts a stopped VM: a detached supervisor boots it. Returns once the VMM runs.
pub fn start_vm(store: &Store, vm: Vm, options: &StartOptions<'_>) -> Result<Vm, VmError> {
    start_with(store, vm, options, None)
}

/// [`start_vm`], staying connected to the workload (see [`attach`]).
pub fn start_vm_attached(
    store: &Store,
    vm: Vm,
    options: &StartOptions<'_>,
    request: attach::AttachRequest,
) -> Result<(Vm, attach::Attachment), VmError> {
    let (attachment, theirs) =
        attach::Attachment::pair().map_err(io("create a socket pair for", "the attachment"))?;
    let vm = start_with(store, vm, options, Some((request, theirs)))?;
    Ok((vm, attachment))
}

fn start_with(
    store: &Store,
    vm: Vm,
    options: &StartOptions<'_>,
    attach: Option<(attach::AttachRequest, std::os::fd::OwnedFd)>,
) -> Result<Vm, VmError> {
    let begun = Instant::now();
    let vm = repair(store, vm);
    let name = vm.metadata.name.clone();
    if is_running(&vm) {
        return Err(VmError::AlreadyRunning(name));
    }
    let vmm = ignite_vmm::driver::locate(
        ignite_vmm::driver::recorded(vm.spec.vmm),
        options.firecracker.as_deref(),
    )?;
    // What the supervisor needs is checked here, so errors reach the user directly.
    validate_spec(&vm.spec)?;
    network::check_host_ports(&vm.spec.network.ports)?;
    image_of(store, &vm)?;
    let kernel = kernel_of(store, &vm)?;
    let kdir = crate::kernels::kernel_dir(store, &kernel);
    let asked = accel::asked(
        options.accel.as_deref(),
        options.configured_accel.as_deref(),
    )
    .map_err(VmError::Spec)?;
    let accel = vmm.choose_accel(asked, &|| accel::auto(store.root(), &kdir))?;
    let uid = uid_of(&vm);
    let files = VmFiles::new(store, &uid);
    if let Some((disk, backing)) = files.root_disk_backing()
        && !backing.exists()
    {
        return Err(VmError::StartFailed {
            vm: name,
            reason: format!(
                "its root disk {} is an overlay on {}, which is missing: remove the VM (ignite rm) and create it again",
                disk.display(),
                backing.display()
            ),
        });
    }
    files.remove_runtime_files();
    let mut settings = supervisor::config::SupervisorConfig::new(
        accel,
        &options.bridge,
        options.firecracker.clone(),
    );
    settings.cni = Some(options.cni.clone());
    settings.warm = options.warm;
    settings.memory_reporting = options.memory.reporting;
    settings.translation_cache_mib = options.memory.translation_cache_mib;
    settings.vmm_users = options.vmm_users;
    settings.vmm_mergeable = options.memory.vmm_mergeable;
    settings.tcg_icount = accel::tcg_icount_from_env();
    settings.write(files.dir())?;
    let log_path = files.supervisor_log();
    let log = std::fs::File::create(&log_path).map_err(io("create", &log_path))?;
    let mut command = Command::new(options.supervisor_program);
    match attach {
        Some((request, socket)) => {
            command
                .env(attach::ATTACH_ENV, request.to_env())
                .stdin(Stdio::from(socket));
        }
        None => {
            command.env_remove(attach::ATTACH_ENV).stdin(Stdio::null());
        }
    }
    let mut child = command
        .args(["vm", "supervise", "--root"])
        .arg(store.root())
        .arg(uid.to_string())
        .stdout(log.try_clone().map_err(io("open", &log_path))?)
        .stderr(log)
        .spawn()
        .map_err(io("start the supervisor", options.supervisor_program))?;
    let deadline = Instant::now() + options.timeout;
    // Exit records are to the second; one from a former run is older than this.
    let started = Time::now();
    loop {
        let current = store.vms().get(&uid)?;
        if current.status.running
            && current
                .status
                .supervisor
                .is_some_and(|s| s.pid == child.id())
        {
            // The supervisor lives on detached; it is not this process's to wait for.
            std::mem::forget(child);
            tracing::debug!(
                "VM {name}: its VMM runs {} ms after the start began (checks, supervisor, VMM)",
                begun.elapsed().as_millis()
            );
            return settled(store, &uid, &name, &log_path, current);
        }
        if let Ok(Some(_)) = child.try_wait() {
            // It may have run the whole VM between two looks (a quick workload, or a VMM
            // that failed at once): then its exit record of this start says which.
            let current = store.vms().get(&uid)?;
            if let Some(exit) = current.status.exit.as_ref().filter(|e| e.time >= started) {
                return match failed_start(exit, &name, &log_path) {
                    Some(e) => Err(e),
                    None => Ok(current),
                };
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(VmError::StartFailed {
                vm: name,
                reason: last_lines(&log, 5),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VmError::StartFailed {
                vm: name,
                reason: format!(
                    "the supervisor did not report the VMM running within {:?} (see {})",
                    options.timeout,
                    log_path.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A VMM that exits at once (a missing disk, a bad argument) is a failed start, not a
/// started VM: the record is watched for [`SETTLE_TIME`] after the VMM runs, or until the
/// guest's agent answered (a guest that booted that far is a started VM: under KVM that
/// comes well before the settle time, which `start` and `run -d` would otherwise wait out).
const SETTLE_TIME: Duration = Duration::from_millis(500);

fn settled(
    store: &Store,
    uid: &ignite_api::Uid,
    name: &str,
    log_path: &std::path::Path,
    running: Vm,
) -> Result<Vm, VmError> {
    let until = Instant::now() + SETTLE_TIME;
    let mut current = running;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        current = store.vms().get(uid)?;
        if current.status.running && current.status.boot_millis.is_some() {
            return Ok(current);
        }
        if !current.status.running {
            return match current
                .status
                .exit
                .as_ref()
                .and_then(|exit| failed_start(exit, name, log_path))
            {
                Some(e) => Err(e),
                None => Ok(current),
            };
        }
    }
    Ok(current)
}

/// A guest that ran and powered off (a quick workload) started fine; only a VMM that
/// failed, with no workload status, is a failed start.
fn failed_start(
    exit: &ignite_api::ExitRecord,
    name: &str,
    log_path: &std::path::Path,
) -> Option<VmError> {
    if exit.status.is_some() || exit.reason != ExitReason::VmmFailed {
        return None;
    }
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    Some(VmError::StartFailed {
        vm: name.to_string(),
        reason: format!(
            "its VMM exited at once ({}):\n{}",
            exit.describe(),
            last_lines(&log, 5)
        ),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "the supervisor exited without a word".into()
    } else {
        tail
    }
}

/// Stops a VM: gracefully (the guest is asked to power off; killed after
/// [`STOP_TIMEOUT`]) or at once with `kill`. Stopping a stopped VM is not an error.
pub fn stop_vm(store: &Store, vm: Vm, kill: bool) -> Result<Vm, VmError> {
    let vm = repair(store, vm);
    if !is_running(&vm) {
        return Ok(vm);
    }
    let supervisor = vm.status.supervisor.expect("running VMs have a supervisor");
    process::signal(&supervisor, if kill { Signal::QUIT } else { Signal::TERM });
    let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(10);
    while process::is_alive(&supervisor) {
        if Instant::now() > deadline {
            // A stuck supervisor: its VMM dies with it (parent-death signal).
            process::signal(&supervisor, Signal::KILL);
            std::thread::sleep(Duration::from_millis(100));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match store.vms().get(&uid_of(&vm)) {
        Ok(current) => Ok(repair(store, current)),
        // An auto-removed VM (`run --rm`) is gone with its supervisor: stopped.
        Err(StoreError::NotFound { .. }) => {
            let mut gone = vm;
            gone.status.running = false;
            gone.status.supervisor = None;
            gone.status.vmm = None;
            Ok(gone)
        }
        Err(e) => Err(e.into()),
    }
}

/// Freezes a running VM's vCPUs, as `docker pause`: its memory, devices and processes stay
/// as they are, and its time stands still for it until [`unpause_vm`].
pub fn pause_vm(
    store: &Store,
    vm: Vm,
    firecracker: Option<&std::path::Path>,
) -> Result<Vm, VmError> {
    set_paused(store, vm, firecracker, true)
}

/// Lets a paused VM run again (`ignite unpause`).
pub fn unpause_vm(
    store: &Store,
    vm: Vm,
    firecracker: Option<&std::path::Path>,
) -> Result<Vm, VmError> {
    set_paused(store, vm, firecracker, false)
}

fn set_paused(
    store: &Store,
    vm: Vm,
    firecracker: Option<&std::path::Path>,
    pause: bool,
) -> Result<Vm, VmError> {
    let vm = repair(store, vm);
    let name = vm.metadata.name.clone();
    if !is_running(&vm) {
        return Err(VmError::Conflict(format!(
            "VM {name} is not running: start it first (ignite start {name})"
        )));
    }
    match (pause, vm.status.paused) {
        (true, true) => {
            return Err(VmError::Conflict(format!("VM {name} is already paused")));
        }
        (false, false) => {
            return Err(VmError::Conflict(format!("VM {name} is not paused")));
        }
        _ => {}
    }
    let vmm = ignite_vmm::driver::locate(ignite_vmm::driver::recorded(vm.spec.vmm), firecracker)?;
    let uid = uid_of(&vm);
    let control = VmFiles::new(store, &uid).control_socket();
    let done = if pause {
        vmm.pause(&control)
    } else {
        vmm.resume(&control)
    };
    done.map_err(|e| {
        VmError::Host(format!(
            "{} did not {} VM {name}: {e}",
            vmm.name(),
            if pause { "pause" } else { "resume" }
        ))
    })?;
    Ok(store.vms().update(&uid, |v| -> Result<(), StoreError> {
        v.status.paused = pause;
        Ok(())
    })?)
}

/// Refuses what needs a running guest (exec, cp, ssh, attach) while the VM is paused.
pub fn check_not_paused(vm: &Vm) -> Result<(), VmError> {
    if vm.status.paused && is_running(vm) {
        let name = &vm.metadata.name;
        return Err(VmError::Conflict(format!(
            "VM {name} is paused: unpause it first (ignite unpause {name})"
        )));
    }
    Ok(())
}

/// Asks a running VM to stop gracefully (what [`stop_vm`] does without waiting for it):
/// its supervisor powers the guest off, and kills it after [`STOP_TIMEOUT`]. False when
/// it does not run.
pub fn request_stop(vm: &Vm) -> bool {
    vm.status
        .supervisor
        .as_ref()
        .is_some_and(|s| process::signal(s, Signal::TERM))
}

/// Removes a VM and everything it owns. A running VM is refused unless `force`, which
/// kills it first.
pub fn remove_vm(store: &Store, vm: Vm, force: bool) -> Result<Vm, VmError> {
    let vm = repair(store, vm);
    if is_running(&vm) {
        if !force {
            return Err(VmError::Running(vm.metadata.name.clone()));
        }
        stop_vm(store, vm.clone(), true)?;
    }
    network::release(store, &vm);
    let backing = VmFiles::new(store, &uid_of(&vm))
        .root_disk_backing()
        .map(|(_, backing)| backing);
    store.vms().delete(&uid_of(&vm))?;
    // A root disk kept for this VM after its image moved on goes with it.
    if let Some(disk) = backing
        && let Err(e) = crate::images::remove_rootfs_if_unused(store, &disk)
    {
        tracing::warn!("cannot remove the unused root disk {}: {e}", disk.display());
    }
    Ok(vm)
}

/// Waits until the VM no longer runs (`None`: no limit) and returns its final record.
pub fn wait_for_exit(
    store: &Store,
    uid: &ignite_api::Uid,
    timeout: Option<Duration>,
) -> Result<Vm, VmError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let vm = store.vms().get(uid)?;
        if !is_running(&vm) {
            return Ok(repair(store, vm));
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Ok(vm);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long `start` waits for a VM to be ready: its agent answering, and its sshd when
/// the VM has `--ssh`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until the VM is ready (see [`READY_TIMEOUT`]). A VM that ends on the way is
/// ready enough: its exit is recorded for whoever looks.
pub fn wait_until_ready(store: &Store, vm: &Vm, timeout: Duration) -> Result<(), VmError> {
    let uid = uid_of(vm);
    let name = vm.metadata.name.clone();
    let deadline = Instant::now() + timeout;
    let files = VmFiles::new(store, &uid);
    let not_ready = |what: &str| VmError::StartFailed {
        vm: name.clone(),
        reason: format!(
            "{what} within {} s; the console may say why: ignite logs {name}",
            timeout.as_secs()
        ),
    };
    // Over before it was ready: fine for a workload that ran (`run -d IMAGE -- true`), a
    // failure for a guest that never got that far (a kernel panic, a VMM that died).
    let ended = |vm: &Vm| -> Result<(), VmError> {
        match &vm.status.exit {
            Some(exit) if exit.status.is_none() && exit.reason.is_failure() => {
                Err(VmError::StartFailed {
                    vm: name.clone(),
                    reason: exit.describe(),
                })
            }
            _ => Ok(()),
        }
    };
    // The agent: a hello through the supervisor.
    while agent_enabled(vm) {
        let current = store.vms().get(&uid)?;
        if !is_running(&current) {
            return ended(&current);
        }
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(files.exec_socket())
            && let Ok(reader) = stream.try_clone()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match ignite_guest_protocol::client::AgentClient::connect(reader, stream, left) {
                Ok(_) => break,
                Err(_) if Instant::now() > deadline => {
                    return Err(not_ready("its agent did not answer"));
                }
                Err(_) => {}
            }
        }
        if Instant::now() > deadline {
            return Err(not_ready("its agent did not answer"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // sshd: its banner on the forwarded port.
    let Some(address) = store.vms().get(&uid)?.status.ssh_address else {
        return Ok(());
    };
    loop {
        let current = store.vms().get(&uid)?;
        if !is_running(&current) {
            return ended(&current);
        }
        if ssh_banner(&address) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready("its sshd did not answer"));
        }
        // A refused connection costs the guest nothing; a late look costs the caller.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when an SSH server greets on `address`.
pub fn ssh_banner(address: &str) -> bool {
    use std::io::Read;
    let Ok(addr) = address.parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-")
}
