//! The per-VM supervisor (ARCHITECTURE §4): a detached process, one per running VM, that
//! owns the VMM process, hands the guest its configuration, holds the agent connection,
//! stops the VM gracefully on SIGTERM (at once on SIGQUIT), and records how it ended.
//! The VMM gets a parent-death signal, so a `kill -9` of the supervisor takes it along.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignite_api::{ExitRecord, GuestMode, NetworkMode, Time, Uid, Vm, VmmKind, VmmStatus};
use ignite_guest_protocol::agent::{CONTROL, ErrorBody, ExitStatus, Frame, FrameKind, WORKLOAD};
use ignite_guest_protocol::client::AgentClient;
use ignite_guest_protocol::config::{BootMode, CONFIG_VERSION, GuestConfig, Volume as GuestVolume};
use ignite_guest_protocol::status::{kernel_panic_line, last_exit_status};
use ignite_store::{Store, StoreError};
use ignite_vmm::{
    ConsoleSpec, DiskFormat, DiskSpec, MachineSpec, NicBackend, NicSpec, PortForward, Vmm,
};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use super::attach::AttachedClient;
use super::output_log::{OutputLogWriter, Stream};
use super::{
    STOP_TIMEOUT, VmError, VmFiles, accel, driver, image_of, io, kernel_of, network, process,
};
use crate::guest::{FileCopy, workload_for, write_vm_initramfs};
use crate::kernels::{BZIMAGE_FILE, MODULES_DISK_FILE, VMLINUX_FILE, kernel_dir};

/// How an exit record's reason begins when the VMM itself failed (not the guest).
pub(crate) const VMM_FAILED: &str = "the VMM failed";

const POLL: Duration = Duration::from_millis(50);

