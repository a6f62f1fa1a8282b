//! `ignited`: the Ignite daemon. It keeps VMs in line with manifests in a directory or a
//! Git repository, and serves a REST API and metrics.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

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
    /// Print the version of ignited
    Version,
    /// Print a shell completion script
    Completion {
        #[arg(value_enum, default_value_t = Shell::Bash)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn main() {
    match Cli::parse().command {
        Command::Version => println!("Ignite version: v{}", env!("CARGO_PKG_VERSION")),
        Command::Completion { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ignited",
                &mut std::io::stdout(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
