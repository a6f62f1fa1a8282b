//! The VM lifecycle commands: `run`, `create`, `start`, `stop`, `kill`, `rm`, `logs` and
//! `attach` (also under `ignite vm`), plus the hidden `vm supervise` and `vm exec-vmm`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ignite_api::{
    BlockDeviceVolume, FileMapping, ImageSource, PortMapping, Size, Ssh, Vm, VmImageSpec,
    VmKernelSpec, VmSpec, Volume, VolumeMount,
};
use ignite_guest_protocol::agent::ExitStatus;
use ignite_runtime::vms::{self, CreateRequest, StartOptions, VmFiles, console_log};
use ignite_store::Store;

use super::workload::{self, AttachFlags, Attached, SignalProxy};
use super::{Context, write_stdout};
use crate::args::{CreateArgs, RmArgs, RunArgs, StartArgs, StartFlags, StopArgs, VmArg, VmsArgs};
use crate::progress::Bars;

/// ^P^Q, as in Docker, detaches from a console.
const DETACH: [u8; 2] = [0x10, 0x11];

pub fn create(ctx: &Context, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let vm = create_vm(ctx, args, &[], None, false)?;
    announce(ctx, "created", &vm)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let vm = create_vm(
        ctx,
        &args.create,
        &args.command,
        args.start.accel.as_deref(),
        args.rm,
    )?;
    let store = ctx.writable_store()?;
    // Plain `run` stays detached, as in Ignite; --rm, -a and -i follow the VM.
    if !(args.rm || args.start.attach || args.start.interactive) {
        let vm = start(ctx, &store, vm, &args.start)?;
        announce(ctx, "started", &vm)?;
        vms::wait_until_ready(&store, &vm, vms::READY_TIMEOUT)?;
        return Ok(ExitCode::SUCCESS);
    }
    let flags = AttachFlags {
        stdin: args.start.interactive,
        tty: vm.spec.tty.unwrap_or(false),
    };
    let proxy = SignalProxy::catch()?;
    let (vm, mut attachment) = match start_attached(ctx, &store, vm.clone(), &args.start, flags) {
        Ok(started) => started,
        Err(e) => {
            // A supervisor that failed before the VM ran leaves the removal to us.
            if args.rm {
                let _ = vms::remove_vm(&store, vm, true);
            }
            return Err(e);
        }
    };
    // Attached, our stderr is the workload's: nothing of ours on it unless asked.
    tracing::debug!("started VM {} ({})", vm.metadata.name, vms::uid_of(&vm));
    let ended = follow_to_the_end(&store, &vm, &mut attachment, flags, &proxy, 0, args.rm)?;
    Ok(finish_attached(&store, &vm, ended, attachment, &proxy))
}

pub fn start_command(ctx: &Context, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.writable_store()?;
    let vm = store.vms().find(&args.vm)?;
    if !(args.start.attach || args.start.interactive) {
        let vm = start(ctx, &store, vm, &args.start)?;
        announce(ctx, "started", &vm)?;
        vms::wait_until_ready(&store, &vm, vms::READY_TIMEOUT)?;
        return Ok(ExitCode::SUCCESS);
    }
    let log_offset = std::fs::metadata(VmFiles::new(&store, &vms::uid_of(&vm)).console_log())
        .map_or(0, |m| m.len());
    let flags = AttachFlags {
        stdin: args.start.interactive,
        tty: vm.spec.tty.unwrap_or(false),
    };
    let proxy = SignalProxy::catch()?;
    let (vm, mut attachment) = start_attached(ctx, &store, vm, &args.start, flags)?;
    tracing::debug!("started VM {} ({})", vm.metadata.name, vms::uid_of(&vm));
    let ended = follow_to_the_end(
        &store,
        &vm,
        &mut attachment,
        flags,
        &proxy,
        log_offset,
        false,
    )?;
    Ok(finish_attached(&store, &vm, ended, attachment, &proxy))
}

/// How an attached start ended.
struct Ended {
    /// The VM's record once it ended, or as it is after a detach; `None` when it is gone
    /// already (removed by someone else).
    vm: Option<Vm>,
    /// The container-mode workload's status, as it reported it.
    workload: Option<ExitStatus>,
}

