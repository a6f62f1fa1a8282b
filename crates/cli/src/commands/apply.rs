//! `ignite apply -f FILE|DIR`: the VMs made to match manifests, once (`ignited daemon`
//! does it continuously). Prints what it did, or with `--dry-run` what it would do. With
//! `--host`, only the manifests placed on that host (`ignite.rs/host`) are applied.

use std::process::ExitCode;

use anyhow::Context as _;
use ignite_runtime::reconcile::placement::{HOST_LABEL, HostName, Placement};
use ignite_runtime::reconcile::{self, Action, ManifestSet, Reconciler};

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
    let mut untouchable = Vec::new();
    let mut moved: Vec<(String, HostName)> = Vec::new();
    if let Some(host) = &args.host {
        let placement = Placement {
            host: HostName::new(host).map_err(|e| anyhow::anyhow!("--host: {e}"))?,
            adopt_unplaced: args.adopt_unplaced,
        };
        let split = placement.split(std::mem::take(&mut set.vms));
        for (d, other) in &split.elsewhere {
            super::write_stdout(&format!(
                "VM {} is placed on host {other}, not {host}: skipped\n",
                d.name()
            ))?;
        }
        for d in &split.unplaced {
            super::write_stdout(&format!(
                "VM {} names no host ({HOST_LABEL}): skipped; give --adopt-unplaced to apply it on {host}\n",
                d.name()
            ))?;
        }
        for (d, e) in &split.invalid {
            eprintln!("Error: {}: label {HOST_LABEL}: {e}", d.file.display());
            failed = true;
        }
        untouchable = split.untouchable().map(str::to_string).collect();
        moved = split
            .elsewhere
            .iter()
            .map(|(d, h)| (d.name().to_string(), h.clone()))
            .collect();
        set.vms = split.here;
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
    // A VM whose manifest is there but not this host's to apply is not pruned.
    let actions: Vec<Action> = reconciler
        .plan(&set.vms, args.prune)?
        .into_iter()
        .filter(|a| {
            !(matches!(a, Action::Remove { .. }) && untouchable.iter().any(|n| n == a.name()))
        })
        .collect();
    for d in &set.vms {
        if !actions.iter().any(|a| a.name() == d.name()) {
            super::write_stdout(&format!("VM {} is up to date\n", d.name()))?;
        }
    }
    // A removal of a VM placed elsewhere says so, not that its manifest is gone.
    let describe = |action: &Action, done: bool| match (
        action,
        moved.iter().find(|(n, _)| n == action.name()),
    ) {
        (Action::Remove { name }, Some((_, host))) => format!(
            "{} VM {name} (placed on host {host})",
            if done { "removed" } else { "would remove" }
        ),
        _ => action.describe(done),
    };
    for action in &actions {
        if args.dry_run {
            super::write_stdout(&format!("{}\n", describe(action, false)))?;
            continue;
        }
        let desired = set.vms.iter().find(|d| d.name() == action.name());
        match reconciler.execute(action, desired) {
            Ok(()) => super::write_stdout(&format!("{}\n", describe(action, true)))?,
            Err(e) => {
                eprintln!(
                    "Error: {}: {e}",
                    describe(action, false).trim_start_matches("would ")
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
