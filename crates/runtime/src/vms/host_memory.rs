//! What a VM costs the host in memory, and the machine settings that keep it down: a
//! balloon device through which the guest hands back the memory it frees (free page
//! reporting), a TCG translation cache sized for a microVM, and the VMM's own memory
//! offered to the host's KSM beside its guest's. All are chosen by the starting command
//! (defaults, or the environment for measuring against the old machine) and handed to
//! the supervisor in its configuration.

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
/// `off` (or `0`, `false`, `no`) leaves only the guest's memory mergeable by the host's
/// KSM, as QEMU marks it itself, and not the rest of the VMM's (see [`mark_mergeable`]).
pub const VMM_MERGEABLE_ENV: &str = "IGNITE_VMM_MEMORY_MERGEABLE";

/// The memory settings of the machines this process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    pub reporting: bool,
    pub translation_cache_mib: Option<u32>,
    /// All of the VMM's private memory may be merged by the host's KSM, not only its
    /// guest's (see [`mark_mergeable`]).
    pub vmm_mergeable: bool,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            reporting: true,
            translation_cache_mib: None,
            vmm_mergeable: true,
        }
    }
}

impl MemorySettings {
    /// The defaults, as this process's environment changes them.
    pub fn from_env() -> MemorySettings {
        Self::from_values(
            std::env::var(REPORTING_ENV).ok().as_deref(),
            std::env::var(TRANSLATION_CACHE_ENV).ok().as_deref(),
            std::env::var(VMM_MERGEABLE_ENV).ok().as_deref(),
        )
    }

    fn from_values(
        reporting: Option<&str>,
        cache: Option<&str>,
        mergeable: Option<&str>,
    ) -> MemorySettings {
        let off = |value: Option<&str>| matches!(value, Some("off" | "0" | "false" | "no"));
        let mut settings = MemorySettings::default();
        if off(reporting) {
            settings.reporting = false;
        }
        if off(mergeable) {
            settings.vmm_mergeable = false;
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

/// Lets the host's KSM merge every private page of this process and of the program it
/// execs (`PR_SET_MEMORY_MERGE`, kept across exec since Linux 6.6), not only the guest
/// memory QEMU marks mergeable itself: its heap, thread arenas and relocated library data
/// hold much that is the same in every VM. Measured with KSM on, 32 idle 128 MiB VMs
/// started warm under TCG: 46.5 MiB of PSS per VM, 42.5 MiB with this. Nothing changes
/// while the host's KSM is off (`/sys/kernel/mm/ksm/run`), which Ignite never turns on.
/// Fails on kernels before 6.4, which lack it.
#[allow(unsafe_code)]
pub fn mark_mergeable() -> std::io::Result<()> {
    let none: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only, no memory handed to the kernel; it sets a
    // flag of this process's memory map.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_MEMORY_MERGE,
            1 as libc::c_ulong,
            none,
            none,
            none,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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
        let default = MemorySettings::from_values(None, None, None);
        assert_eq!(default, MemorySettings::default());
        assert!(default.reporting && default.vmm_mergeable);
        let off = MemorySettings::from_values(Some("off"), Some("0"), Some("off"));
        assert!(!off.reporting);
        assert!(!off.vmm_mergeable);
        assert_eq!(off.translation_cache_mib, None);
        let sized = MemorySettings::from_values(Some("on"), Some("64"), Some("on"));
        assert!(sized.reporting && sized.vmm_mergeable);
        assert_eq!(sized.translation_cache_mib, Some(64));
        for bad in ["-1", "lots", "99999"] {
            assert_eq!(
                MemorySettings::from_values(None, Some(bad), None).translation_cache_mib,
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
