//! Which accelerator a VM gets: `--accel`, then `IGNITE_ACCEL`, then the Configuration,
//! then `auto` (KVM when /dev/kvm can be opened for reading and writing, TCG otherwise).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ignite_vmm::Accel;

use crate::kernels::{BZIMAGE_FILE, INITRAMFS_FILE};

/// Where the verdict of the KVM probe is kept (per host boot) under the state root.
const PROBE_FILE: &str = "kvm-probe";
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub const ACCEL_ENV: &str = "IGNITE_ACCEL";
pub const KVM_DEVICE: &str = "/dev/kvm";

pub fn parse(value: &str) -> Result<Option<Accel>, String> {
    match value {
        "auto" | "" => Ok(None),
        "kvm" => Ok(Some(Accel::Kvm)),
        "tcg" => Ok(Some(Accel::Tcg)),
        other => Err(format!(
            "unknown accelerator {other:?}: use auto, kvm or tcg"
        )),
    }
}

/// Resolves the accelerator from the flag, then `IGNITE_ACCEL`, then the Configuration;
/// `auto` asks `auto` (see [`auto`]).
pub fn resolve_with(
    flag: Option<&str>,
    configured: Option<&str>,
    auto: impl FnOnce() -> Accel,
) -> Result<Accel, String> {
    let env = std::env::var(ACCEL_ENV).ok();
    match flag.or(env.as_deref()).or(configured) {
        Some(v) => match parse(v)? {
            Some(Accel::Kvm) if !kvm_usable() => Err(format!(
                "KVM was asked for, but {KVM_DEVICE} cannot be opened: load the kvm module and join the kvm group, or use --accel tcg"
            )),
            Some(a) => Ok(a),
            None => Ok(auto()),
        },
        None => Ok(auto()),
    }
}

/// `auto`: KVM when /dev/kvm opens and a guest really boots with it (checked once per host
/// boot with `kernel_dir`'s kernel, the verdict kept in `state_root`), TCG otherwise.
pub fn auto(state_root: &Path, kernel_dir: &Path) -> Accel {
    if !kvm_usable() {
        tracing::info!("{KVM_DEVICE} is not usable: running the VM with TCG (software emulation)");
        return Accel::Tcg;
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cache = state_root.join(PROBE_FILE);
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((id, verdict)) = text.split_once(' ')
        && id == boot_id
    {
        return if verdict.starts_with("ok") {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
    }
    let verdict = match probe_kvm_boot(kernel_dir, PROBE_TIMEOUT) {
        Ok(_) => "ok".to_string(),
        Err(why) => {
            tracing::warn!(
                "{KVM_DEVICE} cannot run a guest here ({why}): using TCG; set --accel, IGNITE_ACCEL or accel in the Configuration to choose"
            );
            format!("fail {why}")
        }
    };
    let _ = std::fs::write(&cache, format!("{boot_id} {verdict}\n"));
    if verdict == "ok" {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// Resolves the accelerator from the flag, then `IGNITE_ACCEL`, then the Configuration;
/// `auto` means KVM whenever /dev/kvm opens (no probe).
pub fn resolve(flag: Option<&str>, configured: Option<&str>) -> Result<Accel, String> {
    let env = std::env::var(ACCEL_ENV).ok();
    let asked = match flag.or(env.as_deref()).or(configured) {
        Some(v) => parse(v)?,
        None => None,
    };
    match asked {
        Some(Accel::Kvm) if !kvm_usable() => Err(format!(
            "KVM was asked for, but {KVM_DEVICE} cannot be opened: load the kvm module and join the kvm group, or use --accel tcg"
        )),
        Some(a) => Ok(a),
        None if kvm_usable() => Ok(Accel::Kvm),
        None => Ok(Accel::Tcg),
    }
}

pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
        .is_ok()
}

pub fn name(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    }
}

/// Boots `kernel_dir`'s kernel and initramfs with KVM and waits for ignite-init's first
/// line: tells a working KVM from one that cannot run a guest (nested virtualisation).
pub fn probe_kvm_boot(kernel_dir: &Path, timeout: Duration) -> Result<Duration, String> {
    let qemu = ignite_host_tools::QEMU_SYSTEM
        .locate()
        .ok_or("QEMU is missing")?;
    let console = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args([
            "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "256M",
        ])
        .args([
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel_dir.join(BZIMAGE_FILE))
        .arg("-initrd")
        .arg(kernel_dir.join(INITRAMFS_FILE))
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-serial")
        .arg(format!("file:{}", console.path().display()))
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
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!(parse("tcg").unwrap(), Some(Accel::Tcg));
        assert_eq!(parse("kvm").unwrap(), Some(Accel::Kvm));
        assert_eq!(parse("auto").unwrap(), None);
        assert!(parse("hvf").unwrap_err().contains("auto, kvm or tcg"));
        assert_eq!(resolve(Some("tcg"), Some("kvm")).unwrap(), Accel::Tcg);
        assert!(resolve(Some("nope"), None).is_err());
    }
}
