//! How a VM's end is reported. ignite-init's last console line is
//! `ignite-init: exit status N (reason)`: the workload's own status in container mode, or
//! one of the statuses below when booting failed. The host reads it back from the console
//! log, which works the same with every VMM and even when the agent never started.

/// The prefix of the last line ignite-init prints before powering off.
pub const EXIT_MARKER: &str = "ignite-init: exit status ";

/// A kernel module the initramfs lists is not in it.
pub const MODULE_MISSING: i32 = 119;
/// The per-VM configuration is missing pieces or malformed.
pub const BAD_CONFIG: i32 = 120;
/// The root disk did not appear or cannot be mounted.
pub const ROOT_NOT_FOUND: i32 = 121;
/// Hostname, files, keys, volumes or network could not be applied.
pub const PROVISION_FAILED: i32 = 122;
/// VM mode was asked for, but the image has no /sbin/init.
pub const NO_INIT: i32 = 123;
/// Container mode cannot start the workload as asked: nothing to run (no ENTRYPOINT, CMD or
/// command), a USER or group the image lacks, a working directory that cannot be made. As
/// `docker run` exits when its engine cannot start a container.
pub const CANNOT_START: i32 = 125;
/// The command exists but cannot be executed (as with Docker).
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found (as with Docker).
pub const COMMAND_NOT_FOUND: i32 = 127;

/// The status of the last exit marker in a console log, if any.
pub fn last_exit_status(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|line| {
        let rest = line.trim_end_matches('\r').split(EXIT_MARKER).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// What the kernel prints when it panics (then, with `panic=1`, it reboots, and the VMM
/// exits as if the guest had powered off).
pub const KERNEL_PANIC: &str = "Kernel panic - not syncing";

/// The kernel's last panic line in a console log, without its timestamp, if any.
pub fn kernel_panic_line(console: &str) -> Option<String> {
    console.lines().rev().find_map(|line| {
        let at = line.find(KERNEL_PANIC)?;
        Some(line[at..].trim_end_matches('\r').trim_end().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_panic_line() {
        let log = "[    0.9] Run /nope as init process\r\n[    1.0] Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. See Linux Documentation/admin-guide/init.rst for guidance.\r\n[    1.1] CPU: 0 PID: 1\r\n";
        assert_eq!(
            kernel_panic_line(log).as_deref(),
            Some(
                "Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. See Linux Documentation/admin-guide/init.rst for guidance."
            )
        );
        assert_eq!(kernel_panic_line("all fine\n"), None);
    }

    #[test]
    fn finds_the_last_marker() {
        let log = "boot\r\nignite-init: exit status 3 (the workload exited)\r\nmore\nignite-init: exit status 127 (command not found: nope)\r\n[  1.0] reboot: Power down\n";
        assert_eq!(last_exit_status(log), Some(127));
        assert_eq!(last_exit_status("no marker here\n"), None);
    }
}
