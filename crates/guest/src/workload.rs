//! Container mode: ignite-init stays PID 1 and runs the image's ENTRYPOINT/CMD with its
//! ENV, WORKDIR and USER. As PID 1 it reaps every orphan, forwards SIGTERM, SIGINT, SIGHUP,
//! SIGQUIT, SIGUSR1 and SIGUSR2 to the workload, and when the workload ends reports its
//! status (console marker and agent) and powers the VM off. Its stdio goes to the host
//! through the agent ([`crate::workload_stdio`]).

use std::fs;
use std::time::Duration;

use ignite_guest_protocol::agent::ExitStatus;
use ignite_guest_protocol::config::Workload;
use ignite_guest_protocol::status;
use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::console::{fail, power_off_with, say};
use crate::process_env::{DEFAULT_PATH, environment, find_program, resolve_user, run_as};
use crate::workload_stdio;
use crate::workload_stdio::AgentLink;

/// How long the host gets to store the workload's output and exit status before power-off.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(workload: &Workload, agent: Option<AgentLink>) -> ! {
    let mut agent = agent;
    let argv = workload.argv();
    if argv.is_empty() {
        refuse(
            agent.take(),
            status::CANNOT_START,
            "the image has no ENTRYPOINT or CMD and no command was given: pass one (ignite run IMAGE COMMAND [ARG...])",
        );
    }
    let user = resolve_user(&workload.user)
        .unwrap_or_else(|e| refuse(agent.take(), status::CANNOT_START, &e));
    let env = environment(workload, &user);
    let path = env
        .iter()
        .find_map(|(k, v)| (k == "PATH").then_some(v.as_str()))
        .unwrap_or(DEFAULT_PATH);
    let program =
        find_program(&argv[0], path).unwrap_or_else(|(code, e)| refuse(agent.take(), code, &e));
    let workdir = if workload.working_dir.is_empty() {
        "/"
    } else {
        workload.working_dir.as_str()
    };
    if let Err(e) = fs::create_dir_all(workdir) {
        refuse(
            agent.take(),
            status::CANNOT_START,
            &format!("cannot create the working directory {workdir}: {e}"),
        );
    }

    // Registered before the spawn, so a workload that exits at once is not missed.
    let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])
        .unwrap_or_else(|e| fail(status::BAD_CONFIG, &format!("cannot handle signals: {e}")));
    let (mut command, stdio) = workload_stdio::command(&program, &argv, workload, agent)
        .unwrap_or_else(|e| {
            fail(
                status::BAD_CONFIG,
                &format!("cannot give the workload a terminal: {e}"),
            )
        });
    command.current_dir(workdir);
    run_as(&mut command, &env, &user);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                status::COMMAND_NOT_FOUND
            } else {
                status::CANNOT_EXECUTE
            };
            refuse(
                stdio.map(workload_stdio::Pending::into_link),
                code,
                &format!("cannot run {}: {e}", program.display()),
            );
        }
    };
    drop(command); // closes our copies of the terminal's other side
    let relay = stdio.map(|pending| pending.start(&mut child));
    let pid = Pid::from_child(&child);
    drop(child); // reaped below with everything else

    let exit = 'wait: loop {
        for signal in signals.wait() {
            if signal == SIGCHLD {
                if let Some(exit) = reap_all(pid) {
                    break 'wait exit;
                }
            } else if let Some(sig) = Signal::from_named_raw(signal) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    };
    let reason = match (exit.code, exit.signal) {
        (Some(_), _) => "the workload exited".to_string(),
        (None, Some(sig)) => format!("the workload was killed by signal {sig}"),
        _ => "the workload ended".to_string(),
    };
    if let Some(relay) = relay
        && !relay.finish(exit, REPORT_TIMEOUT)
    {
        say("the host did not collect the exit status from the agent; it is on the console");
    }
    power_off_with(exit.shell_code(), &reason)
}

/// The workload cannot start: the reason on its stderr and the status as its exit, for
/// the host (as `docker run` prints its engine's error), then on the console, and power off.
fn refuse(agent: Option<AgentLink>, status: i32, message: &str) -> ! {
    if let Some(link) = agent
        && !workload_stdio::report_failure(link, status, message, REPORT_TIMEOUT)
    {
        say("the host did not collect the exit status from the agent; it is on the console");
    }
    fail(status, message)
}

/// Reaps every exited child; returns the workload's status once it is among them. Any
/// child: `wait` (-1), not `waitpid(None)`, which is rustix's 0, this process group only,
/// and would miss a workload in a session of its own (`-t`) and orphans that left ours.
fn reap_all(workload: Pid) -> Option<ExitStatus> {
    let mut found = None;
    while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
        if pid == workload {
            found = Some(ExitStatus {
                code: status.exit_status(),
                signal: status.terminating_signal(),
            });
        }
    }
    found
}
