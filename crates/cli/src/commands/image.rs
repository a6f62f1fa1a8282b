//! `ignite image import|ls|rm`, `ignite images` and `ignite rmi`.

use chrono::Utc;
use ignite_api::humanize;
use ignite_runtime::images;

use super::{Context, remove_each, write_stdout};
use crate::args::{ImageCommand, ImportArgs, RemoveImageArgs};
use crate::output::tab_table;
use crate::progress::Bars;

pub fn run(ctx: &Context, command: Option<&ImageCommand>) -> anyhow::Result<()> {
    match command {
        None | Some(ImageCommand::Ls) => list(ctx),
        Some(ImageCommand::Import(args)) => import(ctx, args),
        Some(ImageCommand::Rm(args)) => remove(ctx, args),
    }
}

fn import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<()> {
    let store = ctx.writable_store()?;
    let mut options = ctx.import_options(args.pull, &args.registry);
    options.name = args.name.clone();
    let imported = images::import_image(&store, &args.source, &options, &Bars::new(ctx.quiet))?;
    let image = &imported.image;
    let uid = image
        .metadata
        .uid
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    if ctx.quiet {
        return write_stdout(&format!("{uid}\n"));
    }
    if imported.fetched {
        tracing::info!("imported {} as {uid}", image.metadata.name);
    } else {
        tracing::info!("{} is already imported as {uid}", image.metadata.name);
    }
    write_stdout(&format!("{uid}\n"))
}

fn list(ctx: &Context) -> anyhow::Result<()> {
    let listing = ctx.store.images().list()?;
    for damaged in &listing.damaged {
        tracing::warn!("{damaged}");
    }
    let now = Utc::now();
    let mut out = String::new();
    if ctx.quiet {
        for image in &listing.objects {
            out.push_str(image.metadata.uid.as_ref().map_or("", |u| u.as_str()));
            out.push('\n');
        }
        return write_stdout(&out);
    }
    let mut rows: Vec<Vec<String>> = vec![
        ["IMAGE ID", "NAME", "CREATED", "SIZE"]
            .iter()
            .map(ToString::to_string)
            .collect(),
    ];
    for image in &listing.objects {
        rows.push(vec![
            image
                .metadata
                .uid
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            image.metadata.name.clone(),
            image
                .metadata
                .created
                .map_or_else(String::new, |t| format!("{} ago", humanize::age(t.0, now))),
            image.status.oci_source.size.to_string(),
        ]);
    }
    write_stdout(&tab_table(&rows))
}

pub fn remove(ctx: &Context, args: &RemoveImageArgs) -> anyhow::Result<()> {
    let store = ctx.writable_store()?;
    remove_each("image", &args.images, |query| {
        let (image, vms) = ignite_runtime::removal::remove_image(&store, query, args.force)?;
        let uid = image
            .metadata
            .uid
            .map_or_else(String::new, |u| u.to_string());
        Ok((image.metadata.name, uid, vms))
    })
}
