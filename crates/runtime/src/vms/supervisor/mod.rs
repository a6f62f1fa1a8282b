//! The per-VM supervisor (ARCHITECTURE §4): a detached process, one per running VM, that
//! owns the VMM process, hands the guest its configuration, holds the agent connection,
//! stops the VM gracefully on SIGTERM (at once on SIGQUIT), records how it ended, and
//! removes a VM marked `status.autoRemove` (`run --rm`) then, whether or not its client
//! is still there.
//! The VMM gets a parent-death signal, so a `kill -9` of the supervisor takes it along.
//!
//! - [`config`]: what the starting command hands it (a typed file, not the environment);
//! - [`plan`]: the machine and guest configuration, made without I/O (unit-tested for
//!   every VMM and network mode);
//! - [`outcome`]: the exit reason, from what it saw;
//! - here: the process itself, which starts the VMM and watches it.

pub mod config;
pub mod outcome;
pub mod plan;

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignite_api::{ExitRecord, Time, Uid, VmmStatus};
use ignite_guest_protocol::agent::{
    BootRequest, BootTimes, CONTROL, ErrorBody, ExitStatus, Frame, FrameKind, Hello,
    RestoreRequest, WORKLOAD,
};
use ignite_guest_protocol::client::AgentClient;
use ignite_guest_protocol::status::{kernel_panic_line, last_exit_status};
use ignite_store::{Store, StoreError};
use ignite_vmm::Vmm;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use super::attach::AttachedClient;
use super::output_log::{OutputLogWriter, Stream};
use super::{STOP_TIMEOUT, VmError, VmFiles, image_of, io, kernel_of, network, process};
use crate::guest::{FileCopy, write_vm_initramfs};
use crate::kernels::kernel_dir;
use config::SupervisorConfig;
use plan::{KernelFiles, PlanInputs};

use crate::vms::host_memory::MemorySettings;

const POLL: Duration = Duration::from_millis(50);

/// `vm supervise --root ROOT UID`, the entry of both binaries: runs the VM until it ends,
/// with the running binary as the helper that execs the VMM (`vm exec-vmm`).
pub fn supervise(root: &std::path::Path, uid: &str) -> Result<(), VmError> {
    let store = Store::open(root)?;
    let uid: Uid = uid
        .parse()
        .map_err(|e| VmError::Spec(format!("vm supervise {uid:?}: {e}")))?;
    let helper = std::env::current_exe().map_err(io("find", "the running binary"))?;
    run(&store, &uid, &helper)
}