/// Follows an attached start: the workload's streams in container mode; otherwise the
/// console with -i (until the VM ends or ^P^Q), or nothing. Returns once the VM ended, or
/// after a detach (`wait` false).
fn follow_to_the_end(
    store: &Store,
    vm: &Vm,
    attachment: &mut vms::attach::Attachment,
    flags: AttachFlags,
    proxy: &SignalProxy,
    log_offset: u64,
    wait: bool,
) -> anyhow::Result<Ended> {
    let uid = vms::uid_of(vm);
    let (detachable, workload) = match workload::follow(attachment, flags, proxy, vm)? {
        Attached::Workload(exit) => (false, exit),
        Attached::NoWorkload if flags.stdin => {
            attach_console(store, vm, log_offset)?;
            (!wait, None)
        }
        Attached::NoWorkload => (false, None),
    };
    let vm = match vms::wait_for_exit(store, &uid, detachable.then_some(Duration::ZERO)) {
        Ok(vm) => Some(vm),
        Err(vms::VmError::Store(ignite_store::StoreError::NotFound { .. })) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Ended { vm, workload })
}

/// The end of an attached start, as `docker run`'s: the workload's status (128+N when it
/// died of signal N); in VM mode 128+N when our signal N stopped the VM, else the VM's
/// status. The attachment is let go only once the record is read: the supervisor of an
/// auto-removed VM waits for that, then removes the VM, which we wait for.
fn finish_attached(
    store: &Store,
    started: &Vm,
    ended: Ended,
    attachment: vms::attach::Attachment,
    proxy: &SignalProxy,
) -> ExitCode {
    if ended.vm.as_ref().is_some_and(vms::is_running) {
        // Detached from a VM that keeps running.
        return ExitCode::SUCCESS;
    }
    let code = match (proxy.stopped_by(), &ended.vm, ended.workload) {
        (Some(signal), _, _) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        (None, Some(vm), _) => final_code(vm),
        (None, None, Some(exit)) => ExitCode::from(exit.shell_code().clamp(0, 255) as u8),
        (None, None, None) => ExitCode::from(125),
    };
    drop(attachment);
    if started.status.auto_remove {
        wait_for_removal(
            store,
            &vms::uid_of(started),
            started.status.supervisor.as_ref(),
        );
    }
    code
}

