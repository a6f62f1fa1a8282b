//! Processes recorded in a VM's status, told apart from a recycled pid by their start time.

use ignite_api::ProcessRef;
use rustix::process::{Pid, Signal};

/// The process with this pid as it is now, if it exists (and is not a zombie).
pub fn lookup(pid: u32) -> Option<ProcessRef> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // fields[0] is the state (field 3); the start time is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(ProcessRef { pid, start_ticks })
}

pub fn current() -> ProcessRef {
    lookup(std::process::id()).expect("this process exists")
}

/// True while the recorded process still runs (same pid, same start time).
pub fn is_alive(process: &ProcessRef) -> bool {
    lookup(process.pid).is_some_and(|now| now.start_ticks == process.start_ticks)
}

/// Waits up to `timeout` for the recorded process to end, returning as soon as it does:
/// a caller polling for what the process does last wakes then, not a poll period later.
/// Where pidfds are missing it just sleeps `timeout`.
pub fn wait_for_end(process: &ProcessRef, timeout: std::time::Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    use rustix::process::PidfdFlags;
    let opened = Pid::from_raw(process.pid as i32)
        .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
    let Some(pidfd) = opened else {
        // Gone already (or no pidfds): nothing to wait for beyond a pause.
        if is_alive(process) {
            std::thread::sleep(timeout);
        }
        return;
    };
    // The pid may have been taken by another process since it was recorded.
    if !is_alive(process) {
        return;
    }
    let limit = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    });
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let _ = rustix::event::poll(&mut fds, Some(&limit));
}

/// Sends a signal to the recorded process if it still runs; false if it is gone.
pub fn signal(process: &ProcessRef, signal: Signal) -> bool {
    if !is_alive(process) {
        return false;
    }
    let Some(pid) = Pid::from_raw(process.pid as i32) else {
        return false;
    };
    rustix::process::kill_process(pid, signal).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_process_is_alive_until_it_ends_and_a_reused_pid_is_not_it() {
        let me = current();
        assert!(is_alive(&me));
        let stranger = ProcessRef {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!is_alive(&stranger), "same pid, other start time");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let recorded = lookup(child.id()).unwrap();
        assert!(signal(&recorded, Signal::KILL));
        child.wait().unwrap();
        assert!(!is_alive(&recorded));
        assert!(!signal(&recorded, Signal::KILL));
    }

    #[test]
    fn waiting_for_a_process_ends_when_it_does() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let recorded = lookup(child.id()).unwrap();
        let started = std::time::Instant::now();
        wait_for_end(&recorded, std::time::Duration::from_secs(20));
        let waited = started.elapsed();
        child.wait().unwrap();
        // Woken by the end (a zombie counts), not by the 20 s limit.
        assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");
        assert!(
            waited >= std::time::Duration::from_millis(100),
            "{waited:?}"
        );
        // A process already gone is not waited for.
        let started = std::time::Instant::now();
        wait_for_end(&recorded, std::time::Duration::from_secs(20));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