/// Runs the VM until it ends. Called through [`supervise`] by [`super::start_vm`].
pub fn run(store: &Store, uid: &Uid, helper: &std::path::Path) -> Result<(), VmError> {
    let supervisor_started = Instant::now();
    // Detach from the starting command's session and terminal.
    let _ = rustix::process::setsid();
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP])
        .map_err(io("handle signals in", "the supervisor"))?;
    // Taken first: it turns stdin into /dev/null for everything started from here on.
    let attached = AttachedClient::from_stdin();
    let vm = store.vms().get(uid)?;
    let image = image_of(store, &vm)?;
    let kernel = kernel_of(store, &vm)?;
    let kdir = kernel_dir(store, &kernel);
    let files = VmFiles::new(store, uid);
    let settings = SupervisorConfig::read(files.dir())?;
    let accel = settings.accel;
    // What needs nothing from what follows runs beside it: the VM's cgroup and VMM user,
    // and under TCG the host's TSC frequency for the guest (a 20 ms count on the host's
    // first start of a boot, then read from the state root).
    let confining = {
        let (vm, users, cache) = (
            vm.clone(),
            settings.vmm_users,
            settings.translation_cache_mib,
        );
        std::thread::spawn(move || super::confinement::enter(&vm, accel, cache, users))
    };
    if accel == ignite_api::Accel::Tcg && !settings.tcg_icount {
        let cache = store.root().join(HOST_TSC_FILE);
        std::thread::spawn(move || ignite_vmm::tsc::host_tsc_khz_cached(&cache));
    }
    // The supervisor's own memory (heap, relocated data) is much alike in every VM too;
    // the VMM and its watcher, which it starts, are marked again on their way.
    if settings.vmm_mergeable
        && let Err(e) = crate::vms::host_memory::mark_mergeable()
    {
        tracing::debug!("the supervisor's memory is not offered to KSM: {e}");
    }
    let vmm: Arc<dyn Vmm> = ignite_vmm::driver::locate(
        ignite_vmm::driver::recorded(vm.spec.vmm),
        settings.firecracker.as_deref(),
    )?
    .into();
    // Held until the supervisor ends; dropping it takes the VM off its network.
    let attachment = network::attach(
        store,
        &vm,
        &settings.bridge()?,
        &settings.cni.clone().unwrap_or_default(),
    )?;
    let plan::MachinePlan {
        machine: mut spec,
        guest: mut config,
    } = plan::plan(&PlanInputs {
        vm: &vm,
        image: &image,
        kernel: &KernelFiles::in_dir(&kdir),
        files: &files,
        capabilities: vmm.capabilities(),
        accel: settings.accel,
        network: &attachment,
        memory: MemorySettings {
            reporting: settings.memory_reporting,
            translation_cache_mib: settings.translation_cache_mib,
            vmm_mergeable: settings.vmm_mergeable,
        },
    });
    if let Some((_, _, request)) = &attached {
        config.workload.stdin = request.stdin;
        config.workload.window = request.window;
    }
    let (attached, attached_input) = match attached {
        Some((client, input, _)) => (Some(Arc::new(client)), Some(input)),
        None => (None, None),
    };
    let output_log = Arc::new(Mutex::new(
        OutputLogWriter::open(&files.output_log()).map_err(io("open", &files.output_log()))?,
    ));
    if let Ok(keys) = std::fs::read_to_string(files.authorized_keys()) {
        config.authorized_keys = keys.lines().map(str::to_string).collect();
    }
    let copies: Vec<FileCopy> = vm
        .spec
        .copy_files
        .iter()
        .map(|m| FileCopy {
            host: m.host_path.clone(),
            guest: m.vm_path.to_string_lossy().into_owned(),
        })
        .collect();
    // What a snapshot of this run records, so that its clones can be moved off it.
    let interfaces_file = files.guest_interfaces();
    if let Err(e) = serde_json::to_vec(&config.interfaces)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(&interfaces_file, json))
    {
        tracing::warn!(
            "cannot record the guest's interfaces in {}: {e}",
            interfaces_file.display()
        );
    }
    let restoring = super::snapshot::restore_target(store, &vm, &files, &spec, vmm.kind())?;
    // A container-mode VM starts from its machine's template when there is one; the
    // first start of a machine boots cold and has one built meanwhile.
    let template = match &restoring {
        None if settings.warm && super::warm::eligible(&vm, &image, vmm.kind()) => {
            let identity = super::snapshot::kernel_identity(&kdir);
            let key = super::warm::template_key(
                &spec,
                vmm.kind(),
                &identity,
                vm.spec.disk_size().bytes(),
            );
            let found = kernel.metadata.uid.as_ref().and_then(|kernel_uid| {
                super::warm::find_template(store, &key, kernel_uid, &identity, &spec, vmm.kind())
            });
            if found.is_none() {
                super::warm::spawn_builder(helper, store.root(), &vm, &key);
            }
            found
        }
        _ => None,
    };
    if template.is_some() {
        // A warm start never reads its initramfs: the guest's memory comes from the
        // template and its configuration through the agent. QEMU still loads one (into
        // fw_cfg, not into guest memory), so it is the kernel's own, shared by every
        // VM, and no 3 MB copy is written and cached per VM.
        spec.initrd = kdir.join(crate::kernels::INITRAMFS_FILE);
        // A cold start's copy (with that start's configuration) is not kept beside it.
        let _ = std::fs::remove_file(files.initramfs());
    } else {
        write_vm_initramfs(&kdir, &config, &copies, &files.initramfs())?;
    }
    let resume = match (&restoring, &template) {
        (Some((snapshot, state)), _) => {
            super::snapshot::restore_onto(&mut spec, snapshot, state.clone());
            tracing::info!(
                "restoring snapshot {} instead of booting",
                snapshot.metadata.name
            );
            Some(Resume::Snapshot(super::snapshot::restore_request(
                snapshot,
                &config.hostname,
                &config.interfaces,
            )))
        }
        (None, Some((template, state))) => {
            super::snapshot::restore_onto(&mut spec, template, state.clone());
            tracing::info!("warm start from template {}", template.metadata.name);
            Some(Resume::Template(Box::new(super::warm::boot_request(
                template, &config,
            ))))
        }
        (None, None) => None,
    };
    let restored_from = restoring
        .as_ref()
        .or(template.as_ref())
        .map(|(s, _)| s.metadata.name.clone());

    // The VM's cgroup (this process joins it, the VMM inherits it) and its VMM's user.
    // Dropped, which removes the group, before the VM is recorded as stopped: a start
    // that follows makes the group anew.
    let mut confined = confining
        .join()
        .map_err(|_| VmError::Host("confining the VM panicked".into()))?;
    if !vmm.runs_as_vm_user() {
        confined.keep_user_unused();
    }
    confined.give_disks(files.dir(), &mut spec.disks);
    spec.confinement = confined.vmm.clone();
    spec.tcg_icount = accel == ignite_api::Accel::Tcg && settings.tcg_icount;

    let control = files.control_socket();
    let (program, args) = vmm.command(&spec, &control);
    let log_offset = std::fs::metadata(files.console_log()).map_or(0, |m| m.len());
    let mut recorded = program.clone().into_os_string();
    for arg in &args {
        recorded.push("\0");
        recorded.push(arg);
    }
    let _ = std::fs::write(
        files.vmm_command_line(),
        std::os::unix::ffi::OsStrExt::as_bytes(recorded.as_os_str()),
    );

    // The helper sets the parent-death signal, then execs the VMM. This thread lives as
    // long as the supervisor, which is what the signal is tied to.
    let launched = Instant::now();
    let console_on_stdio = vmm.console_on_stdio();
    let mut helper_command = Command::new(helper);
    match &attachment.netns {
        Some(netns) => helper_command.env(VMM_NETNS_ENV, netns),
        None => helper_command.env_remove(VMM_NETNS_ENV),
    };
    match spec.confinement.user {
        Some(_) => helper_command.env(VMM_WATCH_ENV, "1"),
        None => helper_command.env_remove(VMM_WATCH_ENV),
    };
    match confined.vmm_group() {
        Some(group) => helper_command.env(VMM_CGROUP_ENV, group),
        None => helper_command.env_remove(VMM_CGROUP_ENV),
    };
    match confined.inherited_fds() {
        Some(list) => helper_command.env(VMM_FDS_ENV, list),
        None => helper_command.env_remove(VMM_FDS_ENV),
    };
    if settings.vmm_mergeable {
        helper_command.env(VMM_MERGEABLE_ENV, "1");
    } else {
        helper_command.env_remove(VMM_MERGEABLE_ENV);
    }
    let mut child = helper_command
        .args(["vm", "exec-vmm", "--"])
        .arg(&program)
        .args(&args)
        .stdin(if console_on_stdio {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if console_on_stdio {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .map_err(io("start", &program))?;
    if console_on_stdio
        && let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take())
    {
        super::console_relay::start(
            input,
            output,
            &files.console_socket(),
            &files.console_log(),
            output_log.clone(),
        )?;
    }
    // Until the helper has exec'd, the VMM is not running yet; a failed exec ends the start.
    let deadline = Instant::now() + Duration::from_secs(5);
    let helper_exe = std::fs::canonicalize(helper).unwrap_or_else(|_| helper.to_path_buf());
    loop {
        if let Some(status) = child.try_wait().map_err(io("wait for", &program))? {
            return Err(VmError::Host(format!(
                "{} exited at once ({status})",
                program.display()
            )));
        }
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).ok();
        if exe.is_some_and(|e| e != helper_exe) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    confined.check_vmm_joined(child.id());
    let vmm_process = process::lookup(child.id());
    if let Err(e) = vmm.boot(&spec, &control) {
        let _ = child.kill();
        return Err(match &restored_from {
            Some(snapshot) => VmError::Host(format!(
                "{} could not restore snapshot {snapshot}: {e}",
                vmm.name(),
            )),
            None => VmError::Host(format!("{} refused the VM: {e}", vmm.name())),
        });
    }
    // Restored: the guest runs on the VM's own disk now, so later starts boot from it.
    if restoring.is_some()
        && let Err(e) = std::fs::remove_file(files.restore_marker())
    {
        tracing::warn!("cannot remove {}: {e}", files.restore_marker().display());
    }
    let host_phases = BootTimes {
        prepare_millis: Some(millis_between(supervisor_started, launched)),
        vmm_start_millis: Some(launched.elapsed().as_millis() as u64),
        ..BootTimes::default()
    };
    store.vms().update(uid, |v| -> Result<(), StoreError> {
        v.status.running = true;
        v.status.paused = false;
        v.status.start_time = Some(Time::now());
        v.status.supervisor = Some(process::current());
        v.status.vmm = vmm_process.map(|p| VmmStatus {
            name: vmm.kind(),
            process: p,
            accel,
            memory_reporting: spec.memory_reporting,
            cgroup: confined.cgroup(),
            user: confined.user(),
        });
        v.status.exit = None;
        v.status.boot_millis = None;
        v.status.boot_phases = None;
        v.status.ssh_address = attachment.ssh_address.clone();
        v.status.network = attachment.status.clone();
        v.status.restored_from = restored_from.clone();
        Ok(())
    })?;
    tracing::info!(pid = child.id(), "the VMM runs");

    let agent: super::agent_proxy::AgentSlot = Arc::default();
    let agent_on = super::agent_enabled(&vm);
    let listener = if agent_on {
        Some(std::os::unix::net::UnixListener::bind(files.exec_socket()))
    } else {
        tracing::info!("the guest agent is off (ignite.agent=off)");
        None
    };
    match listener {
        None => {}
        Some(Ok(listener)) => {
            let agent = agent.clone();
            std::thread::spawn(move || super::agent_proxy::serve(listener, agent));
        }
        Some(Err(e)) => tracing::warn!(
            "ignite exec will not reach this VM: cannot listen on {}: {e}",
            files.exec_socket().display()
        ),
    }
    let workload_exit: Arc<Mutex<Option<ExitStatus>>> = Arc::default();
    if let (Some(client), false) = (&attached, agent_on) {
        client.send(&no_agent("the VM's agent is off (ignite.agent=off)"));
    }
    if let (Some(_), Some(input)) = (&attached, attached_input) {
        let agent = agent.clone();
        std::thread::spawn(move || relay_client_input(input, &agent));
    }
    if agent_on {
        let agent = agent.clone();
        let workload_exit = workload_exit.clone();
        let (vmm, spec) = (vmm.clone(), spec.clone());
        let dir = files.dir().to_path_buf();
        let (root, uid) = (store.root().to_path_buf(), uid.clone());
        let ready = move |guest: Option<BootTimes>| {
            let millis = launched.elapsed().as_millis() as u64;
            let guest = guest.unwrap_or_default();
            let times = BootTimes {
                kernel_millis: guest.kernel_millis,
                init_millis: guest.init_millis,
                ready_millis: Some(millis),
                ..host_phases
            };
            tracing::debug!("boot phases: {times}");
            let recorded = Store::open(&root).and_then(|store| {
                store.vms().update(&uid, |v| -> Result<(), StoreError> {
                    v.status.boot_millis = Some(millis);
                    v.status.boot_phases = Some(boot_phases(&times));
                    Ok(())
                })
            });
            if let Err(e) = recorded {
                tracing::warn!("cannot record the boot time: {e}");
            }
            times
        };
        let workload = WorkloadSinks {
            exit: workload_exit,
            log: output_log.clone(),
            client: attached.clone(),
        };
        std::thread::spawn(move || {
            hold_agent(
                || vmm.connect_agent(&spec),
                &dir,
                resume,
                ready,
                agent,
                workload,
            )
        });
    }

    // Wakes the loop below the moment the VMM exits (without reaping it: try_wait does).
    let (exited_tx, exited) = std::sync::mpsc::channel::<()>();
    let vmm_pid = rustix::process::Pid::from_child(&child);
    std::thread::spawn(move || {
        let _ = rustix::process::waitid(
            rustix::process::WaitId::Pid(vmm_pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        );
        let _ = exited_tx.send(());
    });
    let mut stop_deadline: Option<Instant> = None;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io("wait for", &program))? {
            break status;
        }
        for signal in signals.pending() {
            match signal {
                SIGQUIT => {
                    let _ = child.kill();
                    killed = true;
                }
                SIGTERM | SIGINT if stop_deadline.is_none() => {
                    stop_deadline = Some(Instant::now() + STOP_TIMEOUT);
                    // A paused guest can neither hear its agent nor its power button.
                    if store.vms().get(uid).is_ok_and(|v| v.status.paused)
                        && let Err(e) = vmm.resume(&control)
                    {
                        tracing::warn!("cannot resume the paused VM to stop it: {e}");
                    }
                    let client = agent.lock().expect("agent lock").clone();
                    let asked = client.is_some_and(|a| a.shutdown().is_ok());
                    if !asked && let Err(e) = vmm.power_button(&control) {
                        tracing::warn!("cannot press the power button: {e}");
                    }
                }
                _ => {}
            }
        }
        if stop_deadline.is_some_and(|d| Instant::now() > d) && !killed {
            tracing::warn!("the guest did not power off within {STOP_TIMEOUT:?}: killing it");
            let _ = child.kill();
            killed = true;
        }
        let _ = exited.recv_timeout(POLL);
    };

    let exit_status = workload_exit
        .lock()
        .expect("exit lock")
        .map(|e| e.shell_code())
        .or_else(|| console_exit_status(&files, log_offset));
    let seen = outcome::Seen {
        stop_requested: stop_deadline.is_some(),
        killed,
        vmm_succeeded: status.success(),
        vmm_status: status.to_string(),
        exit_status,
        panic: exit_status
            .is_none()
            .then(|| console_panic(&files, log_offset))
            .flatten(),
        supervisor_log: files.supervisor_log().display().to_string(),
    };
    let (reason, detail) = outcome::exit_reason(&seen);
    tracing::info!(%reason, ?detail, ?exit_status, "the VM ended");
    files.remove_runtime_files();
    drop(attachment);
    drop(confined);
    let ended = store.vms().update(uid, |v| -> Result<(), StoreError> {
        v.status.running = false;
        v.status.paused = false;
        v.status.supervisor = None;
        v.status.vmm = None;
        v.status.ssh_address = None;
        v.status.network = None;
        v.status.exit = Some(ExitRecord::new(exit_status, reason, detail));
        Ok(())
    })?;
    if ended.status.auto_remove {
        if let Some(client) = &attached
            && !client.finish(CLIENT_GRACE)
        {
            tracing::warn!("the attached client did not hang up within {CLIENT_GRACE:?}");
        }
        auto_remove(store, uid);
    }
    Ok(())
}

