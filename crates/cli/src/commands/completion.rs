//! `ignite completion SHELL`.

use clap::CommandFactory;
use clap_complete::Shell as CompleteShell;

use crate::args::{Cli, CompletionArgs, Shell};

pub fn run(args: &CompletionArgs) -> anyhow::Result<()> {
    let shell = match args.shell {
        Shell::Bash => CompleteShell::Bash,
        Shell::Zsh => CompleteShell::Zsh,
        Shell::Fish => CompleteShell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "ignite", &mut std::io::stdout());
    Ok(())
}
