//! `ignite kernel import|ls|rm`, `ignite kernels` and `ignite rmk`.

use chrono::Utc;
use ignite_api::humanize;
use ignite_runtime::kernels::{self, KernelImportOptions};

use super::{Context, remove_each, write_stdout};
use crate::args::{KernelCommand, KernelImportArgs, RemoveKernelArgs};
use crate::output::tab_table;
use crate::progress::Bars;

pub fn run(ctx: &Context, command: Option<&KernelCommand>) -> anyhow::Result<()> {
    match command {
        None | Some(KernelCommand::Ls) => list(ctx),
        Some(KernelCommand::Import(args)) => import(ctx, args),
        Some(KernelCommand::Rm(args)) => remove(ctx, args),
    }
}

fn import(ctx: &Context, args: &KernelImportArgs) -> anyhow::Result<()> {
    let store = ctx.writable_store()?;
    let options = KernelImportOptions {
        image: ctx.import_options(args.pull, &args.registry),
        modules: args.modules.clone(),
        default: args.default,
        init: None,
    };
    let imported = kernels::import_kernel(&store, &args.source, &options, &Bars::new(ctx.quiet))?;
    let kernel = &imported.kernel;
    let uid = kernel
        .metadata
        .uid
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    if !ctx.quiet {
        let default = if kernels::is_default(kernel) {
            ", the default kernel"
        } else {
            ""
        };
        if imported.fetched {
            tracing::info!(
                "imported kernel {} ({}) as {uid}{default}",
                kernel.metadata.name,
                kernel.status.version
            );
        } else {
            tracing::info!(
                "kernel {} is already imported as {uid}{default}",
                kernel.metadata.name
            );
        }
    }
    write_stdout(&format!("{uid}\n"))
}

fn list(ctx: &Context) -> anyhow::Result<()> {
    let listing = ctx.store.kernels().list()?;
    for damaged in &listing.damaged {
        tracing::warn!("{damaged}");
    }
    if ctx.quiet {
        let ids: String = listing
            .objects
            .iter()
            .map(|k| {
                k.metadata
                    .uid
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string)
                    + "\n"
            })
            .collect();
        return write_stdout(&ids);
    }
    let now = Utc::now();
    let mut rows: Vec<Vec<String>> = vec![
        ["KERNEL ID", "NAME", "CREATED", "SIZE", "VERSION"]
            .iter()
            .map(ToString::to_string)
            .collect(),
    ];
    for k in &listing.objects {
        let version = if kernels::is_default(k) {
            format!("{} (default)", k.status.version)
        } else {
            k.status.version.clone()
        };
        rows.push(vec![
            k.metadata
                .uid
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            k.metadata.name.clone(),
            k.metadata
                .created
                .map_or_else(String::new, |t| format!("{} ago", humanize::age(t.0, now))),
            k.status.oci_source.size.to_string(),
            version,
        ]);
    }
    write_stdout(&tab_table(&rows))
}

pub fn remove(ctx: &Context, args: &RemoveKernelArgs) -> anyhow::Result<()> {
    let store = ctx.writable_store()?;
    remove_each("kernel", &args.kernels, |query| {
        let (kernel, vms) = ignite_runtime::removal::remove_kernel(&store, query, args.force)?;
        let uid = kernel
            .metadata
            .uid
            .map_or_else(String::new, |u| u.to_string());
        Ok((kernel.metadata.name, uid, vms))
    })
}
