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
}