/// How long an attached client gets to read the exit record of an auto-removed VM.
const CLIENT_GRACE: Duration = Duration::from_secs(10);

/// `run --rm`: the ended VM goes as `ignite rm` removes it. One started again meanwhile
/// stays, and one already removed (a concurrent `ignite rm`) is no error.
fn auto_remove(store: &Store, uid: &Uid) {
    let vm = match store.vms().get(uid) {
        Ok(vm) => vm,
        Err(StoreError::NotFound { .. }) => return,
        Err(e) => {
            tracing::warn!("cannot remove the VM when it ended: {e}");
            return;
        }
    };
    match super::remove_vm(store, vm, false) {
        Ok(_) => tracing::info!("removed the VM as it ended (--rm)"),
        Err(VmError::Running(_)) => {
            tracing::info!("not removing the VM: it was started again")
        }
        Err(e) => tracing::warn!("cannot remove the VM when it ended: {e}"),
    }
}

/// The kernel's panic line among the console's last lines written since `offset`.
fn console_panic(files: &VmFiles, offset: u64) -> Option<String> {
    let tail = super::console_log::tail_since(&files.console_log(), offset, 64 << 10).ok()?;
    kernel_panic_line(&String::from_utf8_lossy(&tail))
}

/// The exit marker among the console's last lines written since `offset` (the marker is
/// the last thing ignite-init prints; the log is never read whole).
fn console_exit_status(files: &VmFiles, offset: u64) -> Option<i32> {
    let tail = super::console_log::tail_since(&files.console_log(), offset, 64 << 10).ok()?;
    last_exit_status(&String::from_utf8_lossy(&tail))
}

