//! What a VM costs the host in memory, and the machine settings that keep it down: a
//! balloon device through which the guest hands back the memory it frees (free page
//! reporting), and a TCG translation cache sized for a microVM. Both are chosen by the
//! starting command (defaults, or the environment for measuring against the old
//! machine) and handed to the supervisor in its configuration.

use std::io::Read;

use ignite_api::{ProcessRef, VmMemoryStatus};

/// `off` (or `0`, `false`, `no`) leaves the balloon out: the guest's freed memory then
/// stays resident in the VMM, as before.
pub const REPORTING_ENV: &str = "IGNITE_FREE_PAGE_REPORTING";
/// The TCG translation cache in MiB; unset or `0`: QEMU's default (1 GiB reserved, of
/// which what the guest's code fills stays resident). Not smaller by default: measured
/// under TCG, 32 MiB saved ~23 MiB of a cold busybox VM but slowed its boot by ~7% and a
/// Debian boot to sshd by more than half (a full cache is flushed and translated anew),
/// and VMs started warm fill only ~20 MiB of it anyway.
pub const TRANSLATION_CACHE_ENV: &str = "IGNITE_TCG_TB_SIZE";

/// The memory settings of the machines this process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    pub reporting: bool,
    pub translation_cache_mib: Option<u32>,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            reporting: true,
            translation_cache_mib: None,
        }
    }
}

impl MemorySettings {
    /// The defaults, as this process's environment changes them.
    pub fn from_env() -> MemorySettings {
        Self::from_values(
            std::env::var(REPORTING_ENV).ok().as_deref(),
            std::env::var(TRANSLATION_CACHE_ENV).ok().as_deref(),
        )
    }

    fn from_values(reporting: Option<&str>, cache: Option<&str>) -> MemorySettings {
        let mut settings = MemorySettings::default();
        if matches!(reporting, Some("off" | "0" | "false" | "no")) {
            settings.reporting = false;
        }
        if let Some(text) = cache {
            match text.trim().parse::<u32>() {
                Ok(0) => settings.translation_cache_mib = None,
                Ok(mib) if mib <= 4096 => settings.translation_cache_mib = Some(mib),
                _ => tracing::warn!(
                    "{TRANSLATION_CACHE_ENV}={text:?} is not a size in MiB from 0 (QEMU's default) to 4096: using QEMU's default"
                ),
            }
        }
        settings
    }
}

/// What a running VM costs the host now and what its guest last reported as free; `None`
/// for a VM whose VMM does not run.
pub fn vm_memory(store: &ignite_store::Store, vm: &ignite_api::Vm) -> Option<VmMemoryStatus> {
    let vmm = vm.status.vmm.as_ref()?;
    let host = process_memory(&vmm.process)?;
    let mut status = VmMemoryStatus {
        vmm_resident_bytes: host.resident,
        vmm_proportional_bytes: host.proportional,
        ..VmMemoryStatus::default()
    };
    if vmm.memory_reporting {
        let control = super::VmFiles::new(store, &super::uid_of(vm)).control_socket();
        match ignite_vmm::driver::guest_memory(vmm.name, &control) {
            Ok(Some(guest)) => {
                status.guest_total_bytes = guest.total;
                status.guest_free_bytes = guest.free;
                status.guest_available_bytes = guest.available;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("no memory statistics from the VM's balloon: {e}"),
        }
    }
    Some(status)
}

/// The memory a live process holds: resident (RSS) and its proportional share of pages
/// it shares with others (PSS), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    pub resident: u64,
    pub proportional: Option<u64>,
}

/// What `/proc/PID/smaps_rollup` (or, without it, `status`) says of a live process.
pub fn process_memory(process: &ProcessRef) -> Option<ProcessMemory> {
    if !super::process::is_alive(process) {
        return None;
    }
    let pid = process.pid;
    if let Some(text) = read_small(&format!("/proc/{pid}/smaps_rollup")) {
        let resident = kib_field(&text, "Rss:")?;
        return Some(ProcessMemory {
            resident,
            proportional: kib_field(&text, "Pss:"),
        });
    }
    let text = read_small(&format!("/proc/{pid}/status"))?;
    Some(ProcessMemory {
        resident: kib_field(&text, "VmRSS:")?,
        proportional: None,
    })
}

fn read_small(path: &str) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A `Name:   123 kB` line's figure, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_turns_reporting_off_and_sizes_the_cache() {
        assert_eq!(
            MemorySettings::from_values(None, None),
            MemorySettings::default()
        );
        let off = MemorySettings::from_values(Some("off"), Some("0"));
        assert!(!off.reporting);
        assert_eq!(off.translation_cache_mib, None);
        let sized = MemorySettings::from_values(Some("on"), Some("64"));
        assert!(sized.reporting);
        assert_eq!(sized.translation_cache_mib, Some(64));
        for bad in ["-1", "lots", "99999"] {
            assert_eq!(
                MemorySettings::from_values(None, Some(bad)).translation_cache_mib,
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn this_process_s_memory_is_read_from_proc() {
        let me = crate::vms::process::current();
        let memory = process_memory(&me).expect("this process is alive");
        assert!(memory.resident > 1 << 20, "{memory:?}");
        assert!(
            memory
                .proportional
                .is_some_and(|p| p > 0 && p <= memory.resident)
        );
        assert_eq!(kib_field("VmRSS:\t  2048 kB\n", "VmRSS:"), Some(2 << 20));
    }
}
