//! `ignite apply -f FILE|DIR`: the VMs made to match manifests, once (`ignited daemon`
//! does it continuously). Prints what it did, or with `--dry-run` what it would do.

use std::process::ExitCode;

use anyhow::Context as _;
use ignite_runtime::reconcile::{self, ManifestSet, Reconciler};

use super::Context;
use crate::args::ApplyArgs;
use crate::progress::Bars;

/// The value of the source label on VMs `ignite apply` makes.
pub const SOURCE: &str = "apply";

pub fn run(ctx: &Context, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let mut set = ManifestSet::default();
    for path in &args.files {
        if !path.exists() {
            anyhow::bail!("{} does not exist", path.display());
        }
        let more = reconcile::manifests::load(path);
        set.vms.extend(more.vms);
        set.errors.extend(more.errors);
        set.ignored += more.ignored;
    }
    let mut failed = false;
    for (file, error) in &set.errors {
        eprintln!("Error: {}: {error}", file.display());
        failed = true;
    }
    let store = ctx.writable_store()?;
    let bars = Bars::new(ctx.quiet);
    let reconciler = Reconciler {
        store: &store,
        source: SOURCE,
        configuration: ctx.configuration.as_ref(),
        import: ctx.import_options(false, &crate::args::RegistryArgs::default()),
        supervisor_program: std::env::current_exe().context("cannot find the ignite binary")?,
        progress: &bars,
    };
    let actions = reconciler.plan(&set.vms, args.prune)?;
    for d in &set.vms {
        if !actions.iter().any(|a| a.name() == d.name()) {
            super::write_stdout(&format!("VM {} is up to date\n", d.name()))?;
        }
    }
    for action in &actions {
        if args.dry_run {
            super::write_stdout(&format!("{}\n", action.describe(false)))?;
            continue;
        }
        let desired = set.vms.iter().find(|d| d.name() == action.name());
        match reconciler.execute(action, desired) {
            Ok(()) => super::write_stdout(&format!("{}\n", action.describe(true)))?,
            Err(e) => {
                eprintln!(
                    "Error: {}: {e}",
                    action.describe(false).trim_start_matches("would ")
                );
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