/// Where the container-mode workload's output and exit go.
struct WorkloadSinks {
    exit: Arc<Mutex<Option<ExitStatus>>>,
    log: Arc<Mutex<OutputLogWriter>>,
    client: Option<Arc<AttachedClient>>,
}

fn no_agent(message: &str) -> Frame {
    Frame::json(
        FrameKind::Error,
        CONTROL,
        &ErrorBody {
            message: message.to_string(),
            status: None,
        },
    )
}

/// Connects to the guest agent (retrying while the guest boots), keeps the connection for
/// stop requests, and stores the workload's output and exit as they arrive: in the output
/// log and to the attached client, then acknowledges the exit so the guest powers off.
fn millis_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_millis() as u64
}

/// The boot times as the VM's status records them.
fn boot_phases(t: &BootTimes) -> ignite_api::BootPhases {
    ignite_api::BootPhases {
        prepare_millis: t.prepare_millis,
        vmm_start_millis: t.vmm_start_millis,
        kernel_millis: t.kernel_millis,
        init_millis: t.init_millis,
        ready_millis: t.ready_millis,
    }
}

/// How a start continues a saved guest instead of booting one.
enum Resume {
    /// A snapshot of the user's (`run --from-snapshot`): renew the guest, which runs on.
    Snapshot(RestoreRequest),
    /// A warm-start template: hand its init this VM's configuration.
    Template(Box<BootRequest>),
}

