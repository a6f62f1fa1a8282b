//! `ignite snapshot create|ls|rm` and `ignite snapshots`.

use chrono::Utc;
use ignite_api::{Size, Snapshot, humanize, manifest};
use ignite_runtime::vms::snapshot;

use super::{Context, write_stdout};
use crate::args::{
    ListFormat, RemoveSnapshotArgs, SnapshotCommand, SnapshotCreateArgs, SnapshotGroup,
    SnapshotListArgs,
};
use crate::output::tab_table;

pub fn run(ctx: &Context, group: &SnapshotGroup) -> anyhow::Result<()> {
    match &group.command {
        None => list(ctx, &group.list),
        Some(SnapshotCommand::Ls(args)) => list(ctx, args),
        Some(SnapshotCommand::Create(args)) => create(ctx, args),
        Some(SnapshotCommand::Rm(args)) => remove(ctx, args),
    }
}

fn uid(s: &Snapshot) -> String {
    s.metadata
        .uid
        .as_ref()
        .map_or_else(String::new, ToString::to_string)
}

fn create(ctx: &Context, args: &SnapshotCreateArgs) -> anyhow::Result<()> {
    let store = ctx.writable_store()?;
    let vm = store.vms().find(&args.vm)?;
    let firecracker = ctx
        .configuration
        .as_ref()
        .and_then(|c| c.spec.firecracker.clone());
    let snap = snapshot::create_snapshot(&store, vm, args.name.as_deref(), firecracker.as_deref())?;
    write_stdout(&format!("{}\n", uid(&snap)))
}

fn list(ctx: &Context, args: &SnapshotListArgs) -> anyhow::Result<()> {
    let listing = ctx.store.snapshots().list()?;
    for damaged in &listing.damaged {
        tracing::warn!("{damaged}");
    }
    let snapshots = listing.objects;
    match args.output {
        ListFormat::Json => return write_stdout(&manifest::to_json(&snapshots)),
        ListFormat::Yaml => return write_stdout(&manifest::to_yaml(&snapshots)),
        ListFormat::Table => {}
    }
    if ctx.quiet {
        let ids: String = snapshots.iter().map(|s| uid(s) + "\n").collect();
        return write_stdout(&ids);
    }
    let now = Utc::now();
    let mut rows: Vec<Vec<String>> = vec![
        [
            "SNAPSHOT ID",
            "NAME",
            "VM",
            "CREATED",
            "MEMORY",
            "SIZE",
            "KERNEL",
        ]
        .iter()
        .map(ToString::to_string)
        .collect(),
    ];
    for s in &snapshots {
        rows.push(vec![
            uid(s),
            s.metadata.name.clone(),
            s.spec.vm.name.clone(),
            s.metadata
                .created
                .map_or_else(String::new, |t| format!("{} ago", humanize::age(t.0, now))),
            format!("{} MiB", s.spec.machine.memory_mib),
            Size::from_bytes(s.status.state_bytes + s.status.disk_bytes).to_string(),
            s.spec.machine.kernel.clone(),
        ]);
    }
    write_stdout(&tab_table(&rows))
}

fn remove(ctx: &Context, args: &RemoveSnapshotArgs) -> anyhow::Result<()> {
    let store = ctx.writable_store()?;
    let mut out = String::new();
    let mut failed = None;
    for query in &args.snapshots {
        let removed = store
            .snapshots()
            .find(query)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok(snapshot::remove_snapshot(&store, s)?));
        match removed {
            Ok(s) => {
                tracing::info!("removed snapshot {} ({})", s.metadata.name, uid(&s));
                out.push_str(&uid(&s));
                out.push('\n');
            }
            Err(e) if args.snapshots.len() == 1 => failed = Some(e),
            Err(e) => {
                tracing::error!("{e:#}");
                failed = Some(anyhow::anyhow!("some snapshots were not removed"));
            }
        }
    }
    write_stdout(&out)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
