//! The boot sequence, as PID 1: pseudo filesystems, modules, the root disk (`/dev/vda`, or
//! `ignite.root=` on the kernel command line), then the image's own `/sbin/init` ("VM
//! mode"). Every step reports on the console (which `ignite logs` shows) in one line
//! prefixed `ignite-init:`; a failure powers the VM off.

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, mount, mount_move};

/// The modules to load, one path below /lib/modules/<release> a line, in order.
const MODULE_LIST: &str = "/etc/ignite/modules";

fn say(message: &str) {
    println!("ignite-init: {message}");
}

/// Runs the boot sequence and powers the VM off. Never returns.
pub fn run() -> ! {
    say(&format!("v{} starting", env!("CARGO_PKG_VERSION")));
    mount_pseudo_filesystems();
    let loaded = load_modules();
    say(&format!("loaded {loaded} modules"));
    say(&format!("block devices: {}", block_devices().join(" ")));
    let root = cmdline_value("ignite.root").unwrap_or_else(|| "/dev/vda".to_string());
    if let Err(e) = mount_root(&root) {
        say(&format!(
            "cannot mount the root disk {root}: {e}; powering off"
        ));
        power_off();
    }
    // VM mode: the image's own init takes over as PID 1.
    let init = "/sbin/init";
    if !Path::new(init).exists() {
        say(&format!("the image has no {init}; powering off"));
        power_off();
    }
    say(&format!("starting the image's {init}"));
    let err = std::process::Command::new(init).exec();
    say(&format!("cannot start {init}: {err}; powering off"));
    power_off()
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

/// Mounts the root disk on /newroot (waiting for it to appear), moves /dev, /proc and
/// /sys there, and makes it the root.
fn mount_root(device: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(device).exists() {
        if Instant::now() > deadline {
            return Err("the device did not appear".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::create_dir_all("/newroot");
    mount(device, "/newroot", "ext4", MountFlags::empty(), None).map_err(|e| e.to_string())?;
    for dir in ["dev", "proc", "sys"] {
        let target = format!("/newroot/{dir}");
        let _ = fs::create_dir_all(&target);
        mount_move(format!("/{dir}").as_str(), target.as_str())
            .map_err(|e| format!("moving /{dir}: {e}"))?;
    }
    std::env::set_current_dir("/newroot").map_err(|e| e.to_string())?;
    mount_move(".", "/").map_err(|e| format!("moving the root: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| e.to_string())?;
    Ok(())
}

fn mount_pseudo_filesystems() {
    for (source, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        let _ = fs::create_dir_all(target);
        match mount(
            source,
            target,
            fstype,
            MountFlags::NOSUID | MountFlags::NOEXEC,
            None,
        ) {
            Ok(()) | Err(rustix::io::Errno::BUSY) => {}
            Err(e) => say(&format!("cannot mount {target} ({fstype}): {e}")),
        }
    }
}

fn load_modules() -> usize {
    let Ok(list) = fs::read_to_string(MODULE_LIST) else {
        return 0;
    };
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let base = Path::new("/lib/modules").join(&release);
    let mut loaded = 0;
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = base.join(line);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                say(&format!("cannot open module {}: {e}", path.display()));
                continue;
            }
        };
        match rustix::system::finit_module(&file, &CString::default(), 0) {
            Ok(()) => loaded += 1,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => say(&format!("cannot load module {}: {e}", path.display())),
        }
    }
    loaded
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

fn power_off() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    // Only reached if the kernel refused; PID 1 must not exit.
    loop {
        std::thread::park();
    }
}
