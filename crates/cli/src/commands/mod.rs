//! One module per command. Each takes its parsed arguments and the shared [`Context`].

mod apply;
mod completion;
mod cp;
mod doctor;
mod exec;
mod gitops;
mod image;
mod inspect;
mod kernel;
mod logs;
mod ps;
mod snapshot;
mod ssh;
mod stats;
mod version;
mod vm;
mod workload;

use std::process::ExitCode;

use ignite_api::Configuration;
use ignite_store::Store;

use crate::args::{Cli, Command, LifecycleCommand, PsArgs, VmCommand};

/// What every command that touches state needs.
pub struct Context {
    pub store: Store,
    pub configuration: Option<Configuration>,
    pub quiet: bool,
    /// `--runtime`: the local engine a bare image name is looked up in first.
    pub runtime: Option<ignite_oci::engine::EngineKind>,
    /// `--containerd-namespace`.
    pub containerd_namespace: Option<String>,
}

impl Context {
    /// Import options from the command line, with the Configuration's registry settings.
    pub fn import_options(
        &self,
        pull: bool,
        registry: &crate::args::RegistryArgs,
    ) -> ignite_runtime::images::ImportOptions {
        ignite_runtime::images::ImportOptions {
            pull,
            platform: registry.platform.clone(),
            registry_config_dir: registry.registry_config_dir.clone().or_else(|| {
                self.configuration
                    .as_ref()
                    .and_then(|c| c.spec.registry_config_dir.clone())
            }),
            name: None,
            lookup: ignite_runtime::image_lookup::EngineLookup {
                containerd_namespace: self.containerd_namespace.clone(),
                ..ignite_runtime::image_lookup::EngineLookup::for_cli(
                    self.runtime,
                    self.configuration.as_ref(),
                )
            },
        }
    }

    /// The store, created if it does not exist yet (for commands that write).
    pub fn writable_store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(self.store.root())?)
    }

    fn new(cli: &Cli) -> anyhow::Result<Context> {
        let root = ignite_store::resolve_root(cli.global.root.as_deref());
        let mut configuration =
            ignite_runtime::config::load_configuration(cli.global.ignite_config.as_deref())?;
        // `--network-plugin` stands for the Configuration's `networkPlugin` in this command.
        if let Some(plugin) = cli.global.network_plugin {
            configuration
                .get_or_insert_with(Default::default)
                .spec
                .network_plugin = Some(plugin.name().to_string());
        }
        tracing::debug!(root = %root.display(), "state root");
        Ok(Context {
            store: Store::open_existing(root),
            configuration,
            quiet: cli.global.quiet,
            runtime: cli.global.runtime.map(crate::args::RuntimeFlag::engine),
            containerd_namespace: cli.global.containerd_namespace.clone(),
        })
    }
}

/// Removes each of `queries` with `remove`, which returns the removed object's name and
/// uid and the VMs removed with it. Prints the uids removed; one failure among several is
/// logged and the others still go.
pub fn remove_each(
    kind: &str,
    queries: &[String],
    remove: impl Fn(
        &str,
    )
        -> Result<(String, String, Vec<ignite_api::Vm>), ignite_runtime::images::ImageError>,
) -> anyhow::Result<()> {
    let mut out = String::new();
    let mut failed = None;
    for query in queries {
        match remove(query) {
            Ok((name, uid, vms)) => {
                for vm in vms {
                    tracing::info!("removed VM {} which used {name}", vm.metadata.name);
                }
                tracing::info!("removed {kind} {name} ({uid})");
                out.push_str(&uid);
                out.push('\n');
            }
            Err(e) if queries.len() == 1 => failed = Some(e),
            Err(e) => {
                tracing::error!("{e}");
                failed = Some(e);
            }
        }
    }
    write_stdout(&out)?;
    match failed {
        Some(e) if queries.len() == 1 => Err(e.into()),
        Some(_) => anyhow::bail!("some {kind}s were not removed"),
        None => Ok(()),
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

fn lifecycle(ctx: &Context, command: &LifecycleCommand) -> anyhow::Result<ExitCode> {
    match command {
        LifecycleCommand::Run(args) => vm::run(ctx, args),
        LifecycleCommand::Create(args) => vm::create(ctx, args),
        LifecycleCommand::Start(args) => vm::start_command(ctx, args),
        LifecycleCommand::Stop(args) => vm::stop(ctx, args),
        LifecycleCommand::Kill(args) => vm::kill(ctx, args),
        LifecycleCommand::Pause(args) => vm::pause(ctx, args, true),
        LifecycleCommand::Unpause(args) => vm::pause(ctx, args, false),
        LifecycleCommand::Rm(args) => vm::rm(ctx, args),
        LifecycleCommand::Logs(args) => logs::run(ctx, args),
        LifecycleCommand::Attach(args) => vm::attach(ctx, args),
        LifecycleCommand::Ssh(args) => ssh::run(ctx, args),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Version(args) => version::run(args),
        Command::Gitops(args) => return gitops::run(&cli.global, args),
        Command::Completion(args) => completion::run(args),
        Command::Lifecycle(command) => return lifecycle(&Context::new(&cli)?, command),
        Command::Ps(args) => ps::run(&Context::new(&cli)?, args),
        Command::Stats(args) => stats::run(&Context::new(&cli)?, args),
        Command::Doctor(args) => return doctor::run(&Context::new(&cli)?, args),
        Command::Apply(args) => return apply::run(&Context::new(&cli)?, args),
        Command::Exec(args) => return exec::run(&Context::new(&cli)?, args),
        Command::Cp(args) => return cp::run(&Context::new(&cli)?, args),
        Command::Inspect(args) => inspect::run(&Context::new(&cli)?, args),
        Command::Image(group) => image::run(&Context::new(&cli)?, group.command.as_ref()),
        Command::Rmi(args) => image::remove(&Context::new(&cli)?, args),
        Command::Kernel(group) => kernel::run(&Context::new(&cli)?, group.command.as_ref()),
        Command::Rmk(args) => kernel::remove(&Context::new(&cli)?, args),
        Command::Snapshot(group) => snapshot::run(&Context::new(&cli)?, group),
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
                Some(VmCommand::Lifecycle(command)) => return lifecycle(&ctx, command),
                Some(VmCommand::Supervise(args)) => return vm::supervise(&ctx, args),
                Some(VmCommand::ExecVmm(args)) => return vm::exec_vmm(&args.command),
                Some(VmCommand::BuildTemplate(args)) => return vm::build_template(&ctx, args),
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
