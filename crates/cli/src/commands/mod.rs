//! One module per command. Each takes its parsed arguments and the shared [`Context`].

mod completion;
mod image;
mod inspect;
mod kernel;
mod ps;
mod version;

use std::process::ExitCode;

use ignite_api::Configuration;
use ignite_store::Store;

use crate::args::{Cli, Command, PsArgs, VmCommand};

/// What every command that touches state needs.
pub struct Context {
    pub store: Store,
    #[allow(dead_code)] // read by the commands that create VMs
    pub configuration: Option<Configuration>,
    pub quiet: bool,
}

impl Context {
    /// The store, created if it does not exist yet (for commands that write).
    pub fn writable_store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(self.store.root())?)
    }

    fn new(cli: &Cli) -> anyhow::Result<Context> {
        let root = ignite_store::resolve_root(cli.global.root.as_deref());
        let configuration =
            ignite_runtime::config::load_configuration(cli.global.ignite_config.as_deref())?;
        tracing::debug!(root = %root.display(), "state root");
        Ok(Context {
            store: Store::open_existing(root),
            configuration,
            quiet: cli.global.quiet,
        })
    }
}

/// Writes command output. A closed pipe (`ignite ps | head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Version(args) => version::run(args),
        Command::Completion(args) => completion::run(args),
        Command::Ps(args) => ps::run(&Context::new(&cli)?, args),
        Command::Inspect(args) => inspect::run(&Context::new(&cli)?, args),
        Command::Image(group) => image::run(&Context::new(&cli)?, group.command.as_ref()),
        Command::Rmi(args) => image::remove(&Context::new(&cli)?, args),
        Command::Kernel(group) => kernel::run(&Context::new(&cli)?, group.command.as_ref()),
        Command::Rmk(args) => kernel::remove(&Context::new(&cli)?, args),
        Command::Vm(group) => {
            let ctx = Context::new(&cli)?;
            match &group.command {
                None => ps::run(
                    &ctx,
                    &PsArgs {
                        all: true,
                        filter: None,
                        template: None,
                    },
                ),
                Some(VmCommand::Ps(args)) => ps::run(&ctx, args),
                Some(VmCommand::Ls(args)) => ps::run(
                    &ctx,
                    &PsArgs {
                        all: true,
                        ..args.clone()
                    },
                ),
            }
        }
    }?;
    Ok(ExitCode::SUCCESS)
}
