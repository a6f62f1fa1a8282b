//! Which accelerator a VM gets: `--accel`, then `IGNITE_ACCEL`, then the Configuration,
//! then `auto` (KVM when /dev/kvm opens and a guest really boots with it, TCG otherwise;
//! the boot probe's verdict is kept per host boot under the state root). The VM's driver
//! has the last word ([`ignite_vmm::Vmm::choose_accel`]).

use std::path::Path;
use std::time::Duration;

use ignite_vmm::Accel;
pub use ignite_vmm::accel::{KVM_DEVICE, kvm_usable, probe_kvm_boot};

use crate::kernels::{BZIMAGE_FILE, INITRAMFS_FILE};

/// Where the verdict of the KVM probe is kept (per host boot) under the state root.
const PROBE_FILE: &str = "kvm-probe";
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub const ACCEL_ENV: &str = "IGNITE_ACCEL";

/// How a TCG guest keeps time: `tsc` (the default: the host's TSC frequency handed to the
/// guest) or `icount` (QEMU's instruction counting, as before; slower).
pub const TCG_CLOCK_ENV: &str = "IGNITE_TCG_CLOCK";

/// True when the starting command's `IGNITE_TCG_CLOCK` asks for instruction counting.
/// Another value is warned about and the default kept, as the other `IGNITE_` settings.
pub fn tcg_icount_from_env() -> bool {
    tcg_icount(std::env::var(TCG_CLOCK_ENV).ok().as_deref())
}

fn tcg_icount(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("" | "tsc") => false,
        Some("icount") => true,
        Some(other) => {
            tracing::warn!("{TCG_CLOCK_ENV}={other:?} is not tsc or icount: using tsc");
            false
        }
    }
}

/// The accelerator asked for by the flag, then `IGNITE_ACCEL`, then the Configuration
/// (`None`: `auto`, or nothing asked). An explicit KVM that cannot be opened is refused.
pub fn asked(flag: Option<&str>, configured: Option<&str>) -> Result<Option<Accel>, String> {
    let env = std::env::var(ACCEL_ENV).ok();
    let asked = match flag.or(env.as_deref()).or(configured) {
        Some(v) => Accel::parse_choice(v)?,
        None => None,
    };
    if asked == Some(Accel::Kvm) && !kvm_usable() {
        return Err(format!(
            "KVM was asked for, but {KVM_DEVICE} cannot be opened: load the kvm module and join the kvm group, or use --accel tcg"
        ));
    }
    Ok(asked)
}

/// [`asked`], with `auto` answered by `auto`.
pub fn resolve_with(
    flag: Option<&str>,
    configured: Option<&str>,
    auto: impl FnOnce() -> Accel,
) -> Result<Accel, String> {
    Ok(asked(flag, configured)?.unwrap_or_else(auto))
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
    let verdict = match probe_kvm_boot(
        &kernel_dir.join(BZIMAGE_FILE),
        &kernel_dir.join(INITRAMFS_FILE),
        PROBE_TIMEOUT,
    ) {
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

/// [`asked`], with `auto` meaning KVM whenever /dev/kvm opens (no probe).
pub fn resolve(flag: Option<&str>, configured: Option<&str>) -> Result<Accel, String> {
    resolve_with(flag, configured, || {
        if kvm_usable() { Accel::Kvm } else { Accel::Tcg }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tcg_clock_is_the_tsc_unless_instruction_counting_is_asked_for() {
        assert!(!tcg_icount(None));
        assert!(!tcg_icount(Some("tsc")));
        assert!(tcg_icount(Some("icount")));
        assert!(tcg_icount(Some(" icount\n")));
        assert!(!tcg_icount(Some("ICOUNT-please")), "unknown: the default");
    }

    #[test]
    fn the_flag_wins_over_the_configuration_and_bad_values_say_what_is_allowed() {
        assert_eq!(resolve(Some("tcg"), Some("kvm")).unwrap(), Accel::Tcg);
        assert_eq!(
            resolve_with(None, Some("auto"), || Accel::Tcg).unwrap(),
            Accel::Tcg
        );
        assert!(
            resolve(Some("nope"), None)
                .unwrap_err()
                .contains("auto, kvm or tcg")
        );
    }
}
