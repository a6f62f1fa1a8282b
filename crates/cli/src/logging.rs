//! Logs go to stderr (stdout is for data), plain when stderr is not a terminal or
//! `NO_COLOR` is set. `RUST_LOG` overrides `--log-level` for debugging.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::LogLevel;

pub fn init(level: LogLevel) {
    let directive = match level {
        LogLevel::Panic | LogLevel::Fatal | LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(directive));
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .without_time()
        .with_target(false)
        .init();
}
