//! `ignite`: the command-line interface. Parsing lives in `args`, one module per command
//! in `commands`; the work itself is done by the library crates.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod args;
mod commands;
mod logging;
mod output;
mod progress;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

/// What `run` exits with when it fails itself (a bad flag value, an unreadable
/// `--env-file`, an image that cannot be imported), as `docker run` does: the other
/// statuses are the workload's.
const RUN_FAILED: u8 = 125;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logging::init(cli.global.log_level);
    let failure = if is_run(&cli.command) {
        ExitCode::from(RUN_FAILED)
    } else {
        ExitCode::FAILURE
    };
    match commands::run(cli) {
        Ok(code) => code,
        // A closed output pipe (`ignite logs VM | head`) is a normal end, as for `ls | head`.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", error_chain(&err));
            failure
        }
    }
}

fn is_run(command: &args::Command) -> bool {
    use args::{Command, LifecycleCommand, VmCommand, VmGroup};
    matches!(
        command,
        Command::Lifecycle(LifecycleCommand::Run(_))
            | Command::Vm(VmGroup {
                command: Some(VmCommand::Lifecycle(LifecycleCommand::Run(_)))
            })
    )
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, without repeating a cause already in the message.
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