/// Connects to the guest's agent channel, retrying while the guest boots; `None` once
/// the VM's directory is gone.
fn connect_agent(
    connect: &impl Fn() -> std::io::Result<UnixStream>,
    vm_dir: &std::path::Path,
) -> Option<UnixStream> {
    loop {
        match connect() {
            Ok(s) => return Some(s),
            Err(_) if vm_dir.exists() => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

fn hold_agent(
    connect: impl Fn() -> std::io::Result<UnixStream>,
    vm_dir: &std::path::Path,
    resume: Option<Resume>,
    ready: impl FnOnce(Option<BootTimes>) -> BootTimes,
    slot: Arc<Mutex<Option<Arc<AgentClient>>>>,
    workload: WorkloadSinks,
) {
    let Some(stream) = connect_agent(&connect, vm_dir) else {
        return;
    };
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let client = match AgentClient::connect(reader, stream, Duration::from_secs(600)) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::warn!("the guest agent did not answer: {e}");
            if let Some(attached) = &workload.client {
                attached.send(&no_agent(&format!("the guest agent did not answer: {e}")));
            }
            return;
        }
    };
    // A warm start: the template's init answered; it takes the VM's configuration and
    // boots on, and its agent answers on the same connection.
    let mut guest = client.guest.clone();
    if let Some(Resume::Template(request)) = &resume {
        let booted = client
            .boot(request, Duration::from_secs(30))
            .and_then(|()| client.greet_again(Duration::from_secs(60)));
        match booted {
            Ok(hello) => guest = hello,
            Err(e) => {
                tracing::error!("the warm start failed: {e}");
                if let Some(attached) = &workload.client {
                    attached.send(&no_agent(&format!("the warm start failed: {e}")));
                }
                return;
            }
        }
    }
    tracing::info!(guest = %guest.software, "the guest agent answered");
    // A restored guest's boot times are the snapshot's VM's; its own start is the restore.
    let guest_times = match &resume {
        None => guest.boot,
        // The guest's times count from the template's boot.
        Some(Resume::Template(_)) => None,
        Some(Resume::Snapshot(request)) => {
            // Before anyone else reaches the guest: nothing runs on with the snapshot's
            // clock, randomness or addresses once this returns.
            if let Err(e) = client.restored(request, Duration::from_secs(30)) {
                // Clones must never run on with the snapshot's random state or another
                // VM's addresses: this one is powered off instead.
                tracing::error!("{e}: stopping the VM");
                let _ = client.shutdown();
                return;
            }
            None
        }
    };
    let times = ready(guest_times);
    *slot.lock().expect("agent lock") = Some(client.clone());
    if let Some(attached) = &workload.client {
        let hello = Hello {
            boot: Some(times),
            ..guest
        };
        attached.send(&Frame::json(FrameKind::Hello, CONTROL, &hello));
    }
    let Some(frames) = client.take_workload() else {
        return;
    };
    let mut log_failed = false;
    for frame in frames {
        let stream = match frame.kind {
            FrameKind::Stdout => Stream::Stdout,
            FrameKind::Stderr => Stream::Stderr,
            FrameKind::WorkloadExited => {
                if let Err(e) = workload.log.lock().expect("output log lock").sync() {
                    tracing::warn!("cannot sync the output log: {e}");
                }
                if let Some(attached) = &workload.client {
                    attached.send(&frame);
                }
                if let Ok(exit) = frame.body::<ExitStatus>() {
                    *workload.exit.lock().expect("exit lock") = Some(exit);
                }
                if let Err(e) = client.ack_exit() {
                    tracing::warn!("cannot acknowledge the workload's exit: {e}");
                }
                continue;
            }
            _ => continue,
        };
        let logged = workload
            .log
            .lock()
            .expect("output log lock")
            .append(stream, &frame.payload);
        if let Err(e) = logged
            && !log_failed
        {
            tracing::warn!("cannot write the output log: {e}");
            log_failed = true;
        }
        if let Some(attached) = &workload.client {
            attached.send(&frame);
        }
    }
}

/// The attached client's stdin, window size and signals, passed to the workload once the
/// agent is there (until then they wait).
fn relay_client_input(mut input: UnixStream, agent: &Arc<Mutex<Option<Arc<AgentClient>>>>) {
    while let Ok(Some(frame)) = Frame::read_from(&mut input) {
        if !matches!(
            frame.kind,
            FrameKind::Stdin | FrameKind::Resize | FrameKind::Signal
        ) {
            continue;
        }
        let client = loop {
            if let Some(client) = agent.lock().expect("agent lock").clone() {
                break client;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = client.send_frame(&Frame::new(frame.kind, WORKLOAD, frame.payload));
    }
}

pub use plan::guest_config;

/// Set by the supervisor on `vm exec-vmm`: the network namespace (a path under
/// /run/netns) the VMM runs in, where its tap is (CNI VMs).
const VMM_NETNS_ENV: &str = "IGNITE_VMM_NETNS";
/// Set by the supervisor on `vm exec-vmm`: the VMM's memory is offered to the host's KSM
/// (see `host_memory::mark_mergeable`).
const VMM_MERGEABLE_ENV: &str = "IGNITE_VMM_MERGEABLE";

/// `ignite vm exec-vmm -- PROGRAM ARGS...`: the VMM dies with its supervisor, runs in
/// the VM's cgroup and network namespace when the supervisor names them, and has its
/// memory offered to the host's KSM when the supervisor says so.
pub fn exec_vmm(args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let Some((program, rest)) = args.split_first() else {
        return std::io::Error::other("exec-vmm needs a program");
    };
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        return e.into();
    }
    // The supervisor may have died before the signal was armed.
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        return std::io::Error::other("the supervisor is gone");
    }
    if let Ok(pids) = std::env::var(WATCHER_ENV) {
        return watch(&pids);
    }
    if std::env::var_os(VMM_MERGEABLE_ENV).is_some()
        && let Err(e) = crate::vms::host_memory::mark_mergeable()
    {
        // Only what KSM may merge is less: the VM runs as it would. Before the watcher
        // starts, which keeps the mark across its exec as the VMM does.
        tracing::debug!("the VMM's memory is not offered to KSM (Linux 6.4 or newer needed): {e}");
    }
    // Before the watcher starts, which goes in with it. As the launcher is one thread,
    // this is a cheap move (see `Group::join_self`).
    if let Some(text) = std::env::var_os(VMM_CGROUP_ENV) {
        match text.to_str().and_then(ignite_cgroup::Group::from_env) {
            Some(group) => {
                if let Err(e) = group.join_self() {
                    tracing::warn!("the VMM cannot join its VM's cgroup: {e}");
                }
            }
            None => tracing::warn!("{VMM_CGROUP_ENV} does not name a cgroup: {text:?}"),
        }
    }
    if std::env::var_os(VMM_WATCH_ENV).is_some()
        && let Err(e) = start_watcher()
    {
        return std::io::Error::other(format!("cannot watch the supervisor for the VMM: {e}"));
    }
    // Held until the exec, which keeps them open for the VMM.
    let _inherited = match std::env::var_os(VMM_FDS_ENV) {
        Some(list) => match crate::vms::confinement::open_inherited(&list) {
            Ok(held) => held,
            Err(e) => {
                return std::io::Error::other(format!("cannot open the VM's disks: {e}"));
            }
        },
        None => Vec::new(),
    };
    if let Some(netns) = std::env::var_os(VMM_NETNS_ENV) {
        let entered = std::fs::File::open(&netns).and_then(|file| {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(std::io::Error::from)
        });
        if let Err(e) = entered {
            return std::io::Error::other(format!(
                "cannot enter the VM's network namespace {}: {e}",
                std::path::Path::new(&netns).display()
            ));
        }
    }
    Command::new(program)
        .args(rest)
        .env_remove(VMM_CGROUP_ENV)
        .env_remove(VMM_NETNS_ENV)
        .env_remove(VMM_WATCH_ENV)
        .env_remove(VMM_MERGEABLE_ENV)
        .env_remove(VMM_FDS_ENV)
        .exec()
}

/// Where the host's TSC frequency is kept for the host's boot, under the state root.
const HOST_TSC_FILE: &str = "host-tsc";

/// Set by the supervisor on `vm exec-vmm`: the VM's cgroup (`Group::to_env`), which the
/// launcher joins before it becomes the VMM.
const VMM_CGROUP_ENV: &str = "IGNITE_VMM_CGROUP";

/// Set by the supervisor on `vm exec-vmm`: the disks the VMM inherits open
/// (`vms::confinement::open_inherited`).
const VMM_FDS_ENV: &str = "IGNITE_VMM_FDS";

/// Set by the supervisor on `vm exec-vmm` when the VMM will change user (`-runas`).
const VMM_WATCH_ENV: &str = "IGNITE_VMM_WATCH";

/// Set on the watcher `vm exec-vmm` starts: `SUPERVISOR_PID:VMM_PID`.
const WATCHER_ENV: &str = "IGNITE_VMM_WATCHER";

/// The kernel clears a process's parent-death signal when its user changes, so a VMM
/// that runs as its own user would outlive a killed supervisor. A watcher started here
/// (root, before the exec; the same binary, `vm exec-vmm` with [`WATCHER_ENV`]) waits for
/// the supervisor's end and then kills the VMM; it dies with the VMM otherwise.
fn start_watcher() -> std::io::Result<()> {
    let supervisor = rustix::process::getppid()
        .ok_or_else(|| std::io::Error::other("the supervisor is gone"))?;
    let vmm = std::process::id();
    Command::new(std::env::current_exe()?)
        .args(["vm", "exec-vmm", "--", "watch"])
        .env(
            WATCHER_ENV,
            format!("{}:{vmm}", supervisor.as_raw_nonzero()),
        )
        .env_remove(VMM_WATCH_ENV)
        .env_remove(VMM_CGROUP_ENV)
        .env_remove(VMM_NETNS_ENV)
        .env_remove(VMM_MERGEABLE_ENV)
        .env_remove(VMM_FDS_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
}

/// The watcher lives as long as its VM doing nothing but wait, one per VM: the heap the
/// command line's parsing left free (~0.4 MiB) goes back to the host.
#[allow(unsafe_code)]
fn give_back_free_heap() {
    // SAFETY: malloc_trim takes no pointers; it releases free pages of glibc's heap, which
    // no live allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The watcher's life: see [`start_watcher`].
fn watch(pids: &str) -> std::io::Error {
    use rustix::event::{PollFd, PollFlags};
    use rustix::process::{Pid, PidfdFlags, Signal};
    let parse = |p: &str| p.parse::<i32>().ok().and_then(Pid::from_raw);
    let Some((Some(supervisor), Some(vmm))) =
        pids.split_once(':').map(|(s, v)| (parse(s), parse(v)))
    else {
        return std::io::Error::other(format!("{WATCHER_ENV}={pids:?} is not SUPERVISOR:VMM"));
    };
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        return e.into();
    }
    // The VMM ended before the signal was armed: nothing to watch.
    if rustix::process::getppid() != Some(vmm) {
        return std::io::Error::other("the VMM is gone");
    }
    give_back_free_heap();
    // A supervisor already gone cannot be opened: the VMM goes at once.
    if let Ok(pidfd) = rustix::process::pidfd_open(supervisor, PidfdFlags::empty()) {
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
    }
    let _ = rustix::process::kill_process(vmm, Signal::KILL);
    std::process::exit(0)
}
