//! `ignited`: the Ignite daemon. It keeps VMs in line with manifests in a directory or a
//! Git repository, and serves a REST API and metrics.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
mod daemon;
mod gitops;
mod http;
mod metrics;
mod reconcile_loop;
mod reconciler;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// The Ignite daemon
#[derive(Debug, Parser)]
#[command(
    name = "ignited",
    version,
    about = "The Ignite daemon: VMs kept in line with manifests",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keep the VMs in line with the manifests in a directory
    Daemon(DaemonArgs),
    /// Keep the VMs in line with the manifests in a Git repository, status pushed back
    Gitops(gitops::GitopsArgs),
    /// Print the version of ignited
    Version,
    /// Print a shell completion script
    Completion {
        #[arg(value_enum, default_value_t = Shell::Bash)]
        shell: Shell,
    },
    /// A VM's supervisor, started by ignited for each VM it starts (internal)
    #[command(hide = true, subcommand)]
    Vm(VmCommand),
}

/// The supervisor's entry points, shared with `ignite vm` (both binaries carry it, so
/// ignited runs VMs without the ignite binary).
#[derive(Debug, Subcommand)]
enum VmCommand {
    /// Run one VM until it ends
    Supervise {
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        uid: String,
    },
    /// Exec a VMM that dies with its supervisor
    ExecVmm {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Flags of every command that uses VMs.
#[derive(Debug, Args)]
struct Global {
    /// The state directory (default /var/lib/ignite as root)
    #[arg(long, env = "IGNITE_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// The Configuration file (default /etc/ignite/config.yaml if it exists)
    #[arg(long, value_name = "FILE")]
    ignite_config: Option<PathBuf>,
    /// A binary to supervise VMs instead of ignited itself (`ignite` or `ignited`: both
    /// carry the supervisor) [default: ignited itself]
    #[arg(long, value_name = "FILE")]
    ignite: Option<PathBuf>,
    /// Seconds between full comparisons of manifests and VMs (changes to the manifests are
    /// seen within a second)
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    resync: u64,
    /// Where the REST API and /metrics listen
    #[arg(long, default_value = "/run/ignite/ignited.sock", value_name = "FILE")]
    api_socket: PathBuf,
    /// A group whose members may use the API too (root always may)
    #[arg(long, value_name = "GROUP")]
    api_group: Option<String>,
}

#[derive(Debug, Args)]
struct DaemonArgs {
    /// The directory of VM manifests (.yaml, .yml, .json; recursively)
    #[arg(long, default_value = "/etc/ignite/manifests", value_name = "DIR")]
    manifest_dir: PathBuf,
    #[command(flatten)]
    global: Global,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes output; a closed pipe (`ignited completion bash | head`) is a normal end.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon(args) => {
            daemon::run(&args.manifest_dir, &args.global)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Gitops(args) => {
            gitops::run(&args)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Vm(VmCommand::Supervise { root, uid }) => {
            ignite_runtime::vms::supervisor::supervise(&root, &uid)?;
        }
        Command::Vm(VmCommand::ExecVmm { command }) => {
            let err = ignite_runtime::vms::supervisor::exec_vmm(&command);
            anyhow::bail!("cannot start the VMM {:?}: {err}", command[0]);
        }
        Command::Version => {
            write_stdout(&format!("Ignite version: v{}\n", env!("CARGO_PKG_VERSION")))?
        }
        Command::Completion { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ignited", &mut script);
            write_stdout(&String::from_utf8_lossy(&script))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