/// How long `run --rm` waits for the supervisor to remove the ended VM.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the supervisor removed the ended VM (or it was started again).
fn wait_for_removal(
    store: &Store,
    uid: &ignite_api::Uid,
    supervisor: Option<&ignite_api::ProcessRef>,
) {
    let deadline = std::time::Instant::now() + REMOVAL_TIMEOUT;
    loop {
        match store.vms().get(uid) {
            Err(ignite_store::StoreError::NotFound { .. }) => return,
            Ok(vm) if vms::is_running(&vm) => return,
            Err(e) => {
                tracing::warn!("cannot see whether the VM was removed: {e}");
                return;
            }
            Ok(vm) if std::time::Instant::now() > deadline => {
                tracing::warn!(
                    "VM {} was not removed within {REMOVAL_TIMEOUT:?}: remove it with ignite rm {}",
                    vm.metadata.name,
                    vm.metadata.name
                );
                return;
            }
            // The supervisor removes the VM last: its end is the moment to look again.
            Ok(_) => match supervisor {
                Some(supervisor) if vms::process::is_alive(supervisor) => {
                    vms::process::wait_for_end(supervisor, Duration::from_millis(20))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            },
        }
    }
}

pub fn stop(ctx: &Context, args: &StopArgs) -> anyhow::Result<ExitCode> {
    each(ctx, &args.vms, |store, vm| {
        let vm = vms::stop_vm(store, vm, args.force_kill)?;
        tracing::info!("stopped VM {}", vm.metadata.name);
        Ok(vm)
    })
}

pub fn kill(ctx: &Context, args: &VmsArgs) -> anyhow::Result<ExitCode> {
    each(ctx, &args.vms, |store, vm| {
        let vm = vms::stop_vm(store, vm, true)?;
        tracing::info!("killed VM {}", vm.metadata.name);
        Ok(vm)
    })
}

/// `pause` and `unpause`.
pub fn pause(ctx: &Context, args: &VmsArgs, pause: bool) -> anyhow::Result<ExitCode> {
    let firecracker = ctx
        .configuration
        .as_ref()
        .and_then(|c| c.spec.firecracker.clone());
    each(ctx, &args.vms, |store, vm| {
        let vm = if pause {
            vms::pause_vm(store, vm, firecracker.as_deref())?
        } else {
            vms::unpause_vm(store, vm, firecracker.as_deref())?
        };
        tracing::info!(
            "{} VM {}",
            if pause { "paused" } else { "unpaused" },
            vm.metadata.name
        );
        Ok(vm)
    })
}

pub fn rm(ctx: &Context, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let queries = match &args.config {
        Some(path) => {
            let manifest = read_manifest(path)?;
            vec![match &manifest.metadata.uid {
                Some(uid) => uid.to_string(),
                None if !manifest.metadata.name.is_empty() => manifest.metadata.name.clone(),
                None => bail!(
                    "{} names no VM: it has neither metadata.uid nor metadata.name",
                    path.display()
                ),
            }]
        }
        None if args.vms.is_empty() => bail!("name the VMs to remove, or give --config FILE"),
        None => args.vms.clone(),
    };
    each(ctx, &queries, |store, vm| {
        let vm = vms::remove_vm(store, vm, args.force)?;
        tracing::info!("removed VM {}", vm.metadata.name);
        Ok(vm)
    })
}

pub fn attach(ctx: &Context, args: &VmArg) -> anyhow::Result<ExitCode> {
    let vm = ctx.store.vms().find(&args.vm)?;
    let vm = vms::repair(&ctx.store, vm);
    if !vms::is_running(&vm) {
        bail!(
            "VM {} is not running: start it first (ignite start {})",
            vm.metadata.name,
            vm.metadata.name
        );
    }
    write_stdout(&format!("{}\n", vms::uid_of(&vm)))?;
    let log_len = std::fs::metadata(VmFiles::new(&ctx.store, &vms::uid_of(&vm)).console_log())
        .map_or(0, |m| m.len());
    attach_console(&ctx.store, &vm, log_len)?;
    Ok(ExitCode::SUCCESS)
}

pub fn supervise(ctx: &Context, args: &VmArg) -> anyhow::Result<ExitCode> {
    vms::supervisor::supervise(ctx.store.root(), &args.vm)?;
    Ok(ExitCode::SUCCESS)
}

pub fn exec_vmm(command: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    let err = vms::supervisor::exec_vmm(command);
    bail!(
        "cannot start the VMM {:?}: {err}",
        command.first().unwrap_or(&"".into())
    )
}

fn start(ctx: &Context, store: &Store, vm: Vm, flags: &StartFlags) -> anyhow::Result<Vm> {
    let supervisor = std::env::current_exe().context("cannot find the ignite binary")?;
    Ok(vms::start_vm(
        store,
        vm,
        &start_options(ctx, &supervisor, flags)?,
    )?)
}

fn start_options<'a>(
    ctx: &Context,
    supervisor: &'a Path,
    flags: &StartFlags,
) -> anyhow::Result<StartOptions<'a>> {
    let mut options = StartOptions::new(
        supervisor,
        flags.accel.as_deref(),
        ctx.configuration.as_ref(),
    )?;
    if flags.cold {
        options.warm = false;
    }
    Ok(options)
}

pub fn build_template(
    ctx: &Context,
    args: &crate::args::BuildTemplateArgs,
) -> anyhow::Result<ExitCode> {
    vms::warm::build_template_for(ctx.store.root(), &args.vm, &args.key)?;
    Ok(ExitCode::SUCCESS)
}

