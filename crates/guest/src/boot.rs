//! The boot sequence, as PID 1. Every step reports on the console (which `ignite logs`
//! shows) in one line prefixed `ignite-init:`.

use std::ffi::CString;
use std::fs;
use std::path::Path;

use rustix::mount::{MountFlags, mount};

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
    say("no root filesystem is mounted by this build; powering off");
    power_off()
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
