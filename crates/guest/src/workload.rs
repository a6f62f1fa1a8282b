//! Container mode: ignite-init stays PID 1 and runs the image's ENTRYPOINT/CMD with its
//! ENV, WORKDIR and USER. As PID 1 it reaps every orphan, forwards SIGTERM, SIGINT, SIGHUP,
//! SIGQUIT, SIGUSR1 and SIGUSR2 to the workload, and when the workload ends reports its
//! status (console marker and agent) and powers the VM off. Its stdio goes to the host
//! through the agent ([`crate::workload_stdio`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ignite_guest_protocol::agent::ExitStatus;
use ignite_guest_protocol::config::Workload;
use ignite_guest_protocol::status;
use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::agent::AgentLink;
use crate::console::{fail, power_off_with, say};
use crate::workload_stdio;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the host gets to store the workload's output and exit status before power-off.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(workload: &Workload, agent: Option<AgentLink>) -> ! {
    let argv = workload.argv();
    if argv.is_empty() {
        fail(
            status::NO_COMMAND,
            "the image has no ENTRYPOINT or CMD and no command was given: pass one (ignite run IMAGE COMMAND [ARG...])",
        );
    }
    let user = resolve_user(&workload.user).unwrap_or_else(|e| fail(status::BAD_CONFIG, &e));
    let env = environment(workload, user.as_ref());
    let path = env
        .iter()
        .find_map(|(k, v)| (k == "PATH").then_some(v.as_str()))
        .unwrap_or(DEFAULT_PATH);
    let program = find_program(&argv[0], path).unwrap_or_else(|(code, e)| fail(code, &e));
    let workdir = if workload.working_dir.is_empty() {
        "/"
    } else {
        workload.working_dir.as_str()
    };
    if let Err(e) = fs::create_dir_all(workdir) {
        fail(
            status::BAD_CONFIG,
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
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workdir);
    if workload.tty && !env.iter().any(|(k, _)| k == "TERM") {
        command.env("TERM", "xterm");
    }
    if let Some(user) = &user {
        command.uid(user.uid).gid(user.gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                status::COMMAND_NOT_FOUND
            } else {
                status::CANNOT_EXECUTE
            };
            fail(code, &format!("cannot run {}: {e}", program.display()));
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

pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: Option<String>,
}

/// `USER` as Docker reads it: `name`, `uid`, `name:group`, `uid:gid`, against the image's
/// /etc/passwd and /etc/group (no NSS in here). Empty means root.
pub fn resolve_user(spec: &str) -> Result<Option<User>, String> {
    if spec.is_empty() {
        return Ok(None);
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, home) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            Some(f[5].to_string()),
        ),
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(format!(
                "the image's USER {user:?} is not in its /etc/passwd"
            ));
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => fs::read_to_string("/etc/group")
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("the group {group:?} of USER {spec:?} is not in the image's /etc/group")
                })?,
        };
    }
    Ok(Some(User { uid, gid, home }))
}

/// The workload's environment: the image's ENV over sensible defaults.
pub fn environment(workload: &Workload, user: Option<&User>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        (
            "HOME".into(),
            user.and_then(|u| u.home.clone())
                .unwrap_or_else(|| "/root".into()),
        ),
    ];
    if let Ok(hostname) = fs::read_to_string("/proc/sys/kernel/hostname") {
        env.push(("HOSTNAME".into(), hostname.trim().to_string()));
    }
    for pair in &workload.env {
        let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }
    env
}

/// Finds a program as execvp would; the error carries Docker's status for it.
pub fn find_program(name: &str, path: &str) -> Result<PathBuf, (i32, String)> {
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    let mut not_executable = None;
    for candidate in candidates {
        match fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(candidate),
            Ok(_) => not_executable = Some(candidate),
            Err(_) => {}
        }
    }
    match not_executable {
        Some(p) => Err((
            status::CANNOT_EXECUTE,
            format!("{} is not an executable file", p.display()),
        )),
        None => Err((
            status::COMMAND_NOT_FOUND,
            format!("command not found: {name} (searched PATH={path})"),
        )),
    }
}
