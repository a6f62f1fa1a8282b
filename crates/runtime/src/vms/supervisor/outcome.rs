//! How a run ended, decided from what the supervisor saw: the stop it was asked for, the
//! kill it did, the VMM's exit status and what the console said. Pure.

use ignite_api::ExitReason;

/// What the supervisor saw by the time the VMM exited.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// A graceful stop was asked for (SIGTERM/SIGINT).
    pub stop_requested: bool,
    /// The supervisor killed the VMM (SIGQUIT, or the grace period ran out).
    pub killed: bool,
    /// The VMM exited with success.
    pub vmm_succeeded: bool,
    /// The VMM's exit status, as text (`exit status: 1`, `signal: 9`).
    pub vmm_status: String,
    /// The workload's or ignite-init's exit status, when one was reported.
    pub exit_status: Option<i32>,
    /// The kernel's panic line on the console since this start.
    pub panic: Option<String>,
    /// Where the supervisor's own log is (named in a VMM failure).
    pub supervisor_log: String,
}

/// The reason and detail of the run's exit record.
pub fn exit_reason(seen: &Seen) -> (ExitReason, Option<String>) {
    match seen {
        Seen {
            killed: true,
            stop_requested: true,
            ..
        } => (ExitReason::StoppedAfterGrace, None),
        Seen { killed: true, .. } => (ExitReason::Killed, None),
        Seen {
            stop_requested: true,
            ..
        } => (ExitReason::Stopped, None),
        // With panic=1 the guest reboots and the VMM exits cleanly: not a power-off. A
        // guest that reported its status got that far, so a later panic line is not it.
        Seen {
            exit_status: None,
            panic: Some(line),
            ..
        } => (ExitReason::KernelPanic, Some(line.clone())),
        Seen {
            vmm_succeeded: true,
            ..
        } => (ExitReason::PoweredOff, None),
        _ => (
            ExitReason::VmmFailed,
            Some(format!("{}; see {}", seen.vmm_status, seen.supervisor_log)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_win_then_panics_then_the_vmm_status() {
        let ok = Seen {
            vmm_succeeded: true,
            vmm_status: "exit status: 0".into(),
            ..Seen::default()
        };
        assert_eq!(exit_reason(&ok).0, ExitReason::PoweredOff);
        let stopped = Seen {
            stop_requested: true,
            ..ok.clone()
        };
        assert_eq!(exit_reason(&stopped).0, ExitReason::Stopped);
        let graced = Seen {
            killed: true,
            ..stopped.clone()
        };
        assert_eq!(exit_reason(&graced).0, ExitReason::StoppedAfterGrace);
        let killed = Seen {
            killed: true,
            vmm_succeeded: false,
            ..Seen::default()
        };
        assert_eq!(exit_reason(&killed).0, ExitReason::Killed);
        let panicked = Seen {
            panic: Some("Kernel panic - not syncing: VFS".into()),
            ..ok.clone()
        };
        assert_eq!(
            exit_reason(&panicked),
            (
                ExitReason::KernelPanic,
                Some("Kernel panic - not syncing: VFS".into())
            )
        );
        let reported = Seen {
            exit_status: Some(3),
            ..panicked
        };
        assert_eq!(exit_reason(&reported).0, ExitReason::PoweredOff);
        let failed = Seen {
            vmm_status: "exit status: 1".into(),
            supervisor_log: "/vm/supervisor.log".into(),
            ..Seen::default()
        };
        assert_eq!(
            exit_reason(&failed),
            (
                ExitReason::VmmFailed,
                Some("exit status: 1; see /vm/supervisor.log".into())
            )
        );
    }
}
