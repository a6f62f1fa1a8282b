//! Whether KVM works on this host: `/dev/kvm` opens, and a guest really boots with it
//! (nested hosts can open the device yet kill every guest in early boot).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Accel, ConsoleSpec, MachineSpec};

pub const KVM_DEVICE: &str = "/dev/kvm";

/// True when /dev/kvm opens for reading and writing.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
        .is_ok()
}

/// Boots `kernel` (a bzImage) and `initrd` with KVM under QEMU, whose binary every host
/// has, and waits for ignite-init's first line: tells a working KVM from one that cannot
/// run a guest. Returns how long the guest took to speak.
pub fn probe_kvm_boot(kernel: &Path, initrd: &Path, timeout: Duration) -> Result<Duration, String> {
    let qemu = ignite_host_tools::QEMU_SYSTEM
        .locate()
        .ok_or("QEMU is missing")?;
    let console = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    // The driver's own command line, so the probe boots what VMs boot.
    let machine = MachineSpec {
        vcpus: 1,
        memory_mib: 256,
        kernel: kernel.to_path_buf(),
        initrd: initrd.to_path_buf(),
        cmdline: "console=ttyS0 panic=-1 quiet".into(),
        disks: vec![],
        console: ConsoleSpec::File(console.path().to_path_buf()),
        agent_socket: None,
        nics: vec![],
        accel: Accel::Kvm,
        log_dir: None,
        restore: None,
        memory_file: None,
        memory_reporting: false,
        translation_cache_mib: None,
        tcg_icount: false,
        confinement: Default::default(),
    };
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(crate::qemu::command_line(&machine))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = loop {
        let text = std::fs::read_to_string(console.path()).unwrap_or_default();
        if text.contains("ignite-init: v") {
            break Ok(start.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.take(64 << 10).read_to_string(&mut err);
            }
            let first = err.lines().next().unwrap_or("").trim().to_string();
            break Err(format!("QEMU exited ({status}): {first}"));
        }
        if start.elapsed() > timeout {
            break Err(format!("no guest output within {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
