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

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logging::init(cli.global.log_level);
    match commands::run(cli) {
        Ok(code) => code,
        // A closed output pipe (`ignite logs VM | head`) is a normal end, as for `ls | head`.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
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
