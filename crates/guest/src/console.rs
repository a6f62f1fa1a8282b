//! Messages on the VM's console (stderr: in the agent, stdout is its link to PID 1),
//! which `ignite logs` shows: one line each, prefixed
//! `ignite-init:`, and the final exit-status line the host reads back.

use ignite_guest_protocol::status::EXIT_MARKER;

pub fn say(message: &str) {
    eprintln!("ignite-init: {message}");
}

/// Prints the exit marker, syncs and powers the VM off. Never returns.
pub fn power_off_with(status: i32, reason: &str) -> ! {
    eprintln!("{EXIT_MARKER}{status} ({reason})");
    power_off()
}

/// A boot step failed: one clear line, then power off with the step's status.
pub fn fail(status: i32, message: &str) -> ! {
    say(&format!("{message}; powering off"));
    power_off_with(status, "boot failed")
}

pub fn power_off() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    // Only reached if the kernel refused (or we are not PID 1); PID 1 must not exit.
    loop {
        std::thread::park();
    }
}
