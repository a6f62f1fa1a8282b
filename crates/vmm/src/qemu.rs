//! QEMU `-M microvm`: the command line for a [`MachineSpec`].

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ignite_guest_protocol::agent::SERIAL_PORT_NAME;

use crate::qmp::Qmp;
use crate::{
    Accel, Capabilities, ConsoleSpec, DiskFormat, GuestMemoryStats, KernelFormat, MachineSpec,
    NicBackend, StateFiles, Vmm, VmmError, VmmKind,
};

pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// The CPU a TCG guest gets: QEMU's baseline x86-64 with what x86-64-v2 adds (SSSE3,
/// SSE4.1, SSE4.2, POPCNT; CMPXCHG16B and LAHF/SAHF are in the baseline), so images built
/// for x86-64-v2 run, and RDRAND, so the guest's random pool is ready at once (without it
/// the kernel's pool only filled 6 s into a Debian boot and what asked for random bytes
/// waited). Not `max`: its AVX/AVX2, AES and the rest are emulated, so the guest's glibc and
/// kernel pick routines that are slower under TCG, load drivers for them, and its SVM made
/// udev load `kvm_amd`; a Debian boot to sshd used ~1.5 s more CPU with it. And ARAT (the
/// local APIC timer keeps running in idle states), without which the kernel keeps the
/// periodic tick for want of a broadcast timer (microvm has none): no tickless idle.
/// Under KVM the guest gets the host's CPU (`host`).
pub const TCG_CPU: &str = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand,+arat,-svm";

/// The CPU model a guest of `vmm` gets under `accel`, where Ignite chooses it (QEMU).
pub fn guest_cpu(vmm: VmmKind, accel: Accel) -> Option<&'static str> {
    (vmm == VmmKind::Qemu).then(|| cpu_model(accel))
}

/// The `-cpu` model a guest gets under `accel`. A saved machine state is only restored
/// onto the same model: the guest's kernel and libraries chose their code by its features.
pub fn cpu_model(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "host",
        Accel::Tcg => TCG_CPU,
    }
}

/// The QEMU microvm driver, controlled over QMP.
pub struct Qemu {
    /// The QEMU binary (`qemu-system-x86_64` from PATH by default).
    pub binary: PathBuf,
}

impl Default for Qemu {
    fn default() -> Self {
        Qemu {
            binary: PathBuf::from(QEMU_BINARY),
        }
    }
}

impl Qemu {
    /// The QEMU binary from PATH, or how to get one.
    pub fn locate() -> Result<Qemu, VmmError> {
        crate::find_in_path(QEMU_BINARY)
            .map(|binary| Qemu { binary })
            .ok_or_else(|| {
                VmmError::NotInstalled(format!("{QEMU_BINARY} is not installed (or not in PATH): install qemu-system-x86 (apt-get install qemu-system-x86)"))
            })
    }
}