fn start_attached(
    ctx: &Context,
    store: &Store,
    vm: Vm,
    flags: &StartFlags,
    attach: AttachFlags,
) -> anyhow::Result<(Vm, vms::attach::Attachment)> {
    let supervisor = std::env::current_exe().context("cannot find the ignite binary")?;
    Ok(vms::start_vm_attached(
        store,
        vm,
        &start_options(ctx, &supervisor, flags)?,
        attach.request(),
    )?)
}

fn announce(ctx: &Context, what: &str, vm: &Vm) -> anyhow::Result<()> {
    let uid = vms::uid_of(vm);
    tracing::info!("{what} VM {} ({uid})", vm.metadata.name);
    if let Some(snapshot) = &vm.status.restored_from {
        tracing::debug!("restored from {snapshot}, not booted");
    }
    if ctx.quiet || what == "created" {
        write_stdout(&format!("{uid}\n"))?;
    }
    Ok(())
}

/// What a foreground `run` or `start -i` exits with: the workload's (or ignite-init's)
/// status, 0 for a guest that powered off or was stopped, 125 (as Docker) when the VM
/// failed without a status.
fn final_code(vm: &Vm) -> ExitCode {
    let Some(exit) = &vm.status.exit else {
        return ExitCode::SUCCESS;
    };
    if exit.status.is_none() && exit.reason.is_failure() {
        tracing::error!("VM {} ended: {}", vm.metadata.name, exit.describe());
    }
    ExitCode::from(exit.exit_code())
}

/// Applies `op` to each VM; one failure among several is logged and the rest still go.
fn each(
    ctx: &Context,
    queries: &[String],
    op: impl Fn(&Store, Vm) -> anyhow::Result<Vm>,
) -> anyhow::Result<ExitCode> {
    let store = ctx.writable_store()?;
    let mut out = String::new();
    let mut failures = 0;
    let mut last = None;
    for query in queries {
        match store
            .vms()
            .find(query)
            .map_err(anyhow::Error::from)
            .and_then(|vm| op(&store, vm))
        {
            Ok(vm) => out.push_str(&format!("{}\n", vms::uid_of(&vm))),
            Err(e) => {
                failures += 1;
                if queries.len() > 1 {
                    tracing::error!("{query}: {e:#}");
                }
                last = Some(e);
            }
        }
    }
    if ctx.quiet {
        write_stdout(&out)?;
    }
    match (failures, last) {
        (0, _) => Ok(ExitCode::SUCCESS),
        (1, Some(e)) if queries.len() == 1 => Err(e),
        _ => bail!("{failures} of {} VMs failed", queries.len()),
    }
}

fn read_manifest(path: &Path) -> anyhow::Result<Vm> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the VM manifest {}", path.display()))?;
    let vm: Vm = ignite_api::manifest::decode(&text)
        .with_context(|| format!("{} is not a valid VM manifest", path.display()))?;
    ignite_api::validation::validate_vm_manifest(&vm)
        .with_context(|| format!("{} is not a valid VM manifest", path.display()))?;
    Ok(vm)
}

fn create_vm(
    ctx: &Context,
    args: &CreateArgs,
    command: &[String],
    accel: Option<&str>,
    auto_remove: bool,
) -> anyhow::Result<Vm> {
    if let Some(snapshot) = &args.from_snapshot {
        return create_vm_from_snapshot(ctx, args, snapshot, command, auto_remove);
    }
    let manifest = args.config.as_deref().map(read_manifest).transpose()?;
    let flags = flag_spec(args, command)?;
    let spec = ignite_runtime::config::effective_vm_spec(
        flags,
        manifest.as_ref().map(|m| m.spec.clone()),
        ctx.configuration.as_ref(),
    );
    let mut meta = manifest.map(|m| m.metadata).unwrap_or_default();
    meta.created = None;
    name_and_label(&mut meta, args)?;
    let candidate = Vm::new(meta.clone(), spec.clone());
    ignite_api::validation::validate_vm_manifest(&candidate)?;
    let store = ctx.writable_store()?;
    let bars = Bars::new(ctx.quiet);
    let import = ctx.import_options(false, &args.registry);
    Ok(vms::create_vm(
        &store,
        CreateRequest {
            meta,
            spec,
            import,
            progress: &bars,
            driver: vms::DriverOptions::new(accel, ctx.configuration.as_ref()),
            auto_remove,
        },
    )?)
}