/// Runs the VM until it ends. Called as `ignite vm supervise UID` by [`super::start_vm`].
pub fn run(store: &Store, uid: &Uid, helper: &std::path::Path) -> Result<(), VmError> {
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
    // start_vm resolved it and passed it on in IGNITE_ACCEL.
    let accel = accel::resolve(None, None).map_err(VmError::Invalid)?;

    let modules_disk = kdir.join(MODULES_DISK_FILE);
    let has_modules = modules_disk.is_file();
    let mode = network::mode_of(&vm);
    // Held until the supervisor ends; dropping it takes the VM off the bridge.
    let bridge = match mode {
        NetworkMode::Bridge => {
            let settings = network::BridgeSettings::from_env()?;
            Some(network::attach_to_bridge(store, &vm, &settings)?)
        }
        _ => None,
    };
    let guest_network = match (&bridge, mode) {
        (Some(b), _) => b.guest.clone(),
        (None, NetworkMode::User) => network::user_guest_network(&vm),
        (None, _) => network::GuestNetwork::default(),
    };
    let mut config = guest_config(&vm, &image, has_modules, &guest_network);
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
    write_vm_initramfs(&kdir, &config, &copies, &files.initramfs())?;

    let kind = driver::kind_of(&vm);
    let vmm: Arc<dyn Vmm> = driver::locate(kind, driver::firecracker_from_env().as_deref())?.into();
    let firecracker = kind == VmmKind::Firecracker;
    let mut disks = vec![DiskSpec {
        path: if firecracker {
            files.raw_disk()
        } else {
            files.overlay()
        },
        format: if firecracker {
            DiskFormat::Raw
        } else {
            DiskFormat::Qcow2
        },
        read_only: false,
        snapshot: false,
    }];
    if has_modules {
        disks.push(DiskSpec {
            path: modules_disk,
            format: DiskFormat::Raw,
            read_only: true,
            snapshot: false,
        });
    }
    for volume in &config.volumes {
        let source = vm
            .spec
            .storage
            .volumes
            .iter()
            .find(|v| v.name == volume.name)
            .and_then(|v| v.block_device.as_ref())
            .map(|b| b.path.clone())
            .expect("guest volumes come from spec volumes");
        disks.push(DiskSpec {
            path: source,
            format: DiskFormat::Raw,
            read_only: false,
            snapshot: false,
        });
    }
    let ssh_port = (vm.spec.ssh.is_some() && mode == NetworkMode::User)
        .then(free_loopback_port)
        .flatten();
    let bzimage = kdir.join(BZIMAGE_FILE);
    let spec = MachineSpec {
        vcpus: vm.spec.cpus() as u32,
        memory_mib: vm.spec.memory().bytes() >> 20,
        // Firecracker boots the ELF vmlinux; QEMU the bzImage (see kernels).
        kernel: if bzimage.is_file() && !firecracker {
            bzimage
        } else {
            kdir.join(VMLINUX_FILE)
        },
        initrd: files.initramfs(),
        cmdline: vm
            .spec
            .kernel
            .as_ref()
            .and_then(|k| k.cmd_line.clone())
            .unwrap_or_else(|| ignite_api::defaults::KERNEL_CMDLINE.to_string()),
        disks,
        console: ConsoleSpec::Socket {
            path: files.console_socket(),
            log: files.console_log(),
        },
        agent_socket: Some(files.agent_socket()),
        nics: nics(&vm, ssh_port, bridge.as_ref()),
        accel,
        log_dir: Some(files.dir().to_path_buf()),
    };
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
    let mut child = Command::new(helper)
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
            return Err(VmError::Invalid(format!(
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
    let vmm_process = wait_for_process(child.id());
    if let Err(e) = vmm.boot(&spec, &control) {
        let _ = child.kill();
        return Err(VmError::Invalid(format!(
            "{} refused the VM: {e}",
            vmm.name()
        )));
    }
    store.vms().update(uid, |v| -> Result<(), StoreError> {
        v.status.running = true;
        v.status.start_time = Some(Time::now());
        v.status.supervisor = Some(process::current());
        v.status.vmm = vmm_process.map(|p| VmmStatus {
            name: vmm.name().to_string(),
            process: p,
            accel: accel::name(accel).to_string(),
        });
        v.status.exit = None;
        v.status.boot_millis = None;
        v.status.ssh_address = match &bridge {
            Some(b) => v.spec.ssh.as_ref().map(|_| format!("{}:22", b.address)),
            None => ssh_port.map(|p| format!("127.0.0.1:{p}")),
        };
        v.status.network = match (&bridge, mode) {
            (Some(b), _) => Some(ignite_api::NetworkStatus {
                plugin: "bridge".into(),
                ip_addresses: vec![b.address.into()],
            }),
            (None, NetworkMode::User) => Some(ignite_api::NetworkStatus {
                plugin: "user".into(),
                ip_addresses: vec![network::USER_GUEST.into()],
            }),
            (None, _) => None,
        };
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
        let ready = move || {
            let millis = launched.elapsed().as_millis() as u64;
            let recorded = Store::open(&root).and_then(|store| {
                store.vms().update(&uid, |v| -> Result<(), StoreError> {
                    v.status.boot_millis = Some(millis);
                    Ok(())
                })
            });
            if let Err(e) = recorded {
                tracing::warn!("cannot record the boot time: {e}");
            }
        };
        let workload = WorkloadSinks {
            exit: workload_exit,
            log: output_log.clone(),
            client: attached.clone(),
        };
        std::thread::spawn(move || {
            hold_agent(|| vmm.connect_agent(&spec), &dir, ready, agent, workload)
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
    let reason = if killed && stop_deadline.is_some() {
        "stopped (killed after the grace period)".to_string()
    } else if killed {
        "killed".to_string()
    } else if stop_deadline.is_some() {
        "stopped".to_string()
    } else if let Some(panic) = exit_status
        .is_none()
        .then(|| console_panic(&files, log_offset))
        .flatten()
    {
        // With panic=1 the guest reboots and the VMM exits cleanly: not a power-off.
        format!("the guest kernel panicked: {panic}")
    } else if status.success() {
        "powered off".to_string()
    } else {
        format!(
            "{VMM_FAILED} ({status}); see {}",
            files.supervisor_log().display()
        )
    };
    tracing::info!(reason, ?exit_status, "the VM ended");
    files.remove_runtime_files();
    drop(bridge);
    store.vms().update(uid, |v| -> Result<(), StoreError> {
        v.status.running = false;
        v.status.supervisor = None;
        v.status.vmm = None;
        v.status.ssh_address = None;
        v.status.network = None;
        v.status.exit = Some(ExitRecord {
            status: exit_status,
            reason,
            time: Time::now(),
        });
        Ok(())
    })?;
    Ok(())
}

/// The VMM's process record, once the helper has exec'd into it.
fn wait_for_process(pid: u32) -> Option<ignite_api::ProcessRef> {
    process::lookup(pid)
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
fn hold_agent(
    connect: impl Fn() -> std::io::Result<UnixStream>,
    vm_dir: &std::path::Path,
    ready: impl FnOnce(),
    slot: Arc<Mutex<Option<Arc<AgentClient>>>>,
    workload: WorkloadSinks,
) {
    let stream = loop {
        match connect() {
            Ok(s) => break s,
            Err(_) if vm_dir.exists() => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => return,
        }
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
    tracing::info!(guest = %client.guest.software, "the guest agent answered");
    ready();
    *slot.lock().expect("agent lock") = Some(client.clone());
    if let Some(attached) = &workload.client {
        attached.send(&Frame::json(FrameKind::Hello, CONTROL, &client.guest));
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

/// A free TCP port on 127.0.0.1 for the VM's sshd (VMs with `--ssh` and user networking).
fn free_loopback_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

fn nics(
    vm: &Vm,
    ssh_port: Option<u16>,
    bridge: Option<&network::BridgeAttachment>,
) -> Vec<NicSpec> {
    let mac = network::mac_of(&super::uid_of(vm));
    if let Some(b) = bridge {
        return vec![NicSpec {
            mac,
            backend: NicBackend::Tap {
                ifname: b.tap.clone(),
            },
        }];
    }
    match network::mode_of(vm) {
        NetworkMode::User => {
            let mut forwards: Vec<PortForward> = vm
                .spec
                .network
                .ports
                .iter()
                .map(|p| PortForward {
                    udp: p.protocol == Some(ignite_api::Protocol::Udp),
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
            vec![NicSpec {
                mac,
                backend: NicBackend::User {
                    forwards,
                    isolated: false,
                },
            }]
        }
        NetworkMode::None | NetworkMode::Bridge => vec![],
    }
}

/// The per-VM configuration ignite-init applies.
pub fn guest_config(
    vm: &Vm,
    image: &ignite_api::Image,
    has_modules: bool,
    network: &network::GuestNetwork,
) -> GuestConfig {
    // Disks: vda root, vdb modules (when the kernel has them), then volumes in order.
    let first_volume = if has_modules { b'c' } else { b'b' };
    let volumes = vm
        .spec
        .storage
        .volume_mounts
        .iter()
        .enumerate()
        .map(|(i, m)| GuestVolume {
            name: m.name.clone(),
            device: format!("/dev/vd{}", (first_volume + i as u8) as char),
            path: m.mount_path.to_string_lossy().into_owned(),
            fstype: None,
            read_only: false,
        })
        .collect();
    GuestConfig {
        version: CONFIG_VERSION,
        name: vm.metadata.name.clone(),
        uid: super::uid_of(vm).to_string(),
        hostname: vm.metadata.name.clone(),
        mode: match vm.spec.mode.unwrap_or_default() {
            GuestMode::Auto => BootMode::Auto,
            GuestMode::Vm => BootMode::Vm,
            GuestMode::Container => BootMode::Container,
        },
        workload: workload_for(image, &vm.spec),
        root_device: "/dev/vda".into(),
        modules_device: has_modules.then(|| "/dev/vdb".to_string()),
        interfaces: network.interfaces.clone(),
        nameservers: network.nameservers.clone(),
        search_domains: vec![],
        hosts: vec![],
        authorized_keys: vec![],
        files: vec![],
        volumes,
    }
}

/// `ignite vm exec-vmm -- PROGRAM ARGS...`: the VMM dies with its supervisor.
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
    Command::new(program).args(rest).exec()
}