impl Vmm for Qemu {
    fn kind(&self) -> VmmKind {
        VmmKind::Qemu
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // A qcow2 overlay on the image's shared ext4: instant whatever the size.
            root_disk: DiskFormat::Qcow2,
            kernel: KernelFormat::PvhVmlinux,
            user_network: true,
        }
    }

    fn command(&self, spec: &MachineSpec, control: &Path) -> (PathBuf, Vec<OsString>) {
        let mut args = command_line(spec);
        args.push("-qmp".into());
        let mut qmp = OsString::from("unix:");
        qmp.push(escape(control.as_os_str()));
        qmp.push(",server=on,wait=off");
        args.push(qmp);
        (self.binary.clone(), args)
    }

    fn boot(&self, spec: &MachineSpec, control: &Path) -> io::Result<()> {
        match &spec.restore {
            None => Ok(()),
            Some(files) => restore(control, files),
        }
    }

    fn console_on_stdio(&self) -> bool {
        true
    }

    fn power_button(&self, control: &Path) -> io::Result<()> {
        Qmp::connect(control, Duration::from_secs(5))?
            .execute("system_powerdown", None)
            .map(|_| ())
    }

    fn pause(&self, control: &Path) -> io::Result<()> {
        Qmp::connect(control, Duration::from_secs(5))?
            .execute("stop", None)
            .map(|_| ())
    }

    fn resume(&self, control: &Path) -> io::Result<()> {
        Qmp::connect(control, Duration::from_secs(5))?
            .execute("cont", None)
            .map(|_| ())
    }

    fn guest_memory(&self, control: &Path) -> io::Result<Option<GuestMemoryStats>> {
        let reply = Qmp::connect(control, Duration::from_secs(5))?.execute(
            "qom-get",
            Some(serde_json::json!({
                "path": format!("/machine/peripheral/{BALLOON_ID}"),
                "property": "guest-stats",
            })),
        );
        match reply {
            Ok(stats) => Ok(balloon_stats(&stats)),
            // No balloon on this machine (started before it had one, or reporting off).
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save_state(&self, control: &Path, files: &StateFiles) -> io::Result<()> {
        let file = StateFiles::create(&files.state)?;
        let mut qmp = Qmp::connect(control, Duration::from_secs(5))?;
        qmp.pass_fd(MIGRATION_FD, std::os::fd::AsFd::as_fd(&file))?;
        drop(file);
        if files.memory_in_file {
            ignore_shared_memory(&mut qmp)?;
        }
        // The default bandwidth cap is for live migration over a network; a paused guest
        // into a local file goes as fast as the disk takes it.
        qmp.execute(
            "migrate-set-parameters",
            Some(serde_json::json!({ "max-bandwidth": UNLIMITED_BANDWIDTH })),
        )?;
        qmp.execute(
            "migrate",
            Some(serde_json::json!({ "uri": format!("fd:{MIGRATION_FD}") })),
        )?;
        wait_for_migration(&mut qmp, "save")
    }
}

/// The name a state file's descriptor has inside QEMU.
/// The balloon device's QOM id (`/machine/peripheral/balloon0`), for its statistics.
pub const BALLOON_ID: &str = "balloon0";
const MIGRATION_FD: &str = "ignite-state";
/// Bytes per second: no cap.
const UNLIMITED_BANDWIDTH: u64 = 1 << 40;
/// How long a save or load may take (a few GiB of memory at disk speed).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

/// Loads a saved state into a QEMU started with `-incoming defer`, then lets it run (the
/// state was saved paused, and QEMU keeps a restored guest as it was saved).
fn restore(control: &Path, files: &StateFiles) -> io::Result<()> {
    let file = StateFiles::open(&files.state)?;
    let mut qmp = connect_when_listening(control)?;
    qmp.pass_fd(MIGRATION_FD, std::os::fd::AsFd::as_fd(&file))?;
    drop(file);
    if files.memory_in_file {
        ignore_shared_memory(&mut qmp)?;
    }
    qmp.execute(
        "migrate-incoming",
        Some(serde_json::json!({ "uri": format!("fd:{MIGRATION_FD}") })),
    )?;
    wait_for_migration(&mut qmp, "load")?;
    qmp.execute("cont", None).map(|_| ())
}

/// Memory backed by a shared file is left out of the state stream (saving) and not
/// expected in it (loading): the file holds it.
fn ignore_shared_memory(qmp: &mut Qmp) -> io::Result<()> {
    qmp.execute(
        "migrate-set-capabilities",
        Some(serde_json::json!({
            "capabilities": [{ "capability": "x-ignore-shared", "state": true }]
        })),
    )
    .map(|_| ())
}

/// QEMU creates its control socket while it starts; the first connection waits for it.
fn connect_when_listening(control: &Path) -> io::Result<Qmp> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Qmp::connect(control, Duration::from_secs(5)) {
            Ok(qmp) => return Ok(qmp),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Polls `query-migrate` until the save or load completed; a failure carries QEMU's reason.
fn wait_for_migration(qmp: &mut Qmp, what: &str) -> io::Result<()> {
    let deadline = std::time::Instant::now() + MIGRATION_TIMEOUT;
    loop {
        let state = qmp.execute("query-migrate", None)?;
        match migration_status(&state) {
            MigrationStatus::Completed => return Ok(()),
            MigrationStatus::Failed(why) => {
                return Err(io::Error::other(format!(
                    "QEMU could not {what} the VM's state: {why}"
                )));
            }
            MigrationStatus::Going if std::time::Instant::now() > deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("QEMU did not {what} the VM's state within {MIGRATION_TIMEOUT:?}"),
                ));
            }
            MigrationStatus::Going => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// The figures of a `guest-stats` reply. QEMU gives -1 for what the guest has not
/// reported, and a `last-update` of 0 before its first report.
fn balloon_stats(reply: &serde_json::Value) -> Option<GuestMemoryStats> {
    if reply.get("last-update").and_then(serde_json::Value::as_u64) == Some(0) {
        return None;
    }
    let stats = reply.get("stats")?;
    let figure = |name: &str| stats.get(name).and_then(serde_json::Value::as_u64);
    let found = GuestMemoryStats {
        total: figure("stat-total-memory"),
        free: figure("stat-free-memory"),
        available: figure("stat-available-memory"),
    };
    (found != GuestMemoryStats::default()).then_some(found)
}

#[derive(Debug, PartialEq, Eq)]
enum MigrationStatus {
    Going,
    Completed,
    Failed(String),
}

/// What `query-migrate` says. No status yet (a load not begun) counts as going.
fn migration_status(reply: &serde_json::Value) -> MigrationStatus {
    match reply.get("status").and_then(serde_json::Value::as_str) {
        Some("completed") => MigrationStatus::Completed,
        Some(status @ ("failed" | "cancelled" | "cancelling")) => MigrationStatus::Failed(
            reply
                .get("error-desc")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(status)
                .to_string(),
        ),
        _ => MigrationStatus::Going,
    }
}

/// The arguments after the program name. The kernel's command line is used as given, but
/// for the TSC frequency a TCG guest is told (see [`crate::tsc`]).
pub fn command_line(spec: &MachineSpec) -> Vec<OsString> {
    let tsc_khz = match spec.accel {
        Accel::Tcg if !spec.tcg_icount => crate::tsc::host_tsc_khz(),
        Accel::Tcg | Accel::Kvm => None,
    };
    command_line_with(spec, tsc_khz)
}

/// [`command_line`] with the host's TSC frequency given (`None`: unknown).
pub fn command_line_with(spec: &MachineSpec, tsc_khz: Option<u32>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut cmdline = spec.cmdline.clone();
    let mut push = |a: &str| args.push(a.into());
    // acpi=on gives the guest a power button (graceful stop) and a clean power-off.
    push("-M");
    push(if spec.memory_file.is_some() {
        "microvm,acpi=on,memory-backend=ram"
    } else {
        "microvm,acpi=on"
    });
    match spec.accel {
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push(cpu_model(Accel::Kvm));
        }
        Accel::Tcg => {
            push("-accel");
            // The translation cache is sized for a microVM's code: QEMU's default reserves
            // 1 GiB and keeps what it fills resident.
            match spec.translation_cache_mib {
                Some(mib) => push(&format!("tcg,tb-size={mib}")),
                None => push("tcg"),
            }
            match tsc_khz {
                // The guest's counter is the host's: told its frequency, the kernel skips
                // the calibration that hangs under TCG and keeps real time. A command line
                // that sets the TSC itself is left as it is.
                // And the TSC is reliable: the kernel's watchdog otherwise compares it with
                // jiffies, which fall behind whenever the host deschedules the vCPU, marks
                // it unstable a second into the boot and falls back to jiffies, on which
                // there are no high-resolution timers and no tickless idle: an idle guest
                // then took 250 timer interrupts a second (2.2% of a host core, against
                // 0.4% tickless, measured on 8 idle VMs).
                Some(khz) => {
                    if !cmdline.contains("tsc_early_khz=") {
                        cmdline.push_str(&format!(" tsc_early_khz={khz}"));
                    }
                    if !cmdline.contains("tsc=") {
                        cmdline.push_str(" tsc=reliable");
                    }
                }
                // No frequency to give: counting instructions keeps the calibration steady
                // (slower, and guest time runs with the instruction count).
                None => {
                    push("-icount");
                    push("shift=auto");
                }
            }
            push("-cpu");
            push(cpu_model(Accel::Tcg));
        }
    }
    push("-smp");
    push(&spec.vcpus.to_string());
    push("-m");
    push(&format!("{}M", spec.memory_mib));
    for a in [
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ] {
        push(a);
    }
    push("-kernel");
    args.push(spec.kernel.clone().into_os_string());
    args.push("-initrd".into());
    args.push(spec.initrd.clone().into_os_string());
    args.push("-append".into());
    args.push(cmdline.into());
    if let Some(file) = &spec.memory_file {
        args.push("-object".into());
        let mut backend = OsString::from(format!(
            "memory-backend-file,id=ram,size={}M,share={},mem-path=",
            spec.memory_mib,
            if file.shared { "on" } else { "off" }
        ));
        backend.push(escape(file.path.as_os_str()));
        args.push(backend);
    }

    let console = match &spec.console {
        ConsoleSpec::File(path) => chardev_path("file,id=console,path=", path, ",append=on"),
        // The supervisor relays stdio to the socket and the capped log (console_on_stdio).
        ConsoleSpec::Socket { .. } => OsString::from("stdio,id=console,signal=off"),
    };
    args.push("-chardev".into());
    args.push(console);
    args.push("-serial".into());
    args.push("chardev:console".into());

    for (i, disk) in spec.disks.iter().enumerate() {
        let path = match disk.inherited_fd {
            Some(fd) => std::path::PathBuf::from(format!("/proc/self/fd/{fd}")),
            None => disk.path.clone(),
        };
        let mut drive = chardev_path(&format!("id=disk{i},if=none,file="), &path, "");
        drive.push(match disk.format {
            DiskFormat::Raw => ",format=raw",
            DiskFormat::Qcow2 => ",format=qcow2",
        });
        if disk.read_only {
            drive.push(",read-only=on");
        }
        if disk.snapshot {
            drive.push(",snapshot=on");
        }
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        args.push(format!("virtio-blk-device,drive=disk{i}").into());
    }

    for (i, nic) in spec.nics.iter().enumerate() {
        let netdev = match &nic.backend {
            NicBackend::User { forwards, isolated } => {
                let mut s = format!("user,id=net{i}");
                if *isolated {
                    s.push_str(",restrict=on");
                }
                for f in forwards {
                    s.push_str(&format!(
                        ",hostfwd={}:{}:{}-:{}",
                        if f.udp { "udp" } else { "tcp" },
                        f.host_address,
                        f.host_port,
                        f.guest_port
                    ));
                }
                s
            }
            NicBackend::Tap { ifname } => {
                format!("tap,id=net{i},ifname={ifname},script=no,downscript=no")
            }
        };
        args.push("-netdev".into());
        args.push(netdev.into());
        args.push("-device".into());
        args.push(format!("virtio-net-device,netdev=net{i},mac={}", nic.mac).into());
    }

    if spec.memory_reporting {
        // Never inflated: the guest's driver reports the pages it frees, and QEMU gives
        // them back to the host. `deflate-on-oom` keeps a guest that runs short alive.
        args.push("-device".into());
        args.push(
            format!(
                "virtio-balloon-device,id={BALLOON_ID},free-page-reporting=on,deflate-on-oom=on,guest-stats-polling-interval={}",
                crate::BALLOON_STATS_SECONDS
            )
            .into(),
        );
    }

    if spec.restore.is_some() {
        // The state comes through QMP (migrate-incoming) once QEMU listens.
        args.push("-incoming".into());
        args.push("defer".into());
    }

    if let Some(socket) = &spec.agent_socket {
        args.push("-device".into());
        args.push("virtio-serial-device".into());
        args.push("-chardev".into());
        args.push(chardev_path(
            "socket,id=agent,path=",
            socket,
            ",server=on,wait=off",
        ));
        args.push("-device".into());
        args.push(format!("virtserialport,chardev=agent,name={SERIAL_PORT_NAME}").into());
    }
    args.extend(confinement_args(&spec.confinement));
    args
}

/// QEMU's own confinement: its seccomp filter, and the user it becomes once it has opened
/// its devices, disks, tap and sockets (all before `-runas` takes effect, so none of them
/// needs to be open to that user).
fn confinement_args(confinement: &crate::Confinement) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if confinement.seccomp {
        // No obsolete system calls, no fork/exec, no scheduler or resource-limit changes.
        // `elevateprivileges=deny` would also forbid set*id, but QEMU (7.2 as 9.x) installs
        // its filter before `-runas` switches user, which then dies of SIGSYS (measured):
        // with a user, set*id stay allowed, and cannot raise anything from that user (it
        // holds no capabilities, and QEMU's filter sets no_new_privs).
        let elevate = if confinement.user.is_some() {
            "allow"
        } else {
            "deny"
        };
        args.push("-sandbox".into());
        args.push(
            format!("on,obsolete=deny,elevateprivileges={elevate},spawn=deny,resourcecontrol=deny")
                .into(),
        );
    }
    if let Some(user) = confinement.user {
        args.push("-runas".into());
        args.push(format!("{}:{}", user.uid, user.gid).into());
    }
    args
}

