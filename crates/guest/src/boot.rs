//! The boot sequence, as PID 1: pseudo filesystems, modules, the per-VM configuration, the
//! root disk (grown to its device), the kernel's modules in the root, the switch into the
//! root, provisioning and network, the agent, then either the image's own `/sbin/init`
//! ("VM mode") or the image's ENTRYPOINT/CMD as a supervised workload ("container mode").
//! Every step reports one `ignite-init:` line on the console; a failure powers the VM off
//! with the step's status (see `ignite_guest_protocol::status`).

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ignite_guest_protocol::config::{
    BootMode, CONFIG_PATH, FILES_DIR, GuestConfig, MODULES_LABEL, Workload,
};
use ignite_guest_protocol::status;
use rustix::mount::{MountFlags, mount, mount_move};

use crate::console::{fail, say};
use crate::provision::FileToCopy;
use crate::{agent, grow, network, provision, workload};

/// The modules to load, one path below /lib/modules/<release> a line, in order.
const MODULE_LIST: &str = "/etc/ignite/modules";
const NEW_ROOT: &str = "/newroot";
const ROOT_WAIT: Duration = Duration::from_secs(10);
const IMAGE_INIT: &str = "/sbin/init";

/// Runs the boot sequence. Never returns: it execs the image's init or powers off.
pub fn run() -> ! {
    // How long the kernel took to get here, for the agent's hello.
    let started = crate::agent::boot_clock_millis();
    say(&format!("v{} starting", env!("CARGO_PKG_VERSION")));
    mount_pseudo_filesystems();
    let loaded = load_modules();
    say(&format!("loaded {loaded} modules"));
    report_free_memory_in_small_blocks();
    let mut config = load_config().unwrap_or_else(|e| fail(status::BAD_CONFIG, &e));
    // A warm start: the agent channel is already open, and goes to the agent as it is.
    let mut agent_port = None;
    if config.template {
        let (vm_config, port) =
            crate::template::wait_for_vm().unwrap_or_else(|e| fail(status::BAD_CONFIG, &e));
        config = vm_config;
        agent_port = Some(port);
        say(&format!("warm start of VM {}", config.name));
    }
    let files = read_copied_files(&config).unwrap_or_else(|e| fail(status::BAD_CONFIG, &e));
    let root = cmdline_value("ignite.root").unwrap_or_else(|| config.root_device.clone());
    if let Err(e) = mount_root(&root) {
        fail(
            status::ROOT_NOT_FOUND,
            &format!(
                "cannot mount the root disk {root}: {e} (block devices: {})",
                block_devices().join(" ")
            ),
        );
    }
    match grow::grow(NEW_ROOT, &root) {
        Ok(Some(g)) => say(&format!(
            "grew the root filesystem from {} to {} MiB",
            g.from >> 20,
            g.to >> 20
        )),
        Ok(None) => {}
        Err(e) => say(&format!("warning: {e}")),
    }
    if let Some(device) = &config.modules_device
        && let Err(e) = mount_modules(device)
    {
        say(&format!(
            "warning: the kernel's modules are not available in the VM: {e}"
        ));
    }
    if let Err(e) = switch_root() {
        fail(
            status::ROOT_NOT_FOUND,
            &format!("cannot switch to the root disk: {e}"),
        );
    }
    mount_runtime_filesystems();
    if let Err(e) = provision::apply(&config, &files) {
        fail(status::PROVISION_FAILED, &e);
    }
    if let Err(e) = network::configure(&config.interfaces) {
        fail(status::PROVISION_FAILED, &format!("network: {e}"));
    }
    let mode = choose_mode(config.mode, &config.workload);
    say(&format!("{} mode", mode.as_str()));
    let agent = if cmdline_value("ignite.agent").as_deref() == Some("off") {
        say("the agent is off (ignite.agent=off): ignite exec and cp are unavailable");
        None
    } else {
        agent::spawn(mode, &config.workload, started, agent_port)
    };
    match mode {
        BootMode::Container => workload::run(&config.workload, agent),
        _ => exec_image_init(),
    }
}

/// Auto mode: the image's init when it has one and no command was given.
fn choose_mode(asked: BootMode, workload: &Workload) -> BootMode {
    match asked {
        BootMode::Auto if workload.command_given => BootMode::Container,
        BootMode::Auto if Path::new(IMAGE_INIT).exists() => BootMode::Vm,
        BootMode::Auto => BootMode::Container,
        other => other,
    }
}