/// `--name`, `--require-name` and `--label` applied to a new VM's metadata.
fn name_and_label(meta: &mut ignite_api::ObjectMeta, args: &CreateArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.name {
        meta.name = name.clone();
    }
    if args.require_name && meta.name.is_empty() {
        bail!("--require-name: give the VM a name with --name");
    }
    for label in &args.labels {
        match label.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                meta.labels.insert(k.to_string(), v.to_string());
            }
            _ => bail!("bad label {label:?}: want KEY=VALUE"),
        }
    }
    Ok(())
}

/// `--from-snapshot`: the VM is the snapshot's, with the name, labels and ports given.
fn create_vm_from_snapshot(
    ctx: &Context,
    args: &CreateArgs,
    snapshot: &str,
    command: &[String],
    auto_remove: bool,
) -> anyhow::Result<Vm> {
    if !command.is_empty() {
        bail!("--from-snapshot continues the snapshot's workload: drop the command");
    }
    let mut meta = ignite_api::ObjectMeta::default();
    name_and_label(&mut meta, args)?;
    let mut ports = Vec::new();
    for spec in &args.ports {
        ports.extend(
            PortMapping::parse_spec(spec).with_context(|| format!("bad --ports {spec:?}"))?,
        );
    }
    let store = ctx.writable_store()?;
    let snap = store.snapshots().find(snapshot)?;
    Ok(vms::snapshot::create_vm_from_snapshot(
        &store,
        &snap,
        meta,
        ports,
        auto_remove,
    )?)
}

/// The spec layer the flags make: only what was given.
fn flag_spec(args: &CreateArgs, command: &[String]) -> anyhow::Result<VmSpec> {
    let size = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<Size>> {
        v.as_deref()
            .map(|s| {
                s.parse::<Size>()
                    .with_context(|| format!("bad {flag} {s:?}"))
            })
            .transpose()
    };
    let mut spec = VmSpec {
        image: args
            .image
            .as_deref()
            .map(|i| ImageSource::parse(i).map(|oci| VmImageSpec { oci }))
            .transpose()?,
        // Kept so templates and manifests round-trip as in Ignite; nothing runs it.
        sandbox: args
            .legacy
            .sandbox_image
            .as_deref()
            .map(|i| ImageSource::parse(i).map(|oci| VmImageSpec { oci }))
            .transpose()?,
        cpus: args.cpus,
        memory: size("--memory", &args.memory)?,
        cpu_quota: args.cpu_quota,
        disk_size: size("--size", &args.size)?,
        ..VmSpec::default()
    };
    if args.kernel_image.is_some() || args.kernel_args.is_some() {
        spec.kernel = Some(VmKernelSpec {
            oci: args
                .kernel_image
                .as_deref()
                .map(ImageSource::parse)
                .transpose()?,
            cmd_line: args.kernel_args.clone(),
        });
    }
    for mapping in &args.copy_files {
        let (host, vm) = mapping
            .split_once(':')
            .with_context(|| format!("bad --copy-files {mapping:?}: want /host/path:/vm/path"))?;
        spec.copy_files.push(FileMapping {
            host_path: host.into(),
            vm_path: vm.into(),
        });
    }
    for ports in &args.ports {
        spec.network.ports.extend(
            PortMapping::parse_spec(ports).with_context(|| format!("bad --ports {ports:?}"))?,
        );
    }
    spec.network.mode = args.network.map(Into::into);
    spec.network.cni_network = args.cni_network.clone();
    spec.vmm = args.vmm.map(Into::into);
    spec.mode = args.mode.map(Into::into);
    spec.ssh = match args.ssh.as_deref() {
        None | Some("false") => None,
        Some("true") => Some(Ssh::Generate),
        Some(path) => Some(Ssh::PublicKey(path.into())),
    };
    for (i, volume) in args.volumes.iter().enumerate() {
        let (device, path) = volume
            .split_once(':')
            .with_context(|| format!("bad --volumes {volume:?}: want /dev/device:/vm/path"))?;
        let name = format!("volume{i}");
        spec.storage.volumes.push(Volume {
            name: name.clone(),
            block_device: Some(BlockDeviceVolume {
                path: device.into(),
            }),
        });
        spec.storage.volume_mounts.push(VolumeMount {
            name,
            mount_path: path.into(),
        });
    }
    if !command.is_empty() {
        spec.command = Some(command.to_vec());
    }
    for file in &args.env_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --env-file {}", file.display()))?;
        spec.env
            .extend(env_file_entries(&text, |k| std::env::var(k).ok()));
    }
    for entry in &args.env {
        spec.env.extend(env_entry(entry, |k| std::env::var(k).ok()));
    }
    // docker run --entrypoint takes one program; "" clears the image's entrypoint.
    spec.entrypoint = args.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            vec![]
        } else {
            vec![e.clone()]
        }
    });
    spec.working_dir = args.workdir.clone();
    spec.user = args.user.clone();
    spec.tty = args.tty.then_some(true);
    Ok(spec)
}

