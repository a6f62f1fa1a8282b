//! The host's TSC frequency, which a TCG guest needs to be told.
//!
//! Under TCG a guest's time-stamp counter is the host's own (QEMU reads the host TSC for
//! the guest's RDTSC), but the guest has no reference clock to measure its frequency
//! against: microvm has no HPET or ACPI PM timer, and calibrating against the PIT needs
//! steady timing that an emulated CPU on a loaded host does not have. The kernel then gives
//! up ("tsc: Marking TSC unstable due to could not calculate TSC khz") and the boot hangs.
//! Told the frequency (`tsc_early_khz=`) it skips the calibration, boots at once and keeps
//! real time, since the counter it reads is the host's.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one measurement counts ticks: long enough that the few tens of nanoseconds
/// around each clock reading are parts per million, short enough not to slow a start.
const INTERVAL: Duration = Duration::from_millis(20);

/// A reading whose clock read took longer than this was interrupted; it is taken again.
const MAX_BRACKET_TICKS: u64 = 20_000;

static KHZ: OnceLock<Option<u32>> = OnceLock::new();

/// The host's TSC frequency in kHz, measured once per process (or taken from what
/// [`host_tsc_khz_cached`] found); `None` where there is no TSC to measure (not x86_64)
/// or the measurement kept being interrupted.
pub fn host_tsc_khz() -> Option<u32> {
    *KHZ.get_or_init(measure)
}

/// [`host_tsc_khz`], kept in `cache` for the host's boot: a frequency does not change
/// while the host runs (the kernel measures its own once, at boot), so each VM's start
/// need not count ticks for 20 ms again. The file is read without following a link and
/// only a plausible frequency of this boot is taken; otherwise it is measured and the
/// file written anew.
pub fn host_tsc_khz_cached(cache: &Path) -> Option<u32> {
    *KHZ.get_or_init(|| {
        let boot = boot_id()?;
        if let Some(khz) = read_cache(cache, &boot) {
            return Some(khz);
        }
        let khz = measure()?;
        let _ = std::fs::write(cache, cache_line(&boot, khz));
        Some(khz)
    })
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

fn cache_line(boot: &str, khz: u32) -> String {
    format!("{boot} {khz}\n")
}

fn read_cache(cache: &Path, boot: &str) -> Option<u32> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(cache)
        .ok()?;
    let mut text = String::new();
    file.take(128).read_to_string(&mut text).ok()?;
    let (id, khz) = text.trim().split_once(' ')?;
    let khz: u32 = khz.parse().ok()?;
    (id == boot && (100_000..=100_000_000).contains(&khz)).then_some(khz)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC is part of every x86_64 CPU and the intrinsic has no preconditions; it
    // only reads the counter (user-mode RDTSC is allowed on Linux unless a seccomp/prctl
    // TSC policy forbids it, which would fault rather than misbehave).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A clock reading and the counter just before and after it.
#[cfg(target_arch = "x86_64")]
fn reading() -> Option<(Instant, u64)> {
    for _ in 0..5 {
        let before = rdtsc();
        let now = Instant::now();
        let after = rdtsc();
        if after.wrapping_sub(before) < MAX_BRACKET_TICKS {
            return Some((now, before + (after - before) / 2));
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
fn measure() -> Option<u32> {
    let (start, start_ticks) = reading()?;
    std::thread::sleep(INTERVAL);
    let (end, end_ticks) = reading()?;
    khz(
        end_ticks.checked_sub(start_ticks)?,
        end.duration_since(start),
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn measure() -> Option<u32> {
    None
}

/// Ticks over an interval as kHz, when both are plausible (a counter between 100 MHz
/// and 100 GHz).
fn khz(ticks: u64, elapsed: Duration) -> Option<u32> {
    let micros = elapsed.as_micros();
    if micros == 0 {
        return None;
    }
    let khz = (u128::from(ticks) * 1000 + micros / 2) / micros;
    (100_000..=100_000_000)
        .contains(&khz)
        .then(|| u32::try_from(khz).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_frequency_counts_for_its_boot_only_and_when_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("host-tsc");
        assert_eq!(read_cache(&cache, "boot-a"), None, "no file");
        std::fs::write(&cache, cache_line("boot-a", 2_100_045)).unwrap();
        assert_eq!(read_cache(&cache, "boot-a"), Some(2_100_045));
        assert_eq!(read_cache(&cache, "boot-b"), None, "another boot's");
        for bad in ["boot-a 12", "boot-a", "boot-a x", "boot-a 999999999999", ""] {
            std::fs::write(&cache, bad).unwrap();
            assert_eq!(read_cache(&cache, "boot-a"), None, "{bad:?}");
        }
        // A link is not followed.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, cache_line("boot-a", 2_100_045)).unwrap();
        std::fs::remove_file(&cache).unwrap();
        std::os::unix::fs::symlink(&target, &cache).unwrap();
        assert_eq!(read_cache(&cache, "boot-a"), None);
    }

    #[test]
    fn ticks_per_interval_become_khz() {
        assert_eq!(khz(48_908_240, Duration::from_millis(20)), Some(2_445_412));
        assert_eq!(khz(1_000, Duration::ZERO), None);
        // Implausible counters are not frequencies.
        assert_eq!(khz(10, Duration::from_millis(20)), None);
        assert_eq!(khz(u64::MAX / 2, Duration::from_millis(20)), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_measured_frequency_is_steady_and_counts_real_time() {
        let first = measure().expect("this x86_64 host has a TSC");
        let second = measure().expect("this x86_64 host has a TSC");
        // Two measurements agree to well under a tenth of a percent.
        let diff = (i64::from(first) - i64::from(second)).unsigned_abs();
        assert!(
            diff * 1000 < u64::from(first),
            "{first} kHz then {second} kHz"
        );
        // And the frequency predicts the ticks of a longer interval.
        let (start, start_ticks) = reading().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (end, end_ticks) = reading().unwrap();
        let expected = u128::from(first) * end.duration_since(start).as_micros() / 1000;
        let actual = u128::from(end_ticks - start_ticks);
        assert!(
            expected.abs_diff(actual) * 1000 < actual,
            "{first} kHz predicts {expected} ticks, counted {actual}"
        );
    }
}