fn exec_image_init() -> ! {
    if !Path::new(IMAGE_INIT).exists() {
        fail(
            status::NO_INIT,
            &format!(
                "VM mode needs {IMAGE_INIT}, which the image lacks (run it in container mode instead)"
            ),
        );
    }
    say(&format!("starting the image's {IMAGE_INIT}"));
    let err = std::process::Command::new(IMAGE_INIT).exec();
    fail(
        status::NO_INIT,
        &format!("cannot start {IMAGE_INIT}: {err}"),
    )
}

/// The per-VM configuration from the initramfs. Without one (a kernel's initramfs booted
/// on its own) the defaults apply: root on /dev/vda, auto mode.
fn load_config() -> Result<GuestConfig, String> {
    let path = Path::new("/").join(CONFIG_PATH);
    match fs::read(&path) {
        Ok(bytes) => GuestConfig::from_json(&bytes)
            .map_err(|e| format!("bad VM configuration {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GuestConfig::defaults()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Copied files live in the initramfs, which is out of reach once the root switched.
fn read_copied_files(config: &GuestConfig) -> Result<Vec<FileToCopy>, String> {
    config
        .files
        .iter()
        .map(|file| {
            if file.source.contains('/') || !file.path.starts_with('/') {
                return Err(format!(
                    "bad copied file {:?} -> {:?}",
                    file.source, file.path
                ));
            }
            let path = Path::new("/").join(FILES_DIR).join(&file.source);
            let contents = fs::read(&path).map_err(|e| {
                format!(
                    "the file to copy to {} is missing ({}): {e}",
                    file.path,
                    path.display()
                )
            })?;
            Ok(FileToCopy {
                file: file.clone(),
                contents,
            })
        })
        .collect()
}

/// A `key=value` from the kernel command line.
fn cmdline_value(key: &str) -> Option<String> {
    let cmdline = fs::read_to_string("/proc/cmdline").ok()?;
    cmdline.split_whitespace().find_map(|arg| {
        arg.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_string)
    })
}

fn wait_for(device: &str) -> Result<(), String> {
    let deadline = Instant::now() + ROOT_WAIT;
    while !Path::new(device).exists() {
        if Instant::now() > deadline {
            return Err(format!("{device} did not appear"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn mount_root(device: &str) -> Result<(), String> {
    wait_for(device)?;
    let _ = fs::create_dir_all(NEW_ROOT);
    mount(device, NEW_ROOT, "ext4", MountFlags::empty(), None).map_err(|e| e.to_string())
}

/// Mounts the kernel's modules disk read-only on /lib/modules/<release> in the root, so
/// the image's own init and modprobe find every module of the running kernel.
fn mount_modules(device: &str) -> Result<(), String> {
    wait_for(device)?;
    let label = ext4_label(device)?;
    if label != MODULES_LABEL {
        return Err(format!(
            "{device} is labelled {label:?}, not {MODULES_LABEL:?}"
        ));
    }
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let target = format!("{NEW_ROOT}/lib/modules/{release}");
    fs::create_dir_all(&target).map_err(|e| format!("cannot create {target}: {e}"))?;
    mount(device, target.as_str(), "ext4", MountFlags::RDONLY, None)
        .map_err(|e| format!("cannot mount {device} on {target}: {e}"))
}

fn ext4_label(device: &str) -> Result<String, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut sb = [0u8; 256];
    let mut f = fs::File::open(device).map_err(|e| format!("cannot open {device}: {e}"))?;
    f.seek(SeekFrom::Start(1024))
        .and_then(|_| f.read_exact(&mut sb))
        .map_err(|e| format!("cannot read {device}: {e}"))?;
    let label = &sb[0x78..0x88];
    let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    Ok(String::from_utf8_lossy(&label[..end]).into_owned())
}

/// Moves /dev, /proc and /sys into the new root and makes it `/`.
fn switch_root() -> Result<(), String> {
    for dir in ["dev", "proc", "sys"] {
        let target = format!("{NEW_ROOT}/{dir}");
        let _ = fs::create_dir_all(&target);
        mount_move(format!("/{dir}").as_str(), target.as_str())
            .map_err(|e| format!("moving /{dir}: {e}"))?;
    }
    std::env::set_current_dir(NEW_ROOT).map_err(|e| e.to_string())?;
    mount_move(".", "/").map_err(|e| format!("moving the root: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| e.to_string())
}

fn mount_pseudo_filesystems() {
    for (source, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        mount_quietly(
            source,
            target,
            fstype,
            MountFlags::NOSUID | MountFlags::NOEXEC,
            None,
        );
    }
}

/// What processes in the root expect besides /proc, /sys and /dev (systemd mounts these
/// itself when missing; container mode and the agent's terminals need them).
fn mount_runtime_filesystems() {
    mount_quietly(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"gid=5,mode=620,ptmxmode=666"),
    );
    mount_quietly(
        "shm",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        None,
    );
    // devtmpfs lacks the links a container's /dev has (and systemd and udev make):
    // `tee /dev/stderr`, `cat /dev/stdin` and bash's `<(...)` use them.
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => say(&format!("cannot link {link} to {target}: {e}")),
        }
    }
}

fn mount_quietly(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&std::ffi::CStr>,
) {
    let _ = fs::create_dir_all(target);
    match mount(source, target, fstype, flags, data) {
        Ok(()) | Err(rustix::io::Errno::BUSY) => {}
        Err(e) => say(&format!("cannot mount {target} ({fstype}): {e}")),
    }
}

/// Loads the initramfs's modules (listed dependencies first), but only the drivers of
/// devices this VM has: the bus modules first, then each device driver whose virtio device
/// type is present (`/sys/bus/virtio/devices/*/device`), and PCI transport only where PCI
/// devices exist. A VM with no NIC loads no network driver, one whose agent talks over
/// the serial port no vsock (6 of 14 modules for QEMU with `--network none`). When no
/// virtio device shows up after the bus modules, everything is loaded, as before.
fn load_modules() -> usize {
    let Ok(list) = fs::read_to_string(MODULE_LIST) else {
        return 0;
    };
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let base = Path::new("/lib/modules").join(&release);
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let modules: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pci = fs::read_dir("/sys/bus/pci/devices").is_ok_and(|mut d| d.next().is_some());
    let mut loaded = 0;
    let mut deferred = Vec::new();
    for module in &modules {
        match module_need(module) {
            Need::Always => loaded += load_module(&base, module, &cmdline),
            Need::Pci if pci => loaded += load_module(&base, module, &cmdline),
            Need::Pci => {}
            Need::VirtioDevice(id) => deferred.push((*module, id)),
        }
    }
    let present = virtio_device_types();
    for (module, id) in deferred {
        if present.is_empty() || present.contains(&id) {
            loaded += load_module(&base, module, &cmdline);
        }
    }
    loaded
}

/// Where the kernel says in which blocks free memory is reported to the host.
const REPORTING_ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// Sets the size of the free blocks the balloon reports to the host for this guest's
/// memory. The kernel's default (2 MiB blocks) only reports while 32 such blocks (64 MiB)
/// are free beyond its watermark, which a 128 MiB guest never has: the memory it frees
/// would stay with the host's VMM for ever. Measured on a 128 MiB guest under TCG: 40 MiB
/// written to and removed from a tmpfs went back to the host within 8 s with 128 KiB
/// blocks, and not at all with the default.
fn report_free_memory_in_small_blocks() {
    let info = rustix::system::sysinfo();
    let total = info.totalram as u64 * u64::from(info.mem_unit);
    let order = reporting_order(total);
    if Path::new(REPORTING_ORDER).exists()
        && let Err(e) = fs::write(REPORTING_ORDER, order.to_string())
    {
        say(&format!("cannot set the free page reporting order: {e}"));
    }
}

/// The largest block order (of 4 KiB pages, at most the kernel's 2 MiB) whose 32 blocks
/// the kernel waits for stay within a sixteenth of the guest's memory.
fn reporting_order(total_bytes: u64) -> u32 {
    let budget = total_bytes / 16;
    (0..=9u32)
        .rev()
        .find(|order| (32u64 << order) * 4096 <= budget)
        .unwrap_or(0)
}

/// What makes a module worth loading.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    Always,
    /// The virtio PCI transport: only where there are PCI devices.
    Pci,
    /// A driver (or its helper) for virtio devices of this type (the virtio spec's IDs).
    VirtioDevice(u32),
}

fn module_need(module_path: &str) -> Need {
    let file = module_path.rsplit('/').next().unwrap_or(module_path);
    let name = file.split(".ko").next().unwrap_or(file).replace('-', "_");
    match name.as_str() {
        "virtio_pci" | "virtio_pci_modern_dev" | "virtio_pci_legacy_dev" => Need::Pci,
        "virtio_net" | "net_failover" | "failover" => Need::VirtioDevice(1),
        "virtio_blk" => Need::VirtioDevice(2),
        "virtio_console" => Need::VirtioDevice(3),
        "virtio_balloon" => Need::VirtioDevice(5),
        "vsock" | "vmw_vsock_virtio_transport_common" | "vmw_vsock_virtio_transport" => {
            Need::VirtioDevice(19)
        }
        _ => Need::Always,
    }
}

/// The virtio device types on the bus (`0x0002` in `/sys/bus/virtio/devices/*/device`).
fn virtio_device_types() -> Vec<u32> {
    let Ok(devices) = fs::read_dir("/sys/bus/virtio/devices") else {
        return Vec::new();
    };
    devices
        .flatten()
        .filter_map(|d| fs::read_to_string(d.path().join("device")).ok())
        .filter_map(|id| u32::from_str_radix(id.trim().trim_start_matches("0x"), 16).ok())
        .collect()
}

/// Loads one module; 1 when it was loaded now.
fn load_module(base: &Path, module: &str, cmdline: &str) -> usize {
    let path = base.join(module);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => fail(
            status::MODULE_MISSING,
            &format!(
                "the initramfs lacks module {} ({e}): it was built for another kernel; re-import the kernel",
                path.display()
            ),
        ),
    };
    let params = module_params(module, cmdline);
    match rustix::system::finit_module(&file, &params, 0) {
        Ok(()) => 1,
        Err(rustix::io::Errno::EXIST) => 0,
        Err(e) => {
            say(&format!("cannot load module {}: {e}", path.display()));
            0
        }
    }
}

/// The parameters the kernel command line gives a module (`virtio_mmio.device=...`, as
/// VMMs that describe their devices there pass them), as modprobe would hand them over.
fn module_params(module_path: &str, cmdline: &str) -> CString {
    let file = module_path.rsplit('/').next().unwrap_or(module_path);
    let name = file.split(".ko").next().unwrap_or(file).replace('-', "_");
    let params: Vec<&str> = cmdline
        .split_whitespace()
        .filter_map(|arg| {
            let (module, param) = arg.split_once('.')?;
            (module.replace('-', "_") == name && param.contains('=')).then_some(param)
        })
        .collect();
    CString::new(params.join(" ")).unwrap_or_default()
}

fn block_devices() -> Vec<String> {
    let mut devices: Vec<String> = fs::read_dir("/sys/class/block")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    devices.sort();
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_wait_for_their_devices_and_pci_for_pci() {
        assert_eq!(
            module_need("kernel/drivers/virtio/virtio_ring.ko"),
            Need::Always
        );
        assert_eq!(
            module_need("kernel/drivers/virtio/virtio_mmio.ko"),
            Need::Always
        );
        assert_eq!(
            module_need("kernel/drivers/virtio/virtio_pci.ko"),
            Need::Pci
        );
        assert_eq!(
            module_need("kernel/drivers/net/virtio_net.ko"),
            Need::VirtioDevice(1)
        );
        assert_eq!(
            module_need("kernel/net/core/failover.ko"),
            Need::VirtioDevice(1)
        );
        assert_eq!(
            module_need("kernel/drivers/block/virtio_blk.ko.xz"),
            Need::VirtioDevice(2)
        );
        assert_eq!(
            module_need("kernel/drivers/char/virtio_console.ko"),
            Need::VirtioDevice(3)
        );
        assert_eq!(
            module_need("kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko"),
            Need::VirtioDevice(19)
        );
        assert_eq!(
            module_need("kernel/drivers/virtio/virtio_balloon.ko.xz"),
            Need::VirtioDevice(5)
        );
    }

    #[test]
    fn free_memory_is_reported_in_blocks_a_small_guest_can_gather() {
        // A 128 MiB guest (95 MiB left to the kernel): 128 KiB blocks (a 4 MiB wait).
        assert_eq!(reporting_order(95 << 20), 5);
        assert_eq!(reporting_order(128 << 20), 6);
        // From 1 GiB on, the kernel's own 2 MiB blocks.
        assert_eq!(reporting_order(1 << 30), 9);
        assert_eq!(reporting_order(64 << 30), 9);
        assert_eq!(reporting_order(1 << 20), 0);
    }

    #[test]
    fn modules_get_their_parameters_from_the_command_line() {
        let cmdline = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio-mmio.device=4K@0xd0001000:6 ignite.root=/dev/vda";
        assert_eq!(
            module_params("kernel/drivers/virtio/virtio_mmio.ko.xz", cmdline)
                .to_str()
                .unwrap(),
            "device=4K@0xd0000000:5 device=4K@0xd0001000:6"
        );
        assert_eq!(
            module_params("kernel/fs/ext4/ext4.ko", cmdline)
                .to_str()
                .unwrap(),
            ""
        );
    }
}