/// `-e KEY=VALUE` as given; `-e KEY` takes the variable from this environment and is
/// dropped when it is not set there, as with docker.
fn env_entry(entry: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    if entry.contains('=') {
        Some(entry.to_string())
    } else {
        lookup(entry).map(|value| format!("{entry}={value}"))
    }
}

/// An env file as docker reads one: a `KEY=VALUE` or `KEY` per line, values taken as they
/// are (no quotes removed), blank lines and lines starting with `#` skipped.
fn env_file_entries(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    text.lines()
        .map(|line| line.trim_start())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| env_entry(line, &lookup))
        .collect()
}

/// Joins the console: the terminal in raw mode, ^P^Q detaches, the VM's end ends it.
pub(super) fn attach_console(store: &Store, vm: &Vm, log_offset: u64) -> anyhow::Result<()> {
    let files = VmFiles::new(store, &vms::uid_of(vm));
    let socket = files.console_socket();
    // The VMM creates its console socket as it starts; a quick VM may even be over by now.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(e) => {
                let current = store.vms().get(&vms::uid_of(vm))?;
                if !vms::is_running(&current) {
                    // Over before we could join: show what it printed instead.
                    console_log::copy_from(
                        &files.console_log(),
                        log_offset,
                        &mut std::io::stdout().lock(),
                    )?;
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    return Err(e)
                        .with_context(|| format!("cannot attach to {}", socket.display()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let _raw = crate::terminal::RawMode::enable();
    let mut to_vm = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        let mut last = 0u8;
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if last == DETACH[0] && b == DETACH[1] {
                    let _ = to_vm.shutdown(std::net::Shutdown::Both);
                    return;
                }
                last = b;
            }
            if to_vm.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut from_vm = stream;
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from_vm.read(&mut buf) {
        if n == 0 {
            break;
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(key: &str) -> Option<String> {
        (key == "FROM_HOST").then(|| "host value".to_string())
    }

    #[test]
    fn env_entries_as_docker_takes_them() {
        assert_eq!(env_entry("A=1", lookup).as_deref(), Some("A=1"));
        assert_eq!(env_entry("A=", lookup).as_deref(), Some("A="));
        assert_eq!(env_entry("A=b=c", lookup).as_deref(), Some("A=b=c"));
        assert_eq!(
            env_entry("FROM_HOST", lookup).as_deref(),
            Some("FROM_HOST=host value")
        );
        assert_eq!(env_entry("UNSET_HERE", lookup), None);
    }

    #[test]
    fn env_files_skip_comments_and_blank_lines_and_keep_values_as_they_are() {
        let text = "# a comment\n\nA=1\n  B=\"quoted\"\nFROM_HOST\nUNSET_HERE\nC=with spaces \n";
        assert_eq!(
            env_file_entries(text, lookup),
            [
                "A=1",
                "B=\"quoted\"",
                "FROM_HOST=host value",
                "C=with spaces "
            ]
        );
    }
}