fn chardev_path(prefix: &str, path: &std::path::Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(escape(path.as_os_str()));
    s.push(suffix);
    s
}

/// QEMU option values separate with commas; a comma in a path is written twice.
fn escape(path: &std::ffi::OsStr) -> OsString {
    let text = path.to_string_lossy();
    if text.contains(',') {
        text.replace(',', ",,").into()
    } else {
        path.to_os_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiskSpec, NicSpec, PortForward};

    fn spec() -> MachineSpec {
        MachineSpec {
            vcpus: 2,
            memory_mib: 512,
            kernel: "/k/vmlinuz".into(),
            initrd: "/vm/initramfs.cpio".into(),
            cmdline: "console=ttyS0".into(),
            disks: vec![
                DiskSpec {
                    path: "/vm/root,1.qcow2".into(),
                    format: DiskFormat::Qcow2,
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
                mac: "52:54:00:00:00:01".into(),
                backend: NicBackend::User {
                    forwards: vec![PortForward {
                        udp: false,
                        host_address: "127.0.0.1".into(),
                        host_port: 8080,
                        guest_port: 80,
                    }],
                    isolated: false,
                },
            }],
            accel: Accel::Tcg,
            log_dir: None,
            restore: None,
            memory_file: None,
            memory_reporting: false,
            translation_cache_mib: None,
            tcg_icount: false,
            confinement: Default::default(),
        }
    }

    #[test]
    fn a_confined_qemu_filters_system_calls_and_runs_as_its_user() {
        let mut spec = spec();
        assert!(!join_args(command_line(&spec)).contains("-sandbox"));
        spec.confinement.seccomp = true;
        let alone = join_args(command_line(&spec));
        assert!(
            alone.contains(
                "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
            ),
            "{alone}"
        );
        assert!(!alone.contains("-runas"), "{alone}");
        spec.confinement.user = Some(crate::VmmUser {
            uid: 1_900_000_007,
            gid: 1_900_000_007,
        });
        let dropped = join_args(command_line(&spec));
        assert!(
            dropped.contains(
                "-sandbox on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
            ),
            "{dropped}"
        );
        assert!(
            dropped.ends_with("-runas 1900000007:1900000007"),
            "{dropped}"
        );
    }

    /// The arguments as one string, for `contains` checks.
    fn join_args(args: Vec<OsString>) -> String {
        args.into_iter()
            .map(|a| a.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_command_line_describes_the_machine() {
        let args: Vec<String> = command_line_with(&spec(), None)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        for expected in [
            "-M microvm,acpi=on",
            "-accel tcg -icount shift=auto -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand,+arat,-svm",
            "-smp 2 -m 512M",
            "-kernel /k/vmlinuz -initrd /vm/initramfs.cpio -append console=ttyS0",
            "-chardev file,id=console,path=/vm/console.log,append=on -serial chardev:console",
            "-drive id=disk0,if=none,file=/vm/root,,1.qcow2,format=qcow2 -device virtio-blk-device,drive=disk0",
            "-drive id=disk1,if=none,file=/k/modules.ext4,format=raw,read-only=on",
            "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80 -device virtio-net-device,netdev=net0,mac=52:54:00:00:00:01",
            "-chardev socket,id=agent,path=/vm/agent.sock,server=on,wait=off -device virtserialport,chardev=agent,name=ignite.agent",
            "-no-reboot",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in {joined}"
            );
        }
        // The supervisor's console: on stdio, for it to relay and cap.
        let mut relayed = spec();
        relayed.console = ConsoleSpec::Socket {
            path: "/vm/console.sock".into(),
            log: "/vm/console.log".into(),
        };
        let joined = join_args(command_line_with(&relayed, None));
        assert!(
            joined.contains("-chardev stdio,id=console,signal=off -serial chardev:console"),
            "{joined}"
        );
        assert!(!joined.contains("logfile"), "{joined}");
        let mut kvm = spec();
        kvm.accel = Accel::Kvm;
        let joined: Vec<String> = command_line(&kvm)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(joined.join(" ").contains("-accel kvm -cpu host"));
        assert!(!joined.contains(&"-icount".to_string()));
        assert!(!joined.join(" ").contains("tsc_early_khz"));
    }

    #[test]
    fn a_tcg_guest_is_told_the_tsc_frequency_instead_of_counting_instructions() {
        let joined = join_args(command_line_with(&spec(), Some(2_445_412)));
        assert!(
            joined.contains(
                "-accel tcg -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand,+arat,-svm"
            ),
            "{joined}"
        );
        assert!(!joined.contains("-icount"), "{joined}");
        assert!(
            joined.contains("-append console=ttyS0 tsc_early_khz=2445412 tsc=reliable -"),
            "{joined}"
        );
        // A command line that sets it already keeps its own value.
        let mut own = spec();
        own.cmdline = "console=ttyS0 tsc_early_khz=1000000 tsc=unstable".into();
        let joined = join_args(command_line_with(&own, Some(2_445_412)));
        assert!(
            joined.contains("-append console=ttyS0 tsc_early_khz=1000000 tsc=unstable -"),
            "{joined}"
        );
        // Instruction counting asked for: no frequency, QEMU counts.
        let mut counted = spec();
        counted.tcg_icount = true;
        let joined = join_args(command_line(&counted));
        assert!(joined.contains("-icount shift=auto"), "{joined}");
        assert!(!joined.contains("tsc_early_khz"), "{joined}");
        // Under KVM the guest has kvmclock: nothing is added.
        let mut kvm = spec();
        kvm.accel = Accel::Kvm;
        let joined = join_args(command_line(&kvm));
        assert!(!joined.contains("tsc_early_khz"), "{joined}");
        assert!(!joined.contains("tsc=reliable"), "{joined}");
    }

    #[test]
    fn a_restore_waits_for_its_state_and_a_memory_file_backs_the_guest_ram() {
        let mut restoring = spec();
        restoring.restore = Some(StateFiles::in_dir(std::path::Path::new("/snap")));
        restoring.memory_file = Some(crate::MemoryFile {
            path: "/snap/mem,1".into(),
            shared: false,
        });
        let joined = join_args(command_line_with(&restoring, None));
        assert!(joined.contains("-incoming defer"), "{joined}");
        assert!(
            joined.contains("-M microvm,acpi=on,memory-backend=ram"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "-object memory-backend-file,id=ram,size=512M,share=off,mem-path=/snap/mem,,1"
            ),
            "{joined}"
        );
        let mut template = spec();
        template.memory_file = Some(crate::MemoryFile {
            path: "/vm/memory".into(),
            shared: true,
        });
        let joined = join_args(command_line_with(&template, None));
        assert!(joined.contains("share=on,mem-path=/vm/memory"), "{joined}");
        assert!(!joined.contains("-incoming"), "{joined}");
        let plain = join_args(command_line_with(&spec(), None));
        assert!(!plain.contains("memory-backend"), "{plain}");
        assert!(!plain.contains("-incoming"), "{plain}");
    }

    #[test]
    fn memory_reporting_adds_a_balloon_and_tcg_gets_a_sized_translation_cache() {
        let plain = join_args(command_line_with(&spec(), Some(2_000_000)));
        assert!(!plain.contains("balloon"), "{plain}");
        assert!(plain.contains("-accel tcg -cpu"), "{plain}");
        let mut small = spec();
        small.memory_reporting = true;
        small.translation_cache_mib = Some(32);
        let joined = join_args(command_line_with(&small, Some(2_000_000)));
        assert!(joined.contains("-accel tcg,tb-size=32 -cpu"), "{joined}");
        assert!(
            joined.contains(
                "-device virtio-balloon-device,id=balloon0,free-page-reporting=on,deflate-on-oom=on,guest-stats-polling-interval=5"
            ),
            "{joined}"
        );
        // KVM runs the guest's code natively: no cache to size.
        small.accel = Accel::Kvm;
        let joined = join_args(command_line_with(&small, None));
        assert!(joined.contains("-accel kvm -cpu host"), "{joined}");
        assert!(!joined.contains("tb-size"), "{joined}");
        assert!(joined.contains("virtio-balloon-device"), "{joined}");
    }

    #[test]
    fn the_balloon_s_statistics_count_once_the_guest_reported() {
        let reply = serde_json::json!({
            "stats": {
                "stat-free-memory": 50_000_000u64, "stat-total-memory": 97_000_000u64,
                "stat-available-memory": -1,
            },
            "last-update": 1_765_000_000u64,
        });
        assert_eq!(
            balloon_stats(&reply),
            Some(GuestMemoryStats {
                total: Some(97_000_000),
                free: Some(50_000_000),
                available: None,
            })
        );
        let before = serde_json::json!({"stats": {"stat-free-memory": -1}, "last-update": 0});
        assert_eq!(balloon_stats(&before), None);
    }

    #[test]
    fn migration_replies_say_when_the_state_is_in_and_why_it_is_not() {
        use serde_json::json;
        assert_eq!(migration_status(&json!({})), MigrationStatus::Going);
        assert_eq!(
            migration_status(&json!({"status": "active"})),
            MigrationStatus::Going
        );
        assert_eq!(
            migration_status(&json!({"status": "completed"})),
            MigrationStatus::Completed
        );
        assert_eq!(
            migration_status(&json!({"status": "failed", "error-desc": "Unknown ramblock"})),
            MigrationStatus::Failed("Unknown ramblock".into())
        );
        assert_eq!(
            migration_status(&json!({"status": "cancelled"})),
            MigrationStatus::Failed("cancelled".into())
        );
    }
}
