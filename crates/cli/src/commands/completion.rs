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
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ignite", &mut script);
    super::write_stdout(&String::from_utf8_lossy(&script))
}
